// Philox4x32-10 against the published Random123 known-answer vectors, and every ISA's bulk
// kernels against the one-element-at-a-time reference of rng/philox.h.
#include "dropkit/rng/philox.h"

#include <gtest/gtest.h>

#include <limits>

#include <cstring>
#include <vector>

#include "dropkit/core/tensor.h"
#include "dropkit/kernels/table.h"
#include "support/bits.h"

namespace dropkit::rng {
namespace {

using test::bits_of;

struct Kat {
  PhiloxCounter ctr;
  PhiloxKey key;
  PhiloxCounter expected;
};

// Random123 1.09, examples/kat_vectors: "philox4x32 10 ...".
TEST(Philox, PublishedKnownAnswerVectors) {
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const auto& k : kats) EXPECT_EQ(philox4x32_10(k.ctr, k.key), k.expected);
  // The function is constexpr: the first vector holds at compile time too.
  static_assert(philox4x32_10({0, 0, 0, 0}, {0, 0})[0] == 0x6627e8d5);
}

TEST(Philox, LayoutMapsElementsToBlocksAndWords) {
  const StreamKey s{0x0123456789abcdefULL, 7, 0x100000002ULL};
  const auto key = PhiloxKey{0x89abcdef, 0x01234567};
  // Element 64 g + 16 q + j is word q of block 16 g + j; the counter is (block, stream, step).
  for (std::uint64_t i : {0ull, 1ull, 15ull, 16ull, 17ull, 63ull, 64ull, 100ull, 1000003ull}) {
    const std::uint64_t g = i / 64, q = (i % 64) / 16, j = i % 16;
    const auto block = philox4x32_10({static_cast<std::uint32_t>(16 * g + j), 7, 2, 1}, key);
    EXPECT_EQ(bits_at(s, i), block[q]) << "element " << i;
  }
}

TEST(Philox, KeepThresholdIsExactAndHandlesTheEnds) {
  EXPECT_TRUE(KeepThreshold(0.0).keeps_all());
  EXPECT_TRUE(KeepThreshold(1.0).drops_all());
  EXPECT_FALSE(KeepThreshold(1.0).keep(0xffffffffu));
  const KeepThreshold half(0.5);
  EXPECT_EQ(half.word(), 0x80000000u);
  EXPECT_FALSE(half.keep(0x7fffffffu));
  EXPECT_TRUE(half.keep(0x80000000u));
  EXPECT_EQ(KeepThreshold(0.1).word(), 429496730u);  // round(0.1 * 2^32)
  EXPECT_THROW(KeepThreshold(-0.1), std::invalid_argument);
  EXPECT_THROW(KeepThreshold(1.5), std::invalid_argument);
  EXPECT_THROW(KeepThreshold(std::nan("")), std::invalid_argument);
}

TEST(Philox, UniformUsesTheTop24Bits) {
  EXPECT_EQ(uniform_from_bits(0), 0.0f);
  EXPECT_EQ(uniform_from_bits(0xffffffffu), 1.0f - 0x1p-24f);
  EXPECT_EQ(uniform_from_bits(0x80000000u), 0.5f);
}

// ---- Every supported ISA against the scalar reference ---------------------------------------

std::vector<kernels::Isa> supported_isas() {
  std::vector<kernels::Isa> out;
  for (auto isa : {kernels::Isa::kScalar, kernels::Isa::kAvx2, kernels::Isa::kAvx512})
    if (kernels::isa_supported(isa)) out.push_back(isa);
  return out;
}

// Lengths 0..1100 at stream offsets that hit every position within a group, and pointers that
// are not aligned to anything (one float past a 64-byte boundary).
class IsaTest : public ::testing::TestWithParam<kernels::Isa> {};

TEST_P(IsaTest, BulkDrawsEqualTheReferenceForEveryLengthAndStart) {
  const auto& k = kernels::kernel_table(GetParam());
  const StreamKey s{42, 3, 9};
  std::vector<std::uint32_t> words(1200);
  std::vector<float> uni(1200), nor(1200);
  for (std::uint64_t first : {0ull, 1ull, 17ull, 63ull, 64ull, 1000ull}) {
    for (std::size_t n = 0; n <= 1100; ++n) {
      k.fill_bits(s, first, words.data() + 1, n);
      k.fill_uniform(s, first, uni.data() + 1, n);
      k.fill_normal(s, first, nor.data() + 1, n);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(words[1 + i], bits_at(s, first + i)) << "first " << first << " n " << n;
        ASSERT_EQ(bits_of(uni[1 + i]), bits_of(uniform_at(s, first + i)));
        ASSERT_EQ(bits_of(nor[1 + i]), bits_of(normal_at(s, first + i)))
            << "first " << first << " n " << n << " i " << i;
      }
    }
  }
}

