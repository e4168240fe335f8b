// `dropkit predict`: deterministic and Monte-Carlo dropout predictions of a trained model, with
// per-example uncertainty, calibration, misclassification and out-of-distribution detection.
// What every number means: src/dropkit/predict/uncertainty.h; the output formats: README.md.
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dropkit/core/atomic_file.h"
#include "dropkit/data/batcher.h"
#include "dropkit/data/idx.h"
#include "dropkit/predict/predictor.h"
#include "dropkit/report/svg.h"
#include "dropkit/train/checkpoint.h"
#include "dropkit/train/run_dir.h"
#include "dropkit/train/trainer.h"
#include "flags.h"
#include "measure.h"
#include "progress.h"
#include "recalibration.h"

namespace dropkit::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Opts {
  std::string model;
  std::uint64_t mc = 0;
  std::string data = data::default_data_dir().string();
  std::string images, labels;
  std::string out, reliability, sweep_svg;
  std::string sweep;
  std::optional<std::uint64_t> seed;
  std::optional<std::string> exclude_classes;
  std::uint64_t recalibrate_bn = 0;
  int top_k = 0;
  std::size_t max_rows = 2048;
  int threads = 0;
  bool json = false;
};

// One prediction (deterministic or Monte-Carlo) over the whole data set: what the aggregates and
// the detection AUROCs need per example.
struct Prediction {
  std::uint64_t samples = 0;  // 0: deterministic
  double seconds = 0;
  // Per reported count: the set-level numbers over in-distribution labelled examples.
  std::vector<std::uint64_t> counts;
  std::vector<predict::AggregateAccumulator> aggregates;
  // At the final count, per example.
  std::vector<predict::ExampleStats> stats;
};

Prediction run_prediction(model::Model& model, const data::Dataset& d,
                          const predict::PredictOptions& po, const std::vector<int>& excluded,
                          parallel::ThreadPool& pool,
                          const std::function<void(const predict::ExampleResult&)>& on_final,
                          bool quiet) {
  ProgressBar bar(stderr,
                  po.samples > 0 ? fmt::format("predict, T = {}", po.samples)
                                 : std::string("predict, weight scaling"),
                  quiet);
  std::size_t finished = 0;
  Prediction r;
  r.samples = po.samples;
  r.counts = predict::report_counts(po);
  r.aggregates.resize(r.counts.size());
  r.stats.resize(d.count);
  const auto is_ood = [&](int label) {
    return std::find(excluded.begin(), excluded.end(), label) != excluded.end();
  };
  r.seconds = seconds_of([&] {
    predict::predict(model, d, 0, d.count, po, pool, [&](const predict::ExampleResult& e) {
      const auto at = static_cast<std::size_t>(
          std::lower_bound(r.counts.begin(), r.counts.end(), e.samples) - r.counts.begin());
      if (e.label >= 0 && !is_ood(e.label)) r.aggregates[at].add(e.stats, e.probs, e.label);
      if (at + 1 == r.counts.size()) {
        r.stats[e.index] = e.stats;
        if (on_final) on_final(e);
        bar(++finished, d.count);
      }
    });
  });
  return r;
}

json aggregate_json(const predict::Aggregate& a) {
  return {{"examples", a.count},
          {"accuracy", a.accuracy},
          {"nll", a.nll},
          {"brier", a.brier},
          {"ece", a.ece}};
}

// AUROC of each score for telling `positive` examples from the others among `use`.
json detection_json(const Prediction& r, const std::vector<std::uint8_t>& use,
                    const std::vector<std::uint8_t>& positive) {
  std::vector<double> entropy, mi, max_prob;
  std::vector<std::uint8_t> pos;
  for (std::size_t i = 0; i < r.stats.size(); ++i) {
    if (!use[i]) continue;
    entropy.push_back(r.stats[i].entropy);
    mi.push_back(r.stats[i].mutual_information);
    max_prob.push_back(1.0 - r.stats[i].confidence);  // higher: less confident
    pos.push_back(positive[i]);
  }
  json j = {{"entropy", predict::auroc(entropy, pos)},
            {"max_probability", predict::auroc(max_prob, pos)}};
  if (r.samples > 0) j["mutual_information"] = predict::auroc(mi, pos);
  return j;
}

