#include "dropkit/model/sequential.h"

#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/rng/streams.h"

namespace dropkit::model {

void Sequential::add(std::unique_ptr<nn::Layer> layer) {
  if (arena_) throw std::logic_error("Sequential: cannot add layers after the parameters exist");
  layers_.push_back(std::move(layer));
}

void Sequential::build(const std::vector<std::string>& prefixes) {
  if (arena_) throw std::logic_error("Sequential: build() called twice");
  std::vector<nn::Layer*> raw;
  for (auto& l : layers_) raw.push_back(l.get());
  arena_ = std::make_unique<nn::ParamArena>(raw, prefixes, /*last_is_output=*/true);
  first_param_layer_ = layers_.size();
  for (std::size_t i = 0; i < layers_.size() && first_param_layer_ == layers_.size(); ++i) {
    for (const auto& s : layers_[i]->param_specs()) {
      if (s.role == nn::ParamRole::kTrainable) first_param_layer_ = i;
    }
  }
  for (std::size_t i = 0; i < first_param_layer_ && i < layers_.size(); ++i) {
    layers_[i]->set_needs_backward(false);
  }
  if (first_param_layer_ < layers_.size()) {
    layers_[first_param_layer_]->set_needs_input_grad(false);
  }
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->bind_next(i + 1 < layers_.size() ? layers_[i + 1].get() : nullptr);
  }
  outputs_.resize(layers_.size());
  grads_.resize(2);
}

double Sequential::penalty(std::size_t examples, parallel::ThreadPool& pool,
                           std::vector<nn::PenaltyGradient>& out) const {
  out.clear();
  double value = 0;
  for (const auto& l : layers_) value += l->penalty(examples, pool, out);
  return value;
}

nn::ParamArena& Sequential::params() {
  if (!arena_) build();
  return *arena_;
}

const nn::ParamArena& Sequential::params() const {
  if (!arena_) throw std::logic_error("Sequential: the parameters are not built yet");
  return *arena_;
}

void Sequential::init_params(std::uint64_t seed) {
  params();
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->init_params(seed, rng::kInitStreamBase + static_cast<std::uint32_t>(i));
  }
}

const Tensor& Sequential::forward(const Tensor& x, const nn::Context& ctx) {
  if (layers_.empty()) throw std::logic_error("Sequential: no layers");
  const Tensor& y = forward(x, ctx, 0, layers_.size());
  trained_forward_ = ctx.mode == nn::Mode::kTrain;
  return y;
}

const Tensor& Sequential::forward(const Tensor& x, const nn::Context& ctx, std::size_t begin,
                                  std::size_t end) {
  params();
  if (begin > end || end > layers_.size()) {
    throw std::out_of_range(
        fmt::format("Sequential: layers [{}, {}) of {}", begin, end, layers_.size()));
  }
  trained_forward_ = false;  // until every layer has run: a throw midway allows no backward
  const Tensor* in = &x;
  for (std::size_t i = begin; i < end; ++i) {
    layers_[i]->forward(*in, outputs_[i], ctx);
    in = &outputs_[i];
  }
  return *in;
}

void Sequential::backward(const Tensor& dy, nn::GradientSink* sink) {
  if (!trained_forward_) {
    throw std::logic_error("Sequential: backward needs a preceding forward in Mode::kTrain");
  }
  const Tensor* g = &dy;
  for (std::size_t i = layers_.size(); i-- > first_param_layer_;) {
    Tensor& dx = grads_[i % 2];
    if (sink != nullptr) {
      layers_[i]->backward_to(*g, dx, *sink);
    } else {
      layers_[i]->backward(*g, dx);
    }
    g = &dx;
  }
}

std::string Sequential::describe() const {
  std::string s;
  for (const auto& l : layers_) s += (s.empty() ? "" : " -> ") + l->name();
  return s;
}

}  // namespace dropkit::model
