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
//                       still in cache, and the gradients never travel to memory
//                       (train/optimizer.h).
// Parameters and buffers live in the model's arena (nn/params.h); layers hold views.
//
// A layer is a value: kind() and config() say what it is, and the registry
// (model/registry.h) rebuilds it from them, so a network is a list of such values and a
// checkpoint stores that list. Nothing outside a layer's own files and its one registration
// needs to know the layer exists.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/core/tensor.h"
#include "dropkit/kernels/precision.h"
#include "dropkit/parallel/thread_pool.h"
#include "dropkit/rng/philox.h"
#include "dropkit/rng/streams.h"

namespace dropkit::nn {

// Train: stochastic layers draw fresh noise for (seed, step) and backward is allowed.
// Eval: deterministic, consumes no randomness (dropout is the identity or weight scaling).
// Sample: Monte-Carlo inference: noise drawn as in training but from the sampling domain
// (rng::sample_stream), keyed by the sample index in `step`; every other layer (BatchNorm
// included) behaves as in Eval. No backward.
enum class Mode { kTrain, kEval, kSample };

// The other processes of a data-parallel run (train/distributed.h), for a layer whose forward
// or backward needs a sum over the whole batch and not only over this process's rows (batch
// norm's statistics).
class BatchPeers {
 public:
  // Examples in this step's whole batch, every process's rows.
  virtual std::size_t batch_rows() const = 0;
  // `sums` holds this process's node of the leaf tree (kernels/leaves.h) of sums.size()
  // quantities (ignored when this process holds no rows this step); replaced by the sums over
  // the whole batch, the same bits in every process. A collective: every process calls it, in
  // the same order, with the same sums.size().
  virtual void sum(std::span<double> sums) const = 0;

 protected:
  ~BatchPeers() = default;
};

struct Context {
  Mode mode = Mode::kEval;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;  // training step, or Monte-Carlo sample index in Mode::kSample
  // Index of this batch's first row in the global batch: a data-parallel worker holding rows
  // [r, r + n) passes r and draws exactly the masks a single process would
  // (docs/spec.md section 2). In Mode::kSample: the index of the first example in the data set,
  // so that sample t of example i is the same whatever the batch it came in.
  std::uint64_t row_offset = 0;
  // Mode::kSample only: the rows are `samples` stacked blocks of the same examples, block s
  // being Monte-Carlo sample step + s (so T samples go through one matrix product). Layers that
  // draw noise draw each block as its own sample; every other layer is row-wise and sees one
  // batch. The row count must be a multiple of it.
  std::uint64_t samples = 1;
  // Mode::kSample with samples > 1, for a stochastic layer only: x holds ONE block, the same
  // examples for every sample (a deterministic prefix's output), and the output holds `samples`
  // blocks -- the stacking copy is never made. Monte-Carlo prediction gives it to the first
  // stochastic layer (predict/predictor.h).
  bool shared_input = false;
  // Mode::kEval only: normalisation layers normalise with the batch's statistics and add them to
  // their running statistics as a cumulative average (BatchNorm recalibration with dropout off,
  // train/recalibrate.h); every other layer is in eval mode.
  bool recalibrate = false;
  // The matrix products' input format (kernels/gemm.h); layers without products ignore it.
  kernels::Precision precision = kernels::Precision::kF32;
  parallel::ThreadPool* pool = nullptr;  // nullptr: parallel::default_pool()
  // Mode::kTrain in a data-parallel run: the processes that hold the rest of the batch (this
  // one's rows start at row_offset, a multiple of kernels::kLeafRows). nullptr: the rows are
  // the whole batch.
  const BatchPeers* peers = nullptr;
  // Mode::kTrain: examples in the training set, which scales the loss terms on parameters alone
  // (Layer::penalty; concrete dropout's regularizer). 0: unknown, and a model with such terms
  // refuses to train.
  std::size_t train_examples = 0;