std::string example_line(const predict::ExampleResult& e, int top_k, bool csv) {
  // Classes by probability, highest first (ties: the lower class first).
  std::vector<int> order(e.probs.size());
  std::iota(order.begin(), order.end(), 0);
  const std::size_t k = top_k > 0 ? std::min<std::size_t>(top_k, order.size()) : order.size();
  if (top_k > 0) {
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return e.probs[a] > e.probs[b]; });
  }
  const auto& s = e.stats;
  if (csv) {
    std::string line =
        fmt::format("{},{},{},{:.9g},{:.9g},{:.9g},{:.9g}", e.index,
                    e.label >= 0 ? std::to_string(e.label) : std::string(), s.predicted,
                    s.confidence, s.entropy, s.mutual_information, s.variance);
    for (std::size_t i = 0; i < k; ++i) {
      if (top_k > 0) line += fmt::format(",{}", order[i]);
      line += fmt::format(",{:.9g}", e.probs[order[i]]);
    }
    return line + "\n";
  }
  json j = {{"index", e.index},
            {"predicted", s.predicted},
            {"confidence", s.confidence},
            {"entropy", s.entropy},
            {"mutual_information", s.mutual_information},
            {"variance", s.variance}};
  if (e.label >= 0) j["label"] = e.label;
  if (top_k > 0) {
    json top = json::array();
    for (std::size_t i = 0; i < k; ++i) top.push_back({order[i], e.probs[order[i]]});
    j["top"] = top;
  } else {
    j["probs"] = std::vector<double>(e.probs.begin(), e.probs.end());
  }
  return j.dump() + "\n";
}

std::string csv_header(std::size_t classes, int top_k) {
  std::string h = "index,label,predicted,confidence,entropy,mutual_information,variance";
  if (top_k > 0) {
    for (int i = 1; i <= top_k && static_cast<std::size_t>(i) <= classes; ++i)
      h += fmt::format(",top{0}_class,top{0}_prob", i);
  } else {
    for (std::size_t c = 0; c < classes; ++c) h += fmt::format(",p{}", c);
  }
  return h + "\n";
}

std::vector<std::uint64_t> parse_counts(const std::string& text) {
  std::vector<std::uint64_t> counts;
  std::size_t begin = 0;
  while (!text.empty() && begin <= text.size()) {
    const std::size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    if (item.empty() || item.size() > 9 ||
        item.find_first_not_of("0123456789") != std::string::npos || std::stoull(item) == 0) {
      throw std::invalid_argument(fmt::format(
          "--sweep '{}': '{}' is not a sample count (comma-separated whole numbers >= 1)", text,
          item));
    }
    counts.push_back(std::stoull(item));
    begin = end + 1;
  }
  return counts;
}

// The examples to predict: --images (with --labels if given) or --data's test split. Their
// shape is checked against the model from the files' headers, before any payload is read.
data::Dataset load_data(const Opts& o, const model::Model& model) {
  if (o.images.empty()) {
    if (!o.labels.empty()) throw std::invalid_argument("--labels needs --images");
    train::check_model_fits_shape(model, data::peek_mnist_split(o.data, data::MnistSplit::kTest),
                                  "test");
    return data::load_mnist_split(o.data, data::MnistSplit::kTest, 256);
  }
  const data::DatasetShape shape =
      o.labels.empty() ? data::peek_images(o.images) : data::peek_idx_pair(o.images, o.labels);
  train::check_model_fits_shape(model, shape, "given");
  if (!o.labels.empty()) return data::load_idx_pair(o.images, o.labels, 256);
  return data::load_images(o.images);
}

// A request checked and its model and data loaded: everything is checked before anything is
// computed or written.
struct Loaded {
  train::Checkpoint ck;
  data::Dataset d;
  int classes = 0;
  std::vector<int> excluded;
  predict::PredictOptions mc_opts;  // samples, seed, the sweep's counts
};

