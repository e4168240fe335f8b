#include "dropkit/train/loss.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/kernels/leaves.h"

namespace dropkit::train {

LossResult softmax_cross_entropy(const Tensor& logits, std::span<const std::uint8_t> labels,
                                 Tensor* dlogits, std::size_t batch_rows, kernels::RowCalls sums) {
  if (logits.shape().rank() != 2 || static_cast<std::size_t>(logits.shape()[0]) != labels.size()) {
    throw std::invalid_argument(fmt::format("softmax_cross_entropy: logits {} for {} labels",
                                            logits.shape().str(), labels.size()));
  }
  const std::size_t rows = labels.size(), classes = static_cast<std::size_t>(logits.shape()[1]);
  if (batch_rows == 0) batch_rows = rows;
  if (dlogits) dlogits->resize(logits.shape());
  LossResult out;
  const auto sum_rows = [&](std::size_t r0, std::size_t r1, double* total) {
    *total = 0;
    for (std::size_t r = r0; r < r1; ++r) {
      const float* z = logits.data() + r * classes;
      const std::size_t label = labels[r];
      if (label >= classes) {
        throw std::invalid_argument(
            fmt::format("softmax_cross_entropy: label {} outside [0, {})", label, classes));
      }
      std::size_t arg = 0;
      for (std::size_t c = 1; c < classes; ++c) arg = z[c] > z[arg] ? c : arg;
      out.correct += arg == label;
      const double m = z[arg];
      double sum = 0;
      for (std::size_t c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(z[c]) - m);
      const double lse = m + std::log(sum);
      *total += lse - z[label];
      if (dlogits) {
        float* d = dlogits->data() + r * classes;
        for (std::size_t c = 0; c < classes; ++c) {
          const double p = std::exp(static_cast<double>(z[c]) - lse);
          d[c] =
              static_cast<float>((p - (c == label ? 1.0 : 0.0)) / static_cast<double>(batch_rows));
        }
      }
    }
  };
  if (sums == kernels::RowCalls::kLeaves) {
    kernels::sum_leaves<double>(rows, 1, &out.total, sum_rows);
  } else {
    sum_rows(0, rows, &out.total);
  }
  out.loss = rows ? out.total / static_cast<double>(rows) : 0.0;
  return out;
}

}  // namespace dropkit::train
