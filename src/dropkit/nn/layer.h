// Layer: the unit a network is built from, and Context: what one forward call needs to know.
//
// The backward convention, written once for every layer (dlib's contract, llm.c's buffers):
//   forward(x, y, ctx)  writes y = f(x); in Mode::kTrain the layer keeps what backward needs
//                       (a pointer to x must stay valid until backward).
//   backward(dy, dx)    OVERWRITES dx with (df/dx)^T dy and ACCUMULATES into parameter gradients.
//   backward_to(dy, dx, sink)
//                       the same, except that each parameter's gradient goes to the sink as it is
//                       produced, and the arena's gradients are not touched. An optimizer is such
//                       a sink: it updates a block of weights while that block's gradient is
//                       still in cache, and the gradients never travel to memory (issue 3's
//                       training-step target; train/optimizer.h).
// Parameters live in the model's arena (nn/params.h); layers hold views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dropkit/core/tensor.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::nn {

// Train: stochastic layers draw fresh noise for (seed, step) and backward is allowed.
// Eval: deterministic, consumes no randomness (dropout is the identity or weight scaling).
// Sample: Monte-Carlo inference: noise drawn as in training, keyed by the sample index in `step`.
enum class Mode { kTrain, kEval, kSample };

struct Context {
  Mode mode = Mode::kEval;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;  // training step, or Monte-Carlo sample index in Mode::kSample
  // Index of this batch's first row in the global batch: a data-parallel worker holding rows
  // [r, r + n) passes r and draws exactly the masks a single process would (SPEC section 2).
  std::uint64_t row_offset = 0;
  parallel::ThreadPool* pool = nullptr;  // nullptr: parallel::default_pool()

  parallel::ThreadPool& threads() const { return pool ? *pool : parallel::default_pool(); }
};

// One parameter tensor a layer asks the arena for.
struct ParamSpec {
  std::string name;  // unique within the layer, e.g. "weight"
  Shape shape;
  // Rows are hidden units' incoming weight vectors: the max-norm constraint applies to them.
  bool max_norm_rows = false;
  // L2 weight decay applies (weights yes, biases no).
  bool decay = false;
};

class Layer;

// Receives parameter gradients from Layer::backward_to. A parameter of shape [r, ...] is seen as
// r rows (a bias of shape [r] has rows of one element). consume() gets the complete gradient of
// rows [row_begin, row_end) of the parameter whose values start at `param`, contiguous in
// `grad`. It is called from the pool's threads, concurrently for disjoint rows; every row of a
// parameter exactly once per backward, after the layer's last read of those rows' values (the
// sink may change them at once).
class GradientSink {
 public:
  virtual void consume(float* param, std::size_t row_begin, std::size_t row_end,
                       const float* grad) = 0;

 protected:
  ~GradientSink() = default;
};

// The errors every backward raises, in one place: std::logic_error when there was no forward in
// Mode::kTrain to take the gradient of (forward_shape == nullptr), std::invalid_argument when
// the gradient's shape differs from the shape dy must have (the forward's output shape; equal to
// its input shape for element-wise layers). Both name the layer and change nothing.
void check_backward(const Layer& layer, const Shape* forward_shape, const Shape& grad_shape);

class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string name() const = 0;
  // The output shape for an input of shape `in`; throws std::invalid_argument if it is not valid.
  virtual Shape output_shape(const Shape& in) const { return in; }
  virtual void forward(const Tensor& x, Tensor& y, const Context& ctx) = 0;
  virtual void backward(const Tensor& dy, Tensor& dx) = 0;
  // backward with the parameter gradients given to `sink` (see GradientSink). This default
  // accumulates into the arena as backward does, and gives the sink nothing: a sink must take
  // any parameter it was not given from the arena (train::Optimizer::finish_step does).
  virtual void backward_to(const Tensor& dy, Tensor& dx, GradientSink& /*sink*/) {
    backward(dy, dx);
  }
  // Parameters this layer needs; the arena calls bind_params with one view per spec, in order.
  virtual std::vector<ParamSpec> param_specs() const { return {}; }
  virtual void bind_params(std::vector<float*> /*values*/, std::vector<float*> /*grads*/) {}
  // Fills the parameters from the counter RNG (reproducible from the seed); no-op by default.
  virtual void init_params(std::uint64_t /*seed*/, std::uint32_t /*stream*/) {}
  // When false, backward may leave dx untouched (the first layer of a model: nobody needs it).
  virtual void set_needs_input_grad(bool needed) { needs_input_grad_ = needed; }
  bool needs_input_grad() const { return needs_input_grad_; }

 protected:
  bool needs_input_grad_ = true;
};

}  // namespace dropkit::nn