TEST_P(IsaTest, MaskKernelsEqualTheReference) {
  const auto& k = kernels::kernel_table(GetParam());
  const StreamKey s{5, 11, 77};
  const KeepThreshold keep(0.3);
  const float scale = static_cast<float>(1.0 / 0.7);
  std::vector<float> x(1200), y(1200), z(1200);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.37f * static_cast<float>(i) - 50.0f;
  std::vector<std::uint64_t> mask(32);
  for (std::uint64_t first : {0ull, 5ull, 64ull, 127ull}) {
    for (std::size_t n : {0, 1, 7, 15, 16, 17, 63, 64, 65, 100, 128, 129, 1000, 1100}) {
      std::fill(mask.begin(), mask.end(), 0xAAAAAAAAAAAAAAAAull);
      k.mask_scale(s, first, keep.word(), 32, scale, x.data() + 3, y.data() + 1, n, mask.data());
      for (std::size_t i = 0; i < n; ++i) {
        const bool kept = keep.keep(bits_at(s, first + i));
        ASSERT_EQ(bits_of(y[1 + i]), bits_of(kept ? x[3 + i] * scale : 0.0f));
        const std::uint64_t e = first + i;
        ASSERT_EQ((mask[e / 64 - first / 64] >> (e % 64)) & 1, kept ? 1u : 0u);
      }
      // Bits outside the range are untouched.
      if (n > 0 && first % 64 != 0) {
        ASSERT_EQ(mask[0] & 1, 0u);
      }
      k.bits_scale(mask.data(), first, scale, x.data() + 3, z.data() + 2, n);
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(bits_of(z[2 + i]), bits_of(y[1 + i]));
    }
  }
}

// The dropout family's kernels against their definitions, element by element, at awkward starts
// and lengths, in place, and on the streaming path (outputs of 2^20 elements and more, 64-byte
// aligned).
TEST_P(IsaTest, FamilyKernelsEqualTheReference) {
  const auto& k = kernels::kernel_table(GetParam());
  const StreamKey s{8, 21, 5};
  const KeepThreshold keep(0.35);
  const float a = 1.3f, b = -0.25f, c = 0.75f, sigma = 0.6f;
  const std::size_t big = (std::size_t{1} << 20) + 77;
  std::vector<float> x(big + 8), y(big + 8), z(big + 8);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.013f * static_cast<float>(i % 9973) - 40.0f;
  std::vector<std::uint64_t> mask(big / 64 + 4);
  for (std::uint64_t first : {0ull, 5ull, 64ull, 127ull}) {
    for (std::size_t n :
         {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{17}, std::size_t{64},
          std::size_t{65}, std::size_t{129}, std::size_t{1100}, big}) {
      k.mask_affine(s, first, keep.word(), 32, a, b, c, x.data() + 3, y.data() + 1, n, mask.data());
      for (std::size_t i = 0; i < n; ++i) {
        const bool kept = keep.keep(bits_at(s, first + i));
        ASSERT_EQ(bits_of(y[1 + i]), bits_of(kept ? a * x[3 + i] + b : c)) << n << " " << i;
        const std::uint64_t e = first + i;
        ASSERT_EQ((mask[e / 64 - first / 64] >> (e % 64)) & 1, kept ? 1u : 0u);
      }
      k.gauss_mul(s, first, sigma, x.data() + 3, y.data() + 1, n);
      k.gauss_add(s, first, sigma, x.data() + 3, z.data() + 2, n);
      for (std::size_t i = 0; i < n; ++i) {
        const float zn = normal_at(s, first + i);
        ASSERT_EQ(bits_of(y[1 + i]), bits_of(x[3 + i] * (1.0f + sigma * zn))) << n << " " << i;
        ASSERT_EQ(bits_of(z[2 + i]), bits_of(x[3 + i] + sigma * zn)) << n << " " << i;
      }
    }
  }
  // The streaming path for certain: a 64-byte aligned output of 2^20 + 77 elements from index 0.
  dropkit::Tensor xa(dropkit::Shape{static_cast<std::int64_t>(big)}), ya(xa.shape());
  std::copy(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(big), xa.data());
  for (int which = 0; which < 3; ++which) {
    if (which == 0)
      k.mask_affine(s, 0, keep.word(), 32, a, b, c, xa.data(), ya.data(), big, nullptr);
    if (which == 1) k.gauss_mul(s, 0, sigma, xa.data(), ya.data(), big);
    if (which == 2) k.gauss_add(s, 0, sigma, xa.data(), ya.data(), big);
    for (std::size_t i = 0; i < big; i += 997) {
      const float xi = xa[i];
      const float expect = which == 0   ? (keep.keep(bits_at(s, i)) ? a * xi + b : c)
                           : which == 1 ? xi * (1.0f + sigma * normal_at(s, i))
                                        : xi + sigma * normal_at(s, i);
      ASSERT_EQ(bits_of(ya[i]), bits_of(expect)) << which << " " << i;
    }
  }
  // In place gives what out of place gives.
  std::vector<float> in(1000), out(1000);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) - 300.5f;
  for (int which = 0; which < 3; ++which) {
    std::vector<float> io = in;
    auto run = [&](const float* src, float* dst) {
      if (which == 0) k.mask_affine(s, 3, keep.word(), 32, a, b, c, src, dst, in.size(), nullptr);
      if (which == 1) k.gauss_mul(s, 3, sigma, src, dst, in.size());
      if (which == 2) k.gauss_add(s, 3, sigma, src, dst, in.size());
    };
    run(in.data(), out.data());
    run(io.data(), io.data());
    EXPECT_EQ(io, out) << which;
  }
}

