// bf16 matrix products (Precision::kBf16, kernels/gemm.h): the rounding is round-to-nearest-even
// with NaN and infinities kept, every product equals the fp32-accumulated product of the
// rounded operands (and differs from the fp32 product, so rounding really happens), and the bits
// do not depend on the thread count, at shapes that cut the 128-column grid unevenly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/table.h"
#include "dropkit/rng/philox.h"
#include "support/bf16.h"
#include "support/bits.h"

namespace dropkit::kernels {
namespace {

using test::bits_of;
using test::float_of;

TEST(Bf16, RoundsToNearestTiesToEvenAndKeepsSpecials) {
  EXPECT_EQ(to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(to_bf16(float_of(0x3F808000u)), 0x3F80);  // halfway, 0x3F80 is even: down
  EXPECT_EQ(to_bf16(float_of(0x3F818000u)), 0x3F82);  // halfway, 0x3F81 is odd: up
  EXPECT_EQ(to_bf16(float_of(0x3F808001u)), 0x3F81);  // above halfway: up
  EXPECT_EQ(to_bf16(-2.5f), 0xC020);
  EXPECT_EQ(to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds past the top: inf
  for (std::uint32_t nan : {0x7FC00000u, 0x7F800001u, 0xFFFFFFFFu, 0x7F80FFFFu}) {
    EXPECT_TRUE(std::isnan(from_bf16(to_bf16(float_of(nan))))) << std::hex << nan;
  }
  // Every finite float whose rounding stays finite: the result is the nearer of the two bf16
  // neighbours, the even one on a tie. Random bit patterns over the whole range.
  const rng::StreamKey s{4, 4, 4};
  int checked = 0;
  for (std::uint64_t i = 0; i < 200000; ++i) {
    const float x = float_of(rng::bits_at(s, i));
    if (!std::isfinite(x) || std::fabs(x) >= 3.3e38f) continue;
    const std::uint32_t lo_bits = bits_of(x) & 0xFFFF0000u;
    const double lo = float_of(lo_bits), hi = float_of(lo_bits + 0x10000u);
    const double d_lo = std::fabs(x - lo), d_hi = std::fabs(hi - x);
    const Bf16 want = static_cast<Bf16>(
        (d_lo < d_hi || (d_lo == d_hi && ((lo_bits >> 16) & 1) == 0)) ? lo_bits >> 16
                                                                      : (lo_bits >> 16) + 1);
    ASSERT_EQ(to_bf16(x), want) << std::hex << bits_of(x);
    ++checked;
  }
  EXPECT_GT(checked, 190000);
  // The bulk rounding (vector clones picked by the CPU) gives the same bits as the definition,
  // specials included, at every length and offset the split produces.
  std::vector<float> x(100003);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float_of(rng::bits_at(s, 1000000 + i));
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[6] = -std::numeric_limits<float>::infinity();
  x[7] = float_of(0x3F818000u);
  parallel::ThreadPool pool(3);
  std::vector<Bf16> y(x.size());
  round_to_bf16(pool, x.data(), y.data(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], to_bf16(x[i])) << i;
}

// A weight gradient's operands: dy [rows, out] rounded and transposed (in 8 x 8 tiles, the
// edges element by element) and x rounded, at shapes around the tile and over thread counts
// that cut the columns unevenly, specials included: every value where the definition puts it.
TEST(Bf16, GradOperandsAreTheRoundedTransposeAndTheRoundedInput) {
  const rng::StreamKey s{5, 6, 7};
  std::uint64_t counter = 0;
  for (std::int64_t rows : {1, 7, 8, 9, 16, 23, 128}) {
    for (std::int64_t out : {1, 8, 13, 40, 130}) {
      for (int threads : {1, 3}) {
        SCOPED_TRACE(::testing::Message() << rows << " x " << out << ", " << threads);
        const std::int64_t in = 5;
        std::vector<float> dy(static_cast<std::size_t>(rows * out)),
            x(static_cast<std::size_t>(rows * in));
        for (auto& v : dy) v = float_of(rng::bits_at(s, counter++));
        for (auto& v : x) v = float_of(rng::bits_at(s, counter++));
        dy[0] = std::numeric_limits<float>::quiet_NaN();
        dy.back() = float_of(0x3F818000u);  // a tie
        parallel::ThreadPool pool(threads);
        const Bf16GradOperands ops =
            round_grad_operands(pool, Precision::kBf16, rows, in, out, x.data(), dy.data());
        int wrong = 0;
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::int64_t j = 0; j < out; ++j) {
            const Bf16 want = to_bf16(dy[static_cast<std::size_t>(r * out + j)]);
            wrong += ops.dy_t[j * rows + r] != want;
          }
        }
        EXPECT_EQ(wrong, 0);
        for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(ops.x[i], to_bf16(x[i])) << i;
        EXPECT_EQ(
            round_grad_operands(pool, Precision::kF32, rows, in, out, x.data(), dy.data()).dy_t,
            nullptr);
      }
    }
  }
}

TEST(Bf16, ParsePrecisionNamesTheValidValues) {
  EXPECT_EQ(parse_precision("f32"), Precision::kF32);
  EXPECT_EQ(parse_precision("bf16"), Precision::kBf16);
  EXPECT_EQ(precision_name(Precision::kBf16), "bf16");
  try {
    parse_precision("fp16");
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("'fp16' is not one of f32, bf16"));
  }
}

std::vector<float> random_values(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  active_kernels().fill_normal({seed, 1, 2}, 0, v.data(), n);
  return v;
}

std::vector<float> rounded(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = from_bf16(to_bf16(v[i]));
  return r;
}

// C = A B^T (A [m, k], B [n, k]) in double, and the sum of |a b| per element for the bound.
void reference(const std::vector<float>& a, const std::vector<float>& b, std::int64_t m,
               std::int64_t n, std::int64_t k, std::vector<double>& c, std::vector<double>& mag) {
  c.assign(static_cast<std::size_t>(m * n), 0.0);
  mag.assign(c.size(), 0.0);
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t p = 0; p < k; ++p) {
        const double t = double{a[i * k + p]} * b[j * k + p];
        c[i * n + j] += t;
        mag[i * n + j] += std::fabs(t);
      }
    }
  }
}

