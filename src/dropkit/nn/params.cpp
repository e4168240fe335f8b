#include "dropkit/nn/params.h"

#include <algorithm>

#include <fmt/format.h>

namespace dropkit::nn {

ParamArena::ParamArena(const std::vector<Layer*>& layers) {
  std::size_t total = 0;
  std::vector<std::vector<ParamSpec>> specs;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    specs.push_back(layers[i]->param_specs());
    for (const auto& s : specs.back()) {
      entries_.push_back({fmt::format("{}.{}", i, s.name), s, total});
      // Each parameter starts on a 64-byte boundary, like every Tensor.
      total += (s.shape.numel() + 15) / 16 * 16;
    }
  }
  values_.resize(Shape{static_cast<std::int64_t>(total)});
  grads_.resize(Shape{static_cast<std::int64_t>(total)});
  std::size_t e = 0;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    std::vector<float*> v, g;
    for (std::size_t k = 0; k < specs[i].size(); ++k, ++e) {
      v.push_back(values_.data() + entries_[e].offset);
      g.push_back(grads_.data() + entries_[e].offset);
    }
    if (!v.empty()) layers[i]->bind_params(std::move(v), std::move(g));
  }
}

void ParamArena::zero_grads() {
  std::fill(grads_.span().begin(), grads_.span().end(), 0.0f);
}

}  // namespace dropkit::nn
