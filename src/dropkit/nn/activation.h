// Element-wise activations, as kernels over spans and as a Layer.
//
//   kIdentity  a = z
//   kReLU      a = max(z, 0)                              a' = [a > 0]
//   kSigmoid   a = 1 / (1 + e^-z)  (stable for both signs)  a' = a (1 - a)
//   kTanh      a = tanh z                                 a' = 1 - a^2
//   kSELU      a = l z (z > 0), l al (e^z - 1) otherwise  a' = l (z > 0), a + l al otherwise
//              with l = 1.0507009873554805, al = 1.6732632423543772 (Klambauer et al. 2017)
// Every derivative is written in terms of the output a, so backward needs only the output.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "dropkit/core/options.h"
#include "dropkit/nn/layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::nn {

enum class Activation { kIdentity, kReLU, kSigmoid, kTanh, kSELU };

inline constexpr double kSeluLambda = 1.0507009873554805;
inline constexpr double kSeluAlpha = 1.6732632423543772;

std::string_view activation_name(Activation a);
// Parses "identity", "relu", "sigmoid", "tanh", "selu"; throws std::invalid_argument listing them.
Activation parse_activation(std::string_view name);
// Those names, in that order (for option choices and messages).
const std::vector<std::string>& activation_names();
// "activation": a function fused into a layer (dense, dropconnect, conv2d), identity by default.
Option activation_option();

// a[i] = f(z[i]); z and a may alias.
void activation_forward(Activation f, const float* z, float* a, std::size_t n);
// dz[i] = da[i] * f'(z[i]), computed from a[i] = f(z[i]); da and dz may alias.
void activation_backward(Activation f, const float* a, const float* da, float* dz, std::size_t n);

// The same, split over the pool's threads (element-wise: the same bits for any thread count).
void activation_forward(parallel::ThreadPool& pool, Activation f, const float* z, float* a,
                        std::size_t n);
void activation_backward(parallel::ThreadPool& pool, Activation f, const float* a, const float* da,
                         float* dz, std::size_t n);

// dz = dy * f'(from a), split over the pool's threads; returns dz.data().
// For the identity it returns dy.data() and leaves dz alone (no copy).
const float* activation_grad(parallel::ThreadPool& pool, Activation f, const Tensor& a,
                             const Tensor& dy, Tensor& dz);

// The initial weights of units with activation f, from the counter RNG at `key`: He normal (std
// sqrt(2 / fan_in)) for ReLU, LeCun normal (sqrt(1 / fan_in)) for SELU and identity, Glorot
// uniform (+-sqrt(6 / (fan_in + fan_out))) for sigmoid and tanh. Dense and convolution layers
// share it (fan_in: a unit's incoming weights; for a convolution channels * k * k).
void init_weights(Activation f, std::int64_t fan_in, std::int64_t fan_out,
                  const rng::StreamKey& key, float* w, std::size_t n);

// The activation as a standalone layer, kind "activation", config {"function": name}. Linear
// applies it fused when it follows a dense layer directly (model/spec.h folds it there).
class ActivationLayer : public Layer {
 public:
  explicit ActivationLayer(Activation f) : f_(f) {}
  static constexpr const char* kKind = "activation";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override { return {{"function", activation_name(f_)}}; }
  Activation function() const { return f_; }
  void forward(const Tensor& x, Tensor& y, const Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;

 private:
  Activation f_;
  const Tensor* y_ = nullptr;             // the output of the last Train forward
  parallel::ThreadPool* pool_ = nullptr;  // the last forward's threads, for backward
};

}  // namespace dropkit::nn
