#include "dropkit/model/model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/core/json_text.h"
#include "dropkit/core/memory.h"
#include "dropkit/model/registry.h"
#include "dropkit/model/spec.h"

namespace dropkit::model {

using json = nlohmann::json;

Model::Model(const json& layers, Shape input, data::Normalization norm)
    : layers_(json::array()), input_(std::move(input)), net_(std::make_unique<Sequential>()) {
  set_normalization(norm);
  if (!layers.is_array() || layers.empty()) {
    throw std::invalid_argument("a model needs a non-empty list of layers");
  }
  if (layers.size() > kMaxLayers) {
    throw std::invalid_argument(
        fmt::format("a model has at most {} layers; this one has {}", kMaxLayers, layers.size()));
  }
  if (input_.numel() == 0) {
    throw std::invalid_argument(fmt::format("model input shape {} is empty", input_.str()));
  }
  Shape shape = input_.with_batch(1);
  activation_floats_ = shape.numel();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    std::string text;
    try {
      text = layer_to_text(complete_layer_config(layers[i]));
    } catch (const std::exception&) {
      text = json_excerpt(layers[i]);  // the error follows, from create_layer
    }
    const std::string owner = fmt::format("layer {} of {} ({}): ", i + 1, layers.size(), text);
    auto layer = create_layer(layers[i], shape, i, owner);
    shape = layer->output_shape(shape);
    activation_floats_ += shape.numel();
    layers_.push_back(layer_value(*layer));
    net_->add(std::move(layer));
  }
  output_ = shape.example();
  // Parameters, their gradients and up to two optimizer slots (Adam), 4 bytes each: a net that
  // cannot be trained here is refused before the arena asks for it.
  std::uint64_t floats = 0;
  for (std::size_t i = 0; i < net_->size(); ++i) {
    for (const auto& spec : net_->layer(i).param_specs()) floats += spec.shape.numel();
  }
  check_fits_in_memory(floats * 16, fmt::format("a net of {} parameters (values, gradients and "
                                                "optimizer state)",
                                                floats));
  std::vector<std::string> prefixes;
  for (std::size_t i = 0; i < layers_.size(); ++i)
    prefixes.push_back(fmt::format("layers.{}.{}", i, layers_[i]["kind"].get<std::string>()));
  net_->build(prefixes);
}

void Model::check_fits(std::uint64_t forward_rows, std::uint64_t backward_rows,
                       const std::string& what) const {
  // In long double: a hostile shape times a hostile row count must not wrap around.
  const long double params = static_cast<long double>(net_->params().size());
  const long double bytes =
      16.0L * params + 4.0L * static_cast<long double>(activation_floats_) *
                           static_cast<long double>(forward_rows + backward_rows);
  const long double cap = 1.8e19L;
  check_fits_in_memory(
      static_cast<std::uint64_t>(std::min(bytes, cap)),
      fmt::format("{} ({} parameters with gradients and optimizer state, {} activation values per "
                  "example for {} examples forward and {} backward)",
                  what, net_->params().size(), activation_floats_, forward_rows, backward_rows));
}

void Model::set_normalization(data::Normalization norm) {
  if (!std::isfinite(norm.mean) || !(std::isfinite(norm.std) && norm.std > 0)) {
    throw std::invalid_argument(fmt::format(
        "input normalization mean = {}, std = {}: need a finite mean and a finite std > 0",
        norm.mean, norm.std));
  }
  norm_ = norm;
}

Model Model::from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("model: expected a JSON object");
  const json& in = j.at("input_shape");
  std::vector<std::int64_t> dims;
  for (const auto& d : in) {
    if (!d.is_number_integer() || d.get<std::int64_t>() < 1) {
      throw std::invalid_argument("model: input_shape " + json_excerpt(in) +
                                  " must hold positive whole numbers");
    }
    dims.push_back(d.get<std::int64_t>());
  }
  data::Normalization norm;
  if (j.contains("normalization")) {
    norm.mean = j["normalization"].at("mean").get<float>();
    norm.std = j["normalization"].at("std").get<float>();
  }
  return Model(j.at("layers"), Shape(std::move(dims)), norm);
}

json Model::to_json() const {
  return {{"input_shape", input_.dims()},
          {"normalization", {{"mean", norm_.mean}, {"std", norm_.std}}},
          {"layers", layers_}};
}

std::string Model::spec() const {
  return net_to_text(layers_);
}

std::string Model::describe() const {
  std::string s;
  for (const auto& l : layers_) s += (s.empty() ? "" : " -> ") + layer_to_text(l);
  return fmt::format("{} | {} -> {}", s, input_.str(), output_.str());
}

const Tensor& Model::shaped_input(const Tensor& x) {
  if (x.shape().rank() < 1 || x.shape().row_size() != input_.numel()) {
    throw std::invalid_argument(
        fmt::format("model: input {} does not hold examples of shape {} ({} values each)",
                    x.shape().str(), input_.str(), input_.numel()));
  }
  if (x.shape().example() == input_) return x;
  shaped_.resize(input_.with_batch(x.shape()[0]));
  std::copy(x.span().begin(), x.span().end(), shaped_.span().begin());
  return shaped_;
}

const Tensor& Model::forward(const Tensor& x, const nn::Context& ctx) {
  return net_->forward(shaped_input(x), ctx);
}

void Model::backward(const Tensor& dy, nn::GradientSink* sink) {
  net_->backward(dy, sink);
}

Shape Model::layer_input_shape(std::size_t i, std::int64_t n) const {
  Shape shape = input_.with_batch(n);
  for (std::size_t k = 0; k < i; ++k) shape = net_->layer(k).output_shape(shape);
  return shape;
}

std::vector<double> Model::learned_drop_probs() const {
  std::vector<double> rates;
  for (std::size_t i = 0; i < net_->size(); ++i) {
    if (const auto p = net_->layer(i).learned_drop_prob()) rates.push_back(*p);
  }
  return rates;
}

}  // namespace dropkit::model