std::vector<float> transpose(const std::vector<float>& v, std::int64_t rows, std::int64_t cols) {
  std::vector<float> t(v.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) t[c * rows + r] = v[r * cols + c];
  return t;
}

// got against the double product of the ROUNDED operands within fp32 accumulation error, and
// (when the sums are long enough to tell) farther from the product of the unrounded ones.
void expect_rounded_product(const std::vector<float>& got, const std::vector<float>& a,
                            const std::vector<float>& b, std::int64_t m, std::int64_t n,
                            std::int64_t k, const char* what) {
  std::vector<double> want, mag, exact, exact_mag;
  reference(rounded(a), rounded(b), m, n, k, want, mag);
  reference(a, b, m, n, k, exact, exact_mag);
  double worst_exact = 0, worst_bound = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double bound = 1e-6 + static_cast<double>(k + 2) * 0x1p-24 * mag[i];
    ASSERT_NEAR(got[i], want[i], bound) << what << " element " << i;
    worst_exact = std::max(worst_exact, std::fabs(got[i] - exact[i]));
    worst_bound = std::max(worst_bound, bound);
  }
  if (k >= 64) {
    EXPECT_GT(worst_exact, worst_bound) << what << ": not rounded to bf16?";
  }
}

struct Shape3 {
  std::int64_t rows, in, out;
};

