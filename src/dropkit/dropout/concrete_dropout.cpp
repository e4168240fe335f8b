#include "dropkit/dropout/concrete_dropout.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/options.h"
#include "dropkit/kernels/leaves.h"
#include "dropkit/kernels/table.h"

namespace dropkit::dropout {

namespace {

constexpr double kMinRate = 0.001, kMaxRate = 0.999;
constexpr double kMaxLengthScale = 1e6;
// Weights per unit of ||W||^2's sum: fixed, so the sum's bits do not depend on the threads.
constexpr std::size_t kNormChunk = 65536;
constexpr int kMaxPower = 100;
// Elements per unit of work: the keep values of a chunk live on the stack, in L1.
constexpr std::size_t kChunk = 2048;

// The logit is used clamped to +-kMaxLogit (p in [1e-6, 1 - 1e-6]), so that e^theta and
// 1 / (1 - p) stay finite however far a diverging run pushes it.
constexpr double kMaxLogit = 13.815510557964274;  // log(1e6 - 1)
double clamped(float logit) {
  return std::clamp(static_cast<double>(logit), -kMaxLogit, kMaxLogit);
}
double sigmoid(double a) {
  return 1.0 / (1.0 + std::exp(-a));
}

// k = 1 / temperature, when that is an integer in [1, kMaxPower].
int power_of(double temperature) {
  const double k = 1.0 / temperature;
  const double r = std::round(k);
  if (!(temperature > 0) || r < 1 || r > kMaxPower || std::abs(k - r) > 1e-9 * r) {
    throw std::invalid_argument(fmt::format(
        "temperature = {} is not 1/k for an integer k in [1, {}] (e.g. 0.1, 0.2, 0.25, 0.5, 1): "
        "the relaxed mask is computed as a k-th power, exactly on every machine",
        temperature, kMaxPower));
  }
  return static_cast<int>(r);
}

// t[i] = q[i]^k by repeated squaring, the same operations in the same order for every element.
void raise(float* t, float* q, std::size_t n, int k) {
  bool have = false;
  for (;;) {
    if (k & 1) {
      if (have) {
        for (std::size_t i = 0; i < n; ++i) t[i] *= q[i];
      } else {
        std::copy(q, q + n, t);
        have = true;
      }
    }
    k >>= 1;
    if (k == 0) return;
    for (std::size_t i = 0; i < n; ++i) q[i] *= q[i];
  }
}

}  // namespace

ConcreteDropout::ConcreteDropout(std::size_t features, double drop_prob, double temperature,
                                 double length_scale, std::uint32_t stream_id)
    : NoiseLayer(stream_id, {}),
      initial_drop_prob_(drop_prob),
      k_(power_of(temperature)),
      length_scale_(length_scale),
      features_(features) {
  if (!(drop_prob >= kMinRate && drop_prob <= kMaxRate)) {
    throw std::invalid_argument(
        fmt::format("drop_prob = {} is outside [{}, {}]", drop_prob, kMinRate, kMaxRate));
  }
  if (!(length_scale >= 0 && length_scale <= kMaxLengthScale)) {
    throw std::invalid_argument(
        fmt::format("length_scale = {} is outside [0, {:g}]", length_scale, kMaxLengthScale));
  }
  if (features == 0) throw std::invalid_argument("concrete_dropout: inputs of no values");
}

nlohmann::json ConcreteDropout::config() const {
  return {{"drop_prob", initial_drop_prob_},
          {"temperature", temperature()},
          {"length_scale", length_scale_}};
}

Shape ConcreteDropout::output_shape(const Shape& in) const {
  if (in.rank() < 2 || static_cast<std::size_t>(in.row_size()) != features_) {
    throw std::invalid_argument(fmt::format("{}: built for {} values per example, got inputs {}",
                                            name(), features_, in.str()));
  }
  return in;
}

std::vector<nn::ParamSpec> ConcreteDropout::param_specs() const {
  return {{.name = "logit", .shape = Shape{1}}};
}

void ConcreteDropout::bind_params(std::vector<float*> values, std::vector<float*> grads) {
  logit_ = values.at(0);
  dlogit_ = grads.at(0);
}

void ConcreteDropout::init_params(std::uint64_t, std::uint32_t) {
  if (logit_ != nullptr) {
    *logit_ = static_cast<float>(std::log(initial_drop_prob_ / (1.0 - initial_drop_prob_)));
  }
}

void ConcreteDropout::bind_next(const nn::Layer* next) {
  const std::span<const float> w = next ? next->weight() : std::span<const float>{};
  if (w.empty()) {
    throw std::invalid_argument(
        fmt::format("{} must be followed by a layer with weights (dense, dropconnect or conv2d): "
                    "its regularizer is on the weights it feeds, found {}",
                    name(), next ? next->name() : "the end of the network"));
  }
  next_weight_ = w;
}

double ConcreteDropout::drop_prob() const {
  return logit_ != nullptr ? sigmoid(clamped(*logit_)) : initial_drop_prob_;
}

double ConcreteDropout::penalty(std::size_t examples, parallel::ThreadPool& pool,
                                std::vector<nn::PenaltyGradient>& out) const {
  if (logit_ == nullptr) return 0.0;
  if (examples == 0) {
    throw std::invalid_argument(name() +
                                ": the regularizer needs the number of training examples "
                                "(nn::Context::train_examples)");
  }
  const double n = static_cast<double>(examples);
  const double theta = clamped(*logit_), p = sigmoid(theta);
  const double wr = length_scale_ * length_scale_ / n, dr = 2.0 / n;
  const auto k = static_cast<double>(features_);
  // ||W||^2 in fixed chunks added in order: the same bits for any thread count.
  double squared = 0;
  if (!next_weight_.empty()) {
    const std::size_t chunks = (next_weight_.size() + kNormChunk - 1) / kNormChunk;
    std::vector<double> part(chunks);
    parallel::parallel_for(pool, chunks, 1, [&](std::size_t c0, std::size_t c1) {
      for (std::size_t c = c0; c < c1; ++c) {
        const std::size_t b = c * kNormChunk;
        part[c] = kernels::active_kernels().squared_norm(
            next_weight_.data() + b, std::min(kNormChunk, next_weight_.size() - b));
      }
    });
    for (double s : part) squared += s;
    // d/dW: 2 wr W / (1 - p), a weight decay of that coefficient.
    out.push_back({next_weight_.data(), static_cast<float>(2.0 * wr / (1.0 - p)), 0.0f});
  }
  // d/dtheta (dp/dtheta = p (1 - p)): wr ||W||^2 p / (1 - p) + dr K theta p (1 - p).
  out.push_back(
      {logit_, 0.0f,
       static_cast<float>(wr * squared * p / (1.0 - p) + dr * k * theta * p * (1.0 - p))});
  return wr * squared / (1.0 - p) + dr * k * (p * std::log(p) + (1.0 - p) * std::log1p(-p));
}

void ConcreteDropout::keep_values(const rng::StreamKey& key, std::uint64_t first, float* keep,
                                  std::size_t n) const {
  float q[kChunk];
  kernels::active_kernels().fill_uniform(key, first, q, n);
  const float e = e_theta_;
  for (std::size_t i = 0; i < n; ++i) q[i] = e * q[i] / (1.0f - q[i]);
  raise(keep, q, n, k_);
  for (std::size_t i = 0; i < n; ++i) keep[i] = 1.0f / (1.0f + keep[i]);
}

void ConcreteDropout::forward(const Tensor& x, Tensor& y, const nn::Context& ctx) {
  // Nothing of an earlier forward survives a forward that throws.
  x_ = nullptr;
  forget_draw();
  output_shape(x.shape());
  if (ctx.mode == nn::Mode::kTrain && &x == &y) {
    throw std::invalid_argument(name() + ": cannot train in place (backward reads the input)");
  }
  if (ctx.mode == nn::Mode::kEval) {
    if (&y != &x) y.resize(x.shape());
    scale_copy(ctx.threads(), 1.0f, x.span(), y.span());
    return;
  }
  const double p = drop_prob();
  p_ = static_cast<float>(p);
  e_theta_ = static_cast<float>(p / (1.0 - p));  // e^theta
  inv_keep_ = static_cast<float>(1.0 / (1.0 - p));
  const Draw& d = begin_draw(x, ctx);
  resize_output(d, x, y);
  each_block(d, [&](parallel::ThreadPool& pool, const rng::StreamKey& key, std::uint64_t first,
                    std::size_t b, std::size_t n) {
    const std::span<const float> in = input_of(d, x, b, n);
    float* out = y.data() + b;
    parallel::parallel_for(pool, (n + kChunk - 1) / kChunk, 1, [&](std::size_t c0, std::size_t c1) {
      float keep[kChunk];
      for (std::size_t c = c0; c < c1; ++c) {
        const std::size_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
        keep_values(key, first + i0, keep, len);
        for (std::size_t i = 0; i < len; ++i) {
          out[i0 + i] = in[i0 + i] * keep[i] * inv_keep_;
        }
      }
    });
  });
  if (ctx.mode == nn::Mode::kTrain) x_ = &x;
}

void ConcreteDropout::backward(const Tensor& dy, Tensor& dx) {
  const Draw& d = saved_draw(dy);  // std::logic_error without a Train forward
  const Tensor& x = *x_;
  const auto rows = static_cast<std::size_t>(d.shape[0]);
  const std::size_t per = features_;
  const bool write_dx = needs_input_grad();
  if (write_dx && &dx != &dy) dx.resize(d.shape);
  const float p = p_, k = static_cast<float>(k_);
  // dtheta: each row's terms added in order (in double), the rows of a leaf in order, the leaves
  // (in float) up the leaf tree (kernels/leaves.h): the same bits for any thread count or split of
  // the batch between processes.
  std::vector<double> row_sum(rows);
  parallel::parallel_for(*d.pool, rows, std::max<std::size_t>(1, kChunk / per),
                         [&](std::size_t r0, std::size_t r1) {
                           float keep[kChunk];
                           for (std::size_t r = r0; r < r1; ++r) {
                             double sum = 0;
                             for (std::size_t j0 = 0; j0 < per; j0 += kChunk) {
                               const std::size_t len = std::min(kChunk, per - j0);
                               const std::size_t at = r * per + j0;
                               keep_values(d.key, d.first + at, keep, len);
                               for (std::size_t i = 0; i < len; ++i) {
                                 const float g = dy[at + i];
                                 const float y = x[at + i] * keep[i] * inv_keep_;
                                 sum += static_cast<double>(g * y * (p - k * (1.0f - keep[i])));
                                 if (write_dx) dx[at + i] = g * keep[i] * inv_keep_;
                               }
                             }
                             row_sum[r] = sum;
                           }
                         });
  // A leaf's sum is rounded to float, and the tree adds floats, as a data-parallel run adds
  // the processes' nodes (train/distributed.h).
  float total = 0;
  kernels::sum_leaves<float>(rows, 1, &total, [&](std::size_t r0, std::size_t r1, float* into) {
    double s = 0;
    for (std::size_t r = r0; r < r1; ++r) s += row_sum[r];
    *into = static_cast<float>(s);
  });
  if (dlogit_ != nullptr) *dlogit_ += total;  // unbound (functional use): dx alone
}

nn::LayerKind ConcreteDropout::registration() {
  using T = Option::Type;
  Option rate = drop_prob_option();
  rate.default_value = 0.1;
  rate.min = kMinRate;
  rate.max = kMaxRate;
  rate.help = "the initial drop rate; training learns it (its logit is a parameter)";
  return {
      .kind = kKind,
      .summary = "dropout whose rate is learned: a relaxed Bernoulli mask (Gal et al. 2017)",
      .options = {rate,
                  {.name = "temperature",
                   .type = T::kReal,
                   .default_value = kDefaultTemperature,
                   .help = "of the relaxed mask: 1/k for an integer k (0.1, 0.2, 0.25, 0.5, 1)",
                   .min = 0.01,
                   .max = 1},
                  {.name = "length_scale",
                   .type = T::kReal,
                   .default_value = kDefaultLengthScale,
                   .help = "l of the weight term l^2/N ||W||^2/(1-p) on the next layer's weights",
                   .min = 0,
                   .max = kMaxLengthScale}},
      .positional = {"drop_prob"},
      .create = [](const nlohmann::json& c, const Shape& input,
                   std::size_t index) -> std::unique_ptr<nn::Layer> {
        if (input.rank() < 2) {
          throw std::invalid_argument("concrete_dropout needs inputs with an example axis");
        }
        return std::make_unique<ConcreteDropout>(
            static_cast<std::size_t>(input.row_size()), c.at("drop_prob").get<double>(),
            c.at("temperature").get<double>(), c.at("length_scale").get<double>(),
            layer_stream(index));
      },
  };
}

}  // namespace dropkit::dropout
