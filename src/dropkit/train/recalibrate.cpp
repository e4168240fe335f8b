#include "dropkit/train/recalibrate.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "dropkit/data/batcher.h"
#include "dropkit/nn/batchnorm.h"

namespace dropkit::train {

std::size_t recalibrate_batchnorm(model::Model& model, const data::Dataset& d,
                                  std::span<const std::uint32_t> rows, std::size_t batch,
                                  parallel::ThreadPool& pool) {
  if (batch < 2 || rows.size() < 2) {
    throw std::invalid_argument(
        fmt::format("recalibration needs batches of 2 or more examples (batch {}, {} examples)",
                    batch, rows.size()));
  }
  std::size_t layers = 0;
  for (std::size_t i = 0; i < model.size(); ++i) {
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(&model.layer(i))) {
      bn->reset_running_statistics();
      ++layers;
    }
  }
  if (layers == 0) return 0;
  parallel::ScopedFlushDenormals flush;
  Tensor x;
  std::vector<std::uint8_t> labels;
  for (std::size_t b = 0; b + 2 <= rows.size(); b += batch) {
    const auto part = rows.subspan(b, std::min(batch, rows.size() - b));
    data::make_batch(d, part, model.normalization(), x, labels);
    model.forward(x, {.mode = nn::Mode::kEval, .recalibrate = true, .pool = &pool});
  }
  return layers;
}

namespace {

// One BatchNorm's input, summed per channel over the examples measured.
struct ChannelSums {
  std::size_t layer;
  const nn::BatchNorm* bn;
  std::vector<double> sum, sq;
  double count = 0;
};

// Adds a batch of the layer's input, [n, c, ...], to its sums.
void add_batch(const Tensor& input, ChannelSums& s) {
  const Shape& sh = input.shape();
  const auto n = static_cast<std::size_t>(sh[0]), c = static_cast<std::size_t>(sh[1]);
  const std::size_t per = sh.row_size() / c;
  s.sum.resize(c, 0.0);
  s.sq.resize(c, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t ch = 0; ch < c; ++ch) {
      const float* v = input.data() + (i * c + ch) * per;
      for (std::size_t j = 0; j < per; ++j) {
        s.sum[ch] += v[j];
        s.sq[ch] += static_cast<double>(v[j]) * v[j];
      }
    }
  }
  s.count += static_cast<double>(n * per);
}

// The layer's measured variance against its running one, per channel and averaged.
VarianceShift shift_of(const ChannelSums& s) {
  VarianceShift v{.layer = s.layer, .channels = s.sum.size()};
  const double eps = s.bn->config().at("eps").get<double>();
  v.min_ratio = INFINITY;
  v.max_ratio = 0;
  for (std::size_t ch = 0; ch < s.sum.size(); ++ch) {
    const double mean = s.sum[ch] / s.count;
    const double var = std::max(0.0, s.sq[ch] / s.count - mean * mean);
    const double running = s.bn->running_var()[ch];
    const double ratio = (var + eps) / (running + eps);
    v.eval_over_running += ratio;
    v.min_ratio = std::min(v.min_ratio, ratio);
    v.max_ratio = std::max(v.max_ratio, ratio);
    v.running_var += running;
    v.eval_var += var;
  }
  const auto c = static_cast<double>(s.sum.size());
  v.eval_over_running /= c;
  v.running_var /= c;
  v.eval_var /= c;
  return v;
}

}  // namespace

std::vector<VarianceShift> measure_variance_shift(model::Model& model, const data::Dataset& d,
                                                  std::span<const std::uint32_t> rows,
                                                  std::size_t batch, parallel::ThreadPool& pool) {
  if (rows.empty() || batch == 0) {
    throw std::invalid_argument("measuring the variance shift needs examples and a batch size");
  }
  std::vector<ChannelSums> sums;
  for (std::size_t i = 0; i < model.size(); ++i) {
    if (const auto* bn = dynamic_cast<const nn::BatchNorm*>(&model.layer(i))) {
      sums.push_back({i, bn, {}, {}, 0});
    }
  }
  if (sums.empty()) return {};
  parallel::ScopedFlushDenormals flush;
  Tensor x, input;
  std::vector<std::uint8_t> labels;
  const nn::Context ctx{.mode = nn::Mode::kEval, .pool = &pool};
  for (std::size_t b = 0; b < rows.size(); b += batch) {
    data::make_batch(d, rows.subspan(b, std::min(batch, rows.size() - b)), model.normalization(), x,
                     labels);
    input = model.shaped_input(x).clone();
    std::size_t at = 0;  // `input` is layer at's input
    for (ChannelSums& s : sums) {
      input = model.net().forward(input, ctx, at, s.layer).clone();
      at = s.layer;
      add_batch(input, s);
    }
  }
  std::vector<VarianceShift> out;
  for (const ChannelSums& s : sums) out.push_back(shift_of(s));
  return out;
}

}  // namespace dropkit::train
