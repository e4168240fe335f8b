// Convolution and pooling layers.
//
// 2-D convolution, kind "conv2d", on [N, C, H, W] (NCHW), through oneDNN (kernels/conv.h), with
// an optional activation: ReLU fused into the primitive as a post-op, the others applied on each
// thread's block of examples right after its convolution, while the block is in cache.
//
// What it represents: y[n, o] = f(b[o] + sum_c x[n, c] (*) w[o, c]), (*) the cross-correlation
// with a k x k window (every framework's "convolution"), stride s, zero padding p on every side:
// out = floor((in + 2p - k) / s) + 1 per spatial axis.
// Config: filters (output channels), kernel (k, default 3), stride (1), padding (0; 1 keeps a
// 3 x 3 convolution's size), activation (identity by default; a following activation in --net
// folds in as for dense). Channels, height and width come from the input shape.
// Parameters: weight [filters, C, k, k] (a filter is a row: weight decay, and max-norm on each
// filter's C k k incoming weights when hidden), bias [filters]. Initialisation as dense with
// fan_in = C k k, fan_out = filters k k (nn::init_weights).
// Backward: dz = dy f'(from y); dW += the sum over examples (per grid block of examples, added in
// block order within each leaf, kernels/leaves.h: the same bits at any thread count), db += the
// sums of dz; dx = the transposed convolution of dz. Precision: ctx.precision of the forward
// (kernels/conv.h); with bf16 the forward rounds W once and the backward uses that rounding and the
// forward's precision.
#pragma once

#include <memory>
#include <vector>

#include "dropkit/kernels/conv.h"
#include "dropkit/nn/activation.h"
#include "dropkit/nn/layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::nn {

class Conv2d : public Layer {
 public:
  // input: one example's shape [C, H, W]; std::invalid_argument if no output position fits.
  Conv2d(const Shape& input, std::int64_t filters, kernels::Window window,
         Activation f = Activation::kIdentity);

  static constexpr const char* kKind = "conv2d";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;
  std::vector<ParamSpec> param_specs() const override;
  void bind_params(std::vector<float*> values, std::vector<float*> grads) override;
  void init_params(std::uint64_t seed, std::uint32_t stream) override;

  std::span<const float> weight() const override;
  const kernels::ConvGeometry& geometry() const { return g_; }
  // oneDNN's implementations for this layer (for benchmarks).
  std::string implementations(kernels::Precision precision = kernels::Precision::kF32) const {
    return conv_->implementations(precision);
  }

 private:
  kernels::ConvGeometry g_;
  Activation f_;
  std::unique_ptr<kernels::Conv2d> conv_;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
  const Tensor* x_ = nullptr;  // saved by a Train forward
  const Tensor* y_ = nullptr;
  parallel::ThreadPool* pool_ = nullptr;
  kernels::Precision precision_ = kernels::Precision::kF32;  // the forward's, for backward
  std::vector<kernels::Bf16> w_rounded_;                     // W rounded by a bf16 forward
  Tensor dz_;
};

// Max pooling, kind "max_pool2d", on [N, C, H, W]: the maximum of each size x size window,
// windows `stride` apart (0: stride = size, non-overlapping), padding (below size) never wins.
// Backward sends each output's gradient to the input position that won (the first maximum in
// row-major order on a tie, oneDNN's rule). No parameters.
class MaxPool2d : public Layer {
 public:
  // input: one example's shape [C, H, W].
  MaxPool2d(const Shape& input, std::int64_t size, std::int64_t stride, std::int64_t padding);

  static constexpr const char* kKind = "max_pool2d";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;

 private:
  std::int64_t c_, h_, w_, stride_option_;
  kernels::Window window_;
  std::unique_ptr<kernels::MaxPool2d> pool2d_;
  bool has_train_forward_ = false;
  Shape in_shape_, out_shape_;
  std::int64_t rows_ = 0;
  parallel::ThreadPool* pool_ = nullptr;
};

}  // namespace dropkit::nn
