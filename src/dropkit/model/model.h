// Model: a network as a value -- its layer list, the shape of one example, the input
// normalisation, and the parameters and buffers (one arena). It is what the trainer trains, what
// a checkpoint stores and what `eval` loads, without any training data.
//
// What it represents: logits = net(normalise(x)), where x holds examples of input_shape()
// (the batch is the leading axis) and the layers are built by the registry from their values
// (model/registry.h). to_json() is {"input_shape": [1, 28, 28], "normalization": {"mean": m,
// "std": s}, "layers": [{"kind": ...}, ...]}; from_json() rebuilds the same model (parameters
// are not part of it: they travel as tensors, train/checkpoint.h).
//
// Layer i draws its initial weights from stream kInitStreamBase + i and (if stochastic) its
// masks from kDropoutStreamBase + i (rng/streams.h): a model's randomness follows from its layer
// list and the seed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "dropkit/data/batcher.h"
#include "dropkit/model/sequential.h"

namespace dropkit::model {

class Model {
 public:
  // The most layers a model may have: far beyond any useful net, and a bound on what building
  // one costs (a list of 200,000 layers is refused before any is made).
  static constexpr std::size_t kMaxLayers = 1024;

  // Builds every layer for examples of shape `input` (no batch axis), checking each accepts
  // what the previous one gives: std::invalid_argument "layer 3 of 7 (dense:1024): ..." otherwise.
  // `layers` is a JSON array of layer values (partial values take their defaults).
  Model(const nlohmann::json& layers, Shape input, data::Normalization norm = {});
  static Model from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;

  const Shape& input_shape() const { return input_; }    // one example, e.g. [1, 28, 28]
  const Shape& output_shape() const { return output_; }  // one example, e.g. [10]
  const data::Normalization& normalization() const { return norm_; }
  void set_normalization(data::Normalization norm);
  const nlohmann::json& layers() const { return layers_; }  // complete layer values
  std::string spec() const;                                 // the text form (model/spec.h)
  std::string describe() const;  // "dropout:0.2 -> dense:1024:relu -> ... | 784 -> 10"

  // x: [n, ...input_shape()], already normalised (data::make_batch). Returns the last layer's
  // output [n, ...output_shape()]. An x of another shape with input_shape().numel() values per
  // example is copied into [n, ...input_shape()] first (shaped_input), so that every layer sees
  // the shape the model was built for (a shared noise axis means what it said).
  const Tensor& forward(const Tensor& x, const nn::Context& ctx);
  // x itself when its examples have input_shape(), else its copy in that shape; throws
  // std::invalid_argument if the element counts differ.
  const Tensor& shaped_input(const Tensor& x);
  void backward(const Tensor& dy, nn::GradientSink* sink = nullptr);

  // The layers as the engine that runs them (a training step uses it directly).
  Sequential& net() { return *net_; }
  nn::ParamArena& params() { return net_->params(); }
  const nn::ParamArena& params() const { return net_->params(); }
  void init_params(std::uint64_t seed) { net_->init_params(seed); }
  std::size_t size() const { return net_->size(); }
  // The drop rates training learns (concrete_dropout layers), in layer order; empty without.
  std::vector<double> learned_drop_probs() const;
  nn::Layer& layer(std::size_t i) { return net_->layer(i); }
  const nn::Layer& layer(std::size_t i) const { return net_->layer(i); }
  // Values (floats) per example of the input and of every layer's output: what one forward pass
  // keeps per example, and what backward keeps again for the gradients.
  std::uint64_t activation_floats() const { return activation_floats_; }
  // Throws std::invalid_argument "<what> needs about X GiB ..." (core/memory.h) unless the
  // parameters with their gradients and two optimizer slots, plus `forward_rows` examples'
  // activations and `backward_rows` examples' gradients, fit in the machine's memory. The
  // estimate leaves out oneDNN's own scratch and the data set.
  void check_fits(std::uint64_t forward_rows, std::uint64_t backward_rows,
                  const std::string& what) const;
  // The input shape of layer i, batch axis included, for a batch of n examples.
  Shape layer_input_shape(std::size_t i, std::int64_t n) const;

 private:
  nlohmann::json layers_;
  Shape input_, output_;
  data::Normalization norm_;
  std::unique_ptr<Sequential> net_;
  std::uint64_t activation_floats_ = 0;
  Tensor shaped_;  // shaped_input's copy, reused
};

}  // namespace dropkit::model
