// A run directory as a library value: what `dropkit train --out DIR` writes, `--resume DIR`
// continues, and eval, predict and compare read; the CLI, and any other front end, go through
// it and hold no file logic of their own.
//
//   config.json             the run's options, its model and the absolute path of its data
//                           (written with the first checkpoint; a resumed run's at once)
//   checkpoint.safetensors  the model and the training state (train/checkpoint.h)
//   metrics.jsonl           one EpochRecord per line
//   curves.svg              train and test error per epoch
//
// Each file is replaced atomically (core/atomic_file.h), the checkpoint first: a kill leaves the
// last complete epoch, and metrics at most one epoch behind, which the next resume repairs from
// the checkpoint's history. One process per directory (DirectoryLock).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/core/atomic_file.h"
#include "dropkit/report/svg.h"
#include "dropkit/train/checkpoint.h"
#include "dropkit/train/trainer.h"

namespace dropkit::train {

inline constexpr const char* kConfigFile = "config.json";
inline constexpr const char* kCheckpointFile = "checkpoint.safetensors";
inline constexpr const char* kMetricsFile = "metrics.jsonl";
inline constexpr const char* kCurvesFile = "curves.svg";
inline constexpr const char* kRunFiles[] = {kConfigFile, kMetricsFile, kCheckpointFile,
                                            kCurvesFile};

// Refuses (std::invalid_argument) to start a fresh run in `dir` when it holds another run,
// unless `overwrite`: it must be new or empty. Temporaries of killed writes, and a config.json
// without a checkpoint or metrics (a run that never finished an epoch), hold nothing to keep and
// do not count. Reads only the listing; writes nothing.
void check_fresh_run_dir(const std::filesystem::path& dir, bool overwrite);

// The data directory the run in `dir` trained on, as its config.json remembers it; none for
// runs written before it was kept, or a missing or damaged config.json.
std::optional<std::string> remembered_data(const std::filesystem::path& dir);

// A run's train error (dashed) and test error (solid) per epoch, in percent, for curves.svg and
// for comparing runs in one chart.
std::vector<report::Series> error_series(const std::vector<EpochRecord>& history,
                                         const std::string& prefix, const std::string& color);

struct RunDirOptions {
  // The directory starts empty of run files: a new run, or a resumed one written elsewhere.
  // (false: a run resumed in its own directory.)
  bool fresh_dir = true;
  bool overwrite = false;  // a fresh directory may hold another run, whose run files go
  // For a trainer that continues a run from its checkpoint: that run's directory, whose
  // metrics.jsonl gives the earlier epochs' times (they are not in the checkpoint, which must
  // not depend on the clock). Empty: a new run.
  std::filesystem::path previous;
  std::string data_dir;  // remembered in config.json (absolute)
};

// Writes `trainer`'s run into `dir`. The constructor takes the directory: creates it and proves
// it writable, locks it (unless `lock` already holds it, as a resume locks its directory before
// reading the checkpoint), checks a fresh run again under the lock and removes the run files
// (`overwrite`; nothing is there otherwise), removes temporaries a killed run left, and for a
// resumed run rewrites metrics.jsonl, curves.svg and config.json from the checkpoint at once.
// Throws before writing anything a run's files could lose.
class RunDir {
 public:
  RunDir(std::filesystem::path dir, const Trainer& trainer, RunDirOptions options,
         std::optional<DirectoryLock> lock = std::nullopt);

  // After each epoch: config.json (with the first), checkpoint, metrics.jsonl, curves.svg.
  void write_epoch();
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void write_metrics();
  void write_config();

  std::filesystem::path dir_;
  const Trainer& trainer_;
  RunDirOptions options_;
  std::optional<DirectoryLock> lock_;
  std::map<int, double> earlier_seconds_;
  bool config_written_ = false;
};

// A run as a front end asks for it (the CLI's flags, Python's keyword arguments), before any
// data are read: the options given by name with their checked values, in the order given.
struct RunRequest {
  std::vector<std::pair<std::string, nlohmann::json>> given;
  std::filesystem::path out;     // empty: a new run saves nothing, a resumed one its own dir
  std::filesystem::path resume;  // empty: a new run
  // The data directory or .npz file; none: the resumed run's (config.json), else
  // data::default_data_dir(). An empty string: the caller holds the data in memory (Python
  // arrays), and config.json records none.
  std::optional<std::string> data;
  bool overwrite = false;  // a fresh `out` may hold another run (RunDirOptions::overwrite)
  // A data-parallel run (train/distributed.h): every process of the group makes the same
  // request; process 0 alone locks and writes the run directory, the others only read.
  parallel::ProcessGroup* group = nullptr;
};

// A request checked and resolved: the config (the resumed checkpoint's, with the options that
// may change), the checkpoint of a resume, and where data and output are.
struct PreparedRun {
  TrainConfig config;
  std::optional<Checkpoint> resumed;
  std::filesystem::path resume;
  std::string data;  // what to load (data::load_mnist_dir); empty: data held in memory
  std::filesystem::path out;
  bool fresh_out = true;  // out starts without run files (not the resumed run's own directory)
  bool overwrite = false;
  std::optional<DirectoryLock> resume_lock;  // held from before the checkpoint was read
  parallel::ProcessGroup* group = nullptr;   // RunRequest::group
  // Whether this process writes the run directory: process 0 of a group, or the only one.
  bool writer() const { return group == nullptr || group->rank() == 0; }

  // The trainer: a new one for config, or the checkpoint's continued (the checkpoint is
  // moved out, so once only).
  std::unique_ptr<Trainer> make_trainer(const data::TrainTest& data, parallel::ThreadPool& pool);
  // The run directory for `trainer` (nullptr without `out`, and in every process of a group
  // but process 0), handed the resume lock when the run continues in its own directory. Call
  // only once config, data and checkpoint are valid.
  std::unique_ptr<RunDir> open_run_dir(const Trainer& trainer);
};

// Every check of a run that needs no data, in the order `dropkit train` makes them: options
// that a resume must take from its checkpoint (std::invalid_argument "`lr` cannot be combined
// with `resume` ..."), the resumed directory locked and its checkpoint read, the options checked
// against each other (TrainConfig::check_given) and set, validate(), a fresh `out`
// (check_fresh_run_dir), the precision available on this CPU, and no run file replacing an
// input (the `net` file, the data files, the resumed run's files). Writes nothing.
PreparedRun prepare_run(RunRequest request);

}  // namespace dropkit::train
