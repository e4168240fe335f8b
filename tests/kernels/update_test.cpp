// The optimizer kernels of every supported ISA against the scalar instantiation, bit for bit:
// training results must not depend on the machine's vector width.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "dropkit/kernels/table.h"

namespace dropkit::kernels {
namespace {

std::vector<float> values(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  kernel_table(Isa::kScalar).fill_normal({seed, 1, 1}, 0, v.data(), n);
  return v;
}

TEST(UpdateKernels, EveryIsaMatchesScalarBitForBit) {
  const auto& ref = kernel_table(Isa::kScalar);
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (!isa_supported(isa)) continue;
    const auto& k = kernel_table(isa);
    for (std::size_t n : {0, 1, 7, 8, 9, 63, 1000, 1027}) {
      for (bool nesterov : {false, true}) {
        auto w1 = values(n, 1), g1 = values(n, 2), v1 = values(n, 3);
        auto w2 = w1, g2 = g1, v2 = v1;
        const SgdUpdate p{0.9f, 0.01f, 1e-4f, nesterov};
        const double norm1 = ref.sgd_update(w1.data(), g1.data(), v1.data(), n, p);
        const double norm2 = k.sgd_update(w2.data(), g2.data(), v2.data(), n, p);
        EXPECT_EQ(w1, w2) << k.name << " n " << n;
        EXPECT_EQ(v1, v2);
        EXPECT_EQ(norm1, norm2);
        EXPECT_EQ(g2, values(n, 2));  // only read
      }
      auto w1 = values(n, 4), g1 = values(n, 5), m1 = values(n, 6), v1 = values(n, 7);
      for (auto& x : v1) x *= x;  // a second moment is non-negative
      auto w2 = w1, g2 = g1, m2 = m1, v2 = v1;
      const AdamUpdate a{1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.001f, 0.0f};
      const double norm1 = ref.adam_update(w1.data(), g1.data(), m1.data(), v1.data(), n, a);
      const double norm2 = k.adam_update(w2.data(), g2.data(), m2.data(), v2.data(), n, a);
      EXPECT_EQ(w1, w2) << k.name << " n " << n;
      EXPECT_EQ(m1, m2);
      EXPECT_EQ(v1, v2);
      EXPECT_EQ(norm1, norm2);
      const auto x = values(n, 8);
      EXPECT_EQ(ref.squared_norm(x.data(), n), k.squared_norm(x.data(), n)) << k.name;
    }
  }
}

// squared_norm's definition, written out: fma into float lane i % 32, then the lanes in order in
// double.
double plain_norm(const std::vector<float>& w) {
  float lane[32] = {};
  for (std::size_t i = 0; i < w.size(); ++i) lane[i % 32] = std::fma(w[i], w[i], lane[i % 32]);
  double sum = 0;
  for (float l : lane) sum += l;
  return sum;
}

// Each ISA's kernels against the formulas of kernels/table.h written out one element at a time
// (this file is compiled with -ffp-contract=off too), over a length with whole vector blocks and
// a tail: a vectorization that reorders or fuses an operation fails here.
TEST(UpdateKernels, EveryIsaComputesThePlainFormula) {
  const std::size_t n = 1027;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!isa_supported(isa)) continue;
    const auto& k = kernel_table(isa);
    for (int variant = 0; variant < 4; ++variant) {
      const bool nesterov = variant % 2 == 1;
      auto w = values(n, 11), g = values(n, 12), v = values(n, 13);
      auto we = w, ve = v;
      const SgdUpdate p{0.9f, 0.01f, variant < 2 ? 1e-4f : 0.0f, nesterov};
      for (std::size_t i = 0; i < n; ++i) {
        const float gi = p.decay != 0.0f ? g[i] + p.decay * we[i] : g[i];
        ve[i] = p.momentum * ve[i] - p.step * gi;
        we[i] += nesterov ? p.momentum * ve[i] - p.step * gi : ve[i];
      }
      const double norm = k.sgd_update(w.data(), g.data(), v.data(), n, p);
      EXPECT_EQ(w, we) << k.name;
      EXPECT_EQ(v, ve) << k.name;
      EXPECT_EQ(norm, plain_norm(we)) << k.name;
      EXPECT_EQ(k.squared_norm(we.data(), n), plain_norm(we)) << k.name;
    }
    for (float decay : {1e-4f, 0.0f}) {
      auto w = values(n, 14), g = values(n, 15), m = values(n, 16), v = values(n, 17);
      for (auto& x : v) x *= x;
      auto we = w, me = m, ve = v;
      const AdamUpdate a{1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.001f, decay};
      for (std::size_t i = 0; i < n; ++i) {
        const float gi = decay != 0.0f ? g[i] + a.decay * we[i] : g[i];
        me[i] = a.beta1 * me[i] + (1.0f - a.beta1) * gi;
        ve[i] = a.beta2 * ve[i] + (1.0f - a.beta2) * gi * gi;
        we[i] -= a.lr * (me[i] / a.correction1) / (std::sqrt(ve[i] / a.correction2) + a.eps);
      }
      const double norm = k.adam_update(w.data(), g.data(), m.data(), v.data(), n, a);
      EXPECT_EQ(w, we) << k.name;
      EXPECT_EQ(m, me) << k.name;
      EXPECT_EQ(v, ve) << k.name;
      EXPECT_EQ(norm, plain_norm(we)) << k.name;
    }
  }
}

TEST(UpdateKernels, SgdStepValues) {
  const auto& k = active_kernels();
  float w = 1.0f, g = 2.0f, v = 0.5f;
  k.sgd_update(&w, &g, &v, 1, {0.5f, 0.25f, 0.0f, false});
  EXPECT_FLOAT_EQ(v, 0.5f * 0.5f - 0.25f * 2.0f);
  EXPECT_FLOAT_EQ(w, 1.0f + v);
  const float x[] = {3, 4, 0, 0, 0, 0, 0, 0, 12};
  EXPECT_DOUBLE_EQ(k.squared_norm(x, 9), 169.0);
}

}  // namespace
}  // namespace dropkit::kernels
