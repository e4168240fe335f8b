// A run's history: one EpochRecord per epoch, kept in the checkpoint (without the epoch's time)
// and, a line each, in the run directory's metrics.jsonl (train/run_dir.h). Every entry read
// back, from either place, is checked against one table of fields and ranges.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dropkit::train {

// One epoch's metrics. `seconds` is measured, not derived: it is written to metrics.jsonl but
// not to the checkpoint.
struct EpochRecord {
  int epoch = 0;           // 1-based
  std::uint64_t step = 0;  // optimizer steps taken so far
  double train_loss = 0;   // running mean over the epoch, in training mode (with dropout)
  // Sample standard deviation of the epoch's per-step (batch-mean) training losses: how noisy
  // the training curve is (0 for an epoch of one step, and in runs saved before it was kept).
  double step_loss_std = 0;
  double train_accuracy = 0;  // eval mode, on the first train_eval training examples
  double train_eval_loss = 0;
  double val_loss = 0, val_accuracy = 0;
  double test_loss = 0, test_accuracy = 0;
  double seconds = 0;  // training time of the epoch (without the evaluations)
  double lr = 0, momentum = 0;
  // The drop rates of the model's concrete_dropout layers after the epoch, in layer order
  // ("drop_rates", written only when there are some).
  std::vector<double> drop_rates;
  nlohmann::json to_json(bool with_seconds = true) const;
  // Every field checked against its range (epoch_record_fields in history.cpp: accuracies in
  // [0, 1], losses and times finite and >= 0, ...), unknown keys refused, every field required
  // but step_loss_std (0 in runs saved before it was kept) and epoch_seconds (not in
  // checkpoints). std::invalid_argument "<owner><problem>".
  static EpochRecord from_json(const nlohmann::json& j, const std::string& owner = "");
};

// The epochs of a metrics.jsonl (one EpochRecord::to_json() object per line), read as a regular
// file and parsed strictly (core/json_text.h). A line that is not a valid entry throws
// std::invalid_argument "<file>:<line>: <problem>", as do entries that are not epochs 1, 2, ...
// in order; with skip_damaged such lines are left out instead (for a resume that only wants the
// epoch times it can trust).
std::vector<EpochRecord> read_metrics(const std::filesystem::path& file, bool skip_damaged);

}  // namespace dropkit::train
