// Linear (fully connected) layer, kind "dense", with an optional activation fused into its
// epilogue.
//
// What it represents: y = f(x W^T + b), x [rows, in], W [out, in] (row j = the incoming weights
// of unit j), b [out], y [rows, out]. With f = identity it is the plain affine map. An input of
// higher rank, [rows, d1, d2, ...], is read as [rows, d1 * d2 * ...] (row-major, no copy): a
// dense layer after a convolution needs no flatten. The bias add and f run on each thread's
// block of columns right after that thread's matrix product, while the block is still in cache
// (a separate pass would read and write the whole output once more).
//
// Config: units (out), activation (identity, relu, sigmoid, tanh, selu; default identity). `in`
// is not part of the config: the registry infers it from the input shape.
// Parameters: weight [out, in] (weight decay; max-norm on its rows when the units are hidden),
// bias [out].
//
// Backward (the convention of nn/layer.h): dz = dy * f'(from y); dW += dz^T x; db += sum_rows dz;
// dx = dz W (skipped when set_needs_input_grad(false)). backward_to computes dx first, then dW and
// db block by block (kernels::linear_weight_grads), giving each block to the sink while it is in
// cache: the sink may then update W, which dx no longer needs.
// Initialisation from the counter RNG: He normal (std sqrt(2/in)) for ReLU, LeCun normal
// (sqrt(1/in)) for SELU and identity, Glorot uniform (+-sqrt(6/(in+out))) for sigmoid and
// tanh; biases zero.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dropkit/kernels/leaves.h"
#include "dropkit/nn/activation.h"
#include "dropkit/nn/layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::nn {

class Linear : public Layer {
 public:
  // (A layer that masks or transforms the weights, DropConnect, derives from Linear and runs
  // the same product, epilogue and backward with its own weights: run_forward, input_grad.)
  Linear(std::int64_t in, std::int64_t out, Activation f = Activation::kIdentity);

  static constexpr const char* kKind = "dense";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static LayerKind registration();
  // "units": the output width, required (DropConnect takes it too).
  static Option units_option();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;
  void backward_to(const Tensor& dy, Tensor& dx, GradientSink& sink) override;
  std::vector<ParamSpec> param_specs() const override;
  void bind_params(std::vector<float*> values, std::vector<float*> grads) override;
  void init_params(std::uint64_t seed, std::uint32_t stream) override;

  std::int64_t in() const { return in_; }
  std::int64_t out() const { return out_; }
  Activation activation() const { return f_; }
  std::span<const float> weight() const override {
    return {w_, w_ ? static_cast<std::size_t>(in_ * out_) : 0};
  }
  float* weight() { return w_; }
  float* bias() { return b_; }

 protected:
  // y = f(x w^T + b) with the weights `w` ([out, in]), or x w^T + b without f when !activate;
  // keeps what backward needs in Mode::kTrain.
  void run_forward(const Tensor& x, Tensor& y, const Context& ctx, const float* w,
                   bool activate = true);
  // The same on raw rows: y [rows, out] = f(x [rows, in] w^T + b); keeps nothing.
  void product(parallel::ThreadPool& pool, std::int64_t rows, const float* x, const float* w,
               float* y, bool activate = true,
               kernels::Precision precision = kernels::Precision::kF32,
               const kernels::Bf16* w_rounded = nullptr,
               kernels::RowCalls calls = kernels::RowCalls::kWhole) const;
  // Checks, then returns dz = dy * f'(y) (dy itself for the identity).
  const float* output_grad(const Tensor& dy, const Tensor& dx);
  // dx = dz w (nothing when the input gradient is not needed).
  void input_grad(const float* dz, Tensor& dx, const float* w) const;

  std::int64_t in_, out_;
  Activation f_;
  float *w_ = nullptr, *b_ = nullptr, *dw_ = nullptr, *db_ = nullptr;
  const Tensor* x_ = nullptr;  // saved by a Train forward
  const Tensor* y_ = nullptr;
  parallel::ThreadPool* pool_ = nullptr;
  kernels::Precision precision_ = kernels::Precision::kF32;  // the forward's, for backward
  // bf16: the forward's weights rounded, reused by the input gradient (once per step, not twice).
  std::vector<kernels::Bf16> w_rounded_;
  bool w_rounded_fresh_ = false;  // filled by the last forward, for its backward
  Tensor dz_;                     // reused across steps
};

}  // namespace dropkit::nn
