// Statistical tests of the random streams as the library draws them (the bulk kernels of the
// active ISA): the distribution of uniforms, normals and keep bits, and the independence of
// neighbouring elements, of the words of one Philox block, and of different streams, steps and
// seeds. Each check compares a statistic with its expectation in units of its standard deviation
// and fails beyond kK sigma (tests/support/stats.h explains why; all seeds are fixed). Each would
// fail for a biased or correlated generator: with n = 2^22 one sigma of a correlation is
// 1/2048 ~ 5e-4, so a correlation of 0.003 already fails.
//
// Not covered here: equality of the SIMD and scalar paths and the known-answer vectors
// (philox_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "dropkit/dropout/mask.h"
#include "dropkit/kernels/table.h"
#include "dropkit/parallel/thread_pool.h"
#include "dropkit/rng/philox.h"
#include "support/stats.h"

namespace dropkit::rng {
namespace {

using test::binomial_sigma;
using test::chi_square;
using test::chi_square_z;
using test::Moments;
using test::moments;
using test::pearson;
using test::within_k_sigma;

// Six sigma: a correct generator exceeds it with probability ~2e-9 per check (two-sided normal
// tail), so the ~100 checks in this file essentially never fail for any seed.
constexpr double kK = 6.0;
// 2^22 draws per sample: sigma of a mean or correlation ~ 5e-4, and the file runs in a fraction
// of a second in a Release build.
constexpr std::size_t kN = std::size_t{1} << 22;

std::vector<float> uniforms(const StreamKey& s, std::size_t n) {
  std::vector<float> out(n);
  kernels::active_kernels().fill_uniform(s, 0, out.data(), n);
  return out;
}

std::vector<std::uint32_t> words(const StreamKey& s, std::size_t n) {
  std::vector<std::uint32_t> out(n);
  kernels::active_kernels().fill_bits(s, 0, out.data(), n);
  return out;
}

// The chi-square statistics are checked through the Wilson-Hilferty transform (stats.h,
// chi_square_z), which is close to a standard normal, rather than as (chi2 - dof) / sqrt(2 dof):
// the chi-square's right tail is heavy, so for dof 3 "mean + 6 sd" would fail a correct
// generator with probability ~5e-4, and for dof 63 "mean - 6 sd" is negative and so never
// catches a too-even histogram. With the transform, |z| <= 6 means the same on both sides.
::testing::AssertionResult chi_square_ok(double chi2, double dof) {
  auto r = within_k_sigma(chi_square_z(chi2, dof), 0.0, 1.0, kK);
  if (!r) r << " [Wilson-Hilferty z of chi2 = " << chi2 << " with " << dof << " dof]";
  return r;
}

// ---- Distributions ---------------------------------------------------------------------------

TEST(RngStatistics, UniformMomentsAndHistogram) {
  const auto u = uniforms({.seed = 20240601, .stream = 3, .step = 17}, kN);
  const double n = static_cast<double>(kN);

  const auto [lo, hi] = std::minmax_element(u.begin(), u.end());
  EXPECT_GE(*lo, 0.0f);
  EXPECT_LT(*hi, 1.0f);

  // For U(0, 1): var 1/12, so sd of the mean sqrt(1/12 / n); mu4 = 1/80, so the sample
  // variance has sd sqrt((mu4 - sigma^4) / n) = sqrt((1/80 - 1/144) / n).
  const Moments m = moments(u);
  EXPECT_TRUE(within_k_sigma(m.mean, 0.5, std::sqrt(1.0 / 12 / n), kK));
  EXPECT_TRUE(within_k_sigma(m.var, 1.0 / 12, std::sqrt((1.0 / 80 - 1.0 / 144) / n), kK));

  // 64 equal bins (exact: the values are multiples of 2^-24), 63 degrees of freedom.
  constexpr int kBins = 64;
  std::vector<std::uint64_t> counts(kBins, 0);
  for (float v : u) ++counts[static_cast<int>(v * kBins)];
  const std::vector<double> expected(kBins, n / kBins);
  EXPECT_TRUE(chi_square_ok(chi_square(counts, expected), kBins - 1));
}

TEST(RngStatistics, NormalMomentsAndTails) {
  std::vector<float> z(kN);
  kernels::active_kernels().fill_normal({.seed = 987654321, .stream = 5, .step = 2}, 0, z.data(),
                                        kN);
  const double n = static_cast<double>(kN);

  // u1 has 24 bits, so |z| <= sqrt(-2 ln 2^-24) ~= 5.77 (rng/philox.h).
  std::size_t bad = 0;
  for (float v : z) bad += !(std::isfinite(v) && std::abs(v) <= 5.8f);
  EXPECT_EQ(bad, 0u) << "values that are not finite or exceed the truncation |z| <= 5.8";

  // Sampling sds for N(0, 1): mean 1/sqrt(n), variance sqrt(2/n), skewness sqrt(6/n), excess
  // kurtosis sqrt(24/n). (The truncation at 5.77 sd moves the kurtosis by ~1e-6, far less.)
  const Moments m = moments(z);
  EXPECT_TRUE(within_k_sigma(m.mean, 0.0, std::sqrt(1.0 / n), kK));
  EXPECT_TRUE(within_k_sigma(m.var, 1.0, std::sqrt(2.0 / n), kK));
  EXPECT_TRUE(within_k_sigma(m.skewness, 0.0, std::sqrt(6.0 / n), kK));
  EXPECT_TRUE(within_k_sigma(m.excess_kurtosis, 0.0, std::sqrt(24.0 / n), kK));

  // Two-sided tail probabilities P(|z| > t) = erfc(t / sqrt 2). The two normals of a Box-Muller
  // pair are independent, so the count of exceedances is binomial.
  const std::array<std::pair<float, double>, 3> tails = {
      {{1.0f, 0.3173105}, {2.0f, 0.0455003}, {3.0f, 0.0026998}}};
  for (const auto& [t, p] : tails) {
    const auto count = std::count_if(z.begin(), z.end(), [t](float v) { return std::abs(v) > t; });
    EXPECT_TRUE(within_k_sigma(static_cast<double>(count) / n, p, binomial_sigma(n, p), kK))
        << "P(|z| > " << t << ")";
  }
}

// The cos and sin normals of one Box-Muller pair (words 0 and 1, or 2 and 3, of one block, that
// is elements i and i + 16 for i % 64 in [0, 16) or [32, 48)) share their radius: they must
// still be uncorrelated, and so must their squares (which a shared angle or radius bug would
// correlate strongly).
TEST(RngStatistics, NormalBoxMullerPairsAreIndependent) {
  std::vector<float> z(kN);
  kernels::active_kernels().fill_normal({.seed = 31337, .stream = 9, .step = 4}, 0, z.data(), kN);
  std::vector<float> c, s, c2, s2;
  for (std::size_t i = 0; i < kN; ++i) {
    if (i % 64 % 32 >= 16) continue;
    c.push_back(z[i]);
    s.push_back(z[i + 16]);
    c2.push_back(z[i] * z[i]);
    s2.push_back(z[i + 16] * z[i + 16]);
  }
  const double sigma = 1.0 / std::sqrt(static_cast<double>(c.size()));
  EXPECT_TRUE(within_k_sigma(pearson(c, s), 0.0, sigma, kK)) << "z_cos vs z_sin";
  EXPECT_TRUE(within_k_sigma(pearson(c2, s2), 0.0, sigma, kK)) << "z_cos^2 vs z_sin^2";
}

TEST(RngStatistics, BernoulliKeepFrequency) {
  const auto w = words({.seed = 777, .stream = 1, .step = 0}, kN);
  const double n = static_cast<double>(kN);
  for (double p : {0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99}) {
    const KeepThreshold keep(p);
    const auto kept =
        std::count_if(w.begin(), w.end(), [&](std::uint32_t u) { return keep.keep(u); });
    EXPECT_TRUE(within_k_sigma(static_cast<double>(kept) / n, 1 - p, binomial_sigma(n, 1 - p), kK))
        << "drop rate " << p;
  }
}

// The same through the public mask function: x = 1 everywhere, so the kept outputs are exactly
// the nonzero ones (and equal the scale), and the stored keep bits count the same.
TEST(RngStatistics, ApplyKeepMaskKeepFrequency) {
  parallel::ThreadPool pool(1);
  const std::vector<float> x(kN, 1.0f);
  std::vector<float> y(kN);
  std::vector<std::uint64_t> bits(dropout::mask_words(0, kN));
  const double n = static_cast<double>(kN);
  std::uint64_t step = 100;
  for (double p : {0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99}) {
    const float scale = static_cast<float>(1 / (1 - p));
    dropout::apply_keep_mask(pool, {.seed = 4242, .stream = 7, .step = step++}, 0, KeepThreshold(p),
                             scale, x, y, bits);
    std::size_t nonzero = 0, wrong = 0, bit_count = 0;
    for (float v : y) {
      nonzero += v != 0.0f;
      wrong += v != 0.0f && v != scale;
    }
    for (std::uint64_t b : bits) bit_count += static_cast<std::size_t>(std::popcount(b));
    EXPECT_EQ(wrong, 0u) << "drop rate " << p;
    EXPECT_EQ(bit_count, nonzero) << "drop rate " << p;
    EXPECT_TRUE(
        within_k_sigma(static_cast<double>(nonzero) / n, 1 - p, binomial_sigma(n, 1 - p), kK))
        << "drop rate " << p;
  }
}

// ---- Independence ----------------------------------------------------------------------------

// Lag 1: the same word of consecutive blocks. Lag 16: for i % 64 < 48 the next output word of
// the same Philox block (the layout of rng/philox.h), otherwise the next group. Lag 64: the same
// word of the block sixteen counters on, in the next group. Sample correlations of independent
// sequences have sd ~ 1/sqrt(n).
TEST(RngStatistics, UniformNeighboursAreUncorrelated) {
  const auto u = uniforms({.seed = 5, .stream = 0, .step = 0}, kN + 64);
  const std::span<const float> all(u);
  const double sigma = 1.0 / std::sqrt(static_cast<double>(kN));
  for (std::size_t lag : {1, 16, 64}) {
    EXPECT_TRUE(within_k_sigma(pearson(all.first(kN), all.subspan(lag, kN)), 0.0, sigma, kK))
        << "lag " << lag;
  }
}

// Streams that differ in one coordinate of (seed, stream, step), element by element. The seed
// is Philox's 64-bit key and the step two words of its counter: the pairs that differ only in
// a high word would be identical (correlation 1) if that word were dropped.
TEST(RngStatistics, StreamsStepsAndSeedsAreUncorrelated) {
  constexpr std::uint64_t k2to32 = std::uint64_t{1} << 32;
  struct Pair {
    const char* what;
    StreamKey a, b;
  };
  const Pair pairs[] = {
      {"stream 1 vs 2", {.seed = 11, .stream = 1, .step = 3}, {.seed = 11, .stream = 2, .step = 3}},
      {"step 5 vs 6", {.seed = 11, .stream = 1, .step = 5}, {.seed = 11, .stream = 1, .step = 6}},
      {"step 5 vs 5 + 2^32",
       {.seed = 11, .stream = 1, .step = 5},
       {.seed = 11, .stream = 1, .step = 5 + k2to32}},
      {"seed 1 vs 2", {.seed = 1, .stream = 1, .step = 3}, {.seed = 2, .stream = 1, .step = 3}},
      {"seed 1 vs 1 + 2^32",
       {.seed = 1, .stream = 1, .step = 3},
       {.seed = 1 + k2to32, .stream = 1, .step = 3}},
  };
  const double sigma = 1.0 / std::sqrt(static_cast<double>(kN));
  for (const auto& p : pairs) {
    EXPECT_TRUE(within_k_sigma(pearson(uniforms(p.a, kN), uniforms(p.b, kN)), 0.0, sigma, kK))
        << p.what;
  }
}

// 2x2 table of (bit b of word x, bit b of word y) over independent pairs, against n/4 per cell:
// chi-square with 3 degrees of freedom (it also catches a biased bit, not only a correlation).
double bit_pair_chi2(std::span<const std::uint32_t> x, std::span<const std::uint32_t> y,
                     std::size_t stride, int b) {
  std::vector<std::uint64_t> counts(4, 0);
  std::size_t pairs = 0;
  for (std::size_t i = 0; i < x.size(); i += stride, ++pairs) {
    ++counts[((x[i] >> b) & 1) * 2 + ((y[i] >> b) & 1)];
  }
  const std::vector<double> expected(4, static_cast<double>(pairs) / 4);
  return chi_square(counts, expected);
}

// Bits 0, 1 (the low bits, unused by uniforms but used by the keep test), 8 (the lowest bit of
// a uniform), 15 and 31. Neighbours are taken as disjoint pairs, so that the pairs are
// independent and the statistic really is chi-square: (2j, 2j + 1), and separately
// (2j + 1, 2j + 2), which includes the pairs that cross from one output word to the next
// (element 16 q + 15 to 16 q + 16).
TEST(RngStatistics, BitPairsOfNeighboursAndStreamsAreIndependent) {
  const auto w = words({.seed = 99, .stream = 1, .step = 8}, kN + 2);
  const auto other = words({.seed = 99, .stream = 2, .step = 8}, kN);
  const std::span<const std::uint32_t> all(w);
  for (int b : {0, 1, 8, 15, 31}) {
    EXPECT_TRUE(chi_square_ok(bit_pair_chi2(all.first(kN), all.subspan(1, kN), 2, b), 3))
        << "bit " << b << ", elements (2j, 2j + 1)";
    EXPECT_TRUE(chi_square_ok(bit_pair_chi2(all.subspan(1, kN), all.subspan(2, kN), 2, b), 3))
        << "bit " << b << ", elements (2j + 1, 2j + 2)";
    EXPECT_TRUE(chi_square_ok(bit_pair_chi2(all.first(kN), other, 1, b), 3))
        << "bit " << b << ", stream 1 vs stream 2";
  }
}

}  // namespace
}  // namespace dropkit::rng
