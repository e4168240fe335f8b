#include "dropkit/train/run_dir.h"

#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dropkit/core/json_text.h"
#include "dropkit/kernels/gemm.h"

namespace dropkit::train {
namespace fs = std::filesystem;
namespace {

// A temporary file of a run file (".metrics.jsonl.tmp.<suffix>", core/atomic_file.h) or a write
// probe: what a killed write leaves.
bool is_leftover(const std::string& name) {
  for (const char* file : kRunFiles) {
    if (name.starts_with(fmt::format(".{}.tmp.", file))) return true;
  }
  return name.starts_with(".dropkit-write-probe.");
}

// Temporaries and write probes that a killed run left behind (the directory is locked: none is
// another run's).
void remove_stale_temporaries(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (is_leftover(entry.path().filename().string())) fs::remove(entry.path(), ec);
  }
}

void remove_run_files(const fs::path& dir) {
  for (const char* name : kRunFiles) {
    std::error_code ec;
    fs::remove(dir / name, ec);
    if (ec) {
      throw std::runtime_error(
          fmt::format("cannot remove {}: {}", (dir / name).string(), ec.message()));
    }
  }
}

// Epoch times of the epochs in `dir`/metrics.jsonl that match `history` (same epoch and step); a
// missing or unreadable file gives none, a damaged line loses only its time.
std::map<int, double> earlier_epoch_seconds(const fs::path& dir,
                                            const std::vector<EpochRecord>& history) {
  std::map<int, double> seconds;
  std::vector<EpochRecord> records;
  try {
    records = read_metrics(dir / kMetricsFile, /*skip_damaged=*/true);
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

}  // namespace

void check_fresh_run_dir(const fs::path& dir, bool overwrite) {
  std::error_code ec;
  if (dir.empty() || !fs::is_directory(dir, ec)) return;  // new, or refused when created
  const bool trained = fs::exists(dir / kCheckpointFile, ec) || fs::exists(dir / kMetricsFile, ec);
  bool empty = true;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!is_leftover(name) && (trained || name != kConfigFile)) empty = false;
  }
  if (empty || overwrite) return;
  throw std::invalid_argument(fmt::format(
      "the run directory {} is not empty; continue its run (`resume`), replace it (`overwrite`), "
      "or name a new directory",
      dir.string()));
}