Loaded check_and_load(const Opts& o, const CLI::App& app) {
  // --images replaces --data's test split; --data then serves only --recalibrate-bn.
  if (!o.images.empty() && app.count("--data") > 0 && o.recalibrate_bn == 0) {
    throw std::invalid_argument(
        "--images replaces the test split of --data: give one or the other (--data with "
        "--images is for --recalibrate-bn's training examples)");
  }
  // No output may replace an input (the run's files, the data) or another output.
  std::vector<NamedPath> inputs;
  for (const char* f : train::kRunFiles) inputs.push_back({"the model's", fs::path(o.model) / f});
  inputs.push_back({"--images", o.images});
  inputs.push_back({"--labels", o.labels});
  for (const auto& f : data::mnist_files(o.data)) inputs.push_back({"the data file", f});
  const std::vector<NamedPath> outputs = {
      {"--out", o.out}, {"--reliability", o.reliability}, {"--sweep-svg", o.sweep_svg}};
  check_outputs_distinct(inputs, outputs);
  Loaded l;
  l.ck = train::read_checkpoint(fs::path(o.model) / train::kCheckpointFile);
  const model::Model& model = *l.ck.model;
  l.classes = static_cast<int>(model.output_shape()[0]);
  if (o.top_k > l.classes) {
    throw std::invalid_argument(fmt::format(
        "--top-k {} is outside [0, {}]: the model has {} classes", o.top_k, l.classes, l.classes));
  }
  l.d = load_data(o, model);
  train::check_model_fits(model, l.d, o.images.empty() ? "test" : "given");
  l.excluded =
      data::parse_class_list(o.exclude_classes.value_or(l.ck.config.exclude_classes), l.classes);
  const auto sweep = parse_counts(o.sweep);
  if (!sweep.empty() && o.mc == 0) throw std::invalid_argument("--sweep needs --mc");
  if (!o.sweep_svg.empty() && sweep.empty())
    throw std::invalid_argument("--sweep-svg needs --sweep");
  l.mc_opts = {.samples = o.mc,
               .seed = o.seed.value_or(l.ck.config.seed),
               .report_at = sweep,
               .max_rows = o.max_rows};
  predict::report_counts(l.mc_opts);  // a sweep count above --mc fails here
  predict::check_predict_fits(model, l.mc_opts);
  for (const std::string& f : {o.out, o.reliability, o.sweep_svg}) {
    if (f.empty()) continue;
    ensure_writable_dir(fs::absolute(f).parent_path());
    check_replaceable(f);
  }
  if (l.d.labels.empty() && (!o.reliability.empty() || !sweep.empty())) {
    throw std::invalid_argument("--reliability and --sweep need labels (--data, or --labels)");
  }
  return l;
}

// Labelled data: each prediction's set-level numbers (accuracy, NLL, Brier, ECE), its AUROCs
// (misclassification; out-of-distribution when classes are excluded) and the MC sweep into
// `result`; the reliability diagrams' curves returned.
std::vector<report::Reliability> score(const Loaded& l, const Prediction& det,
                                       const std::optional<Prediction>& mc, json& result) {
  const data::Dataset& d = l.d;
  // In-distribution examples, and which of them each prediction got wrong.
  std::vector<std::uint8_t> in_dist(d.count), ood(d.count), all(d.count, 1);
  for (std::size_t i = 0; i < d.count; ++i) {
    ood[i] = std::find(l.excluded.begin(), l.excluded.end(), d.labels[i]) != l.excluded.end();
    in_dist[i] = !ood[i];
  }
  std::vector<report::Reliability> diagrams;
  const auto report = [&](const Prediction& r, const char* name, const char* color) {
    const predict::Aggregate a = r.aggregates.back().result();
    json j = aggregate_json(a);
    std::vector<std::uint8_t> wrong(d.count);
    for (std::size_t i = 0; i < d.count; ++i) wrong[i] = r.stats[i].predicted != d.labels[i];
    j["misclassification_auroc"] = detection_json(r, in_dist, wrong);
    if (!l.excluded.empty()) j["ood_auroc"] = detection_json(r, all, ood);
    result[name] = j;
    std::vector<double> acc;
    for (const auto& b : a.bins)
      acc.push_back(b.count ? static_cast<double>(b.correct) / static_cast<double>(b.count)
                            : std::nan(""));
    const std::string label =
        r.samples ? fmt::format("MC dropout, T = {}", r.samples) : std::string("weight scaling");
    diagrams.push_back({fmt::format("{} (ECE {:.4f})", label, a.ece), color, acc});
  };
  report(det, "deterministic", "#1f77b4");
  if (mc) {
    report(*mc, "mc", "#d62728");
    json sw = json::array();
    for (std::size_t i = 0; i < mc->counts.size(); ++i) {
      json j = aggregate_json(mc->aggregates[i].result());
      j["samples"] = mc->counts[i];
      sw.push_back(j);
    }
    result["sweep"] = sw;
  }
  return diagrams;
}