  parallel::ThreadPool& threads() const { return pool ? *pool : parallel::default_pool(); }
  // Blocks of stacked rows (1 unless sampling).
  std::uint64_t blocks() const { return mode == Mode::kSample ? samples : 1; }
  // The key a consumer with training stream `stream` draws from for block `block`: its own
  // stream in Train, the sampling domain in Sample (rng/streams.h).
  rng::StreamKey noise_key(std::uint32_t stream, std::uint64_t block = 0) const {
    return {seed, mode == Mode::kSample ? rng::sample_stream(stream) : stream, step + block};
  }
  // Examples in the whole batch, of which this call holds `rows`.
  std::size_t batch_rows(std::size_t rows) const { return peers ? peers->batch_rows() : rows; }
  // sums (this call's node of the leaf tree) replaced by the whole batch's: see BatchPeers.
  void sum_over_batch(std::span<double> sums) const {
    if (peers) peers->sum(sums);
  }
  // rows / blocks(); std::invalid_argument naming `who` unless blocks() divides rows evenly.
  std::int64_t block_rows(std::int64_t rows, const std::string& who) const;
};

// A trainable parameter gets gradients and optimizer state; a buffer (BatchNorm's running
// statistics, say) is saved and loaded with the model but never touched by the optimizer.
enum class ParamRole { kTrainable, kBuffer };

// What the optimizer applies to a trainable parameter, as named bits.
enum ParamFlag : unsigned {
  kNoFlags = 0,
  kWeightDecay = 1u << 0,  // L2 weight decay (weights yes, biases no)
  // Rows are units' incoming weight vectors: the max-norm constraint (docs/spec.md section 3)
  // applies to them when the units are hidden (the arena drops this flag on the output layer,
  // nn/params.h).
  kMaxNormRows = 1u << 1,
  // The layer's backward sums this gradient over the whole batch itself, through
  // Context::peers (batch norm's, whose sums its input gradient needs anyway): a data-parallel
  // run does not add it up across processes again.
  kSummedOverBatch = 1u << 2,
};

// One tensor a layer asks the arena for.
struct ParamSpec {
  std::string name;  // unique within the layer, e.g. "weight"; part of its checkpoint name
  Shape shape;
  ParamRole role = ParamRole::kTrainable;
  unsigned flags = kNoFlags;  // ParamFlag bits; only for kTrainable
  bool has(ParamFlag f) const { return (flags & f) != 0; }
};

class Layer;

// The gradient of a loss term on parameters alone (a regularizer such as concrete dropout's,
// Layer::penalty) for one parameter of the arena: g += decay * w + shift, element-wise. The
// optimizer adds it to the whole batch's gradient just before the update (train/optimizer.h),
// so a data-parallel run adds it once, not once per process.
struct PenaltyGradient {
  const float* param;  // the first value of an arena parameter
  float decay = 0.0f;
  float shift = 0.0f;
};

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
  // The registry's name for this kind of layer ("dense", "dropout", ...).
  virtual std::string kind() const = 0;
  // Every option of this layer (kind excluded), complete: the registry rebuilds an equal layer
  // from {"kind": kind(), ...config()}.
  virtual nlohmann::json config() const = 0;
  // For messages: "dense(units=1024, activation=relu)".
  std::string name() const;
  // The output shape for an input of shape `in` (leading axis: examples); throws
  // std::invalid_argument naming the layer and what it expected if `in` is not valid.
  virtual Shape output_shape(const Shape& in) const { return in; }
  // True if forward draws random numbers in Mode::kTrain and Mode::kSample (the dropout family):
  // Monte-Carlo sampling and `bench train` find such layers through this. Such a layer accepts
  // stacked samples (Context::samples) and a shared input (Context::shared_input).
  virtual bool stochastic() const { return false; }
  // The fewest examples a training batch must hold for this layer on inputs of shape `in`
  // (leading axis: examples): 2 for a layer that normalises by the batch's own statistics with
  // nothing else to reduce over (batchnorm on [N, D]), 1 for every other layer.
  virtual std::size_t min_train_batch(const Shape& /*in*/) const { return 1; }
  virtual void forward(const Tensor& x, Tensor& y, const Context& ctx) = 0;
  virtual void backward(const Tensor& dy, Tensor& dx) = 0;
  // backward with the parameter gradients given to `sink` (see GradientSink). This default
  // accumulates into the arena as backward does, and gives the sink nothing: a sink must take
  // any parameter it was not given from the arena (train::Optimizer::finish_step does).
  virtual void backward_to(const Tensor& dy, Tensor& dx, GradientSink& /*sink*/) {
    backward(dy, dx);
  }
  // Parameters and buffers this layer needs; the arena calls bind_params with one view per
  // spec, in order (grads[i] is nullptr for a buffer).
  virtual std::vector<ParamSpec> param_specs() const { return {}; }
  virtual void bind_params(std::vector<float*> /*values*/, std::vector<float*> /*grads*/) {}
  // Fills the parameters from the counter RNG (reproducible from the seed); no-op by default.
  virtual void init_params(std::uint64_t /*seed*/, std::uint32_t /*stream*/) {}
  // The weight this layer multiplies its input by (dense, dropconnect, conv2d), or nothing: what
  // a concrete dropout layer before it regularizes.
  virtual std::span<const float> weight() const { return {}; }
  // Sequential::build gives every layer the layer after it (nullptr for the last), once the
  // parameters are bound: a layer whose loss terms involve the weights it feeds (concrete
  // dropout) keeps them, or throws std::invalid_argument when there are none.
  virtual void bind_next(const Layer* /*next*/) {}
  // Loss terms on the parameters alone, for a training set of `examples` examples: appends their
  // gradients to `out` and returns their value (0 and nothing by default). Read before the
  // step's update, with the parameters the step's forward uses; the
  // same bits for any pool.
  virtual double penalty(std::size_t /*examples*/, parallel::ThreadPool& /*pool*/,
                         std::vector<PenaltyGradient>& /*out*/) const {
    return 0.0;
  }
  // The drop rate training learns (concrete dropout), or nothing: what Model::learned_drop_probs
  // reports every epoch.
  virtual std::optional<double> learned_drop_prob() const { return std::nullopt; }
  // When false, backward may leave dx untouched (the first layer of a model: nobody needs it).
  void set_needs_input_grad(bool needed) { needs_input_grad_ = needed; }
  bool needs_input_grad() const { return needs_input_grad_; }
  // When false, backward will never be called (a layer before the model's first parameter):
  // a layer may then keep nothing for it (dropout stores no mask bits).
  void set_needs_backward(bool needed) { needs_backward_ = needed; }
  bool needs_backward() const { return needs_backward_; }

 protected:
  bool needs_input_grad_ = true;
  bool needs_backward_ = true;
};

}  // namespace dropkit::nn
