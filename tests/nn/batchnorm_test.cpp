// BatchNorm's semantics by hand: batch statistics and the running update (unbiased variance,
// PyTorch's momentum) in training, running statistics in eval and in Monte-Carlo sampling.
// The exact order of the per-channel double sums (batchnorm.cpp), against a scalar reference.
// (Gradients, thread counts and the round trip are the per-layer harness's.)
#include "dropkit/nn/batchnorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "dropkit/nn/params.h"
#include "support/bits.h"

namespace dropkit::nn {
namespace {

using test::bits_of;

struct Bn {
  BatchNorm layer;
  std::unique_ptr<ParamArena> arena;
  explicit Bn(std::int64_t c, double momentum = 0.1, double eps = 1e-5) : layer(c, momentum, eps) {
    arena = std::make_unique<ParamArena>(std::vector<Layer*>{&layer});
    layer.init_params(0, 0);
  }
};

TEST(BatchNorm, TrainingNormalisesWithTheBatchAndUpdatesRunningStatistics) {
  Bn bn(2);
  // [4, 2]: channel 0 holds 1, 2, 3, 4; channel 1 holds 10, 10, 10, 30.
  const Tensor x(Shape{4, 2}, std::vector<float>{1, 10, 2, 10, 3, 10, 4, 30});
  Tensor y;
  bn.layer.forward(x, y, {.mode = Mode::kTrain});
  const double s0 = std::sqrt(1.25 + 1e-5), s1 = std::sqrt(75.0 + 1e-5);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(y[2 * i], (i + 1 - 2.5) / s0, 1e-6);
    EXPECT_NEAR(y[2 * i + 1], (x[2 * i + 1] - 15.0) / s1, 1e-6);
  }
  // running = 0.9 running + 0.1 batch, with the unbiased variance (m / (m - 1) = 4 / 3).
  EXPECT_NEAR(bn.layer.running_mean()[0], 0.25, 1e-7);
  EXPECT_NEAR(bn.layer.running_mean()[1], 1.5, 1e-6);
  EXPECT_NEAR(bn.layer.running_var()[0], 0.9 + 0.1 * 1.25 * 4 / 3, 1e-6);
  EXPECT_NEAR(bn.layer.running_var()[1], 0.9 + 0.1 * 75.0 * 4 / 3, 1e-5);
}

TEST(BatchNorm, EvalAndSamplingUseTheRunningStatisticsAndChangeNothing) {
  Bn bn(3, 0.5, 1e-3);
  Tensor warm(Shape{5, 3, 2, 2});
  for (std::size_t i = 0; i < warm.numel(); ++i) warm[i] = static_cast<float>((i * 7) % 11) - 3;
  Tensor y;
  bn.layer.forward(warm, y, {.mode = Mode::kTrain});
  const std::vector<float> mean(bn.layer.running_mean(), bn.layer.running_mean() + 3);
  const std::vector<float> var(bn.layer.running_var(), bn.layer.running_var() + 3);
  // One example, alone: batch statistics would make every output 0 (beta).
  const Tensor x(Shape{1, 3, 2, 2}, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  Tensor eval, sample;
  bn.layer.forward(x, eval, {.mode = Mode::kEval});
  for (int c = 0; c < 3; ++c) {
    for (int j = 0; j < 4; ++j) {
      const double want = (x[c * 4 + j] - mean[c]) / std::sqrt(var[c] + 1e-3);
      EXPECT_NEAR(eval[c * 4 + j], want, 1e-5);
    }
  }
  // Monte-Carlo sampling, three stacked samples of it: each is the eval output, bit for bit.
  Tensor stacked(Shape{3, 3, 2, 2});
  for (int s = 0; s < 3; ++s) std::memcpy(stacked.data() + s * 12, x.data(), 12 * sizeof(float));
  bn.layer.forward(stacked, sample, {.mode = Mode::kSample, .step = 4, .samples = 3});
  for (int s = 0; s < 3; ++s)
    EXPECT_EQ(0, std::memcmp(sample.data() + s * 12, eval.data(), 12 * sizeof(float)));
  // Neither touched the running statistics, and neither allows backward.
  EXPECT_EQ(std::vector<float>(bn.layer.running_mean(), bn.layer.running_mean() + 3), mean);
  EXPECT_EQ(std::vector<float>(bn.layer.running_var(), bn.layer.running_var() + 3), var);
  Tensor dx;
  EXPECT_THROW(bn.layer.backward(sample, dx), std::logic_error);
}

// The documented order, written plainly: channel c's values k = (i C + c) S + j, value j of each
// run into partial sum j mod 8, the partials added pairwise.
template <class Term>
double reference_sum(std::size_t n, std::size_t c, std::size_t channels, std::size_t s,
                     Term&& term) {
  double p[8] = {};
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < s; ++j) p[j % 8] += term((i * channels + c) * s + j);
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

// Forward (output and running statistics) and backward (dgamma, dbeta, dx) bit for bit against
// the reference, over generated shapes: [N, D], and [N, C, H, W] with run lengths below, at and
// above the 8 partials (1 to 20, 49, 196), and values that make another order of summation show.
TEST(BatchNorm, SumsFollowTheDocumentedOrderBitForBit) {
  std::mt19937 gen(7);
  const std::vector<Shape> shapes = {Shape{16, 5},        Shape{3, 2, 1, 1}, Shape{5, 3, 1, 2},
                                     Shape{4, 2, 1, 7},   Shape{6, 3, 2, 4}, Shape{3, 2, 3, 3},
                                     Shape{7, 4, 2, 5},   Shape{2, 3, 4, 5}, Shape{5, 2, 7, 7},
                                     Shape{3, 4, 14, 14}, Shape{2, 1, 3, 6}, Shape{9, 2, 1, 11},
                                     Shape{4, 3, 1, 13},  Shape{2, 5, 2, 9}, Shape{3, 1, 4, 4}};
  for (const Shape& shape : shapes) {
    SCOPED_TRACE(shape.str());
    const auto n = static_cast<std::size_t>(shape[0]), ch = static_cast<std::size_t>(shape[1]);
    const std::size_t s = shape.row_size() / ch, numel = shape.numel();
    // Values of mixed magnitude, and one in 16 a huge +-2^35: a double sum that holds one of
    // those keeps fewer bits of the small values than one that has cancelled it, so the order
    // of summation shows in the float results. (Without them, double sums of these floats are
    // exact in any order.)
    std::uniform_real_distribution<float> u(-1, 1), e(-6, 6);
    std::uniform_int_distribution<int> one_in(0, 15);
    auto value = [&] {
      if (one_in(gen) == 0) return one_in(gen) < 8 ? 0x1p35f : -0x1p35f;
      return u(gen) * std::exp2(std::round(e(gen)));
    };
    Tensor x(shape), dy(shape), y, dx;
    for (std::size_t k = 0; k < numel; ++k) {
      x[k] = value() + 3.0f;
      dy[k] = value();
    }
    Bn bn(static_cast<std::int64_t>(ch), 0.25, 1e-3);
    for (std::size_t c = 0; c < ch; ++c) {  // gamma other than 1, so dx depends on it
      bn.arena->values()[bn.arena->entries().at(0).offset + c] = 0.5f + static_cast<float>(c);
    }
    bn.layer.forward(x, y, {.mode = Mode::kTrain});
    bn.layer.backward(dy, dx);
    const float* dgamma = bn.arena->grads().data() + bn.arena->entries().at(0).offset;
    const float* dbeta = bn.arena->grads().data() + bn.arena->entries().at(1).offset;
    const double m = static_cast<double>(n * s);
    for (std::size_t c = 0; c < ch; ++c) {
      SCOPED_TRACE(c);
      const double mean =
          reference_sum(n, c, ch, s, [&](std::size_t k) { return double{x[k]}; }) / m;
      const double var = reference_sum(n, c, ch, s,
                                       [&](std::size_t k) {
                                         const double d = x[k] - mean;
                                         return d * d;
                                       }) /
                         m;
      EXPECT_EQ(bits_of(bn.layer.running_mean()[c]), bits_of(static_cast<float>(0.25 * mean)));
      EXPECT_EQ(bits_of(bn.layer.running_var()[c]),
                bits_of(static_cast<float>(0.75 * 1.0 + 0.25 * var * m / (m - 1))));
      const double inv = 1.0 / std::sqrt(var + 1e-3);
      const float gamma = bn.arena->values()[bn.arena->entries().at(0).offset + c];
      const auto scale = static_cast<float>(gamma * inv);
      const auto shift = static_cast<float>(0.0f - gamma * inv * mean);
      // backward uses the statistics as stored (float)
      const double fmean = static_cast<float>(mean), finv = static_cast<float>(inv);
      const double sum_dy =
          reference_sum(n, c, ch, s, [&](std::size_t k) { return double{dy[k]}; });
      const double sum_dy_xhat =
          reference_sum(n, c, ch, s, [&](std::size_t k) { return dy[k] * (x[k] - fmean) * finv; });
      EXPECT_EQ(bits_of(dgamma[c]), bits_of(static_cast<float>(sum_dy_xhat)));
      EXPECT_EQ(bits_of(dbeta[c]), bits_of(static_cast<float>(sum_dy)));
      const double k1 = gamma * finv / m;
      int wrong_y = 0, wrong_dx = 0;
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < s; ++j) {
          const std::size_t k = (i * ch + c) * s + j;
          wrong_y += bits_of(y[k]) != bits_of(x[k] * scale + shift);
          const double xhat = (x[k] - fmean) * finv;
          wrong_dx += bits_of(dx[k]) !=
                      bits_of(static_cast<float>(k1 * (m * dy[k] - sum_dy - xhat * sum_dy_xhat)));
        }
      }
      EXPECT_EQ(wrong_y, 0);
      EXPECT_EQ(wrong_dx, 0);
    }
  }
}

