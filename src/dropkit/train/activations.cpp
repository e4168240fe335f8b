#include "dropkit/train/activations.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/data/batcher.h"

namespace dropkit::train {

ActivationStats activation_statistics(model::Model& model, const data::Dataset& d,
                                      std::span<const std::uint32_t> rows, std::size_t layer,
                                      std::size_t batch, parallel::ThreadPool& pool) {
  if (layer < 1 || layer > model.size()) {
    throw std::invalid_argument(
        fmt::format("layer {} does not exist: the model has layers 1 to {}", layer, model.size()));
  }
  if (rows.empty() || batch == 0) {
    throw std::invalid_argument("activation statistics need examples and a batch size");
  }
  parallel::ScopedFlushDenormals flush;
  ActivationStats s;
  s.layer = layer;
  s.examples = rows.size();
  Tensor x;
  std::vector<std::uint8_t> labels;
  const nn::Context ctx{.mode = nn::Mode::kEval, .pool = &pool};
  double total = 0;
  for (std::size_t b = 0; b < rows.size(); b += batch) {
    data::make_batch(d, rows.subspan(b, std::min(batch, rows.size() - b)), model.normalization(), x,
                     labels);
    const Tensor& out = model.net().forward(model.shaped_input(x), ctx, 0, layer);
    const std::size_t n = static_cast<std::size_t>(out.shape()[0]), u = out.shape().row_size();
    if (s.unit_mean.empty()) {  // the first batch
      s.units = u;
      s.unit_mean.assign(u, 0.0);
      s.active_fraction.reserve(rows.size());
    }
    for (std::size_t i = 0; i < n; ++i) {
      const float* v = out.data() + i * u;
      std::size_t active = 0;
      for (std::size_t j = 0; j < u; ++j) {
        s.unit_mean[j] += v[j];
        total += v[j];
        active += v[j] > 0.0f ? 1 : 0;
      }
      s.active_fraction.push_back(static_cast<double>(active) / static_cast<double>(u));
    }
  }
  const auto n = static_cast<double>(rows.size());
  for (double& m : s.unit_mean) m /= n;
  s.mean = total / (n * static_cast<double>(s.units));
  return s;
}

}  // namespace dropkit::train
