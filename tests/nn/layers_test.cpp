// Every layer through the one gradient checker, plus the exact semantics of each.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "dropkit/dropout/dropout.h"
#include "dropkit/kernels/table.h"
#include "dropkit/nn/activation.h"
#include "dropkit/nn/linear.h"
#include "dropkit/train/loss.h"
#include "support/gradcheck.h"

namespace dropkit::nn {
namespace {

// Inputs kept away from 0 by at least 0.05 so that ReLU's and SELU's kinks are never within
// the finite difference step.
Tensor input(std::int64_t rows, std::int64_t cols, std::uint64_t seed = 3) {
  Tensor x(Shape{rows, cols});
  kernels::active_kernels().fill_normal({seed, 9, 9}, 0, x.data(), x.numel());
  for (std::size_t i = 0; i < x.numel(); ++i) x[i] += x[i] >= 0 ? 0.05f : -0.05f;
  return x;
}

const Context kTrain{.mode = Mode::kTrain, .seed = 11, .step = 4};

class ActivationGrad : public ::testing::TestWithParam<Activation> {};

TEST_P(ActivationGrad, StandaloneLayerMatchesFiniteDifferences) {
  ActivationLayer layer(GetParam());
  EXPECT_TRUE(test::check_gradients(layer, input(5, 37), kTrain));
}

TEST_P(ActivationGrad, LinearWithFusedActivationMatchesFiniteDifferences) {
  Linear layer(23, 70, GetParam());
  // A step on x moves all 70 pre-activations of its row: with h = 1e-2 some cross ReLU's or
  // SELU's kink at 0. h = 1e-3 keeps the probes on one side; float round-off in L (about 1e-6)
  // stays far below the tolerance.
  EXPECT_TRUE(test::check_gradients(layer, input(6, 23), kTrain, {.h = 1e-3}));
}

TEST_P(ActivationGrad, FusedLinearEqualsLinearThenActivation) {
  Linear fused(40, 130, GetParam()), plain(40, 130);
  ParamArena a({&fused}), b({&plain});
  fused.init_params(1, 2);
  plain.init_params(1, 2);
  std::copy(a.values().begin(), a.values().end(), b.values().begin());  // same weights
  ActivationLayer act(GetParam());
  const Tensor x = input(9, 40);
  Tensor y1, z, y2;
  fused.forward(x, y1, kTrain);
  plain.forward(x, z, kTrain);
  act.forward(z, y2, kTrain);
  for (std::size_t i = 0; i < y1.numel(); ++i) ASSERT_EQ(y1[i], y2[i]);
}

INSTANTIATE_TEST_SUITE_P(All, ActivationGrad,
                         ::testing::Values(Activation::kIdentity, Activation::kReLU,
                                           Activation::kSigmoid, Activation::kTanh,
                                           Activation::kSELU),
                         [](const auto& info) { return std::string(activation_name(info.param)); });

TEST(ActivationValues, MatchTheirDefinitions) {
  const float z[] = {-30.0f, -1.0f, 0.0f, 0.5f, 30.0f};
  float a[5];
  activation_forward(Activation::kReLU, z, a, 5);
  EXPECT_THAT(a, ::testing::ElementsAre(0.0f, 0.0f, 0.0f, 0.5f, 30.0f));
  activation_forward(Activation::kSigmoid, z, a, 5);
  EXPECT_NEAR(a[1], 1 / (1 + std::exp(1.0)), 1e-7);
  EXPECT_GT(a[0], 0.0f);  // stable: e^-30, not 0/0
  EXPECT_EQ(a[4], 1.0f);
  activation_forward(Activation::kSELU, z, a, 5);
  EXPECT_NEAR(a[0], -kSeluLambda * kSeluAlpha, 1e-6);
  EXPECT_NEAR(a[3], 0.5 * kSeluLambda, 1e-7);
  EXPECT_THROW(parse_activation("gelu"), std::invalid_argument);
}

TEST(DropoutGrad, MatchesFiniteDifferencesWithTheMaskFixedBySeed) {
  for (auto scaling : {dropout::Scaling::kInverted, dropout::Scaling::kInference}) {
    dropout::Dropout layer(0.4, scaling, dropout::MaskStorage::kRecompute, 3);
    EXPECT_TRUE(test::check_gradients(layer, input(7, 50), kTrain));
  }
}

TEST(LinearTest, ForwardIsXWTransposePlusBias) {
  Linear layer(3, 2);
  ParamArena arena({&layer});
  const float w[] = {1, 2, 3, 4, 5, 6}, b[] = {0.5f, -1};
  std::copy(w, w + 6, layer.weight());
  std::copy(b, b + 2, layer.bias());
  Tensor x(Shape{2, 3}, std::vector<float>{1, 0, -1, 2, 1, 0});
  Tensor y;
  layer.forward(x, y, kTrain);
  EXPECT_THAT(std::vector<float>(y.data(), y.data() + 4),
              ::testing::ElementsAre(1 - 3 + 0.5f, 4 - 6 - 1, 2 + 2 + 0.5f, 8 + 5 - 1));
  EXPECT_THROW(layer.forward(Tensor(Shape{2, 4}), y, kTrain), std::invalid_argument);
}

TEST(LinearTest, GradientsAccumulateAndDxIsOverwritten) {
  Linear layer(8, 5);
  ParamArena arena({&layer});
  layer.init_params(1, 1);
  const Tensor x = input(4, 8);
  Tensor y, dy(Shape{4, 5}), dx(Shape{4, 8});
  for (std::size_t i = 0; i < dy.numel(); ++i) dy[i] = 1.0f;
  for (std::size_t i = 0; i < dx.numel(); ++i) dx[i] = 99.0f;
  arena.zero_grads();
  layer.forward(x, y, kTrain);
  layer.backward(dy, dx);
  const std::vector<float> once(arena.grads().begin(), arena.grads().end());
  const Tensor dx_once = dx.clone();
  layer.backward(dy, dx);
  for (std::size_t i = 0; i < once.size(); ++i) ASSERT_FLOAT_EQ(arena.grads()[i], 2 * once[i]);
  for (std::size_t i = 0; i < dx.numel(); ++i) ASSERT_EQ(dx[i], dx_once[i]);
}

TEST(LinearTest, InitIsReproducibleAndScaledByFanIn) {
  Linear a(1000, 300, Activation::kReLU), b(1000, 300, Activation::kReLU);
  ParamArena pa({&a}), pb({&b});
  a.init_params(5, 1);
  b.init_params(5, 1);
  EXPECT_TRUE(std::equal(pa.values().begin(), pa.values().end(), pb.values().begin()));
  double sq = 0;
  for (std::size_t i = 0; i < 300000; ++i) sq += a.weight()[i] * a.weight()[i];
  // He: variance 2 / fan_in, within 6 sigma of the sample variance (sd 2/1000 sqrt(2/n)).
  EXPECT_NEAR(sq / 300000, 2.0 / 1000, 6 * (2.0 / 1000) * std::sqrt(2.0 / 300000));
  b.init_params(6, 1);
  EXPECT_FALSE(std::equal(pa.values().begin(), pa.values().end(), pb.values().begin()));
}

TEST(LinearTest, OutputIdenticalForOneTwoAndThreeThreads) {
  Linear layer(300, 777, Activation::kReLU);
  ParamArena arena({&layer});
  layer.init_params(2, 2);
  const Tensor x = input(33, 300);
  Tensor ref;
  for (int t : {1, 2, 3}) {
    parallel::ThreadPool pool(t);
    Tensor y;
    layer.forward(x, y, {.mode = Mode::kTrain, .pool = &pool});
    if (t == 1) ref = y.clone();
    ASSERT_EQ(std::memcmp(ref.data(), y.data(), y.numel() * 4), 0) << t << " threads";
  }
}

TEST(Loss, SoftmaxCrossEntropyValueGradientAndStability) {
  Tensor z(Shape{2, 3}, std::vector<float>{1, 2, 3, 1000, 0, -1000});
  const std::uint8_t labels[] = {2, 0};
  Tensor dz;
  const auto r = train::softmax_cross_entropy(z, labels, &dz);
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3;
  EXPECT_NEAR(r.loss, l0 / 2, 1e-6);  // row 1 costs 0, and no overflow at 1000
  EXPECT_EQ(r.correct, 2u);
  const double p2 = std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(dz[2], (p2 - 1) / 2, 1e-6);
  for (std::size_t i = 0; i < 6; ++i) EXPECT_TRUE(std::isfinite(dz[i]));
  const std::uint8_t bad[] = {3, 0};
  EXPECT_THROW(train::softmax_cross_entropy(z, bad, nullptr), std::invalid_argument);
}

TEST(Loss, GradientMatchesFiniteDifferences) {
  Tensor z = input(4, 10);
  const std::uint8_t labels[] = {1, 9, 0, 4};
  Tensor dz;
  train::softmax_cross_entropy(z, labels, &dz);
  for (std::size_t i = 0; i < z.numel(); ++i) {
    const float s = z[i];
    z[i] = s + 1e-2f;
    const double lp = train::softmax_cross_entropy(z, labels, nullptr).loss;
    z[i] = s - 1e-2f;
    const double lm = train::softmax_cross_entropy(z, labels, nullptr).loss;
    z[i] = s;
    EXPECT_NEAR(dz[i], (lp - lm) / 2e-2, 1e-4) << i;
  }
}

}  // namespace
}  // namespace dropkit::nn
