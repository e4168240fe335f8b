#include "dropkit/nn/params.h"

#include <algorithm>
#include <functional>
#include <stdexcept>

#include <fmt/format.h>

namespace dropkit::nn {
namespace {

// Each tensor starts on a 64-byte boundary, like every Tensor.
std::size_t padded(std::size_t n) {
  return (n + 15) / 16 * 16;
}

}  // namespace

std::size_t ParamArena::Entry::rows() const {
  return spec.shape.rank() == 0 ? 1 : static_cast<std::size_t>(spec.shape[0]);
}

ParamArena::ParamArena(const std::vector<Layer*>& layers, const std::vector<std::string>& prefixes,
                       bool last_is_output) {
  if (!prefixes.empty() && prefixes.size() != layers.size()) {
    throw std::invalid_argument(
        fmt::format("ParamArena: {} prefixes for {} layers", prefixes.size(), layers.size()));
  }
  std::vector<std::vector<ParamSpec>> specs;
  std::size_t output_layer = layers.size();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    specs.push_back(layers[i]->param_specs());
    for (const auto& s : specs.back())
      if (s.role == ParamRole::kTrainable) output_layer = i;
  }
  std::size_t total = 0, buffer_total = 0;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string prefix = prefixes.empty() ? std::to_string(i) : prefixes[i];
    for (auto s : specs[i]) {
      const std::string name = prefix + "." + s.name;
      if (s.role == ParamRole::kBuffer) {
        buffer_entries_.push_back({name, s, buffer_total});
        buffer_total += padded(s.shape.numel());
        continue;
      }
      if (last_is_output && i == output_layer) s.flags &= ~static_cast<unsigned>(kMaxNormRows);
      entries_.push_back({name, s, total});
      total += padded(s.shape.numel());
    }
  }
  values_.resize(Shape{static_cast<std::int64_t>(total)});
  grads_.resize(Shape{static_cast<std::int64_t>(total)});
  buffers_.resize(Shape{static_cast<std::int64_t>(buffer_total)});
  std::size_t e = 0, b = 0;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    std::vector<float*> v, g;
    for (const auto& s : specs[i]) {
      if (s.role == ParamRole::kBuffer) {
        v.push_back(buffers_.data() + buffer_entries_[b++].offset);
        g.push_back(nullptr);
      } else {
        v.push_back(values_.data() + entries_[e].offset);
        g.push_back(grads_.data() + entries_[e++].offset);
      }
    }
    if (!v.empty()) layers[i]->bind_params(std::move(v), std::move(g));
  }
}

void ParamArena::zero_grads() {
  std::fill(grads_.span().begin(), grads_.span().end(), 0.0f);
}

std::span<float> ParamArena::values_of(const Entry& e) {
  float* base = e.spec.role == ParamRole::kBuffer ? buffers_.data() : values_.data();
  return {base + e.offset, e.numel()};
}

std::span<const float> ParamArena::values_of(const Entry& e) const {
  const float* base = e.spec.role == ParamRole::kBuffer ? buffers_.data() : values_.data();
  return {base + e.offset, e.numel()};
}

std::size_t ParamArena::entry_at(const float* param) const {
  const std::span<const float> values = values_.span();
  if (std::less<>{}(param, values.data()) || !std::less<>{}(param, values.data() + values.size())) {
    throw std::invalid_argument("a pointer outside the parameters");
  }
  const auto offset = static_cast<std::size_t>(param - values.data());
  const auto it = std::partition_point(entries_.begin(), entries_.end(),
                                       [&](const Entry& e) { return e.offset < offset; });
  if (it == entries_.end() || it->offset != offset) {
    throw std::invalid_argument("a pointer that starts no parameter");
  }
  return static_cast<std::size_t>(it - entries_.begin());
}

}  // namespace dropkit::nn