// The files asked for: --out's lines, the reliability diagram, the sweep's figure.
void write_outputs(const Opts& o, int classes, const std::string& lines,
                   const std::vector<report::Reliability>& diagrams, const json& result) {
  if (!o.out.empty()) write_file_atomic(o.out, lines);
  if (!o.reliability.empty()) {
    write_file_atomic(
        o.reliability,
        report::reliability_svg("reliability (" + std::to_string(classes) + " classes, 15 bins)",
                                diagrams));
  }
  if (!o.sweep_svg.empty()) {
    const auto& det_j = result["deterministic"];
    report::Series mc_err{"MC dropout: test error", "#d62728", false, {}, {}};
    report::Series det_err{"weight scaling: test error", "#1f77b4", true, {}, {}};
    for (const auto& p : result["sweep"]) {
      mc_err.x.push_back(p["samples"].get<double>());
      mc_err.y.push_back(100.0 * (1.0 - p["accuracy"].get<double>()));
      det_err.x.push_back(p["samples"].get<double>());
      det_err.y.push_back(100.0 * (1.0 - det_j["accuracy"].get<double>()));
    }
    write_file_atomic(
        o.sweep_svg,
        report::xy_chart_svg("Monte-Carlo averaging vs weight scaling (figure 11)",
                             "samples T (log scale)", "test error (%)", {mc_err, det_err}, true));
  }
}

// The human-readable summary (without --json).
void print_summary(const Opts& o, const Loaded& l, const json& result,
                   const std::string& recalibrated, const Prediction& det,
                   const std::optional<Prediction>& mc) {
  fmt::print("{}: {} examples, {}\n", o.model, l.d.count, l.ck.model->spec());
  if (!recalibrated.empty()) fmt::print("{}\n", recalibrated);
  if (!l.d.labels.empty()) {
    fmt::print("{:<22} {:>9} {:>8} {:>8} {:>8} {:>10}\n", "prediction", "accuracy", "NLL", "Brier",
               "ECE", "seconds");
    const auto row = [&](const char* name, const json& j, double seconds) {
      fmt::print("{:<22} {:>9.4f} {:>8.4f} {:>8.4f} {:>8.4f} {:>10.2f}\n", name,
                 j["accuracy"].get<double>(), j["nll"].get<double>(), j["brier"].get<double>(),
                 j["ece"].get<double>(), seconds);
    };
    row("weight scaling", result["deterministic"], det.seconds);
    if (mc) row(fmt::format("MC dropout, T = {}", o.mc).c_str(), result["mc"], mc->seconds);
    for (const char* name : {"deterministic", "mc"}) {
      if (!result.contains(name)) continue;
      fmt::print("{}: misclassification AUROC {}", name,
                 result[name]["misclassification_auroc"].dump());
      if (result[name].contains("ood_auroc"))
        fmt::print(", out-of-distribution AUROC {}", result[name]["ood_auroc"].dump());
      fmt::print("\n");
    }
  } else {
    fmt::print("(no labels: per-example output only)\n");
  }
  for (const std::string& f : {o.out, o.reliability, o.sweep_svg}) {
    if (!f.empty()) fmt::print("wrote {}\n", f);
  }
}

