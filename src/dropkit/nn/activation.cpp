#include "dropkit/nn/activation.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/core/options.h"
#include "dropkit/kernels/table.h"

namespace dropkit::nn {

std::string_view activation_name(Activation a) {
  switch (a) {
    case Activation::kIdentity:
      return "identity";
    case Activation::kReLU:
      return "relu";
    case Activation::kSigmoid:
      return "sigmoid";
    case Activation::kTanh:
      return "tanh";
    case Activation::kSELU:
      return "selu";
  }
  return "?";
}

namespace {
constexpr Activation kAll[] = {Activation::kIdentity, Activation::kReLU, Activation::kSigmoid,
                               Activation::kTanh, Activation::kSELU};
}  // namespace

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (auto a : kAll) n.emplace_back(activation_name(a));
    return n;
  }();
  return names;
}

Activation parse_activation(std::string_view name) {
  for (auto a : kAll)
    if (activation_name(a) == name) return a;
  throw std::invalid_argument(
      fmt::format("unknown activation '{}' (valid: {})", name, join(activation_names())));
}

void activation_forward(Activation f, const float* z, float* a, std::size_t n) {
  constexpr float l = static_cast<float>(kSeluLambda);
  constexpr float la = static_cast<float>(kSeluLambda * kSeluAlpha);
  switch (f) {
    case Activation::kIdentity:
      if (a != z) std::copy(z, z + n, a);
      return;
    case Activation::kReLU:
      for (std::size_t i = 0; i < n; ++i) a[i] = z[i] > 0.0f ? z[i] : 0.0f;
      return;
    case Activation::kSigmoid:
      for (std::size_t i = 0; i < n; ++i) {
        const float e = std::exp(-std::fabs(z[i]));  // never overflows
        a[i] = z[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
      }
      return;
    case Activation::kTanh:
      for (std::size_t i = 0; i < n; ++i) a[i] = std::tanh(z[i]);
      return;
    case Activation::kSELU:
      for (std::size_t i = 0; i < n; ++i) a[i] = z[i] > 0.0f ? l * z[i] : la * std::expm1(z[i]);
      return;
  }
}

void activation_backward(Activation f, const float* a, const float* da, float* dz, std::size_t n) {
  constexpr float l = static_cast<float>(kSeluLambda);
  constexpr float la = static_cast<float>(kSeluLambda * kSeluAlpha);
  switch (f) {
    case Activation::kIdentity:
      if (dz != da) std::copy(da, da + n, dz);
      return;
    case Activation::kReLU:
      // Load da[i] unconditionally: a load under the condition blocks if-conversion, and a
      // branch on a ReLU pattern is a coin flip for the predictor.
      for (std::size_t i = 0; i < n; ++i) {
        const float d = da[i];
        dz[i] = a[i] > 0.0f ? d : 0.0f;
      }
      return;
    case Activation::kSigmoid:
      for (std::size_t i = 0; i < n; ++i) dz[i] = da[i] * (a[i] * (1.0f - a[i]));
      return;
    case Activation::kTanh:
      for (std::size_t i = 0; i < n; ++i) dz[i] = da[i] * (1.0f - a[i] * a[i]);
      return;
    case Activation::kSELU:
      for (std::size_t i = 0; i < n; ++i) {
        const float ai = a[i];
        dz[i] = da[i] * (ai > 0.0f ? l : ai + la);
      }
      return;
  }
}

namespace {

// Element-wise work over n values, split over the pool in runs of kElementGrain: up to one run
// stays on the calling thread (not worth waking the pool for). An element-wise function gives
// the same bits for any split.
constexpr std::size_t kElementGrain = 4096;

template <class Fn>
void for_elements(parallel::ThreadPool& pool, std::size_t n, Fn&& fn) {
  parallel::parallel_for(pool, n, kElementGrain,
                         [&](std::size_t b, std::size_t e) { fn(b, e - b); });
}

}  // namespace

void activation_forward(parallel::ThreadPool& pool, Activation f, const float* z, float* a,
                        std::size_t n) {
  for_elements(pool, n,
               [&](std::size_t b, std::size_t len) { activation_forward(f, z + b, a + b, len); });
}

void activation_backward(parallel::ThreadPool& pool, Activation f, const float* a, const float* da,
                         float* dz, std::size_t n) {
  for_elements(pool, n, [&](std::size_t b, std::size_t len) {
    activation_backward(f, a + b, da + b, dz + b, len);
  });
}

const float* activation_grad(parallel::ThreadPool& pool, Activation f, const Tensor& a,
                             const Tensor& dy, Tensor& dz) {
  if (f == Activation::kIdentity) return dy.data();
  dz.resize(dy.shape());
  activation_backward(pool, f, a.data(), dy.data(), dz.data(), dy.numel());
  return dz.data();
}

void init_weights(Activation f, std::int64_t fan_in, std::int64_t fan_out,
                  const rng::StreamKey& key, float* w, std::size_t n) {
  const auto& k = kernels::active_kernels();
  if (f == Activation::kSigmoid || f == Activation::kTanh) {
    const float a = static_cast<float>(std::sqrt(6.0 / static_cast<double>(fan_in + fan_out)));
    k.fill_uniform(key, 0, w, n);
    for (std::size_t i = 0; i < n; ++i) w[i] = (2.0f * w[i] - 1.0f) * a;
  } else {
    const double gain = f == Activation::kReLU ? 2.0 : 1.0;
    const float sd = static_cast<float>(std::sqrt(gain / static_cast<double>(fan_in)));
    k.fill_normal(key, 0, w, n);
    for (std::size_t i = 0; i < n; ++i) w[i] *= sd;
  }
}

void ActivationLayer::forward(const Tensor& x, Tensor& y, const Context& ctx) {
  if (&y != &x) y.resize(x.shape());
  pool_ = &ctx.threads();
  activation_forward(*pool_, f_, x.data(), y.data(), x.numel());
  y_ = ctx.mode == Mode::kTrain ? &y : nullptr;
}

void ActivationLayer::backward(const Tensor& dy, Tensor& dx) {
  check_backward(*this, y_ ? &y_->shape() : nullptr, dy.shape());
  if (&dx != &dy) dx.resize(dy.shape());
  activation_backward(*pool_, f_, y_->data(), dy.data(), dx.data(), dy.numel());
}

Option activation_option() {
  return {.name = "activation",
          .type = Option::Type::kString,
          .default_value = "identity",
          .help = "activation fused into the layer",
          .choices = activation_names()};
}

LayerKind ActivationLayer::registration() {
  return {
      .kind = kKind,
      .summary = "element-wise activation; the text form is the function's name (relu, tanh, ...)",
      .options = {{.name = "function",
                   .type = Option::Type::kString,
                   .default_value = nullptr,
                   .help = "the function",
                   .choices = activation_names()}},
      .positional = {"function"},
      .create = [](const nlohmann::json& c, const Shape&, std::size_t) -> std::unique_ptr<Layer> {
        return std::make_unique<ActivationLayer>(
            parse_activation(c.at("function").get<std::string>()));
      },
  };
}

}  // namespace dropkit::nn