std::optional<std::string> remembered_data(const fs::path& dir) {
  try {
    const auto j = parse_json(read_file(dir / kConfigFile), (dir / kConfigFile).string());
    if (j.is_object() && j.contains("data") && j["data"].is_string()) {
      return j["data"].get<std::string>();
    }
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::vector<report::Series> error_series(const std::vector<EpochRecord>& history,
                                         const std::string& prefix, const std::string& color) {
  report::Series train{prefix + "train error (eval mode)", color, true, {}};
  report::Series test{prefix + "test error", color, false, {}};
  for (const auto& r : history) {
    train.y.push_back(100.0 * (1.0 - r.train_accuracy));
    test.y.push_back(100.0 * (1.0 - r.test_accuracy));
  }
  return {train, test};
}

RunDir::RunDir(fs::path dir, const Trainer& trainer, RunDirOptions options,
               std::optional<DirectoryLock> lock)
    : dir_(std::move(dir)),
      trainer_(trainer),
      options_(std::move(options)),
      lock_(std::move(lock)) {
  ensure_writable_dir(dir_);
  if (!lock_) lock_.emplace(dir_);
  if (options_.fresh_dir) {
    check_fresh_run_dir(dir_, options_.overwrite);  // again, under the lock
    remove_run_files(dir_);                         // overwrite; nothing there otherwise
  }
  remove_stale_temporaries(dir_);
  if (!options_.previous.empty()) {  // a resumed run
    earlier_seconds_ = earlier_epoch_seconds(options_.previous, trainer_.history());
    // metrics.jsonl and curves.svg follow the checkpoint, whatever a kill left them at.
    write_metrics();
    write_config();
  }
}

void RunDir::write_config() {
  if (config_written_) return;
  nlohmann::json cj = trainer_.config().to_json();
  cj["model"] = trainer_.model().to_json();
  cj["data"] = options_.data_dir;
  write_file_atomic(dir_ / kConfigFile, cj.dump(2) + "\n");
  config_written_ = true;
}

void RunDir::write_metrics() {
  std::string lines;
  for (auto r : trainer_.history()) {
    const auto it = earlier_seconds_.find(r.epoch);
    if (r.seconds == 0 && it != earlier_seconds_.end()) r.seconds = it->second;
    lines += r.to_json().dump() + "\n";
  }
  write_file_atomic(dir_ / kMetricsFile, lines);
  write_file_atomic(
      dir_ / kCurvesFile,
      report::line_chart_svg(trainer_.model().spec() + ": train and test error", "error (%)",
                             error_series(trainer_.history(), "", "#1f77b4")));
}

void RunDir::write_epoch() {
  write_config();
  trainer_.save_checkpoint(dir_ / kCheckpointFile);
  write_metrics();
}

PreparedRun prepare_run(RunRequest request) {
  PreparedRun run;
  run.resume = request.resume;
  run.overwrite = request.overwrite;
  TrainConfig& config = run.config;
  if (!request.resume.empty()) {
    // The run's config comes from its checkpoint; only options not fixed on resume may change.
    for (const auto& [name, value] : request.given) {
      if (TrainConfig::field(name).fixed_on_resume) {
        throw std::invalid_argument(fmt::format(
            "{} cannot be combined with {} (the run's config comes from its checkpoint)",
            option_ref(name), option_ref("resume")));
      }
    }
    // Locked before the checkpoint is read: no other process may write the run meanwhile.
    run.group = request.group;
    if (fs::is_directory(request.resume) && run.writer()) run.resume_lock.emplace(request.resume);
    run.resumed = read_checkpoint(request.resume / kCheckpointFile);
    config = run.resumed->config;
    // The run's data, as config.json remembers them, unless the request names others (the
    // checkpoint's fingerprints decide either way).
    if (!request.data) {
      request.data = remembered_data(request.resume);
      if (request.data && request.data->empty()) {
        throw std::invalid_argument(
            fmt::format("{} was trained on arrays held in memory (Python); name its data with {}",
                        request.resume.string(), option_ref("data")));
      }
    }
    if (request.out.empty()) request.out = request.resume;
  } else {
    std::vector<std::string> names;
    std::string net;
    for (const auto& [name, value] : request.given) {
      names.push_back(name);
      if (name == "net") net = value.get<std::string>();
    }
    TrainConfig::check_given(names, net);
  }
  run.group = request.group;
  run.data = request.data.value_or(data::default_data_dir().string());
  for (const auto& [name, value] : request.given) config.set(name, value);
  config.validate(/*resolve_net=*/!run.resumed);  // a resumed run's model is in its checkpoint
  run.out = request.out;
  run.fresh_out = !run.resumed || !same_file(run.out, request.resume);
  if (run.fresh_out) check_fresh_run_dir(run.out, request.overwrite);
  // Before anything is written: a precision this CPU cannot run is refused.
  kernels::check_precision_available(kernels::parse_precision(config.precision));
  // No run file may replace what the run reads: its net file, its data, the run it resumes.
  if (!run.out.empty()) {
    std::vector<NamedPath> inputs;
    if (!run.resumed && !config.net.empty()) inputs.push_back({option_ref("net"), config.net});
    if (!run.data.empty()) {
      for (const auto& f : data::mnist_files(run.data)) inputs.push_back({"the data file", f});
    }
    if (run.resumed && run.fresh_out) {
      for (const char* f : kRunFiles) inputs.push_back({"the resumed run's", request.resume / f});
    }
    std::vector<NamedPath> outputs;
    for (const char* f : kRunFiles) outputs.push_back({"the run file", run.out / f});
    check_outputs_distinct(inputs, outputs);
  }
  return run;
}

std::unique_ptr<Trainer> PreparedRun::make_trainer(const data::TrainTest& data,
                                                   parallel::ThreadPool& pool) {
  if (!resumed) return std::make_unique<Trainer>(config, data, pool, group);
  resumed->config = config;
  auto trainer = std::make_unique<Trainer>(std::move(*resumed), data, pool, group);
  resumed.reset();
  return trainer;
}

std::unique_ptr<RunDir> PreparedRun::open_run_dir(const Trainer& trainer) {
  if (out.empty() || !writer()) return nullptr;
  // Where the data are, for a resume that names none (still checked by their fingerprints).
  const std::string data_dir =
      data.empty() ? std::string() : fs::weakly_canonical(fs::absolute(data)).string();
  return std::make_unique<RunDir>(
      out, trainer,
      RunDirOptions{
          .fresh_dir = fresh_out, .overwrite = overwrite, .previous = resume, .data_dir = data_dir},
      fresh_out ? std::nullopt : std::move(resume_lock));
}

}  // namespace dropkit::train
