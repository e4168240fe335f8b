// `dropkit train`.
//
// train's flags are TrainConfig's options (train/config.h), one loop; --net takes a layer list
// (model/spec.h). It writes into --out DIR: config.json (the options and the model, at the
// start), and after every epoch
// checkpoint.safetensors, metrics.jsonl and curves.svg, each replaced atomically (temporary file,
// then rename), so an interrupted run leaves the last complete epoch on disk.
// Exit codes: 0 done; 2 bad input (one line on stderr, nothing half-written); 3 the loss
// became NaN or infinite (the last good checkpoint stays).
#include <sys/resource.h>
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
#include "dropkit/train/run_dir.h"
#include "dropkit/train/trainer.h"
#include "flags.h"
#include "measure.h"
#include "processes.h"
#include "progress.h"
#include "recalibration.h"

namespace dropkit::cli {
namespace fs = std::filesystem;
namespace {

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

// "  drop rates 0.21 0.13" for the concrete_dropout layers' learned rates ("" without).
std::string learned_rates_text(const std::vector<double>& rates) {
  std::string s;
  for (double p : rates) s += fmt::format(" {:.3f}", p);
  return s.empty() ? s : "  drop rates" + s;
}

// Peak resident memory of this process, in MiB.
double peak_memory_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

// After a divergence: what is on disk, the last epoch's checkpoint or nothing at all.
std::string what_is_kept(const fs::path& out, int epochs_done) {
  if (out.empty()) return "nothing was being saved (no --out)";
  if (epochs_done == 0) {
    return fmt::format(
        "no epoch finished, so nothing was saved: {} holds no run files, and a rerun may use it",
        out.string());
  }
  return fmt::format("{} keeps the checkpoint of epoch {}, which --resume continues", out.string(),
                     epochs_done);
}

// The --json line: the last epoch's numbers, speed, memory and traffic per process.
nlohmann::json summary_json(const train::Trainer& trainer, int threads, int processes,
                            train::DataParallel::Range memory, const std::string& out) {
  const train::TrainConfig& config = trainer.config();
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
                   {"processes", processes},
                   {"peak_memory_mib_per_process", {memory.min, memory.max}},
                   {"bytes_received_per_step",  // by each process, from the others
                    trainer.data_parallel() && trainer.data_parallel()->steps() > 0
                        ? static_cast<double>(trainer.data_parallel()->bytes_received()) /
                              static_cast<double>(trainer.data_parallel()->steps())
                        : 0.0},
                   {"isa", kernels::active_kernels().name},
                   {"out", out}};
  if (!last.drop_rates.empty()) j["drop_rates"] = last.drop_rates;
  return j;
}

int run_train(CLI::App& app, TrainOpts& o) {
  const bool resuming = app.count("--resume") > 0;
  if (resuming && o.resume.empty()) throw std::invalid_argument("--resume needs a run directory");
  // Under mpirun, this is one process of a data-parallel run (train/distributed.h): every
  // process sets up the same run, process 0 alone writes it and speaks.
  const Processes& procs = processes();
  parallel::ProcessGroup* group = procs.group();
  const bool writer = procs.rank() == 0;
  const int threads = o.threads > 0 ? o.threads : procs.default_threads();
  parallel::ThreadPool pool(threads);
  data::TrainTest data;
  std::optional<train::PreparedRun> run;
  std::unique_ptr<train::Trainer> made;
  std::unique_ptr<train::RunDir> run_dir;
  // Each step of the setup may fail in some processes only: they stop together after it,
  // before anything is written.
  parallel::run_together(group, [&] {
    // Every check that needs no data is the library's (train/run_dir.h), as for any front end.
    run.emplace(train::prepare_run({.given = given_options(app, o),
                                    .out = o.out,
                                    .resume = o.resume,
                                    .data = app.count("--data") > 0 || !resuming
                                                ? std::optional<std::string>(o.data)
                                                : std::nullopt,
                                    .overwrite = o.overwrite,
                                    .group = group}));
    data = data::load_mnist_dir(run->data);
    made = run->make_trainer(data, pool);
  });
  // Only now, with config, data and checkpoint valid in every process, may --out be created.
  parallel::run_together(group, [&] { run_dir = run->open_run_dir(*made); });
  const train::TrainConfig& config = run->config;
  o.out = run->out.string();
  const fs::path out = run->out;
  train::Trainer& trainer = *made;

  std::FILE* log = o.json ? stderr : stdout;
  if (writer) {
    if (config.precision == "bf16" && !kernels::bf16_products_native()) {
      // Correct but slow: say so rather than let the user wonder.
      fmt::print(stderr,
                 "dropkit train: note: this CPU has no native bf16 products (oneDNN uses {}); "
                 "--precision bf16 will be slower than f32 here\n",
                 kernels::bf16_products_implementation());
    }
    fmt::print(log, "dropkit train: {} | {} train, {} val, {} test | {}{} threads, {} kernels\n",
               trainer.model().describe(), trainer.train_examples(), trainer.val_examples(),
               trainer.test_examples(),
               group ? fmt::format("{} processes x ", procs.size()) : std::string(), threads,
               kernels::active_kernels().name);
    std::fflush(log);
  }
  try {
    while (trainer.epochs_done() < config.epochs) {
      ProgressBar bar(log, fmt::format("epoch {}/{}", trainer.epochs_done() + 1, config.epochs),
                      o.json || !writer);
      const auto r = trainer.run_epoch(
          [&](std::size_t done, std::size_t total, double loss) { bar(done, total, loss); });
      bar.finish();
      if (writer) {
        fmt::print(log,
                   "epoch {:>3}/{}  train loss {:.4f} acc {:.4f}  val loss {:.4f} acc {:.4f}  "
                   "test loss {:.4f} acc {:.4f}  {:.1f}s{}\n",
                   r.epoch, config.epochs, r.train_loss, r.train_accuracy, r.val_loss,
                   r.val_accuracy, r.test_loss, r.test_accuracy, r.seconds,
                   learned_rates_text(r.drop_rates));
        std::fflush(log);
      }
      if (run_dir) run_dir->write_epoch();
    }
  } catch (const train::TrainingDiverged& e) {
    // Every process of a data-parallel run sees the same loss, and stops here with process 0.
    if (!writer) return 3;
    fmt::print(stderr, "dropkit train: error: {}; {}\n", spell_options(e.what(), flag_spelling),
               what_is_kept(out, trainer.epochs_done()));
    return 3;
  } catch (const std::exception& e) {
    if (!group) throw;
    // One process failed (a file process 0 could not write, a transport error) while the others
    // wait for it in a collective: it says why, and the whole job ends; the files on disk are
    // those of the last finished epoch (each is replaced atomically).
    fmt::print(stderr, "dropkit train: error: process {} of {}: {}\n", procs.rank(), procs.size(),
               spell_options(e.what(), flag_spelling));
    std::fflush(stderr);
    return procs.abort_all(1);
  }
  // Memory per process: the largest and smallest peak over the job's processes.
  const double mib = peak_memory_mib();
  const auto memory = trainer.data_parallel() ? trainer.data_parallel()->range(mib)
                                              : train::DataParallel::Range{mib, mib};
  if (!writer) return 0;
  if (group) {
    fmt::print(log, "{} processes, peak memory per process {:.0f}-{:.0f} MiB\n", procs.size(),
               memory.min, memory.max);
  }
  if (o.json) {
    fmt::print("{}\n", summary_json(trainer, threads, procs.size(), memory, o.out).dump());
  }
  return 0;
}

// The layer kinds and their options, for the end of `train --help`.
std::string layer_help() {
  std::string s =
      "\nLayers for --net (kind:positional...:name=value; docs/guide.md, docs/cli.md):\n";
  for (const auto& k : model::layer_kinds()) {
    s += fmt::format("  {:<11} {}\n", k.kind, k.summary);
    for (const auto& opt : k.options) {
      const bool positional =
          std::find(k.positional.begin(), k.positional.end(), opt.name) != k.positional.end();
      s +=
          fmt::format("      {:<13} {}; {}{}{}\n", opt.name, opt.help, opt.range_text(),
                      opt.default_value.is_null() ? ", required" : ", default " + default_text(opt),
                      positional ? "" : " (by name only)");
    }
  }
  return s;
}

}  // namespace

