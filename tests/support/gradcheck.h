// One finite-difference gradient checker for every layer (dlib's test_layer, STYLE habit 12).
//
// The scalar checked is L = sum_i y_i * r_i for a fixed random r, so dL/dy = r. backward(r)
// must give dL/dx and (accumulated into zeroed buffers) dL/dparams; each is compared with the
// central difference (L(v + h) - L(v - h)) / 2h, L summed in double. Stochastic layers are
// fixed by their seed: the same Context draws the same mask on every evaluation.
// Tolerance: |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|), sized for
// float32 forward passes with h = 1e-2 on O(1) values.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "dropkit/kernels/table.h"
#include "dropkit/nn/layer.h"
#include "dropkit/nn/params.h"

namespace dropkit::test {

struct GradCheckOptions {
  double h = 1e-2;
  double atol = 2e-3;
  double rtol = 2e-2;
  std::size_t max_checks = 200;  // elements of x and of each parameter probed (evenly spaced)
};

inline double weighted_sum(const Tensor& y, const Tensor& r) {
  double s = 0;
  for (std::size_t i = 0; i < y.numel(); ++i) s += static_cast<double>(y[i]) * r[i];
  return s;
}

// Checks dx and every parameter gradient of `layer` at input x.
inline ::testing::AssertionResult check_gradients(nn::Layer& layer, Tensor x,
                                                  const nn::Context& ctx, GradCheckOptions o = {}) {
  nn::ParamArena arena({&layer});
  layer.init_params(ctx.seed, 77);
  Tensor y;
  layer.forward(x, y, ctx);
  Tensor r(y.shape());
  kernels::active_kernels().fill_normal({ctx.seed + 1, 5, 5}, 0, r.data(), r.numel());
  arena.zero_grads();
  Tensor dx;
  layer.backward(r, dx);
  const std::vector<float> grads(arena.grads().begin(), arena.grads().end());

  auto loss = [&] {
    Tensor yy;
    layer.forward(x, yy, ctx);
    return weighted_sum(yy, r);
  };
  auto probe = [&](float* v, std::size_t n, auto analytic,
                   const std::string& what) -> ::testing::AssertionResult {
    const std::size_t stride = std::max<std::size_t>(1, n / o.max_checks);
    for (std::size_t i = 0; i < n; i += stride) {
      const float saved = v[i];
      v[i] = static_cast<float>(saved + o.h);
      const double lp = loss();
      v[i] = static_cast<float>(saved - o.h);
      const double lm = loss();
      v[i] = saved;
      const double numeric = (lp - lm) / (2 * o.h);
      const double a = analytic(i);
      if (std::fabs(a - numeric) > o.atol + o.rtol * std::max(std::fabs(a), std::fabs(numeric))) {
        return ::testing::AssertionFailure() << layer.name() << ": d/d" << what << "[" << i
                                             << "] analytic " << a << " numeric " << numeric;
      }
    }
    return ::testing::AssertionSuccess();
  };
  if (layer.needs_input_grad()) {
    auto res = probe(
        x.data(), x.numel(), [&](std::size_t i) { return dx[i]; }, "x");
    if (!res) return res;
  }
  for (const auto& e : arena.entries()) {
    auto res = probe(
        arena.values().data() + e.offset, e.numel(),
        [&](std::size_t i) { return grads[e.offset + i]; }, e.name);
    if (!res) return res;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace dropkit::test
