// Gaussian (multiplicative) dropout (Srivastava et al. 2014, section 10; Keras GaussianDropout).
//
// What it represents: training multiplies every unit by noise e ~ N(1, s^2) with
// s^2 = p / (1 - p) for drop rate p, the variance of inverted Bernoulli dropout at that rate, so
// the two can be compared at equal variance; inference is the identity (E[e] = 1).
//
//   train, sample   y = x * e,  e = 1 + s z,  z = normal_at(seed, stream, step, index)
//   eval            y = x
//   backward        dx = dy * e, the same e, recomputed from the counters (0 bytes kept)
//
// p = 0 is the identity, bitwise. p = 1 (infinite variance) is defined as dropping everything:
// y = 0 and dx = 0, never Inf or NaN. |z| <= 5.77 (rng/philox.h), so e is finite for p < 1.
// Kind "gaussian_dropout"; config: drop_prob in [0, 1], shared_axes (dropout/noise_shape.h).
#pragma once

#include "dropkit/dropout/noise_layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::dropout {

class GaussianDropout : public NoiseLayer {
 public:
  explicit GaussianDropout(double drop_prob, std::uint32_t stream_id = 0,
                           std::vector<int> shared_axes = {});
  static constexpr const char* kKind = "gaussian_dropout";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static nn::LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  void forward(const Tensor& x, Tensor& y, const nn::Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;

  double drop_prob() const { return drop_prob_; }
  float sigma() const { return sigma_; }  // s = sqrt(p / (1 - p)) in float; 0 for p = 1

 private:
  // y = v * e for the recorded (or a fresh) draw.
  void apply(const Draw& d, const Tensor& v, Tensor& out);

  double drop_prob_;
  float sigma_;
};

}  // namespace dropkit::dropout
