// Keep decisions from 16- or 8-bit fields (docs/spec.md section 2, mask_bits): every ISA's kernels
// against the element-by-element definition rng::keep_field_at, the layer's effective drop rate
// and scale, the statistics (keep rate within k sigma at several rates, exact expectation, no
// correlation between fields of one word), and the same bits at any thread count and split.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/mask.h"
#include "dropkit/kernels/table.h"
#include "dropkit/rng/philox.h"
#include "support/bits.h"
#include "support/stats.h"

namespace dropkit::dropout {
namespace {

using test::bits_of;

using rng::KeepThreshold;
using rng::StreamKey;

std::vector<kernels::Isa> isas() {
  std::vector<kernels::Isa> out;
  for (auto isa : {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512})
    if (kernels::isa_supported(isa)) out.push_back(isa);
  return out;
}

TEST(NarrowMask, FieldsAreTheLowFirstPiecesOfTheStreamWords) {
  const StreamKey s{3, 9, 41};
  for (std::uint64_t i : {0ull, 1ull, 2ull, 3ull, 4ull, 127ull, 255ull, 256ull, 100003ull}) {
    EXPECT_EQ(rng::keep_field_at(s, i, 32), rng::bits_at(s, i));
    EXPECT_EQ(rng::keep_field_at(s, i, 16), (rng::bits_at(s, i / 2) >> (16 * (i % 2))) & 0xFFFF);
    EXPECT_EQ(rng::keep_field_at(s, i, 8), (rng::bits_at(s, i / 4) >> (8 * (i % 4))) & 0xFF);
  }
}

TEST(NarrowMask, EveryIsaEqualsTheDefinitionAtAwkwardStartsAndLengths) {
  const StreamKey s{5, 11, 77};
  std::vector<float> x(1400), y(1400), z(1400);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.37f * static_cast<float>(i) - 50.0f;
  std::vector<std::uint64_t> mask(32);
  for (auto isa : isas()) {
    const auto& k = kernels::kernel_table(isa);
    for (int width : {16, 8}) {
      for (double p : {0.03, 0.3, 0.5, 0.77}) {
        const KeepThreshold keep(p, width);
        const float a = 1.7f, b = -0.3f, c = 0.9f;
        for (std::uint64_t first : {0ull, 5ull, 64ull, 127ull, 200ull, 255ull}) {
          for (std::size_t n : {0, 1, 15, 17, 63, 64, 65, 129, 255, 256, 257, 511, 1000, 1100}) {
            std::fill(mask.begin(), mask.end(), 0xAAAAAAAAAAAAAAAAull);
            const std::vector<std::uint64_t> before = mask;
            k.mask_scale(s, first, keep.word(), width, 2.5f, x.data() + 3, y.data() + 1, n,
                         mask.data());
            k.mask_affine(s, first, keep.word(), width, a, b, c, x.data() + 3, z.data() + 2, n,
                          nullptr);
            for (std::size_t i = 0; i < n; ++i) {
              const bool kept = keep.keep(rng::keep_field_at(s, first + i, width));
              ASSERT_EQ(bits_of(y[1 + i]), bits_of(kept ? x[3 + i] * 2.5f : 0.0f))
                  << kernels::isa_name(isa) << " width " << width << " first " << first << " n "
                  << n << " i " << i;
              ASSERT_EQ(bits_of(z[2 + i]), bits_of(kept ? a * x[3 + i] + b : c));
              const std::uint64_t e = first + i;
              ASSERT_EQ((mask[e / 64 - first / 64] >> (e % 64)) & 1, kept ? 1u : 0u);
            }
            // Bits of the words' other elements are untouched.
            for (std::uint64_t e = first / 64 * 64; e < first + n + 64; ++e) {
              if (e >= first && e < first + n) continue;
              const std::uint64_t w = e / 64 - first / 64;
              if (w >= mask.size()) break;
              ASSERT_EQ((mask[w] >> (e % 64)) & 1, (before[w] >> (e % 64)) & 1);
            }
          }
        }
      }
    }
  }
}

TEST(NarrowMask, TheLayerReportsAndScalesByTheEffectiveRate) {
  const Dropout eight(0.2, Scaling::kInverted, MaskStorage::kBits, 0, {}, 8);
  EXPECT_EQ(eight.effective_drop_prob(), 51.0 / 256);
  EXPECT_EQ(eight.train_scale(), static_cast<float>(1.0 / (1.0 - 51.0 / 256)));
  EXPECT_EQ(eight.mask_bits(), 8);
  EXPECT_EQ(eight.config().at("mask_bits"), 8);
  const Dropout inference(0.3, Scaling::kInference, MaskStorage::kBits, 0, {}, 16);
  EXPECT_EQ(inference.eval_scale(), static_cast<float>(1.0 - std::round(0.3 * 65536) / 65536));
  // 32 bits: the configured rate itself, as before narrow fields existed.
  EXPECT_EQ(Dropout(0.2).effective_drop_prob(), 0.2);
  EXPECT_EQ(Dropout(0.2).train_scale(), static_cast<float>(1.0 / 0.8));
  // A rate that rounds to 0 or 1 at 8 bits keeps or drops everything.
  EXPECT_EQ(Dropout(0.001, Scaling::kInverted, MaskStorage::kBits, 0, {}, 8).effective_drop_prob(),
            0.0);
  EXPECT_EQ(Dropout(0.999, Scaling::kInverted, MaskStorage::kBits, 0, {}, 8).effective_drop_prob(),
            1.0);
  for (int bad : {0, 7, 12, 24, 64}) {
    try {
      Dropout d(0.5, Scaling::kInverted, MaskStorage::kBits, 0, {}, bad);
      ADD_FAILURE() << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr("not one of 32, 16, 8"));
    }
  }
}

TEST(NarrowMask, KeepRateAndExpectationWithinKSigmaAndFieldsUncorrelated) {
  parallel::ThreadPool pool(2);
  const std::size_t n = std::size_t{1} << 20;
  const std::vector<float> ones(n, 1.0f);
  std::vector<float> y(n);
  for (int width : {16, 8}) {
    for (double p : {0.1, 0.2, 0.5, 0.7, 0.9}) {
      const KeepThreshold keep(p, width);
      const double q = 1.0 - keep.effective_drop_prob();
      const auto scale = static_cast<float>(1.0 / q);
      apply_keep_mask(pool, {17, 4, static_cast<std::uint64_t>(p * 1000) + width}, 0, keep, scale,
                      ones, y);
      double kept = 0, sum = 0;
      for (float v : y) {
        kept += v != 0.0f ? 1 : 0;
        sum += v;
      }
      const double sigma = test::binomial_sigma(static_cast<double>(n), q);
      EXPECT_TRUE(test::within_k_sigma(kept / static_cast<double>(n), q, sigma, 5))
          << "width " << width << " p " << p;
      // E[y] = 1 exactly under the effective rate: the mean of y is kept / n / q.
      EXPECT_TRUE(test::within_k_sigma(sum / static_cast<double>(n), 1.0, sigma / q, 5));
      // Neighbouring elements share a word at 8 and 16 bits: their keep bits must not correlate.
      std::vector<float> even(n / 2), odd(n / 2);
      for (std::size_t i = 0; i < n / 2; ++i) {
        even[i] = y[2 * i] != 0.0f ? 1.0f : 0.0f;
        odd[i] = y[2 * i + 1] != 0.0f ? 1.0f : 0.0f;
      }
      EXPECT_TRUE(test::within_k_sigma(test::pearson(even, odd), 0.0,
                                       1.0 / std::sqrt(static_cast<double>(n / 2)), 5));
    }
  }
}

TEST(NarrowMask, SameBitsForAnyThreadCountAndSplit) {
  const std::size_t n = 300017;  // not a multiple of any group
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 113) - 56.5f;
  for (int width : {16, 8}) {
    const KeepThreshold keep(0.35, width);
    const StreamKey s{8, 2, 5};
    std::vector<float> ref(n), out(n);
    std::vector<std::uint64_t> ref_bits(mask_words(7, n)), bits(mask_words(7, n));
    parallel::ThreadPool one(1);
    apply_keep_mask(one, s, 7, keep, 1.5f, x, ref, ref_bits);
    for (std::size_t threads : {2u, 3u, 5u, 8u}) {
      parallel::ThreadPool pool(threads);
      apply_keep_mask(pool, s, 7, keep, 1.5f, x, out, bits);
      EXPECT_EQ(std::memcmp(out.data(), ref.data(), n * 4), 0) << threads;
      EXPECT_EQ(bits, ref_bits) << threads;
    }
    // Split at an odd element: the two halves give the whole.
    const std::size_t cut = 12345;
    apply_keep_mask(one, s, 7, keep, 1.5f, std::span(x).first(cut), std::span(out).first(cut));
    apply_keep_mask(one, s, 7 + cut, keep, 1.5f, std::span(x).subspan(cut),
                    std::span(out).subspan(cut));
    EXPECT_EQ(std::memcmp(out.data(), ref.data(), n * 4), 0);
  }
}

}  // namespace
}  // namespace dropkit::dropout
