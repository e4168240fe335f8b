// `dropkit train`, `dropkit eval` and `dropkit compare`.
//
// train writes into --out DIR: config.json (at the start), and after every epoch
// checkpoint.safetensors, metrics.jsonl and curves.svg, each replaced atomically (temporary file,
// then rename), so an interrupted run leaves the last complete epoch on disk.
// Exit codes: 0 done; 2 bad input (one line on stderr, nothing half-written); 3 the loss
// became NaN or infinite (the last good checkpoint stays).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dropkit/core/atomic_file.h"
#include "dropkit/kernels/table.h"
#include "dropkit/train/trainer.h"
#include "measure.h"
#include "svg.h"

namespace dropkit::cli {
namespace fs = std::filesystem;
namespace {

constexpr const char* kCheckpoint = "checkpoint.safetensors";

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

void write_outputs(const fs::path& out, const train::Trainer& t) {
  std::string lines;
  for (const auto& r : t.history()) lines += r.to_json().dump() + "\n";
  t.save_checkpoint(out / kCheckpoint);
  write_file_atomic(out / "metrics.jsonl", lines);
  write_file_atomic(out / "curves.svg",
                    line_chart_svg(t.config().arch + ": train and test error", "error (%)",
                                   error_series(t.history(), "", "#1f77b4")));
}

class ProgressBar {
 public:
  ProgressBar(std::FILE* f, int epoch, int epochs)
      : f_(f), tty_(isatty(fileno(f))), epoch_(epoch), epochs_(epochs) {}
  void operator()(std::size_t done, std::size_t total, double loss) {
    if (!tty_ || (done % 8 != 0 && done != total)) return;
    const int width = 30, filled = static_cast<int>(width * done / total);
    fmt::print(f_, "\repoch {}/{} [{}{}] {}/{} loss {:.4f}", epoch_, epochs_,
               std::string(filled, '#'), std::string(width - filled, '.'), done, total, loss);
    std::fflush(f_);
  }
  void finish() {
    if (tty_) fmt::print(f_, "\r\033[K");
  }

 private:
  std::FILE* f_;
  bool tty_;
  int epoch_, epochs_;
};

struct TrainOpts {
  train::TrainConfig config;
  std::string data = data::default_data_dir().string();
  std::string out;
  std::string resume;
  int threads = 0;
  bool json = false;
};

int run_train(CLI::App& app, TrainOpts& o) {
  if (!o.resume.empty()) {
    // The run's config comes from its checkpoint; only these may change on resume.
    for (const char* flag :
         {"--arch", "--activation", "--dropout", "--input-dropout", "--scaling", "--max-norm",
          "--weight-decay", "--optimizer", "--lr", "--lr-decay", "--momentum", "--momentum-start",
          "--momentum-ramp", "--nesterov", "--batch", "--val", "--seed", "--train-eval"}) {
      if (app.count(flag) > 0) {
        throw std::invalid_argument(fmt::format(
            "{} cannot be combined with --resume (the run's config comes from its checkpoint)",
            flag));
      }
    }
    const int epochs = o.config.epochs;
    o.config = train::Trainer::read_checkpoint_config(fs::path(o.resume) / kCheckpoint);
    if (app.count("--epochs") > 0) o.config.epochs = epochs;
    if (o.out.empty()) o.out = o.resume;
  }
  o.config.validate();
  const fs::path out = o.out;
  const auto data = data::load_mnist_dir(o.data);
  const int threads = resolve_threads(o.threads);
  parallel::ThreadPool pool(threads);
  train::Trainer trainer(o.config, data, pool);
  if (!o.resume.empty()) trainer.load_checkpoint(fs::path(o.resume) / kCheckpoint);
  // Only now, with config, data and checkpoint all valid, may --out be created.
  if (!out.empty()) ensure_writable_dir(out);
  if (!out.empty()) write_file_atomic(out / "config.json", o.config.to_json().dump(2) + "\n");

  std::FILE* log = o.json ? stderr : stdout;
  fmt::print(log, "dropkit train: {} | {} train, {} val, {} test | {} threads, {} kernels\n",
             trainer.model().describe(), data.train.count - o.config.val, o.config.val,
             data.test.count, threads, kernels::active_kernels().name);
  std::fflush(log);
  try {
    while (trainer.epochs_done() < o.config.epochs) {
      ProgressBar bar(log, trainer.epochs_done() + 1, o.config.epochs);
      const auto r = trainer.run_epoch(std::ref(bar));
      bar.finish();
      fmt::print(log,
                 "epoch {:>3}/{}  train loss {:.4f} acc {:.4f}  val loss {:.4f} acc {:.4f}  "
                 "test loss {:.4f} acc {:.4f}  {:.1f}s\n",
                 r.epoch, o.config.epochs, r.train_loss, r.train_accuracy, r.val_loss,
                 r.val_accuracy, r.test_loss, r.test_accuracy, r.seconds);
      std::fflush(log);
      if (!out.empty()) write_outputs(out, trainer);
    }
  } catch (const train::TrainingDiverged& e) {
    fmt::print(stderr, "dropkit train: error: {}\n", e.what());
    return 3;
  }
  if (o.json) {
    const auto& h = trainer.history();
    std::vector<double> secs;
    for (const auto& r : h) secs.push_back(r.seconds);
    const double med = median(secs);
    const double train_n = static_cast<double>(data.train.count - o.config.val);
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
                     {"seed", o.config.seed},
                     {"threads", threads},
                     {"isa", kernels::active_kernels().name},
                     {"out", o.out}};
    fmt::print("{}\n", j.dump());
  }
  return 0;
}

}  // namespace

