// BatchNorm recalibration: re-estimates every batchnorm layer's running statistics over training
// examples with dropout off. Dropout before BN makes BN's running variance that of the noisy
// training activations, about 1/(1-p) times what it sees in eval mode (Li et al., CVPR 2019,
// "variance shift"); re-estimating the statistics in eval mode removes the mismatch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

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

}  // namespace dropkit::train
