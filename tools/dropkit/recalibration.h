// `--recalibrate-bn N` of `dropkit eval` and `dropkit predict`: BatchNorm's running statistics
// re-estimated with dropout off (train/recalibrate.h) over the first N training examples of the
// run's training split (validation examples and excluded classes left out, as in training),
// in the run's batch size, before evaluating. Nothing is written: the checkpoint is unchanged.
#pragma once

#include <cstdint>
#include <string>

#include "dropkit/model/model.h"
#include "dropkit/parallel/thread_pool.h"
#include "dropkit/train/config.h"

namespace dropkit::cli {

// Returns a one-line description of what was done ("" when examples == 0).
std::string recalibrate_from_flag(model::Model& model, const train::TrainConfig& config,
                                  const std::string& data_dir, std::uint64_t examples,
                                  parallel::ThreadPool& pool);

}  // namespace dropkit::cli