TEST(Bf16, ProductsAreTheFp32AccumulatedProductsOfTheRoundedOperands) {
  DROPKIT_REQUIRE_BF16();
  parallel::ThreadPool pool(2);
  for (Shape3 s :
       {Shape3{1, 5, 3}, Shape3{7, 130, 129}, Shape3{33, 300, 260}, Shape3{128, 64, 300}}) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.in << "->" << s.out);
    const auto x = random_values(static_cast<std::size_t>(s.rows * s.in), 1);
    const auto w = random_values(static_cast<std::size_t>(s.out * s.in), 2);
    const auto dy = random_values(static_cast<std::size_t>(s.rows * s.out), 3);
    // y = x w^T
    std::vector<float> y(static_cast<std::size_t>(s.rows * s.out));
    linear_forward(
        pool, s.rows, s.in, s.out, x.data(), w.data(), y.data(), [](std::int64_t, std::int64_t) {},
        Precision::kBf16);
    expect_rounded_product(y, x, w, s.rows, s.out, s.in, "forward");
    // dx = dy w: rows of dy against columns of w
    std::vector<float> dx(static_cast<std::size_t>(s.rows * s.in));
    linear_backward_input(pool, s.rows, s.in, s.out, dy.data(), w.data(), dx.data(),
                          Precision::kBf16);
    expect_rounded_product(dx, dy, transpose(w, s.out, s.in), s.rows, s.in, s.out, "input grad");
    // dw = dy^T x, and accumulated onto what is there; db in fp32
    const auto dy_t = transpose(dy, s.rows, s.out), x_t = transpose(x, s.rows, s.in);
    std::vector<float> dw(static_cast<std::size_t>(s.out * s.in)), db(s.out);
    linear_backward_weights(pool, s.rows, s.in, s.out, x.data(), dy.data(), dw.data(), db.data(),
                            false, Precision::kBf16);
    expect_rounded_product(dw, dy_t, x_t, s.out, s.in, s.rows, "weight grad");
    for (std::int64_t j = 0; j < s.out; ++j) {
      float sum = 0;
      for (std::int64_t r = 0; r < s.rows; ++r) sum += dy[r * s.out + j];
      EXPECT_EQ(db[j], sum);
    }
    const std::vector<float> first = dw;
    linear_backward_weights(pool, s.rows, s.in, s.out, x.data(), dy.data(), dw.data(), db.data(),
                            true, Precision::kBf16);
    for (std::size_t i = 0; i < dw.size(); ++i) {
      ASSERT_NEAR(dw[i], 2 * first[i], 1e-5 * (1 + std::fabs(first[i]))) << "accumulate " << i;
    }
  }
}

TEST(Bf16, SameBitsForAnyThreadCount) {
  DROPKIT_REQUIRE_BF16();
  const Shape3 s{37, 200, 300};  // 300 columns: grid blocks 128, 128, 44
  const auto x = random_values(static_cast<std::size_t>(s.rows * s.in), 5);
  const auto w = random_values(static_cast<std::size_t>(s.out * s.in), 6);
  const auto dy = random_values(static_cast<std::size_t>(s.rows * s.out), 7);
  std::vector<float> ref_y, ref_dx, ref_dw, ref_grads;
  for (int threads : {1, 2, 3, 5}) {
    parallel::ThreadPool pool(threads);
    std::vector<float> y(static_cast<std::size_t>(s.rows * s.out)),
        dx(static_cast<std::size_t>(s.rows * s.in)), dw(static_cast<std::size_t>(s.out * s.in)),
        grads(dw.size());
    linear_forward(
        pool, s.rows, s.in, s.out, x.data(), w.data(), y.data(), [](std::int64_t, std::int64_t) {},
        Precision::kBf16);
    linear_backward_input(pool, s.rows, s.in, s.out, dy.data(), w.data(), dx.data(),
                          Precision::kBf16);
    linear_backward_weights(pool, s.rows, s.in, s.out, x.data(), dy.data(), dw.data(), nullptr,
                            false, Precision::kBf16);
    linear_weight_grads(
        pool, s.rows, s.in, s.out, x.data(), dy.data(), false,
        [&](std::int64_t j0, std::int64_t j1, const float* g, const float*) {
          std::memcpy(grads.data() + j0 * s.in, g, static_cast<std::size_t>((j1 - j0) * s.in) * 4);
        },
        Precision::kBf16);
    if (ref_y.empty()) {
      ref_y = y, ref_dx = dx, ref_dw = dw, ref_grads = grads;
      EXPECT_EQ(grads, dw);  // handed-out blocks equal the stored gradient
    }
    EXPECT_EQ(y, ref_y) << threads;
    EXPECT_EQ(dx, ref_dx) << threads;
    EXPECT_EQ(dw, ref_dw) << threads;
    EXPECT_EQ(grads, ref_grads) << threads;
  }
}

}  // namespace
}  // namespace dropkit::kernels
