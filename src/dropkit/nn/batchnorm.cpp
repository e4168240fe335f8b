#include "dropkit/nn/batchnorm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/kernels/leaves.h"

namespace dropkit::nn {
namespace {

struct Runs {
  std::size_t n, stride, s;  // n runs of s values, run i at offset i * stride
};

// [N, C, S...] as N blocks of C runs of S values; channel c's values are runs() from c * s.
struct Layout {
  std::size_t n, c, s;
  Runs runs() const { return {n, c * s, s}; }
};
Layout layout_of(const Shape& shape) {
  return {static_cast<std::size_t>(shape[0]), static_cast<std::size_t>(shape[1]),
          shape.row_size() / static_cast<std::size_t>(shape[1])};
}

// Every per-channel sum is taken in double, in an order fixed by the layout alone (never by the
// thread split): channel c's elements are n runs of s values, run i at x + i * stride; value j
// of a run goes to partial sum j mod 8, and the eight partials are added pairwise at the end.
// With s = 1 ([N, D]) that is one sequential sum (the other partials stay +0, and adding +0
// changes nothing: a partial that starts at +0 never becomes -0). One running double sum would
// wait 4 cycles for every add; the statistics of a 28 x 28 feature map were a fifth of a CNN
// step that way.
//
// The kernels below are written on GCC vector types, one lane per partial sum, and compiled for
// AVX-512, AVX2 and the baseline (target_clones). Each lane performs exactly the scalar
// definition's IEEE operations in the same order (no contraction: -ffp-contract=off), so every
// clone gives the same bits.
using V8d = double __attribute__((vector_size(64)));
using V8f = float __attribute__((vector_size(32)));

// Eight floats widened (into an out-parameter: a 64-byte vector returned by value has another
// ABI with and without AVX-512, which clang refuses in a function compiled for both).
[[gnu::always_inline]] inline void load8(const float* p, V8d& out) {
  V8f v;
  std::memcpy(&v, p, sizeof v);
  out = __builtin_convertvector(v, V8d);
}

[[gnu::always_inline]] inline double total(const V8d& p) {
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// Sum of x.
[[gnu::target_clones("avx512f", "avx2", "default")]] double sum_of(const float* x, Runs r) {
  V8d p = {};
  for (std::size_t i = 0; i < r.n; ++i) {
    const float* xr = x + i * r.stride;
    std::size_t j = 0;
    for (; j + 8 <= r.s; j += 8) {
      V8d v;
      load8(xr + j, v);
      p += v;
    }
    for (std::size_t q = 0; j < r.s; ++j, ++q) p[q] += double{xr[j]};
  }
  return total(p);
}

// Sum of (x - mean)^2.
[[gnu::target_clones("avx512f", "avx2", "default")]] double squared_deviations(const float* x,
                                                                               Runs r,
                                                                               double mean) {
  V8d p = {};
  const V8d mv = V8d{} + mean;
  for (std::size_t i = 0; i < r.n; ++i) {
    const float* xr = x + i * r.stride;
    std::size_t j = 0;
    for (; j + 8 <= r.s; j += 8) {
      V8d d;
      load8(xr + j, d);
      d -= mv;
      p += d * d;
    }
    for (std::size_t q = 0; j < r.s; ++j, ++q) {
      const double d = xr[j] - mean;
      p[q] += d * d;
    }
  }
  return total(p);
}

// Backward's two sums in one pass: sum of g, and of g xhat = g (x - mean) inv.
struct GradSums {
  double dy, dy_xhat;
};
[[gnu::target_clones("avx512f", "avx2", "default")]] GradSums grad_sums(const float* g,
                                                                        const float* x, Runs r,
                                                                        double mean, double inv) {
  V8d p = {}, p2 = {};
  const V8d mv = V8d{} + mean, iv = V8d{} + inv;
  for (std::size_t i = 0; i < r.n; ++i) {
    const float* gr = g + i * r.stride;
    const float* xr = x + i * r.stride;
    std::size_t j = 0;
    for (; j + 8 <= r.s; j += 8) {
      V8d gv, xv;
      load8(gr + j, gv);
      load8(xr + j, xv);
      p += gv;
      p2 += gv * (xv - mv) * iv;
    }
    for (std::size_t q = 0; j < r.s; ++j, ++q) {
      p[q] += double{gr[j]};
      p2[q] += gr[j] * (xr[j] - mean) * inv;
    }
  }
  return {total(p), total(p2)};
}

// y = x scale + shift.
[[gnu::target_clones("avx512f", "avx2", "default")]] void affine(const float* x, float* y, Runs r,
                                                                 float scale, float shift) {
  for (std::size_t i = 0; i < r.n; ++i) {
    const float* xr = x + i * r.stride;
    float* yr = y + i * r.stride;
    for (std::size_t j = 0; j < r.s; ++j) yr[j] = xr[j] * scale + shift;
  }
}

// dx = k1 (m g - sum_dy - xhat sum_dy_xhat), xhat = (x - mean) inv, in double.
struct DxTerms {
  double mean, inv, k1, m, sum_dy, sum_dy_xhat;
};
[[gnu::target_clones("avx512f", "avx2", "default")]] void input_grad(const float* g, const float* x,
                                                                     float* dx, Runs r, DxTerms t) {
  const V8d mv = V8d{} + t.mean, iv = V8d{} + t.inv, k1 = V8d{} + t.k1, m = V8d{} + t.m,
            sd = V8d{} + t.sum_dy, sdx = V8d{} + t.sum_dy_xhat;
  for (std::size_t i = 0; i < r.n; ++i) {
    const float* gr = g + i * r.stride;
    const float* xr = x + i * r.stride;
    float* dr = dx + i * r.stride;
    std::size_t j = 0;
    for (; j + 8 <= r.s; j += 8) {
      V8d xv, gv;
      load8(xr + j, xv);
      load8(gr + j, gv);
      const V8d xhat = (xv - mv) * iv;
      const V8f d = __builtin_convertvector(k1 * (m * gv - sd - xhat * sdx), V8f);
      std::memcpy(dr + j, &d, sizeof d);
    }
    for (; j < r.s; ++j) {
      const double xhat = (xr[j] - t.mean) * t.inv;
      dr[j] = static_cast<float>(t.k1 * (t.m * gr[j] - t.sum_dy - xhat * t.sum_dy_xhat));
    }
  }
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
  return {{"weight", c, ParamRole::kTrainable, kSummedOverBatch},
          {"bias", c, ParamRole::kTrainable, kSummedOverBatch},
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
  const bool recalibrate = ctx.mode == Mode::kEval && ctx.recalibrate;
  const bool train = ctx.mode == Mode::kTrain || recalibrate;
  // Values per channel in the whole batch (a data-parallel process holds only some of them).
  const std::size_t m = (train ? ctx.batch_rows(l.n) : l.n) * l.s;
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
  const Runs runs = l.runs();
  if (train) {
    // The statistics over the whole batch: each channel's sums leaf by leaf, up the leaf tree
    // (kernels/leaves.h), then across processes; the deviations from the mean the same way.
    const auto per_channel = [&](std::vector<double>& out, auto&& sum) {
      out.resize(l.c);
      parallel::parallel_for(pool, l.c, 1, [&](std::size_t c0, std::size_t c1) {
        for (std::size_t c = c0; c < c1; ++c) {
          kernels::sum_leaves<double>(
              l.n, 1, &out[c], [&](std::size_t r0, std::size_t r1, double* into) {
                *into = sum(xs + c * l.s + r0 * runs.stride, Runs{r1 - r0, runs.stride, runs.s}, c);
              });
        }
      });
      ctx.sum_over_batch(out);
    };
    per_channel(sums_, [](const float* xc, Runs r, std::size_t) { return sum_of(xc, r); });
    for (double& v : sums_) v /= static_cast<double>(m);  // the means
    per_channel(squares_, [&](const float* xc, Runs r, std::size_t c) {
      return squared_deviations(xc, r, sums_[c]);
    });
  }
  parallel::parallel_for(pool, l.c, 1, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t c = c0; c < c1; ++c) {
      double mean, var;
      if (train) {
        mean = sums_[c];
        var = squares_[c] / static_cast<double>(m);
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
      affine(xs + c * l.s, ys + c * l.s, runs, scale, shift);
    }
  });
  if (ctx.mode == Mode::kTrain) {
    x_ = &x;
    shape_ = x.shape();
    pool_ = &pool;
    peers_ = ctx.peers;
    values_ = m;
  }
}

void BatchNorm::backward(const Tensor& dy, Tensor& dx) {
  check_backward(*this, x_ ? &shape_ : nullptr, dy.shape());
  if (&dx == &dy) throw std::invalid_argument(name() + ": cannot run backward in place");
  const Layout l = layout_of(shape_);
  const auto m = static_cast<double>(values_);
  if (needs_input_grad_) dx.resize(shape_);
  const float* xs = x_->data();
  const float* g = dy.data();
  const Runs runs = l.runs();
  // sum dy and sum dy x_hat per channel over the whole batch, as forward's statistics.
  sums_.resize(2 * l.c);
  parallel::parallel_for(*pool_, l.c, 1, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t c = c0; c < c1; ++c) {
      const double mean = batch_mean_[c], inv = inv_std_[c];
      const std::size_t at = c * l.s;
      kernels::sum_leaves<
          double>(l.n, 2, &sums_[2 * c], [&](std::size_t r0, std::size_t r1, double* into) {
        const std::size_t o = at + r0 * runs.stride;
        const GradSums s = grad_sums(g + o, xs + o, Runs{r1 - r0, runs.stride, runs.s}, mean, inv);
        into[0] = s.dy;
        into[1] = s.dy_xhat;
      });
    }
  });
  if (peers_) peers_->sum(sums_);
  parallel::parallel_for(*pool_, l.c, 1, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t c = c0; c < c1; ++c) {
      const double mean = batch_mean_[c], inv = inv_std_[c];
      const double sum_dy = sums_[2 * c], sum_dy_xhat = sums_[2 * c + 1];
      dgamma_[c] += static_cast<float>(sum_dy_xhat);
      dbeta_[c] += static_cast<float>(sum_dy);
      if (!needs_input_grad_) continue;
      input_grad(g + c * l.s, xs + c * l.s, dx.data() + c * l.s, runs,
                 {mean, inv, gamma_[c] * inv / m, m, sum_dy, sum_dy_xhat});
    }
  });
}

