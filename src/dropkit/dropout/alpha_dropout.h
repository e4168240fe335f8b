// Alpha dropout (Klambauer, Unterthiner, Mayr, Hochreiter, "Self-Normalizing Neural Networks",
// NeurIPS 2017), for SELU networks: a dropped unit is set to SELU's negative saturation
// alpha' = -lambda alpha ~= -1.7580993408473766 instead of 0, then an affine map restores zero
// mean and unit variance for inputs of zero mean and unit variance. With drop rate p:
//
//   a = ((1 - p)(1 + p alpha'^2))^(-1/2),   b = -a alpha' p      (PyTorch and Keras agree)
//   train, sample   y = a x + b (kept),  a alpha' + b (dropped)
//   eval            y = x
//   backward        dx = a dy (kept), 0 (dropped): the same mask, recomputed (0 bytes kept)
//
// p = 0 is the identity, bitwise. p = 1 is defined as the limit: the dropped value a alpha' + b
// = alpha' sqrt(1 - p) / sqrt(1 + p alpha'^2) goes to 0, so y = 0 and dx = 0 (Keras gives NaN).
// The mask is the Bernoulli keep mask of dropout/mask.h. With shared_axes "2+3" on [N, C, H, W]
// it drops whole channels (the feature variant, PyTorch's FeatureAlphaDropout). With mask_bits
// 16 or 8, p above is the rate the masks realise, effective_drop_prob() (as for dropout), so the
// mean and variance stay exactly 0 and 1.
// Kind "alpha_dropout"; config: drop_prob in [0, 1], shared_axes, mask_bits (32, 16, 8).
#pragma once

#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/noise_layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::dropout {

inline constexpr double kAlphaPrime = -1.0507009873554805 * 1.6732632423543772;

class AlphaDropout : public NoiseLayer {
 public:
  explicit AlphaDropout(double drop_prob, std::uint32_t stream_id = 0,
                        std::vector<int> shared_axes = {}, int mask_bits = kDefaultMaskBits);
  static constexpr const char* kKind = "alpha_dropout";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static nn::LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  void forward(const Tensor& x, Tensor& y, const nn::Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;

  double drop_prob() const { return drop_prob_; }  // as configured
  double effective_drop_prob() const { return keep_.effective_drop_prob(); }
  int mask_bits() const { return keep_.width(); }
  float a() const { return a_; }
  float b() const { return b_; }
  float dropped_value() const { return c_; }  // a alpha' + b

 private:
  double drop_prob_;
  rng::KeepThreshold keep_;
  float a_ = 0, b_ = 0, c_ = 0;
};

}  // namespace dropkit::dropout
