// `dropkit train`, `dropkit eval` and `dropkit compare`.
//
// train's flags are TrainConfig's options (train/config.h), one loop; --net takes a layer list
// (model/spec.h). It writes into --out DIR: config.json (the options and the model, at the
// start), and after every epoch
// checkpoint.safetensors, metrics.jsonl and curves.svg, each replaced atomically (temporary file,
// then rename), so an interrupted run leaves the last complete epoch on disk.
// Exit codes: 0 done; 2 bad input (one line on stderr, nothing half-written); 3 the loss
// became NaN or infinite (the last good checkpoint stays).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dropkit/core/atomic_file.h"
#include "dropkit/core/json_text.h"
#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/table.h"
#include "dropkit/model/registry.h"
#include "dropkit/train/activations.h"
#include "dropkit/train/recalibrate.h"
#include "dropkit/train/trainer.h"
#include "flags.h"
#include "measure.h"
#include "progress.h"
#include "recalibration.h"
#include "svg.h"

namespace dropkit::cli {
namespace fs = std::filesystem;
namespace {

// A run's train error (dashed) and test error (solid), in percent per epoch.
std::vector<Series> error_series(const std::vector<train::EpochRecord>& h,
                                 const std::string& prefix, const std::string& color) {
  Series train{prefix + "train error (eval mode)", color, true, {}};
  Series test{prefix + "test error", color, false, {}};
  for (const auto& r : h) {
    train.y.push_back(100.0 * (1.0 - r.train_accuracy));
    test.y.push_back(100.0 * (1.0 - r.test_accuracy));
  }
  return {train, test};
}

// metrics.jsonl: one line per epoch. Epoch times are not in the checkpoint (they would make it
// depend on the clock), so a resumed run takes them for its earlier epochs from the
// metrics.jsonl it continues (`earlier_seconds`, by epoch).
// The checkpoint goes first: a kill between the renames leaves metrics one epoch behind, which
// the next resume repairs (write_metrics from the checkpoint's history).
void write_metrics(const fs::path& out, const train::Trainer& t,
                   const std::map<int, double>& earlier_seconds) {
  std::string lines;
  for (auto r : t.history()) {
    const auto it = earlier_seconds.find(r.epoch);
    if (r.seconds == 0 && it != earlier_seconds.end()) r.seconds = it->second;
    lines += r.to_json().dump() + "\n";
  }
  write_file_atomic(out / "metrics.jsonl", lines);
  write_file_atomic(out / "curves.svg",
                    line_chart_svg(t.model().spec() + ": train and test error", "error (%)",
                                   error_series(t.history(), "", "#1f77b4")));
}
void write_outputs(const fs::path& out, const train::Trainer& t,
                   const std::map<int, double>& earlier_seconds) {
  t.save_checkpoint(out / kCheckpoint);
  write_metrics(out, t, earlier_seconds);
}

// Epoch times of the epochs already in `dir`/metrics.jsonl that match `history` (same epoch and
// step); a missing or unreadable file gives none, a damaged line loses only its time.
std::map<int, double> earlier_epoch_seconds(const fs::path& dir,
                                            const std::vector<train::EpochRecord>& history) {
  std::map<int, double> seconds;
  std::vector<train::EpochRecord> records;
  try {
    records = train::read_metrics(dir / "metrics.jsonl", /*skip_damaged=*/true);
  } catch (const std::exception&) {
    return seconds;
  }
  for (const auto& r : records) {
    if (r.epoch >= 1 && static_cast<std::size_t>(r.epoch) <= history.size() &&
        history[static_cast<std::size_t>(r.epoch) - 1].step == r.step) {
      seconds[r.epoch] = r.seconds;
    }
  }
  return seconds;
}

struct TrainOpts {
  std::map<std::string, std::string> values;  // option name -> text given on the command line
  std::map<std::string, bool> flags;          // boolean options
  std::string data = data::default_data_dir().string();
  std::string out;
  std::string resume;
  int threads = 0;
  bool overwrite = false;
  bool json = false;
};

// A temporary file of a run file (".metrics.jsonl.tmp.<suffix>", core/atomic_file.h) or a write
// probe: what a killed write leaves.
bool is_leftover(const std::string& name) {
  for (const char* file : kRunFiles) {
    if (name.starts_with(fmt::format(".{}.tmp.", file))) return true;
  }
  return name.starts_with(".dropkit-write-probe.");
}

// A fresh run never writes over another run: --out must be new or empty, unless --overwrite
// (then the run files, and only they, are removed before the first write). Checked before
// anything is read or written. What a run that never finished an epoch leaves (temporaries of
// killed writes; a config.json without a checkpoint or metrics, from dropkit versions that wrote
// it at the start) holds nothing to keep and does not count.
void check_fresh_out(const fs::path& out, bool overwrite) {
  std::error_code ec;
  if (out.empty() || !fs::is_directory(out, ec)) return;  // new, or refused when created
  const bool trained = fs::exists(out / kCheckpoint, ec) || fs::exists(out / "metrics.jsonl", ec);
  bool empty = true;
  for (const auto& entry : fs::directory_iterator(out, ec)) {
    const std::string name = entry.path().filename().string();
    if (!is_leftover(name) && (trained || name != "config.json")) empty = false;
  }
  if (empty) return;
  if (!overwrite) {
    throw std::invalid_argument(fmt::format(
        "--out {} is not empty; continue its run with --resume {}, replace it with --overwrite, "
        "or name a new directory",
        out.string(), out.string()));
  }
}
// Temporary files of run files (".metrics.jsonl.tmp.<suffix>", core/atomic_file.h) and write
// probes that a killed run left behind (the directory is locked: none is another run's).
void remove_stale_temporaries(const fs::path& out) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(out, ec)) {
    if (is_leftover(entry.path().filename().string())) fs::remove(entry.path(), ec);
  }
}
void remove_run_files(const fs::path& out) {
  for (const char* name : kRunFiles) {
    std::error_code ec;
    fs::remove(out / name, ec);
    if (ec) {
      throw std::runtime_error(
          fmt::format("cannot remove {}: {}", (out / name).string(), ec.message()));
    }
  }
}

