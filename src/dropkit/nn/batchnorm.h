// Batch normalization (Ioffe & Szegedy 2015), kind "batchnorm", for [N, D] and [N, C, H, W]
// (any [N, C, ...]: statistics per channel, axis 1, over the examples and every later axis).
//
// What it represents, per channel c over its m = N * (H * W) values in a batch:
//   train    mu, var = the batch's mean and variance (biased: divided by m);
//            y = gamma (x - mu) / sqrt(var + eps) + beta;
//            running_mean <- (1 - momentum) running_mean + momentum mu,
//            running_var  <- (1 - momentum) running_var + momentum var m / (m - 1)
//            (the unbiased variance, as PyTorch does; momentum is PyTorch's, the weight of the
//            new batch, 0.1 by default; Keras' momentum is 1 minus this)
//   eval     y = gamma (x - running_mean) / sqrt(running_var + eps) + beta
//   sample   as eval: Monte-Carlo dropout samples with the running statistics, never the
//            batch's (a batch of samples of one example would otherwise normalise them away --
//            the trap of switching a PyTorch model to train() for MC dropout)
//   recalibration (Mode::kEval with Context::recalibrate, after reset_running_statistics()):
//            normalises with the batch's statistics like train, and makes the running
//            statistics the plain average of the batches' means and unbiased variances
//            (PyTorch's momentum=None), whatever `momentum` is
//   backward the full gradient through the batch statistics, with x_hat = (x - mu) / s,
//            s = sqrt(var + eps):  dbeta = sum dy, dgamma = sum dy x_hat,
//            dx = gamma / (m s) (m dy - sum dy - x_hat sum dy x_hat).
// Parameters: weight (gamma) [C] = 1 and bias (beta) [C] = 0, trainable, no weight decay, no
// max-norm; buffers running_mean [C] = 0 and running_var [C] = 1, saved with the model and
// never touched by the optimizer. Training needs m >= 2 (PyTorch's rule too): one value per
// channel has no variance. Channels are split across threads, each channel's sums taken in
// index order within each leaf of kernels/leaves.h and the leaves up the leaf tree; in a
// data-parallel run the processes' sums are added through Context::peers (so gamma's and
// beta's gradients are the whole batch's already: kSummedOverBatch). The same bits for any
// thread count and any process count.
#pragma once

#include <vector>

#include "dropkit/nn/layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::nn {

class BatchNorm : public Layer {
 public:
  static constexpr double kDefaultMomentum = 0.1;
  static constexpr double kDefaultEps = 1e-5;
  // momentum in [0, 1], eps > 0: std::invalid_argument naming the value otherwise.
  BatchNorm(std::int64_t channels, double momentum = kDefaultMomentum, double eps = kDefaultEps);

  static constexpr const char* kKind = "batchnorm";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  Shape output_shape(const Shape& in) const override;  // checks rank >= 2 and the channels
  // 2 on [N, D] (each channel's statistics come from the batch alone), 1 with spatial axes.
  std::size_t min_train_batch(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;
  std::vector<ParamSpec> param_specs() const override;
  void bind_params(std::vector<float*> values, std::vector<float*> grads) override;
  void init_params(std::uint64_t seed, std::uint32_t stream) override;

  const float* running_mean() const { return mean_; }
  const float* running_var() const { return var_; }
  // Starts a recalibration: the next recalibrating forward replaces the running statistics.
  void reset_running_statistics() { recalibrated_batches_ = 0; }

 private:
  std::int64_t channels_;
  double momentum_, eps_;
  float *gamma_ = nullptr, *beta_ = nullptr, *dgamma_ = nullptr, *dbeta_ = nullptr;
  float *mean_ = nullptr, *var_ = nullptr;
  // What a Train forward keeps for backward.
  const Tensor* x_ = nullptr;
  Shape shape_;
  std::vector<float> batch_mean_, inv_std_;
  std::uint64_t recalibrated_batches_ = 0;
  parallel::ThreadPool* pool_ = nullptr;
  const BatchPeers* peers_ = nullptr;
  std::size_t values_ = 0;              // per channel, in the whole batch
  std::vector<double> sums_, squares_;  // per channel: the batch's sums (scratch)
};

}  // namespace dropkit::nn