Run add_train(CLI::App& app) {
  auto o = std::make_shared<TrainOpts>();
  auto& c = o->config;
  auto& opt = c.optimizer;
  app.add_option("--data", o->data, "directory with MNIST-style IDX files (.gz or not)")
      ->capture_default_str();
  app.add_option("--arch", c.arch, "layer sizes, input to output")->capture_default_str();
  app.add_option("--activation", c.activation, "hidden activation: relu, sigmoid, tanh, selu")
      ->capture_default_str();
  app.add_option("--dropout", c.dropout, "hidden drop rate (probability to DROP), in [0, 1]")
      ->capture_default_str();
  app.add_option("--input-dropout", c.input_dropout, "input drop rate, in [0, 1]")
      ->capture_default_str();
  app.add_option("--scaling", c.scaling,
                 "inverted (scale kept units by 1/(1-p) in training) or inference (scale by "
                 "1-p at test time, as in the paper)")
      ->capture_default_str();
  app.add_option("--max-norm", opt.max_norm,
                 "max-norm c for hidden units' incoming weights, >= 0 (0 = off)")
      ->capture_default_str();
  app.add_option("--weight-decay", opt.weight_decay, "L2 weight decay on weights, >= 0")
      ->capture_default_str();
  app.add_option("--optimizer", opt.kind, "sgd (momentum, the paper's form) or adam")
      ->capture_default_str();
  app.add_option("--lr", opt.lr, "learning rate, > 0")->capture_default_str();
  app.add_option("--lr-decay", opt.lr_decay, "learning-rate factor per epoch, in (0, 1]")
      ->capture_default_str();
  app.add_option("--momentum", opt.momentum, "final momentum, in [0, 1)")->capture_default_str();
  app.add_option("--momentum-start", opt.momentum_start, "momentum at epoch 1, in [0, 1)")
      ->capture_default_str();
  app.add_option("--momentum-ramp", opt.momentum_ramp_epochs,
                 "epochs to ramp momentum linearly from --momentum-start to --momentum (0 = none)")
      ->capture_default_str();
  app.add_flag("--nesterov", opt.nesterov, "Nesterov momentum");
  app.add_option("--batch", c.batch, "examples per step, in [1, 65536]")->capture_default_str();
  app.add_option("--epochs", c.epochs,
                 "epochs to train, in [1, 100000] (with --resume: the new total)")
      ->capture_default_str();
  app.add_option("--val", c.val, "training examples held out for validation (the last ones)")
      ->capture_default_str();
  app.add_option("--train-eval", c.train_eval,
                 "training examples evaluated in eval mode per epoch for train_accuracy")
      ->capture_default_str();
  app.add_option("--seed", c.seed, "seed of initialisation, shuffling and masks")
      ->capture_default_str();
  app.add_option("--threads", o->threads, "threads (0 = all cores); results do not depend on it")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  app.add_option("--out", o->out,
                 "directory for config.json, metrics.jsonl, checkpoint.safetensors, curves.svg");
  app.add_option("--resume", o->resume, "continue the run saved in this directory");
  app.add_flag("--json", o->json, "print one JSON object on stdout at the end; progress to stderr");
  return [o, &app] { return run_train(app, *o); };
}

Run add_eval(CLI::App& app) {
  struct Opts {
    std::string model;
    std::string data = data::default_data_dir().string();
    int threads = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "a directory written by `dropkit train --out`")->required();
  app.add_option("--data", o->data, "directory with MNIST-style IDX files")->capture_default_str();
  app.add_option("--threads", o->threads, "threads (0 = all cores)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  app.add_flag("--json", o->json, "print one JSON object on stdout");
  return [o] {
    const fs::path file = fs::path(o->model) / kCheckpoint;
    auto config = train::Trainer::read_checkpoint_config(file);
    const auto data = data::load_mnist_dir(o->data);
    parallel::ThreadPool pool(resolve_threads(o->threads));
    train::Trainer trainer(config, data, pool);
    trainer.load_checkpoint(file);
    const auto r = trainer.evaluate_test();
    if (o->json) {
      fmt::print("{}\n", nlohmann::json{{"test_accuracy", r.accuracy},
                                        {"test_loss", r.loss},
                                        {"examples", r.count},
                                        {"epochs", trainer.epochs_done()},
                                        {"model", o->model}}
                             .dump());
    } else {
      fmt::print("{}: {} examples, eval mode: loss {:.4f}, accuracy {:.4f} (after {} epochs)\n",
                 o->model, r.count, r.loss, r.accuracy, trainer.epochs_done());
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
      ->expected(1, 8);
  app.add_option("--svg", o->svg, "write every run's train and test error into one SVG");
  return [o] {
    const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd",
                            "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"};
    std::vector<Series> series;
    fmt::print("{:<28} {:>7} {:>9} {:>9} {:>9} {:>9}\n", "run", "epochs", "train acc", "test acc",
               "gap", "best test");
    for (std::size_t i = 0; i < o->runs.size(); ++i) {
      const fs::path dir = o->runs[i];
      std::vector<train::EpochRecord> h;
      const std::string text = read_file(dir / "metrics.jsonl");
      std::size_t line = 0;
      for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t end = std::min(text.find('\n', pos), text.size());
        ++line;
        try {
          h.push_back(
              train::EpochRecord::from_json(nlohmann::json::parse(text.substr(pos, end - pos))));
        } catch (const std::exception& e) {
          throw std::runtime_error(
              fmt::format("{}:{}: {}", (dir / "metrics.jsonl").string(), line, e.what()));
        }
        pos = end + 1;
      }
      if (h.empty()) throw std::runtime_error((dir / "metrics.jsonl").string() + ": no epochs");
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