// The options given on the command line, as (name, JSON value), checked.
std::vector<std::pair<std::string, nlohmann::json>> given_options(CLI::App& app,
                                                                  const TrainOpts& o) {
  std::vector<std::pair<std::string, nlohmann::json>> given;
  for (const auto& f : train::TrainConfig::fields()) {
    const Option& opt = f.option;
    if (app.count(opt.flag()) == 0) continue;
    nlohmann::json v = opt.type == Option::Type::kBool
                           ? nlohmann::json(o.flags.at(opt.name))
                           : parse_option_text(opt, o.values.at(opt.name), "--");
    opt.check(v, "--");
    given.emplace_back(opt.name, std::move(v));
  }
  return given;
}

// The data directory config.json of the run in `dir` names, if it names one (runs written
// before it was kept, or a damaged config.json, name none).
std::optional<std::string> remembered_data(const fs::path& dir) {
  try {
    const auto j = parse_json(read_file(dir / "config.json"), (dir / "config.json").string());
    if (j.is_object() && j.contains("data") && j["data"].is_string()) {
      return j["data"].get<std::string>();
    }
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

int run_train(CLI::App& app, TrainOpts& o) {
  const auto given = given_options(app, o);
  std::optional<train::Checkpoint> resumed;
  std::optional<DirectoryLock> resume_lock, out_lock;  // one process per run directory
  train::TrainConfig config;
  if (app.count("--resume") > 0) {
    if (o.resume.empty()) throw std::invalid_argument("--resume needs a run directory");
    // The run's config comes from its checkpoint; only options not fixed on resume may change.
    for (const auto& [name, value] : given) {
      if (train::TrainConfig::field(name).fixed_on_resume) {
        throw std::invalid_argument(fmt::format(
            "{} cannot be combined with --resume (the run's config comes from its checkpoint)",
            train::TrainConfig::field(name).option.flag()));
      }
    }
    // Locked before the checkpoint is read: no other process may write the run meanwhile.
    if (fs::is_directory(o.resume)) resume_lock.emplace(o.resume);
    resumed = train::read_checkpoint(fs::path(o.resume) / kCheckpoint);
    config = resumed->config;
    // The run's data, as config.json remembers them, unless --data names others (the
    // checkpoint's fingerprints decide either way).
    if (app.count("--data") == 0) o.data = remembered_data(o.resume).value_or(o.data);
    if (o.out.empty()) o.out = o.resume;
  } else {
    bool net_given = false;
    std::vector<std::string> arch_options;
    for (const auto& [name, value] : given) {
      if (name == "net" && value.get<std::string>().empty()) {
        throw std::invalid_argument("--net is empty (leave it out to train the --arch net)");
      }
      net_given |= name == "net";
      if (name == "arch" || name == "activation" || name == "dropout" || name == "input_dropout" ||
          name == "scaling") {
        arch_options.push_back(train::TrainConfig::field(name).option.flag());
      }
    }
    if (net_given && !arch_options.empty()) {
      throw std::invalid_argument(
          fmt::format("--net gives the whole layer list; {} apply only to the --arch net (give one "
                      "or the other)",
                      join(arch_options)));
    }
  }
  for (const auto& [name, value] : given) config.set(name, value);
  config.validate(/*resolve_net=*/!resumed);  // a resumed run's model is in its checkpoint
  const fs::path out = o.out;
  const bool fresh_out = !resumed || !same_file(out, o.resume);
  if (fresh_out) check_fresh_out(out, o.overwrite);
  // Before anything is written: a precision this CPU cannot run is refused (exit 2).
  kernels::check_precision_available(kernels::parse_precision(config.precision));
  // No run file may replace what the run reads: its --net file, its data, the run it resumes.
  if (!out.empty()) {
    std::vector<NamedPath> inputs;
    if (!resumed && !config.net.empty()) inputs.push_back({"--net", config.net});
    for (const auto& f : data::mnist_files(o.data)) inputs.push_back({"the data file", f});
    if (resumed && fresh_out) {
      for (const char* f : kRunFiles)
        inputs.push_back({"the resumed run's", fs::path(o.resume) / f});
    }
    std::vector<NamedPath> outputs;
    for (const char* f : kRunFiles) outputs.push_back({"the run file", out / f});
    check_outputs_distinct(inputs, outputs);
  }
  if (config.precision == "bf16" && !kernels::bf16_products_native()) {
    // Correct but slow: say so rather than let the user wonder.
    fmt::print(stderr,
               "dropkit train: note: this CPU has no native bf16 products (oneDNN uses {}); "
               "--precision bf16 will be slower than f32 here\n",
               kernels::bf16_products_implementation());
  }
  const auto data = data::load_mnist_dir(o.data);
  // Where the data are, for a resume without --data (still checked by their fingerprints).
  const std::string data_dir = fs::weakly_canonical(fs::absolute(o.data)).string();
  const int threads = resolve_threads(o.threads);
  parallel::ThreadPool pool(threads);
  std::unique_ptr<train::Trainer> made;
  if (resumed) {
    resumed->config = config;
    made = std::make_unique<train::Trainer>(std::move(*resumed), data, pool);
  } else {
    made = std::make_unique<train::Trainer>(config, data, pool);
  }
  train::Trainer& trainer = *made;
  // Only now, with config, data and checkpoint all valid, may --out be created.
  std::map<int, double> earlier_seconds;
  if (!out.empty()) {
    ensure_writable_dir(out);
    if (fresh_out) out_lock.emplace(out);  // (a resumed run's directory is locked already)
    if (fresh_out) {
      check_fresh_out(out, o.overwrite);  // again, under the lock: a run may have started since
      remove_run_files(out);              // --overwrite; nothing there otherwise
    }
    remove_stale_temporaries(out);
    // The earlier epochs' times come from the run's own metrics (a resume into another --out
    // starts from an empty directory).
    earlier_seconds = earlier_epoch_seconds(resumed ? fs::path(o.resume) : out, trainer.history());
    // metrics.jsonl and curves.svg follow the checkpoint, whatever a kill left them at.
    if (resumed) write_metrics(out, trainer, earlier_seconds);
  }
  // config.json goes with the first checkpoint (a resumed run's is rewritten at once): a run
  // stopped (killed, or diverged) before its first epoch ends leaves --out as it found it.
  bool config_written = false;
  const auto write_config = [&] {
    if (out.empty() || config_written) return;
    nlohmann::json cj = config.to_json();
    cj["model"] = trainer.model().to_json();
    cj["data"] = data_dir;
    write_file_atomic(out / "config.json", cj.dump(2) + "\n");
    config_written = true;
  };
  if (resumed) write_config();

  std::FILE* log = o.json ? stderr : stdout;
  fmt::print(log, "dropkit train: {} | {} train, {} val, {} test | {} threads, {} kernels\n",
             trainer.model().describe(), trainer.train_examples(), trainer.val_examples(),
             trainer.test_examples(), threads, kernels::active_kernels().name);
  std::fflush(log);
  try {
    while (trainer.epochs_done() < config.epochs) {
      ProgressBar bar(log, fmt::format("epoch {}/{}", trainer.epochs_done() + 1, config.epochs));
      const auto r = trainer.run_epoch(
          [&](std::size_t done, std::size_t total, double loss) { bar(done, total, loss); });
      bar.finish();
      fmt::print(log,
                 "epoch {:>3}/{}  train loss {:.4f} acc {:.4f}  val loss {:.4f} acc {:.4f}  "
                 "test loss {:.4f} acc {:.4f}  {:.1f}s\n",
                 r.epoch, config.epochs, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy,
                 r.test_loss, r.test_accuracy, r.seconds);
      std::fflush(log);
      write_config();
      if (!out.empty()) write_outputs(out, trainer, earlier_seconds);
    }
  } catch (const train::TrainingDiverged& e) {
    // Say what is on disk: the last epoch's checkpoint, or nothing at all.
    std::string kept;
    if (out.empty()) {
      kept = "nothing was being saved (no --out)";
    } else if (trainer.epochs_done() == 0) {
      kept = fmt::format(
          "no epoch finished, so nothing was saved: {} holds no run files, and a "
          "rerun may use it",
          out.string());
    } else {
      kept = fmt::format("{} keeps the checkpoint of epoch {}, which --resume continues",
                         out.string(), trainer.epochs_done());
    }
    fmt::print(stderr, "dropkit train: error: {}; {}\n", e.what(), kept);
    return 3;
  }
  if (o.json) {
    const auto& h = trainer.history();
    std::vector<double> secs;
    for (const auto& r : h)
      if (r.seconds > 0) secs.push_back(r.seconds);
    const double med = median(secs);
    const double train_n = static_cast<double>(trainer.train_examples());
    const auto last = h.empty() ? train::EpochRecord{} : h.back();
    nlohmann::json j{{"test_accuracy", last.test_accuracy},
                     {"test_loss", last.test_loss},
                     {"train_accuracy", last.train_accuracy},
                     {"train_loss", last.train_loss},
                     {"val_accuracy", last.val_accuracy},
                     {"val_loss", last.val_loss},
                     {"epochs", trainer.epochs_done()},
                     {"steps", trainer.steps_done()},
                     {"epoch_seconds_median", med},
                     {"samples_per_second", med > 0 ? train_n / med : 0.0},
                     {"seed", config.seed},
                     {"net", trainer.model().spec()},
                     {"threads", threads},
                     {"isa", kernels::active_kernels().name},
                     {"out", o.out}};
    fmt::print("{}\n", j.dump());
  }
  return 0;
}

// The layer kinds and their options, for the end of `train --help`.
std::string layer_help() {
  std::string s = "\nLayers for --net (kind:positional...:name=value; README 'Network specs'):\n";
  for (const auto& k : model::layer_kinds()) {
    s += fmt::format("  {:<11} {}\n", k.kind, k.summary);
    for (const auto& opt : k.options) {
      const bool positional =
          std::find(k.positional.begin(), k.positional.end(), opt.name) != k.positional.end();
      s += fmt::format(
          "      {:<13} {}; {}{}{}\n", opt.name, opt.help, opt.range_text(),
          opt.default_value.is_null()
              ? ", required"
              : ", default " + (opt.default_value.is_string() ? opt.default_value.get<std::string>()
                                                              : opt.default_value.dump()),
          positional ? "" : " (by name only)");
    }
  }
  return s;
}

}  // namespace

Run add_train(CLI::App& app) {
  auto o = std::make_shared<TrainOpts>();
  app.add_option("--data", o->data,
                 "directory with MNIST-style IDX files (.gz or not); --resume takes the run's own "
                 "(config.json) unless given")
      ->capture_default_str()
      ->check(kNonEmptyPath);
  for (const auto& f : train::TrainConfig::fields()) {
    const Option& opt = f.option;
    const bool free_text = (opt.type == Option::Type::kString && opt.choices.empty()) ||
                           opt.type == Option::Type::kBool;  // a flag: no value to range
    const std::string help =
        fmt::format("{}{}{}", opt.help, free_text ? "" : " (" + opt.range_text() + ")",
                    f.fixed_on_resume ? "" : " (may change on --resume)");
    if (opt.type == Option::Type::kBool) {
      app.add_flag(opt.flag(), o->flags[opt.name], help);
      continue;
    }
    const std::string shown = opt.default_value.is_string() ? opt.default_value.get<std::string>()
                                                            : opt.default_value.dump();
    const char* type = opt.type == Option::Type::kInt    ? "INT"
                       : opt.type == Option::Type::kReal ? "FLOAT"
                                                         : "TEXT";
    app.add_option(opt.flag(), o->values[opt.name], help)->default_str(shown)->type_name(type);
  }
  add_number_flag(app, "threads", o->threads,
                  "threads (0 = all cores); results do not depend on it", 0, 256);
  app.add_option("--out", o->out,
                 "directory for config.json, metrics.jsonl, checkpoint.safetensors, curves.svg")
      ->check(kNonEmptyPath);
  app.add_option("--resume", o->resume, "continue the run saved in this directory")
      ->check(kNonEmptyPath);
  app.add_flag("--overwrite", o->overwrite,
               "replace the run in a non-empty --out (its config.json, metrics.jsonl, "
               "checkpoint and curves.svg; other files stay); without it such an --out is refused");
  app.add_flag("--json", o->json, "print one JSON object on stdout at the end; progress to stderr");
  app.footer(layer_help());
  return [o, &app] { return run_train(app, *o); };
}

Run add_eval(CLI::App& app) {
  struct Opts {
    std::string model;
    std::string data = data::default_data_dir().string();
    int threads = 0;
    std::uint64_t recalibrate_bn = 0;
    bool bn_stats = false;
    std::size_t activations = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "a directory written by `dropkit train --out`")
      ->required()
      ->check(kNonEmptyPath);
  add_number_flag(app, "activations", o->activations,
                  "statistics of layer K's output (counting from 1 as --net lists the layers) on "
                  "the test split in eval mode: mean activation, and with --json each unit's mean "
                  "and each example's fraction of active (> 0) units (the paper's figures 7-8)",
                  1, 1 << 20);
  add_number_flag(app, "recalibrate_bn", o->recalibrate_bn,
                  "re-estimate batchnorm's running statistics with dropout off over this many "
                  "training examples of --data first (nothing is saved)",
                  0, 18446744073709551615.0);
  app.add_flag("--bn-stats", o->bn_stats,
               "per batchnorm layer: the variance of its input in eval mode on the test split "
               "over its running variance (the variance shift; about 1 - p after dropout p)");
  app.add_option("--data", o->data, "directory with MNIST-style IDX files")
      ->capture_default_str()
      ->check(kNonEmptyPath);
  add_number_flag(app, "threads", o->threads, "threads (0 = all cores)", 0, 256);
  app.add_flag("--json", o->json, "print one JSON object on stdout");
  return [o] {
    // The model comes whole from the checkpoint; only the test split is read.
    const auto ck = train::read_checkpoint(fs::path(o->model) / kCheckpoint);
    train::check_model_fits_shape(*ck.model,
                                  data::peek_mnist_split(o->data, data::MnistSplit::kTest), "test");
    const auto test = data::load_mnist_split(o->data, data::MnistSplit::kTest);
    train::check_model_fits(*ck.model, test, "test");
    parallel::ThreadPool pool(resolve_threads(o->threads));
    const std::string recalibrated =
        recalibrate_from_flag(*ck.model, ck.config, o->data, o->recalibrate_bn, pool);
    std::vector<std::uint32_t> rows(test.count);
    std::iota(rows.begin(), rows.end(), 0u);
    // The classes the model was trained on, as `train` reported its test accuracy.
    rows = data::rows_without(test, rows, data::parse_class_list(ck.config.exclude_classes, 256));
    Tensor x;
    std::vector<std::uint8_t> labels;
    const auto r = train::evaluate(*ck.model, test, rows, pool, x, labels);
    std::optional<train::ActivationStats> acts;
    if (o->activations > 0) {
      acts = train::activation_statistics(*ck.model, test, rows, o->activations,
                                          static_cast<std::size_t>(ck.config.batch), pool);
    }
    std::vector<train::VarianceShift> shifts;
    if (o->bn_stats) {
      shifts = train::measure_variance_shift(*ck.model, test, rows,
                                             static_cast<std::size_t>(ck.config.batch), pool);
    }
    if (o->json) {
      nlohmann::json j{{"test_accuracy", r.accuracy}, {"test_loss", r.loss},
                       {"examples", r.count},         {"epochs", ck.state.epoch},
                       {"net", ck.model->spec()},     {"model", o->model}};
      if (!recalibrated.empty()) j["recalibrated"] = recalibrated;
      if (acts) {
        j["activations"] = {{"layer", acts->layer},
                            {"kind", ck.model->layer(acts->layer - 1).kind()},
                            {"units", acts->units},
                            {"examples", acts->examples},
                            {"mean", acts->mean},
                            {"unit_mean", acts->unit_mean},
                            {"active_fraction", acts->active_fraction}};
      }
      if (o->bn_stats) {
        j["batchnorm"] = nlohmann::json::array();
        for (const auto& v : shifts) {
          j["batchnorm"].push_back({{"layer", v.layer},
                                    {"channels", v.channels},
                                    {"eval_over_running", v.eval_over_running},
                                    {"min_ratio", v.min_ratio},
                                    {"max_ratio", v.max_ratio},
                                    {"running_var", v.running_var},
                                    {"eval_var", v.eval_var}});
        }
      }
      fmt::print("{}\n", j.dump());
    } else {
      if (!recalibrated.empty()) fmt::print("{}\n", recalibrated);
      if (acts) {
        double active = 0;
        for (double f : acts->active_fraction) active += f;
        fmt::print(
            "layer {} ({}, {} units): mean activation {:.4f}, active (> 0) {:.4f} of the "
            "units per example on average\n",
            acts->layer, ck.model->layer(acts->layer - 1).kind(), acts->units, acts->mean,
            active / static_cast<double>(acts->examples));
      }
      if (o->bn_stats && shifts.empty()) fmt::print("no batchnorm layer\n");
      for (const auto& v : shifts) {
        fmt::print(
            "layer {} batchnorm ({} channels): eval variance / running variance {:.4f} "
            "(channels {:.4f} .. {:.4f})\n",
            v.layer, v.channels, v.eval_over_running, v.min_ratio, v.max_ratio);
      }
      fmt::print("{}: {} examples, eval mode: loss {:.4f}, accuracy {:.4f} (after {} epochs)\n",
                 o->model, r.count, r.loss, r.accuracy, ck.state.epoch);
    }
    return 0;
  };
}

Run add_compare(CLI::App& app) {
  struct Opts {
    std::vector<std::string> runs;
    std::string svg;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("runs", o->runs, "run directories written by `dropkit train --out`")
      ->required()
      ->expected(1, 8)
      ->check(kNonEmptyPath);
  app.add_option("--svg", o->svg, "write every run's train and test error into one SVG")
      ->check(kNonEmptyPath);
  return [o] {
    // The SVG must not replace a file of a run it compares.
    std::vector<NamedPath> inputs;
    for (const auto& run : o->runs) {
      for (const char* f : kRunFiles) inputs.push_back({"a file of the run", fs::path(run) / f});
    }
    const std::vector<NamedPath> outputs = {{"--svg", o->svg}};
    check_outputs_distinct(inputs, outputs);
    const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd",
                            "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"};
    std::vector<Series> series;
    // Every run is read and checked before anything is printed.
    std::vector<std::vector<train::EpochRecord>> histories;
    for (const auto& run : o->runs) {
      histories.push_back(train::read_metrics(fs::path(run) / "metrics.jsonl", false));
      if (histories.back().empty()) {
        throw std::runtime_error((fs::path(run) / "metrics.jsonl").string() + ": no epochs");
      }
    }
    fmt::print("{:<28} {:>7} {:>9} {:>9} {:>9} {:>9}\n", "run", "epochs", "train acc", "test acc",
               "gap", "best test");
    for (std::size_t i = 0; i < o->runs.size(); ++i) {
      const fs::path dir = o->runs[i];
      const auto& h = histories[i];
      const auto& last = h.back();
      double best = 0;
      for (const auto& r : h) best = std::max(best, r.test_accuracy);
      fmt::print("{:<28} {:>7} {:>9.4f} {:>9.4f} {:>9.4f} {:>9.4f}\n", dir.filename().string(),
                 last.epoch, last.train_accuracy, last.test_accuracy,
                 last.train_accuracy - last.test_accuracy, best);
      for (auto& series_i : error_series(h, dir.filename().string() + ": ", colors[i % 8]))
        series.push_back(std::move(series_i));
    }
    if (!o->svg.empty()) {
      write_file_atomic(o->svg, line_chart_svg("train and test error", "error (%)", series));
      fmt::print("wrote {}\n", o->svg);
    }
    return 0;
  };
}

}  // namespace dropkit::cli
