// From bytes to batches: the validation split, the per-epoch permutation and the conversion of
// byte images to standardized float rows. Images stay as bytes in memory (47 MB for
// Fashion-MNIST's training set instead of 188 MB as floats) and are converted one batch at a
// time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dropkit/core/tensor.h"
#include "dropkit/data/idx.h"
#include "dropkit/rng/philox.h"

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

// Classes held out of a run ("8,9": Fashion-MNIST's bag and ankle boot), for out-of-distribution
// experiments. parse_class_list accepts comma-separated whole numbers in [0, num_classes),
// without repeats, fewer than num_classes of them ("" is none); std::invalid_argument quoting
// the text and naming the valid range otherwise. The result is sorted.
std::vector<int> parse_class_list(const std::string& text, int num_classes = 10);
std::string class_list_text(const std::vector<int>& classes);  // {8, 9} -> "8,9"
// The rows of `rows` whose label is not in `classes`, in their order.
std::vector<std::uint32_t> rows_without(const Dataset& d, std::span<const std::uint32_t> rows,
                                        const std::vector<int>& classes);

// The order of `rows` in epoch `epoch`: sorted by a Philox key of (seed, kShuffleStream, epoch,
// position), a pure function of those, independent of threads.
std::vector<std::uint32_t> epoch_permutation(std::span<const std::uint32_t> rows,
                                             std::uint64_t seed, std::uint64_t epoch);

// x [rows.size(), 1, image rows, image cols] (one channel: NCHW) and labels for the given
// examples (0 for a data set without labels: images to predict).
void make_batch(const Dataset& d, std::span<const std::uint32_t> rows, const Normalization& norm,
                Tensor& x, std::vector<std::uint8_t>& labels);

// Training-time augmentation of a batch made by make_batch from `rows` (x [n, 1, H, W]): example
// i is flipped left-right when `flip` and bit 0 of its word is set, and shifted by (dy, dx), each
// uniform in [-shift, shift] from the word's next bytes, the uncovered pixels becoming `fill`
// (the normalised value of a zero pixel, the images' background). The word is Philox at `key`
// (seed, rng::kAugmentStream, epoch), counter rows[i]: an example's augmentation in an epoch
// does not depend on the batch it is in, the batch size or the thread count.
struct Augmentation {
  bool flip = false;
  int shift = 0;  // 0..8
  bool any() const { return flip || shift > 0; }
};
void augment_batch(Tensor& x, std::span<const std::uint32_t> rows, const Augmentation& a,
                   const rng::StreamKey& key, float fill);

}  // namespace dropkit::data