int run_predict(const Opts& o, const CLI::App& app) {
  Loaded l = check_and_load(o, app);
  model::Model& model = *l.ck.model;
  const bool csv = fs::path(o.out).extension() == ".csv";
  parallel::ThreadPool pool(resolve_threads(o.threads));
  const std::string recalibrated =
      recalibrate_from_flag(model, l.ck.config, o.data, o.recalibrate_bn, pool);
  std::string lines = csv ? csv_header(static_cast<std::size_t>(l.classes), o.top_k) : "";
  const std::function<void(const predict::ExampleResult&)> write_line =
      [&](const predict::ExampleResult& e) {
        if (!o.out.empty()) lines += example_line(e, o.top_k, csv);
      };
  const Prediction det = run_prediction(model, l.d, {.samples = 0, .max_rows = o.max_rows},
                                        l.excluded, pool, o.mc == 0 ? write_line : nullptr, o.json);
  std::optional<Prediction> mc;
  if (o.mc > 0) mc = run_prediction(model, l.d, l.mc_opts, l.excluded, pool, write_line, o.json);

  json result = {{"model", o.model},       {"net", model.spec()},
                 {"examples", l.d.count},  {"samples", o.mc},
                 {"seed", l.mc_opts.seed}, {"exclude_classes", data::class_list_text(l.excluded)},
                 {"threads", pool.size()}, {"seconds", {{"deterministic", det.seconds}}}};
  if (mc) result["seconds"]["mc"] = mc->seconds;
  if (!recalibrated.empty()) result["recalibrated"] = recalibrated;
  std::vector<report::Reliability> diagrams;
  if (!l.d.labels.empty()) diagrams = score(l, det, mc, result);
  write_outputs(o, l.classes, lines, diagrams, result);
  if (o.json) {
    fmt::print("{}\n", result.dump());
  } else {
    print_summary(o, l, result, recalibrated, det, mc);
  }
  return 0;
}

}  // namespace

Run add_predict(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "a directory written by `dropkit train --out`")
      ->required()
      ->check(kNonEmptyPath);
  add_number_flag(app, "mc", o->mc,
                  "Monte-Carlo dropout with T samples (0: only the deterministic prediction)", 0,
                  1000000);
  add_data_flag(app, o->data, " (its test split; the training split for --recalibrate-bn)");
  app.add_option("--images", o->images,
                 "an IDX images file instead of --data's test split (no labels); not with --data "
                 "unless --recalibrate-bn")
      ->check(kNonEmptyPath);
  app.add_option("--labels", o->labels, "the IDX labels file for --images")->check(kNonEmptyPath);
  app.add_option("--out", o->out,
                 "per-example predictions: JSON lines, or CSV if the name ends in .csv")
      ->check(kNonEmptyPath);
  add_number_flag(app, "top_k", o->top_k,
                  "write the k most probable classes per example (0: every class's probability; "
                  "at most the model's class count)",
                  0, 256);
  app.add_option("--reliability", o->reliability, "write a reliability diagram (SVG)")
      ->check(kNonEmptyPath);
  app.add_option("--sweep", o->sweep,
                 "also report the first k samples' numbers for these k (e.g. 1,2,5,10,20,50,100; "
                 "a set: reported in increasing order, repeats once)");
  app.add_option("--sweep-svg", o->sweep_svg, "plot the --sweep test error (SVG; figure 11)")
      ->check(kNonEmptyPath);
  add_number_flag(app, "seed", o->seed, "seed of the Monte-Carlo samples (default: the run's seed)",
                  0, 18446744073709551615.0);
  app.add_option("--exclude-classes", o->exclude_classes,
                 "classes treated as out-of-distribution (default: those the model was trained "
                 "without)");
  add_recalibrate_bn_flag(app, o->recalibrate_bn);
  add_number_flag(app, "batch_rows", o->max_rows, "rows per stacked forward pass", 1, 1 << 20);
  add_threads_flag(app, o->threads);
  add_json_flag(app, o->json, " (and no progress line)");
  return [o, &app] { return run_predict(*o, app); };
}

}  // namespace dropkit::cli
