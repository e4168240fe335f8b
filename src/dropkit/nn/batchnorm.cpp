#include "dropkit/nn/batchnorm.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace dropkit::nn {
namespace {

// [N, C, S...] as N blocks of C runs of S values.
struct Layout {
  std::size_t n, c, s;
};
Layout layout_of(const Shape& shape) {
  return {static_cast<std::size_t>(shape[0]), static_cast<std::size_t>(shape[1]),
          shape.row_size() / static_cast<std::size_t>(shape[1])};
}

// The sum of term(k) over channel c's elements k = (i C + c) S + j, in double, in an order fixed
// by the layout alone (never by the thread split). One value per example and channel ([N, D]):
// sequentially over the examples. Runs of S > 1 ([N, C, H, W]): eight partial sums by position
// (j mod 8 within each run), added pairwise at the end -- one running double sum would wait
// 4 cycles for every add, and the statistics of a 28 x 28 feature map were a fifth of a CNN
// step that way.
template <class Term>
double channel_sum(const Layout& l, std::size_t c, Term&& term) {
  if (l.s == 1) {
    double sum = 0;
    for (std::size_t i = 0; i < l.n; ++i) sum += term(i * l.c + c);
    return sum;
  }
  double p[8] = {};
  for (std::size_t i = 0; i < l.n; ++i) {
    const std::size_t base = (i * l.c + c) * l.s;
    std::size_t j = 0;
    for (; j + 8 <= l.s; j += 8) {
      for (std::size_t q = 0; q < 8; ++q) p[q] += term(base + j + q);
    }
    for (std::size_t q = 0; j < l.s; ++j, ++q) p[q] += term(base + j);
  }
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

}  // namespace

BatchNorm::BatchNorm(std::int64_t channels, double momentum, double eps)
    : channels_(channels), momentum_(momentum), eps_(eps) {
  if (channels < 1) throw std::invalid_argument("batchnorm: needs at least one channel");
  if (!(momentum >= 0.0 && momentum <= 1.0)) {
    throw std::invalid_argument(
        fmt::format("batchnorm: momentum = {} is outside the valid range [0, 1]", momentum));
  }
  if (!(eps > 0.0 && std::isfinite(eps))) {
    throw std::invalid_argument(
        fmt::format("batchnorm: eps = {} is outside the valid range (0, inf)", eps));
  }
}

nlohmann::json BatchNorm::config() const {
  return {{"momentum", momentum_}, {"eps", eps_}};
}

Shape BatchNorm::output_shape(const Shape& in) const {
  if (in.rank() < 2 || in[1] != channels_) {
    throw std::invalid_argument(
        fmt::format("{}: input {} is not [examples, {}, ...] (statistics per channel, axis 1)",
                    name(), in.str(), channels_));
  }
  return in;
}

std::vector<ParamSpec> BatchNorm::param_specs() const {
  const Shape c{channels_};
  return {{"weight", c, ParamRole::kTrainable, kNoFlags},
          {"bias", c, ParamRole::kTrainable, kNoFlags},
          {"running_mean", c, ParamRole::kBuffer, kNoFlags},
          {"running_var", c, ParamRole::kBuffer, kNoFlags}};
}

void BatchNorm::bind_params(std::vector<float*> values, std::vector<float*> grads) {
  gamma_ = values.at(0);
  beta_ = values.at(1);
  mean_ = values.at(2);
  var_ = values.at(3);
  dgamma_ = grads.at(0);
  dbeta_ = grads.at(1);
}

void BatchNorm::init_params(std::uint64_t, std::uint32_t) {
  const auto c = static_cast<std::size_t>(channels_);
  std::fill(gamma_, gamma_ + c, 1.0f);
  std::fill(beta_, beta_ + c, 0.0f);
  std::fill(mean_, mean_ + c, 0.0f);
  std::fill(var_, var_ + c, 1.0f);
}

void BatchNorm::forward(const Tensor& x, Tensor& y, const Context& ctx) {
  x_ = nullptr;  // until a Train forward has finished
  if (&y == &x && ctx.mode == Mode::kTrain) {
    throw std::invalid_argument(name() + ": cannot train in place (backward needs the input)");
  }
  if (&y != &x) y.resize(output_shape(x.shape()));
  const Layout l = layout_of(x.shape());
  const std::size_t m = l.n * l.s;
  const bool recalibrate = ctx.mode == Mode::kEval && ctx.recalibrate;
  const bool train = ctx.mode == Mode::kTrain || recalibrate;
  // The weight of this batch in the running statistics: the cumulative average when
  // recalibrating.
  const double momentum =
      recalibrate ? 1.0 / static_cast<double>(++recalibrated_batches_) : momentum_;
  if (train && m < 2) {
    throw std::invalid_argument(
        fmt::format("{}: training needs at least 2 values per channel, input {} has {}", name(),
                    x.shape().str(), m));
  }
  auto& pool = ctx.threads();
  batch_mean_.resize(l.c);
  inv_std_.resize(l.c);
  const float* xs = x.data();
  float* ys = y.data();
  parallel::parallel_for(pool, l.c, 1, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t c = c0; c < c1; ++c) {
      double mean, var;
      if (train) {
        mean = channel_sum(l, c, [&](std::size_t k) { return double{xs[k]}; }) /
               static_cast<double>(m);
        const double sq = channel_sum(l, c, [&](std::size_t k) {
          const double d = xs[k] - mean;
          return d * d;
        });
        var = sq / static_cast<double>(m);
        mean_[c] = static_cast<float>((1 - momentum) * mean_[c] + momentum * mean);
        var_[c] =
            static_cast<float>((1 - momentum) * var_[c] + momentum * var * static_cast<double>(m) /
                                                              static_cast<double>(m - 1));
      } else {
        mean = mean_[c];
        var = var_[c];
      }
      const double inv = 1.0 / std::sqrt(var + eps_);
      batch_mean_[c] = static_cast<float>(mean);
      inv_std_[c] = static_cast<float>(inv);
      const auto scale = static_cast<float>(gamma_[c] * inv);
      const auto shift = static_cast<float>(beta_[c] - gamma_[c] * inv * mean);
      for (std::size_t i = 0; i < l.n; ++i) {
        const float* xr = xs + (i * l.c + c) * l.s;
        float* yr = ys + (i * l.c + c) * l.s;
        for (std::size_t j = 0; j < l.s; ++j) yr[j] = xr[j] * scale + shift;
      }
    }
  });
  if (ctx.mode == Mode::kTrain) {
    x_ = &x;
    shape_ = x.shape();
    pool_ = &pool;
  }
}