// The broadcast runs of shared noise: run_scale and run_affine against their definitions, with
// and without streaming stores, at every alignment and run length, zero values included (an
// infinite input must still give 0 or c there), in place too.
TEST_P(IsaTest, RunKernelsEqualTheirDefinitions) {
  const auto& k = kernels::kernel_table(GetParam());
  std::vector<float> x(700), y(720), io(700);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.7f * static_cast<float>(i) - 90.0f;
  x[5] = std::numeric_limits<float>::infinity();
  const std::vector<float> f = {0.0f, 1.5f, -2.0f, 0.0f, 1.0f, 3.25f, 0.0f, 0.5f};
  const float a = 1.25f, b = -0.5f, c = 0.375f, m = 2.0f;
  for (bool streaming : {false, true}) {
    for (std::size_t off : {0u, 1u, 3u, 16u}) {
      for (std::size_t len : {1u, 15u, 16u, 17u, 64u, 65u}) {
        for (std::size_t runs : {0u, 1u, 3u, 8u}) {
          k.run_scale(x.data(), y.data() + off, f.data(), runs, len, m, streaming);
          for (std::size_t i = 0; i < runs * len; ++i) {
            const float s = f[i / len] * m;
            ASSERT_EQ(bits_of(y[off + i]), bits_of(s == 0.0f ? 0.0f : x[i] * s)) << len << " " << i;
          }
          k.run_affine(x.data(), y.data() + off, f.data(), runs, len, a, b, c, streaming);
          for (std::size_t i = 0; i < runs * len; ++i) {
            ASSERT_EQ(bits_of(y[off + i]), bits_of(f[i / len] != 0.0f ? a * x[i] + b : c));
          }
          io.assign(x.begin(), x.end());
          k.run_scale(io.data(), io.data(), f.data(), runs, len, m, streaming);
          for (std::size_t i = 0; i < runs * len; ++i) {
            const float s = f[i / len] * m;
            ASSERT_EQ(bits_of(io[i]), bits_of(s == 0.0f ? 0.0f : x[i] * s));
          }
        }
      }
    }
  }
  k.store_fence();
}

TEST_P(IsaTest, MaskKernelWorksInPlace) {
  const auto& k = kernels::kernel_table(GetParam());
  const StreamKey s{1, 2, 3};
  std::vector<float> x(777), y(777);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) + 0.5f;
  std::vector<float> inplace = x;
  k.mask_scale(s, 9, KeepThreshold(0.5).word(), 32, 2.0f, x.data(), y.data(), x.size(), nullptr);
  k.mask_scale(s, 9, KeepThreshold(0.5).word(), 32, 2.0f, inplace.data(), inplace.data(),
               inplace.size(), nullptr);
  EXPECT_EQ(inplace, y);
}

TEST_P(IsaTest, StreamingCopyCopies) {
  const auto& k = kernels::kernel_table(GetParam());
  std::vector<float> x(1000), y(1001);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  for (std::size_t n : {0, 1, 15, 16, 17, 999}) {
    std::fill(y.begin(), y.end(), -1.0f);
    k.copy_streaming(x.data(), y.data() + 1, n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(y[1 + i], x[i]);
    ASSERT_EQ(y[1 + n], -1.0f);
  }
}

INSTANTIATE_TEST_SUITE_P(AllSupported, IsaTest, ::testing::ValuesIn(supported_isas()),
                         [](const auto& info) {
                           return std::string(kernels::isa_name(info.param));
                         });

TEST(Dispatch, PicksTheBestSupportedIsaAndRejectsUnsupported) {
  const auto isas = supported_isas();
  EXPECT_EQ(kernels::active_isa(), isas.back());
  EXPECT_STREQ(kernels::active_kernels().name, kernels::isa_name(isas.back()).data());
  if (!kernels::isa_supported(kernels::Isa::kAvx512)) {
    EXPECT_THROW(kernels::kernel_table(kernels::Isa::kAvx512), std::invalid_argument);
  }
}

}  // namespace
}  // namespace dropkit::rng
