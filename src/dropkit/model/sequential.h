// Sequential: a chain of layers that owns them, their parameters (one arena) and every
// intermediate buffer, reused from step to step (no allocation, no page faults after the first).
//
// forward(x, ctx) returns the last layer's output; backward(dy) runs the chain backwards after a
// Train forward, accumulating into the arena's gradients (or handing them to a GradientSink).
// Layers before the first one with trainable parameters get no backward at all (nothing needs
// their input gradient: the input dropout then costs nothing in backward, and keeps no mask bits),
// and the first parameterised layer skips its dx.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dropkit/nn/layer.h"
#include "dropkit/nn/params.h"

namespace dropkit::model {

class Sequential {
 public:
  Sequential() = default;
  Sequential(const Sequential&) = delete;
  Sequential& operator=(const Sequential&) = delete;

  // Adds a layer; all layers must be added before build() or the first use of the parameters.
  void add(std::unique_ptr<nn::Layer> layer);
  // Builds the parameter arena, naming layer i's tensors prefixes[i] + "." + name (default:
  // the index). Called at most once; params() and forward() call it with the default names.
  void build(const std::vector<std::string>& prefixes = {});
  nn::ParamArena& params();
  const nn::ParamArena& params() const;
  // Fills the parameters from the seed: layer i from stream kInitStreamBase + i.
  void init_params(std::uint64_t seed);

  const Tensor& forward(const Tensor& x, const nn::Context& ctx);
  // Layers [begin, end) only, x being layer begin's input; returns layer end - 1's output (x
  // itself when begin == end). Allows no backward. Monte-Carlo prediction runs the layers before
  // the first stochastic one once and the rest on stacked samples (predict/predictor.h).
  const Tensor& forward(const Tensor& x, const nn::Context& ctx, std::size_t begin,
                        std::size_t end);
  // With a sink, each layer runs backward_to(sink) (nn/layer.h): the gradients of layers that
  // support it go to the sink instead of the arena.
  void backward(const Tensor& dy, nn::GradientSink* sink = nullptr);
  // Every layer's loss terms on parameters alone (nn::Layer::penalty), for a training set of
  // `examples` examples: their gradients appended to `out` (cleared first), their value returned.
  double penalty(std::size_t examples, parallel::ThreadPool& pool,
                 std::vector<nn::PenaltyGradient>& out) const;

  std::size_t size() const { return layers_.size(); }
  nn::Layer& layer(std::size_t i) { return *layers_.at(i); }
  const nn::Layer& layer(std::size_t i) const { return *layers_.at(i); }
  std::string describe() const;  // "dropout(drop_prob=0.2, ...) -> dense(units=1024, ...) -> ..."

 private:
  std::vector<std::unique_ptr<nn::Layer>> layers_;
  std::unique_ptr<nn::ParamArena> arena_;
  std::vector<Tensor> outputs_;  // outputs_[i] = output of layer i
  std::vector<Tensor> grads_;    // two ping-pong gradient buffers
  std::size_t first_param_layer_ = 0;
  bool trained_forward_ = false;
};

}  // namespace dropkit::model