std::size_t BatchNorm::min_train_batch(const Shape& in) const {
  return in.row_size() == static_cast<std::size_t>(in[1]) ? 2 : 1;
}

LayerKind BatchNorm::registration() {
  return {
      .kind = kKind,
      .summary =
          "batch normalization per channel (axis 1); eval and Monte-Carlo sampling use the "
          "running statistics",
      .options = {{.name = "momentum",
                   .type = Option::Type::kReal,
                   .default_value = BatchNorm::kDefaultMomentum,
                   .help = "weight of a new batch in the running statistics (PyTorch's)",
                   .min = 0,
                   .max = 1},
                  {.name = "eps",
                   .type = Option::Type::kReal,
                   .default_value = BatchNorm::kDefaultEps,
                   .help = "added to the variance",
                   .min = 0,
                   .max = 1,
                   .min_open = true}},
      .positional = {"momentum", "eps"},
      .create = [](const nlohmann::json& c, const Shape& in,
                   std::size_t) -> std::unique_ptr<Layer> {
        if (in.rank() < 2) {
          throw std::invalid_argument("batchnorm: input " + in.str() +
                                      " has no channel axis (axis 1)");
        }
        return std::make_unique<BatchNorm>(in[1], c.at("momentum").get<double>(),
                                           c.at("eps").get<double>());
      },
  };
}

}  // namespace dropkit::nn