Run add_train(CLI::App& app) {
  auto o = std::make_shared<TrainOpts>();
  add_data_flag(app, o->data, "; --resume takes the run's own (config.json) unless given");
  for (const auto& f : train::TrainConfig::fields()) {
    const Option& opt = f.option;
    const bool free_text = (opt.type == Option::Type::kString && opt.choices.empty()) ||
                           opt.type == Option::Type::kBool;  // a flag: no value to range
    const std::string help = fmt::format("{}{}{}", spell_options(opt.help, flag_spelling),
                                         free_text ? "" : " (" + opt.range_text() + ")",
                                         f.fixed_on_resume ? "" : " (may change on --resume)");
    if (opt.type == Option::Type::kBool) {
      app.add_flag(opt.flag(), o->flags[opt.name], help);
      continue;
    }
    const char* type = opt.type == Option::Type::kInt    ? "INT"
                       : opt.type == Option::Type::kReal ? "FLOAT"
                                                         : "TEXT";
    app.add_option(opt.flag(), o->values[opt.name], help)
        ->default_str(default_text(opt))
        ->type_name(type);
  }
  add_threads_flag(app, o->threads);
  app.add_option("--out", o->out,
                 "directory for config.json, metrics.jsonl, checkpoint.safetensors, curves.svg")
      ->check(kNonEmptyPath);
  app.add_option("--resume", o->resume, "continue the run saved in this directory")
      ->check(kNonEmptyPath);
  app.add_flag("--overwrite", o->overwrite,
               "replace the run in a non-empty --out (its config.json, metrics.jsonl, "
               "checkpoint and curves.svg; other files stay); without it such an --out is refused");
  add_json_flag(app, o->json, " at the end; progress to stderr");
  app.footer(layer_help());
  return [o, &app] { return run_train(app, *o); };
}

}  // namespace dropkit::cli
