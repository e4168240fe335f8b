// From bytes to batches: the validation split, the per-epoch permutation and the conversion of
// byte images to standardized float rows. Images stay as bytes in memory (47 MB for
// Fashion-MNIST's training set instead of 188 MB as floats) and are converted one batch at a
// time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dropkit/core/tensor.h"
#include "dropkit/data/idx.h"

namespace dropkit::data {

// x = (byte / 255 - mean) / std, one mean and std over all pixels of the training split.
struct Normalization {
  float mean = 0.0f;
  float std = 1.0f;
};
Normalization compute_normalization(const Dataset& d, std::span<const std::uint32_t> rows);

// The last `val` training examples form the validation split (the same examples in every run,
// whatever the seed). Throws std::invalid_argument unless val < count.
struct Split {
  std::vector<std::uint32_t> train, val;
};
Split split_train_val(std::size_t count, std::size_t val);

// The order of `rows` in epoch `epoch`: sorted by a Philox key of (seed, kShuffleStream, epoch,
// position), a pure function of those, independent of threads.
std::vector<std::uint32_t> epoch_permutation(std::span<const std::uint32_t> rows,
                                             std::uint64_t seed, std::uint64_t epoch);

// x [rows.size(), 1, image rows, image cols] (one channel: NCHW) and labels for the given
// examples.
void make_batch(const Dataset& d, std::span<const std::uint32_t> rows, const Normalization& norm,
                Tensor& x, std::vector<std::uint8_t>& labels);

}  // namespace dropkit::data
