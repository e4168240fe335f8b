// Softmax cross-entropy, the loss of every classifier here.
//   loss = mean over rows of  logsumexp(z_r) - z_r[label_r]
//   dz_r = (softmax(z_r) - onehot(label_r)) / batch_rows
// The rows' losses are summed in double: in training (RowCalls::kLeaves) in order within each
// leaf of kernels/leaves.h and the leaves up the leaf tree, so a data-parallel process that
// holds some leaves of a batch gets its node of that tree in `total` (train/distributed.h adds
// the nodes); in evaluation (RowCalls::kWhole), which no process shares, in row order.
// Stable for any logits: the row maximum is subtracted before exponentiating.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dropkit/core/tensor.h"
#include "dropkit/kernels/leaves.h"

namespace dropkit::train {

struct LossResult {
  double loss = 0;          // mean over rows (total / rows; 0 for no rows)
  double total = 0;         // sum over rows
  std::size_t correct = 0;  // rows whose arg-max equals the label
};

// logits [rows, classes]; labels[r] in [0, classes). dlogits (optional) receives the gradient
// of the MEAN loss over a batch of batch_rows rows (0: these rows are the whole batch; a
// data-parallel process gives the whole batch's count). Throws std::invalid_argument for a
// label out of range or a size mismatch.
LossResult softmax_cross_entropy(const Tensor& logits, std::span<const std::uint8_t> labels,
                                 Tensor* dlogits, std::size_t batch_rows = 0,
                                 kernels::RowCalls sums = kernels::RowCalls::kLeaves);

}  // namespace dropkit::train
