// DropConnect (Wan, Zeiler, Zhang, LeCun, Fergus, "Regularization of Neural Networks using
// DropConnect", ICML 2013): a dense layer whose WEIGHTS are dropped instead of its outputs.
//
// What it represents, with drop rate p, mask M over W (M_jk kept with probability 1 - p) and
// s = 1 / (1 - p) (inverted scaling) or s = 1 (inference scaling):
//   train, sample   y = f(x (s M o W)^T + b)             (the bias is never masked)
//   eval, "mean"    y = f(x (c W)^T + b),  c = 1 (inverted) or 1 - p (inference): the paper's
//                   mean rule, exact in expectation before f
//   eval, "gaussian" the paper's sampling rule: u ~ N(mu, v) per unit with mu = x (c W)^T + b,
//                   v = k (x o x)(W o W)^T, k = s^2 p (1 - p) (p / (1 - p) inverted, p (1 - p)
//                   inference), and y = the mean of f(u) over `samples` draws. Deterministic
//                   (eval gives the same output every time, independent of the run's seed):
//                   draw t of unit j of example r is element t of the stream (seed 0, the
//                   layer's stream, step (r + row offset) * units + j), the same for any split.
//   backward        dx = dz (s M o W), dW += s M o (dz^T x), db += sum dz, the forward's mask.
//
// The mask is drawn once per training step for the whole batch (not per example as in the paper;
// as most implementations do): a per-example mask would need a matrix-vector product per
// example instead of one matrix product per batch. It is keyed by (seed, stream, step, weight
// index j * in + k) and applied by the one mask kernel (dropout/mask.h); the masked weights live
// in one scratch matrix of W's size, reused every step, never one per example. Monte-Carlo
// sampling (Mode::kSample) draws one mask per sample from the sampling domain (rng/streams.h),
// shared by every example of that sample; stacked samples (Context::samples) are one product
// each.
// Kind "dropconnect"; config: units, activation, drop_prob, scaling, inference (mean, gaussian),
// samples (for gaussian), mask_bits (32, 16, 8; with 16 or 8 every p above is the rate the masks
// realise, effective_drop_prob(), as for dropout).
#pragma once

#include <cstdint>

#include "dropkit/dropout/dropout.h"
#include "dropkit/nn/layer_kind.h"
#include "dropkit/nn/linear.h"

namespace dropkit::dropout {

enum class DropConnectInference { kMean, kGaussian };

class DropConnect : public nn::Linear {
 public:
  DropConnect(std::int64_t in, std::int64_t out, nn::Activation f, double drop_prob,
              Scaling scaling = Scaling::kInverted,
              DropConnectInference inference = DropConnectInference::kMean, int samples = 100,
              std::uint32_t stream_id = 0, int mask_bits = kDefaultMaskBits);

  static constexpr const char* kKind = "dropconnect";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static nn::LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  bool stochastic() const override { return true; }
  void forward(const Tensor& x, Tensor& y, const nn::Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;
  // The weight gradient needs the mask after the product, so it accumulates into the arena (the
  // optimizer takes it from there, train/optimizer.h).
  void backward_to(const Tensor& dy, Tensor& dx, nn::GradientSink&) override { backward(dy, dx); }

  double drop_prob() const { return drop_prob_; }  // as configured
  double effective_drop_prob() const { return keep_.effective_drop_prob(); }
  int mask_bits() const { return keep_.width(); }

 private:
  void gaussian_rule(const Tensor& x, Tensor& y, const nn::Context& ctx);

  double drop_prob_;
  Scaling scaling_;
  DropConnectInference inference_;
  int samples_;
  std::uint32_t stream_id_;
  rng::KeepThreshold keep_;
  float train_scale_, eval_scale_;
  rng::StreamKey saved_key_;
  Tensor wm_;                   // the masked (or eval-scaled) weights of the last forward
  Tensor dwm_;                  // backward's unmasked weight gradient
  Tensor pre_, x2_, w2_, var_;  // the Gaussian rule's buffers
};

}  // namespace dropkit::dropout
