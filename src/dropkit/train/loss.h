// Softmax cross-entropy, the loss of every classifier here.
//   loss = mean over rows of  logsumexp(z_r) - z_r[label_r]
//   dz_r = (softmax(z_r) - onehot(label_r)) / rows
// Stable for any logits: the row maximum is subtracted before exponentiating.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dropkit/core/tensor.h"

namespace dropkit::train {

struct LossResult {
  double loss = 0;          // mean over rows
  std::size_t correct = 0;  // rows whose arg-max equals the label
};

// logits [rows, classes]; labels[r] in [0, classes). dlogits (optional) receives the gradient
// of the MEAN loss. Throws std::invalid_argument for a label out of range or a size mismatch.
LossResult softmax_cross_entropy(const Tensor& logits, std::span<const std::uint8_t> labels,
                                 Tensor* dlogits);

}  // namespace dropkit::train
