// BatchNorm recalibration: re-estimates every batchnorm layer's running statistics over training
// examples with dropout off. Dropout before BN makes BN's running variance that of the noisy
// training activations, about 1/(1-p) times what it sees in eval mode (Li et al., CVPR 2019,
// "variance shift"); re-estimating the statistics in eval mode removes the mismatch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dropkit/data/idx.h"
#include "dropkit/model/model.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::train {

// Runs the examples `rows` of d through `model` in batches of `batch`, every layer in eval mode
// except batchnorm, which normalises each batch with its own statistics; afterwards each
// batchnorm's running mean and variance are the averages over the batches of the batch means
// and unbiased variances. Returns the number of batchnorm layers (0: nothing changed). A last
// batch of one example is left out (it has no variance). Deterministic: the same bits for any
// thread count. std::invalid_argument if batch < 2 or no batch of 2 or more examples fits.
std::size_t recalibrate_batchnorm(model::Model& model, const data::Dataset& d,
                                  std::span<const std::uint32_t> rows, std::size_t batch,
                                  parallel::ThreadPool& pool);

// What one batchnorm layer's running statistics say against what it meets in eval mode.
struct VarianceShift {
  std::size_t layer = 0;     // index in the model
  std::size_t channels = 0;  // BN's channels
  // Over channels: the mean of (v + eps) / (running_var + eps), v the variance of BN's input in
  // eval mode over the examples and spatial positions (eps keeps a dead channel finite; the
  // ratio is then the square of the scale error BN makes in eval mode). Li et al. predict about q =
  // 1 - p for inverted dropout with drop rate p just before BN (the running variance is that of the
  // noisy training input), and 1 where nothing stochastic precedes BN.
  double eval_over_running = 0;
  double min_ratio = 0, max_ratio = 0;   // over channels
  double running_var = 0, eval_var = 0;  // means over channels
};

// Runs the examples `rows` of d through `model` in eval mode (batches of `batch`) and measures
// each batchnorm's input variance per channel against its running variance (pooled in double
// over all the rows; the same for any batch size and thread count up to rounding). Changes
// nothing. Empty when the model has no batchnorm; std::invalid_argument when rows is empty.
std::vector<VarianceShift> measure_variance_shift(model::Model& model, const data::Dataset& d,
                                                  std::span<const std::uint32_t> rows,
                                                  std::size_t batch, parallel::ThreadPool& pool);

}  // namespace dropkit::train
