// BatchNorm's semantics by hand: batch statistics and the running update (unbiased variance,
// PyTorch's momentum) in training, running statistics in eval and in Monte-Carlo sampling.
// (Gradients, thread counts and the round trip are the per-layer harness's.)
#include "dropkit/nn/batchnorm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "dropkit/nn/params.h"

namespace dropkit::nn {
namespace {

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