void BatchNorm::backward(const Tensor& dy, Tensor& dx) {
  check_backward(*this, x_ ? &shape_ : nullptr, dy.shape());
  if (&dx == &dy) throw std::invalid_argument(name() + ": cannot run backward in place");
  const Layout l = layout_of(shape_);
  const double m = static_cast<double>(l.n * l.s);
  if (needs_input_grad_) dx.resize(shape_);
  const float* xs = x_->data();
  const float* g = dy.data();
  parallel::parallel_for(*pool_, l.c, 1, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t c = c0; c < c1; ++c) {
      const double mean = batch_mean_[c], inv = inv_std_[c];
      const double sum_dy = channel_sum(l, c, [&](std::size_t k) { return double{g[k]}; });
      const double sum_dy_xhat =
          channel_sum(l, c, [&](std::size_t k) { return g[k] * (xs[k] - mean) * inv; });
      dgamma_[c] += static_cast<float>(sum_dy_xhat);
      dbeta_[c] += static_cast<float>(sum_dy);
      if (!needs_input_grad_) continue;
      const double k1 = gamma_[c] * inv / m;
      for (std::size_t i = 0; i < l.n; ++i) {
        for (std::size_t j = 0; j < l.s; ++j) {
          const std::size_t k = (i * l.c + c) * l.s + j;
          const double xhat = (xs[k] - mean) * inv;
          dx[k] = static_cast<float>(k1 * (m * g[k] - sum_dy - xhat * sum_dy_xhat));
        }
      }
    }
  });
}

}  // namespace dropkit::nn
