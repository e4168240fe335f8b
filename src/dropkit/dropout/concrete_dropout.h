// Concrete dropout (Gal, Hron and Kendall, NeurIPS 2017): dropout whose rate is a trained
// parameter, through a continuous relaxation of the Bernoulli mask.
//
// What it represents: the drop rate p = sigmoid(theta) of a trained logit theta. Training draws,
// for every element, u = uniform_at(seed, stream, step, index) (rng/philox.h) and the relaxed
// keep value
//
//   keep = 1 - sigmoid((theta + logit(u)) / t) = 1 / (1 + q^k),  q = e^theta u / (1 - u),
//
// at temperature t = 1/k (k an integer in [1, 100]; the paper's t = 0.1 is k = 10). As t -> 0,
// keep becomes a Bernoulli(1 - p) mask. The output is scaled as inverted dropout's, by the rate:
//
//   train, sample   y = x keep / (1 - p)
//   eval            y = x
//   backward        dx = dy keep / (1 - p);   dtheta += sum dy y (p - k (1 - keep))
//
// keep is recomputed from the counters in backward (0 bytes kept). Writing sigmoid(s / t) as a
// k-th power makes every operation an exact IEEE multiplication, division or addition: the
// same bits on every ISA, with no transcendental function per element. u = 0 gives keep = 1,
// and q^k overflowing gives keep = 0, never NaN; the logit is clamped to +-13.8 (p in
// [1e-6, 1 - 1e-6]) so that e^theta and 1 / (1 - p) stay finite. Training in place is refused
// (backward reads x). A layer whose parameters are not bound (used alone, as a function) runs
// at its initial rate and its backward gives dx only. Sampling draws the relaxed mask at the
// learned rate from the sampling domain, as every stochastic layer does (nn/layer.h).
//
// The regularizer (the paper's, as its reference code writes it; docs/guide.md) is a
// term of the training loss on the parameters alone, for N training examples and K inputs per
// example to this layer:
//
//   R = (l^2 / N) ||W||^2 / (1 - p)  +  (2 / N) K (p log p + (1 - p) log(1 - p))
//
// where W is the weight of the layer this one feeds (a dense, dropconnect or conv2d layer must
// follow it in a model; Sequential binds it) and l the length scale. The first term keeps a
// rate from growing where the weights it scales are large, the second (the negative entropy of
// the rate) pulls it towards 1/2. Its gradient is added after the batch's gradient is summed
// (nn::Layer::penalty): once per step, whatever the number of processes.
//
// Kind "concrete_dropout"; config: drop_prob (the initial rate, in [0.001, 0.999]),
// temperature, length_scale. Parameter "logit" [1] (no weight decay, no max-norm). Built for
// inputs of K values per example (any shape of that size).
#pragma once

#include <optional>
#include <span>

#include "dropkit/dropout/noise_layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::dropout {

class ConcreteDropout : public NoiseLayer {
 public:
  static constexpr double kDefaultTemperature = 0.1;
  static constexpr double kDefaultLengthScale = 1e-4;

  // For inputs of `features` (K) values per example. std::invalid_argument naming the option
  // when drop_prob is outside [0.001, 0.999], the temperature is not 1/k for an integer k in
  // [1, 100], or length_scale is outside [0, 1e6].
  ConcreteDropout(std::size_t features, double drop_prob, double temperature = kDefaultTemperature,
                  double length_scale = kDefaultLengthScale, std::uint32_t stream_id = 0);
  static constexpr const char* kKind = "concrete_dropout";
  static nn::LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  Shape output_shape(const Shape& in) const override;  // K values per example
  void forward(const Tensor& x, Tensor& y, const nn::Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;
  std::vector<nn::ParamSpec> param_specs() const override;
  void bind_params(std::vector<float*> values, std::vector<float*> grads) override;
  void init_params(std::uint64_t seed, std::uint32_t stream) override;
  // The next layer's weight (nn::Layer::weight): std::invalid_argument unless it has one.
  void bind_next(const nn::Layer* next) override;
  double penalty(std::size_t examples, parallel::ThreadPool& pool,
                 std::vector<nn::PenaltyGradient>& out) const override;

  // The rate now: sigmoid of the logit (the initial rate until parameters are bound).
  double drop_prob() const;
  std::optional<double> learned_drop_prob() const override { return drop_prob(); }
  double initial_drop_prob() const { return initial_drop_prob_; }
  double temperature() const { return 1.0 / k_; }
  int power() const { return k_; }  // k = 1 / temperature
  std::size_t features() const { return features_; }
  double length_scale() const { return length_scale_; }

 private:
  // Per element of a draw: keep values of elements [first, first + n) of stream `key`.
  void keep_values(const rng::StreamKey& key, std::uint64_t first, float* keep,
                   std::size_t n) const;

  double initial_drop_prob_;
  int k_;
  double length_scale_;
  float* logit_ = nullptr;
  float* dlogit_ = nullptr;
  std::span<const float> next_weight_;
  std::size_t features_;  // K: inputs per example
  // What the Train forward used, for backward.
  const Tensor* x_ = nullptr;
  float e_theta_ = 1.0f, inv_keep_ = 1.0f, p_ = 0.0f;
};

}  // namespace dropkit::dropout
