// Convolution and max pooling against direct loops written from the definitions, over generated
// geometries (channels, sizes, kernels, strides, paddings, batch sizes across the 16-example
// grid), forward and backward. (Finite differences, thread counts and the round trip are the
// per-layer harness's.) The same with bf16 operands, and bf16's same bits at any thread count.
#include "dropkit/nn/conv.h"
#include "support/bf16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "dropkit/kernels/conv.h"
#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/table.h"
#include "dropkit/nn/params.h"

namespace dropkit::nn {
namespace {

Tensor random_tensor(const Shape& s, std::uint64_t seed) {
  Tensor t(s);
  kernels::active_kernels().fill_normal({seed, 3, 3}, 0, t.data(), t.numel());
  return t;
}

struct Geometry {
  std::int64_t n, c, h, w, filters, k, stride, pad;
  kernels::Window window() const { return {.size = k, .stride = stride, .padding = pad}; }
  std::int64_t oh() const { return window().out(h); }
  std::int64_t ow() const { return window().out(w); }
};

// x at (n, c, i, j) with zero padding outside.
float at(const Tensor& x, const Geometry& g, std::int64_t n, std::int64_t c, std::int64_t i,
         std::int64_t j) {
  if (i < 0 || j < 0 || i >= g.h || j >= g.w) return 0.0f;
  return x[static_cast<std::size_t>(((n * g.c + c) * g.h + i) * g.w + j)];
}

std::vector<Geometry> generated_geometries() {
  std::vector<Geometry> all = {{1, 1, 5, 5, 1, 3, 1, 0},
                               {17, 3, 7, 6, 4, 3, 1, 1},
                               {33, 2, 9, 9, 5, 5, 2, 2},
                               {16, 4, 4, 4, 2, 1, 1, 0}};
  std::mt19937 gen(7);
  while (all.size() < 16) {
    Geometry g{};
    g.n = 1 + static_cast<std::int64_t>(gen() % 40);
    g.c = 1 + static_cast<std::int64_t>(gen() % 5);
    g.h = 1 + static_cast<std::int64_t>(gen() % 12);
    g.w = 1 + static_cast<std::int64_t>(gen() % 12);
    g.filters = 1 + static_cast<std::int64_t>(gen() % 6);
    g.k = 1 + static_cast<std::int64_t>(gen() % 5);
    g.stride = 1 + static_cast<std::int64_t>(gen() % 3);
    g.pad = static_cast<std::int64_t>(gen() % 3);
    if (g.oh() < 1 || g.ow() < 1) continue;  // (padding >= kernel is legal for a convolution)
    all.push_back(g);
  }
  return all;
}

std::string describe(const Geometry& g) {
  return "n " + std::to_string(g.n) + " c " + std::to_string(g.c) + " " + std::to_string(g.h) +
         "x" + std::to_string(g.w) + " filters " + std::to_string(g.filters) + " k " +
         std::to_string(g.k) + " stride " + std::to_string(g.stride) + " pad " +
         std::to_string(g.pad);
}

// Forward and backward of every generated geometry against the definitions in double. With
// bf16 the definitions take the rounded operands (x and w forward, dy and x for dW and db, dy
// and w for dx: a product of two bf16 values is exact in fp32, so the same fp32 bounds apply).
// Returns the largest distance of y, dW and dx from the definitions on the UNROUNDED operands,
// for the caller to see the rounding happened.
double check_against_the_definitions(kernels::Precision precision) {
  parallel::ThreadPool pool(2);
  const bool bf16 = precision == kernels::Precision::kBf16;
  const auto r = [bf16](float v) { return bf16 ? kernels::from_bf16(kernels::to_bf16(v)) : v; };
  double off_unrounded = 0;
  for (const Geometry& g : generated_geometries()) {
    SCOPED_TRACE(describe(g));
    Conv2d conv(Shape{g.c, g.h, g.w}, g.filters,
                {.size = g.k, .stride = g.stride, .padding = g.pad});
    ParamArena arena({&conv});
    conv.init_params(4, 1);
    auto v = arena.values();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.3f * std::sin(static_cast<float>(i));
    const float* w = v.data() + arena.entries()[0].offset;
    const float* b = v.data() + arena.entries()[1].offset;
    const Tensor x = random_tensor(Shape{g.n, g.c, g.h, g.w}, 11);
    Tensor y;
    conv.forward(x, y, {.mode = Mode::kTrain, .precision = precision, .pool = &pool});
    EXPECT_EQ(y.shape(), (Shape{g.n, g.filters, g.oh(), g.ow()}));
    if (y.shape() != Shape{g.n, g.filters, g.oh(), g.ow()}) return off_unrounded;
    const Tensor dy = random_tensor(y.shape(), 12);
    arena.zero_grads();
    Tensor dx;
    conv.backward(dy, dx);
    // The definitions, in double: y = b + sum x w; dW = sum dy x; db = sum dy; dx = sum dy w;
    // each also on the unrounded operands (suffix u).
    const auto wn = static_cast<std::size_t>(g.filters * g.c * g.k * g.k);
    std::vector<double> dw(wn, 0.0), dwu(wn, 0.0), db(static_cast<std::size_t>(g.filters), 0.0),
        dxr(x.numel(), 0.0), dxu(x.numel(), 0.0);
    double worst = 0;
    for (std::int64_t n = 0; n < g.n; ++n) {
      for (std::int64_t o = 0; o < g.filters; ++o) {
        for (std::int64_t p = 0; p < g.oh(); ++p) {
          for (std::int64_t q = 0; q < g.ow(); ++q) {
            const auto yi =
                static_cast<std::size_t>(((n * g.filters + o) * g.oh() + p) * g.ow() + q);
            double sum = b[o], sum_u = b[o];
            db[static_cast<std::size_t>(o)] += r(dy[yi]);
            for (std::int64_t c = 0; c < g.c; ++c) {
              for (std::int64_t i0 = 0; i0 < g.k; ++i0) {
                for (std::int64_t j0 = 0; j0 < g.k; ++j0) {
                  const std::int64_t i = p * g.stride - g.pad + i0, j = q * g.stride - g.pad + j0;
                  const auto wi = static_cast<std::size_t>(((o * g.c + c) * g.k + i0) * g.k + j0);
                  const float xv = at(x, g, n, c, i, j);
                  sum += static_cast<double>(r(xv)) * r(w[wi]);
                  sum_u += static_cast<double>(xv) * w[wi];
                  dw[wi] += static_cast<double>(r(dy[yi])) * r(xv);
                  dwu[wi] += static_cast<double>(dy[yi]) * xv;
                  if (i >= 0 && j >= 0 && i < g.h && j < g.w) {
                    const auto xi = static_cast<std::size_t>(((n * g.c + c) * g.h + i) * g.w + j);
                    dxr[xi] += static_cast<double>(r(dy[yi])) * r(w[wi]);
                    dxu[xi] += static_cast<double>(dy[yi]) * w[wi];
                  }
                }
              }
            }
            worst = std::max(worst, std::fabs(sum - y[yi]));
            off_unrounded = std::max(off_unrounded, std::fabs(sum_u - y[yi]));
          }
        }
      }
    }
    EXPECT_LT(worst, 1e-4) << "forward";
    const auto grads = arena.grads();
    const std::size_t dw_at = arena.entries()[0].offset, db_at = arena.entries()[1].offset;
    for (std::size_t i = 0; i < dw.size(); ++i) {
      EXPECT_NEAR(grads[dw_at + i], dw[i], 1e-3) << "dW " << i;
      off_unrounded = std::max(off_unrounded, std::fabs(grads[dw_at + i] - dwu[i]));
    }
    for (std::size_t i = 0; i < db.size(); ++i)
      EXPECT_NEAR(grads[db_at + i], db[i], 1e-3) << "db " << i;
    for (std::size_t i = 0; i < dxr.size(); ++i) {
      EXPECT_NEAR(dx[i], dxr[i], 1e-4) << "dx " << i;
      off_unrounded = std::max(off_unrounded, std::fabs(dx[i] - dxu[i]));
    }
    if (::testing::Test::HasFailure()) break;  // one geometry's failures are enough to read
  }
  return off_unrounded;
}

TEST(Conv2d, ForwardAndBackwardEqualTheDefinitionOnGeneratedGeometries) {
  check_against_the_definitions(kernels::Precision::kF32);
}

TEST(Conv2d, Bf16ConvolvesTheRoundedOperandsWithFp32Accumulation) {
  DROPKIT_REQUIRE_BF16();
  // Against the rounded definitions within fp32 bounds, and off the unrounded ones by more than
  // those bounds: the operands really were rounded.
  EXPECT_GT(check_against_the_definitions(kernels::Precision::kBf16), 1e-2);
}

TEST(Conv2d, Bf16GivesTheSameBitsForAnyThreadCount) {
  DROPKIT_REQUIRE_BF16();
  const Shape in{3, 11, 9};
  Conv2d conv(in, 5, {.size = 3, .stride = 1, .padding = 1});
  ParamArena arena({&conv});
  conv.init_params(8, 3);
  const Tensor x = random_tensor(Shape{37, 3, 11, 9}, 21);  // grid blocks 16, 16, 5
  std::vector<float> ref_y, ref_dx, ref_grads;
  for (int threads : {1, 2, 3, 4}) {
    parallel::ThreadPool pool(threads);
    Tensor y, dx;
    conv.forward(x, y,
                 {.mode = Mode::kTrain, .precision = kernels::Precision::kBf16, .pool = &pool});
    const Tensor dy = random_tensor(y.shape(), 22);
    arena.zero_grads();
    conv.backward(dy, dx);
    const std::vector<float> ys(y.span().begin(), y.span().end()),
        dxs(dx.span().begin(), dx.span().end()), grads(arena.grads().begin(), arena.grads().end());
    if (ref_y.empty()) {
      ref_y = ys, ref_dx = dxs, ref_grads = grads;
      continue;
    }
    EXPECT_EQ(ys, ref_y) << threads << " threads";
    EXPECT_EQ(dxs, ref_dx) << threads << " threads";
    EXPECT_EQ(grads, ref_grads) << threads << " threads";
  }
}

// The kernel rounds the weights itself when the caller does not: the same bits either way.
TEST(Conv2d, Bf16KernelRoundsWeightsItselfToTheSameBits) {
  DROPKIT_REQUIRE_BF16();
  parallel::ThreadPool pool(2);
  const kernels::ConvGeometry g{.channels = 3,
                                .height = 9,
                                .width = 8,
                                .out_channels = 5,
                                .window = {.size = 3, .padding = 1}};
  kernels::Conv2d conv(g, false);
  const Tensor x = random_tensor(Shape{19, 3, 9, 8}, 31), w = random_tensor(Shape{5, 3, 3, 3}, 32),
               dy = random_tensor(Shape{19, 5, 9, 8}, 33);
  const std::vector<float> b(5, 0.25f);
  std::vector<kernels::Bf16> w_rounded(w.numel());
  for (std::size_t i = 0; i < w.numel(); ++i) w_rounded[i] = kernels::to_bf16(w[i]);
  const auto none = [](std::int64_t, std::int64_t) {};
  const auto bf16 = kernels::Precision::kBf16;
  std::vector<float> y0(19 * 5 * 9 * 8), y1(y0.size()), dx0(x.numel()), dx1(x.numel());
  conv.forward(pool, 19, x.data(), w.data(), b.data(), y0.data(), none, bf16);
  conv.forward(pool, 19, x.data(), w.data(), b.data(), y1.data(), none, bf16, w_rounded.data());
  EXPECT_EQ(y0, y1);
  std::vector<float> dw0(w.numel()), dw1(w.numel()), dw2(w.numel()), db0(5), db1(5), db2(5);
  conv.backward(pool, 19, x.data(), dy.data(), w.data(), dx0.data(), dw0.data(), db0.data(), bf16);
  conv.backward(pool, 19, x.data(), dy.data(), w.data(), dx1.data(), dw1.data(), db1.data(), bf16,
                w_rounded.data());
  EXPECT_EQ(dx0, dx1);
  // The weight gradient is the same with and without the input gradient beside it.
  conv.backward(pool, 19, x.data(), dy.data(), w.data(), nullptr, dw2.data(), db2.data(), bf16);
  EXPECT_EQ(dw0, dw1);
  EXPECT_EQ(dw0, dw2);
  EXPECT_EQ(db0, db2);
  // And the rounding happened: fp32 gives other bits.
  conv.forward(pool, 19, x.data(), w.data(), b.data(), y1.data(), none);
  EXPECT_NE(y0, y1);
}

TEST(Conv2d, FusedReluEqualsTheConvolutionThenRelu) {
  parallel::ThreadPool pool(2);
  const Shape in{3, 8, 7};
  const kernels::Window win{.size = 3, .stride = 1, .padding = 1};
  Conv2d plain(in, 6, win), fused(in, 6, win, Activation::kReLU);
  ParamArena a({&plain}), b({&fused});
  plain.init_params(5, 2);
  std::copy(a.values().begin(), a.values().end(), b.values().begin());
  const Tensor x = random_tensor(Shape{21, 3, 8, 7}, 3);
  Tensor y0, y1;
  plain.forward(x, y0, {.mode = Mode::kEval, .pool = &pool});
  fused.forward(x, y1, {.mode = Mode::kEval, .pool = &pool});
  int zeros = 0;
  for (std::size_t i = 0; i < y0.numel(); ++i) {
    ASSERT_EQ(y1[i], std::max(y0[i], 0.0f)) << i;
    zeros += y1[i] == 0.0f;
  }
  EXPECT_GT(zeros, static_cast<int>(y0.numel() / 4));  // the ReLU did something
}

TEST(Conv2d, RefusesInputsWithoutAnOutputAndOtherShapes) {
  EXPECT_THROW(Conv2d(Shape{1, 2, 2}, 4, {.size = 3}), std::invalid_argument);
  EXPECT_THROW(Conv2d(Shape{1, 2, 9}, 4, {.size = 3, .stride = 2}), std::invalid_argument);
  EXPECT_THROW(Conv2d(Shape{28, 28}, 4, {.size = 3}), std::invalid_argument);
  Conv2d conv(Shape{1, 28, 28}, 4, {.size = 3, .padding = 1});
  EXPECT_THROW(conv.output_shape(Shape{5, 2, 28, 28}), std::invalid_argument);
  EXPECT_THROW(conv.output_shape(Shape{5, 784}), std::invalid_argument);
  EXPECT_EQ(conv.output_shape(Shape{5, 1, 28, 28}), (Shape{5, 4, 28, 28}));
}

TEST(MaxPool2d, ForwardAndBackwardEqualTheDefinitionOnGeneratedGeometries) {
  parallel::ThreadPool pool(2);
  int cases = 0;
  for (Geometry g : generated_geometries()) {
    if (g.pad >= g.k) continue;
    SCOPED_TRACE(describe(g));
    ++cases;
    MaxPool2d pool2d(Shape{g.c, g.h, g.w}, g.k, g.stride, g.pad);
    const Tensor x = random_tensor(Shape{g.n, g.c, g.h, g.w}, 21);
    Tensor y, dx;
    pool2d.forward(x, y, {.mode = Mode::kTrain, .pool = &pool});
    ASSERT_EQ(y.shape(), (Shape{g.n, g.c, g.oh(), g.ow()}));
    const Tensor dy = random_tensor(y.shape(), 22);
    pool2d.backward(dy, dx);
    std::vector<double> dxr(x.numel(), 0.0);
    for (std::int64_t n = 0; n < g.n; ++n) {
      for (std::int64_t c = 0; c < g.c; ++c) {
        for (std::int64_t p = 0; p < g.oh(); ++p) {
          for (std::int64_t q = 0; q < g.ow(); ++q) {
            float best = -INFINITY;
            std::size_t arg = 0;
            for (std::int64_t r = 0; r < g.k; ++r) {
              for (std::int64_t s = 0; s < g.k; ++s) {
                const std::int64_t i = p * g.stride - g.pad + r, j = q * g.stride - g.pad + s;
                if (i < 0 || j < 0 || i >= g.h || j >= g.w) continue;  // padding never wins
                const auto xi = static_cast<std::size_t>(((n * g.c + c) * g.h + i) * g.w + j);
                if (x[xi] > best) {
                  best = x[xi];
                  arg = xi;
                }
              }
            }
            const auto yi = static_cast<std::size_t>(((n * g.c + c) * g.oh() + p) * g.ow() + q);
            ASSERT_EQ(y[yi], best);
            dxr[arg] += dy[yi];
          }
        }
      }
    }
    for (std::size_t i = 0; i < dxr.size(); ++i) ASSERT_NEAR(dx[i], dxr[i], 1e-5) << "dx " << i;
  }
  EXPECT_GE(cases, 8);
}

// The pooling of nearly every CNN, 2 x 2 windows with stride 2 and no padding: forward and
// backward bit for bit against the definition, over odd and even extents (a row and a column
// left out), batches that cut the 16-example blocks, 1 and 3 threads, and values drawn from
// {-1, -0, 0, 1, 2} so that most windows hold ties: the documented rule (the first maximum in
// row-major order wins) is oneDNN's, on the signed zeros too. dx starts as garbage: every
// element must be written.
TEST(MaxPool2d, TwoByTwoKernelEqualsTheDefinitionWithTies) {
  std::mt19937 gen(5);
  const float values[] = {-1.0f, -0.0f, 0.0f, 1.0f, 2.0f};
  std::uniform_int_distribution<int> pick(0, 4);
  int windows = 0, ties = 0;
  for (std::int64_t h : {2, 3, 6, 7}) {
    for (std::int64_t w : {2, 3, 15, 16, 17, 18, 33}) {
      for (auto [n, threads] :
           {std::pair{1, 1}, std::pair{5, 3}, std::pair{17, 3}, std::pair{33, 1}}) {
        SCOPED_TRACE(::testing::Message() << n << " x 3 x " << h << " x " << w << ", " << threads);
        const std::int64_t c = 3, oh = h / 2, ow = w / 2;
        kernels::MaxPool2d pool2d(c, h, w, {.size = 2, .stride = 2, .padding = 0});
        parallel::ThreadPool pool(threads);
        std::vector<float> x(static_cast<std::size_t>(n * c * h * w)),
            dy(static_cast<std::size_t>(n * c * oh * ow));
        for (auto& v : x) v = values[pick(gen)];
        for (auto& v : dy) v = std::ldexp(static_cast<float>(pick(gen)) + 1.0f, pick(gen));
        std::vector<float> y(dy.size(), NAN), dx(x.size(), NAN);
        pool2d.forward(pool, n, x.data(), y.data());
        pool2d.backward(pool, n, dy.data(), dx.data());
        std::vector<float> want_dx(x.size(), 0.0f);
        for (std::int64_t p = 0; p < n * c; ++p) {
          for (std::int64_t i = 0; i < oh; ++i) {
            for (std::int64_t j = 0; j < ow; ++j) {
              std::size_t arg = 0;
              float best = -INFINITY;
              int at_best = 0;
              for (std::int64_t r = 0; r < 2; ++r) {
                for (std::int64_t s2 = 0; s2 < 2; ++s2) {
                  const auto xi = static_cast<std::size_t>((p * h + 2 * i + r) * w + 2 * j + s2);
                  if (x[xi] > best) {
                    best = x[xi];
                    arg = xi;
                  }
                }
              }
              for (std::int64_t r = 0; r < 2; ++r)
                for (std::int64_t s2 = 0; s2 < 2; ++s2)
                  at_best +=
                      x[static_cast<std::size_t>((p * h + 2 * i + r) * w + 2 * j + s2)] == best;
              const auto yi = static_cast<std::size_t>((p * oh + i) * ow + j);
              ASSERT_EQ(std::signbit(y[yi]), std::signbit(best)) << yi;
              ASSERT_EQ(y[yi], best) << yi;
              want_dx[arg] = dy[yi];
              ++windows;
              ties += at_best > 1;
            }
          }
        }
        for (std::size_t i = 0; i < dx.size(); ++i) {
          ASSERT_EQ(std::signbit(dx[i]), std::signbit(want_dx[i])) << "dx " << i;
          ASSERT_EQ(dx[i], want_dx[i]) << "dx " << i;
        }
      }
    }
  }
  EXPECT_GT(ties, windows / 4);  // the ties were there to be broken
}

TEST(MaxPool2d, StrideZeroMeansTheWindowSizeAndBadWindowsAreRefused) {
  MaxPool2d pool2d(Shape{2, 28, 28}, 2, 0, 0);
  EXPECT_EQ(pool2d.output_shape(Shape{3, 2, 28, 28}), (Shape{3, 2, 14, 14}));
  EXPECT_EQ(pool2d.config()["stride"], 0);
  EXPECT_THROW(MaxPool2d(Shape{2, 28, 28}, 2, 0, 2), std::invalid_argument);  // padding >= size
  EXPECT_THROW(MaxPool2d(Shape{2, 1, 1}, 2, 0, 0), std::invalid_argument);    // nothing fits
}

}  // namespace
}  // namespace dropkit::nn
