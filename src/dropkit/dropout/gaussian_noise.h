// Gaussian noise (additive; Bishop 1995, "Training with noise is equivalent to Tikhonov
// regularization"; Keras GaussianNoise).
//
//   train, sample   y = x + sigma z,  z = normal_at(seed, stream, step, index)
//   eval            y = x
//   backward        dx = dy
//
// Any sigma in [0, 1e30] (Keras 3 refuses sigma > 1; nothing here needs that limit; the cap keeps
// sigma z, |z| <= 5.77, finite in float); sigma = 0 is the identity, bitwise. Kind
// "gaussian_noise"; config: sigma in [0, 1e30].
#pragma once

#include "dropkit/dropout/noise_layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::dropout {

class GaussianNoise : public NoiseLayer {
 public:
  static constexpr double kMaxSigma = 1e30;
  explicit GaussianNoise(double sigma, std::uint32_t stream_id = 0);
  static constexpr const char* kKind = "gaussian_noise";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static nn::LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override { return {{"sigma", sigma_}}; }
  void forward(const Tensor& x, Tensor& y, const nn::Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;
  double sigma() const { return sigma_; }

 private:
  double sigma_;
};

}  // namespace dropkit::dropout
