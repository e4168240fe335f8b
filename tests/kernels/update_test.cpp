// The optimizer kernels of every supported ISA against the scalar instantiation, bit for bit:
// training results must not depend on the machine's vector width.
#include <gtest/gtest.h>

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
        ref.sgd_update(w1.data(), g1.data(), v1.data(), n, p);
        k.sgd_update(w2.data(), g2.data(), v2.data(), n, p);
        EXPECT_EQ(w1, w2) << k.name << " n " << n;
        EXPECT_EQ(v1, v2);
        EXPECT_EQ(g2, values(n, 2));  // only read
      }
      auto w1 = values(n, 4), g1 = values(n, 5), m1 = values(n, 6), v1 = values(n, 7);
      for (auto& x : v1) x *= x;  // a second moment is non-negative
      auto w2 = w1, g2 = g1, m2 = m1, v2 = v1;
      const AdamUpdate a{1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.001f, 0.0f};
      ref.adam_update(w1.data(), g1.data(), m1.data(), v1.data(), n, a);
      k.adam_update(w2.data(), g2.data(), m2.data(), v2.data(), n, a);
      EXPECT_EQ(w1, w2) << k.name << " n " << n;
      EXPECT_EQ(v1, v2);
      const auto x = values(n, 8);
      EXPECT_EQ(ref.squared_norm(x.data(), n), k.squared_norm(x.data(), n)) << k.name;
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