TEST(BatchNorm, BadConfigurationsAndBatchesAreRefused) {
  EXPECT_THROW(BatchNorm(0), std::invalid_argument);
  EXPECT_THROW(BatchNorm(3, 1.5), std::invalid_argument);
  EXPECT_THROW(BatchNorm(3, 0.1, 0.0), std::invalid_argument);
  EXPECT_THROW(BatchNorm(3, std::nan(""), 1e-5), std::invalid_argument);
  Bn bn(2);
  Tensor y;
  // One value per channel cannot be normalised by its own statistics (PyTorch refuses too)...
  EXPECT_THROW(bn.layer.forward(Tensor(Shape{1, 2}), y, {.mode = Mode::kTrain}),
               std::invalid_argument);
  // ...but is fine in eval mode; a wrong channel count never is.
  bn.layer.forward(Tensor(Shape{1, 2}), y, {.mode = Mode::kEval});
  EXPECT_THROW(bn.layer.forward(Tensor(Shape{4, 3}), y, {.mode = Mode::kEval}),
               std::invalid_argument);
  // Training in place would leave backward without its input.
  Tensor x(Shape{4, 2});
  EXPECT_THROW(bn.layer.forward(x, x, {.mode = Mode::kTrain}), std::invalid_argument);
}

}  // namespace
}  // namespace dropkit::nn
