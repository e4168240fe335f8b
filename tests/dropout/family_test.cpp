// The dropout family beyond Bernoulli dropout: the statistics each must have (k-sigma bounds
// from the formulas, at several rates, on enough elements to see a 1 % error in a variance),
// noise shapes (the sharing pattern and the keep rate), independence across layers, steps and
// samples, the edge rates, and clear errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "dropkit/dropout/alpha_dropout.h"
#include "dropkit/dropout/dropconnect.h"
#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/gaussian_dropout.h"
#include "dropkit/dropout/gaussian_noise.h"
#include "dropkit/dropout/noise_shape.h"
#include "dropkit/kernels/table.h"
#include "dropkit/nn/params.h"
#include "support/stats.h"

namespace dropkit::dropout {
namespace {

using ::testing::HasSubstr;

constexpr double kRates[] = {0.05, 0.1, 0.3, 0.5, 0.7, 0.9};
// mask_bits: the default and the narrow keep words (dropout/mask.h); with 16 or 8 the layers work
// with the rate the masks realise, rng::KeepThreshold(p, bits).effective_drop_prob().
constexpr int kMaskBits[] = {32, 16, 8};
constexpr double kK = 6.0;  // k-sigma (tests/support/stats.h)
// 2^22 elements: the relative sd of a sample variance is sqrt(2 / n) ~ 7e-4 for normal noise, so
// a 1 % error in a variance is about 14 sigma away.
constexpr std::int64_t kN = 1 << 22;

nn::Context train(std::uint64_t seed, std::uint64_t step, std::uint64_t row_offset = 0) {
  return {.mode = nn::Mode::kTrain, .seed = seed, .step = step, .row_offset = row_offset};
}

Tensor filled(Shape shape, float v) {
  Tensor t(shape);
  std::fill(t.span().begin(), t.span().end(), v);
  return t;
}

Tensor standard_normal(Shape shape, std::uint64_t seed) {
  Tensor t(shape);
  kernels::active_kernels().fill_normal({seed, 0xABCD, 0}, 0, t.data(), t.numel());
  return t;
}

TEST(GaussianDropout, MeanOneAndVarianceOfBernoulliDropoutAtEveryRate) {
  const Tensor ones = filled(Shape{kN}, 1.0f);
  for (double p : kRates) {
    GaussianDropout layer(p, 7);
    Tensor y;
    layer.forward(ones, y, train(3, 1));
    const auto m = test::moments(y.span());
    const double var = p / (1 - p);  // inverted Bernoulli dropout's variance at rate p
    EXPECT_NEAR(m.mean, 1.0, kK * std::sqrt(var / kN)) << p;
    EXPECT_NEAR(m.var / var, 1.0, kK * std::sqrt(2.0 / kN)) << p;
    EXPECT_NEAR(m.skewness, 0.0, kK * std::sqrt(6.0 / kN)) << p;
  }
}

TEST(GaussianNoise, MeanZeroAndVarianceSigmaSquared) {
  const Tensor zeros = filled(Shape{kN}, 0.0f);
  for (double sigma : {0.01, 0.1, 0.5, 1.0, 2.5, 10.0}) {
    GaussianNoise layer(sigma, 4);
    Tensor y;
    layer.forward(zeros, y, train(5, 9));
    const auto m = test::moments(y.span());
    EXPECT_NEAR(m.mean, 0.0, kK * sigma / std::sqrt(kN)) << sigma;
    EXPECT_NEAR(m.var / (sigma * sigma), 1.0, kK * std::sqrt(2.0 / kN)) << sigma;
    EXPECT_NEAR(m.excess_kurtosis, 0.0, kK * std::sqrt(24.0 / kN)) << sigma;
  }
}

TEST(AlphaDropout, KeepsZeroMeanAndUnitVarianceOfStandardNormalInput) {
  const Tensor x = standard_normal(Shape{kN}, 11);
  for (int bits : kMaskBits) {
    for (double configured : kRates) {
      SCOPED_TRACE(::testing::Message() << "mask_bits " << bits << " p " << configured);
      AlphaDropout layer(configured, 9, {}, bits);
      const double p = layer.effective_drop_prob();
      Tensor y;
      layer.forward(x, y, train(2, 4));
      const auto m = test::moments(y.span());
      // y is a mixture: a x + b (prob 1-p) and a alpha' + b (prob p). Its fourth central moment
      // bounds the sd of the sample variance: sqrt((mu4 - 1) / n).
      const double a = layer.a(), b = layer.b(), c = layer.dropped_value();
      const double mu4 =
          (1 - p) * (3 * std::pow(a, 4) + 6 * a * a * b * b + std::pow(b, 4)) + p * std::pow(c, 4);
      EXPECT_NEAR(m.mean, 0.0, kK / std::sqrt(kN)) << p;
      EXPECT_NEAR(m.var, 1.0, kK * std::sqrt((mu4 - 1) / kN)) << p;
      // The dropped value is alpha' mapped: a alpha' + b, and a fraction p of outputs take it.
      std::size_t dropped = 0;
      for (std::size_t i = 0; i < y.numel(); ++i) dropped += y[i] == layer.dropped_value();
      EXPECT_NEAR(static_cast<double>(dropped) / kN, p, kK * test::binomial_sigma(kN, p)) << p;
    }
  }
}

TEST(AlphaDropout, ConstantsMatchPyTorchsFormula) {
  // PyTorch: a = ((1 - p) * (1 + p * alpha'^2))^-0.5, b = -a * alpha' * p.
  const double ap = -1.7580993408473766;
  for (int bits : kMaskBits) {
    for (double configured : kRates) {
      // p: the rate the masks realise (the configured one at 32 bits; 51/256 for 0.2 at 8).
      const double p = rng::KeepThreshold(configured, bits).effective_drop_prob();
      AlphaDropout layer(configured, 0, {}, bits);
      EXPECT_EQ(layer.effective_drop_prob(), p);
      EXPECT_EQ(layer.mask_bits(), bits);
      EXPECT_EQ(layer.config().at("mask_bits"), bits);
      const double a = std::pow((1 - p) * (1 + p * ap * ap), -0.5);
      EXPECT_FLOAT_EQ(layer.a(), static_cast<float>(a));
      EXPECT_FLOAT_EQ(layer.b(), static_cast<float>(-a * ap * p));
      EXPECT_FLOAT_EQ(layer.dropped_value(), static_cast<float>(a * ap + -a * ap * p));
    }
  }
  EXPECT_NEAR(kAlphaPrime, ap, 1e-15);
}

// Every member at the edge rates: p = 0 the identity bitwise (gradient too), p = 1 zeros
// without Inf or NaN, and eval the identity.
TEST(Family, EdgeRatesAreDefinedAndNeverProduceNanOrInf) {
  const Tensor x = standard_normal(Shape{4, 300}, 2);
  std::vector<std::unique_ptr<nn::Layer>> at0, at1;
  at0.push_back(std::make_unique<GaussianDropout>(0.0));
  at0.push_back(std::make_unique<AlphaDropout>(0.0));
  at0.push_back(std::make_unique<GaussianNoise>(0.0));
  at0.push_back(std::make_unique<Dropout>(0.0, Scaling::kInverted, MaskStorage::kBits, 0,
                                          std::vector<int>{1}));
  at1.push_back(std::make_unique<GaussianDropout>(1.0));
  at1.push_back(std::make_unique<AlphaDropout>(1.0));
  at1.push_back(std::make_unique<Dropout>(1.0, Scaling::kInverted, MaskStorage::kBits, 0,
                                          std::vector<int>{1}));
  for (auto& l : at0) {
    Tensor y, dx;
    l->forward(x, y, train(1, 1));
    l->backward(x, dx);
    EXPECT_EQ(std::memcmp(y.data(), x.data(), x.numel() * 4), 0) << l->name();
    EXPECT_EQ(std::memcmp(dx.data(), x.data(), x.numel() * 4), 0) << l->name();
  }
  for (auto& l : at1) {
    Tensor y, dx, ye;
    l->forward(x, y, train(1, 1));
    l->backward(x, dx);
    for (std::size_t i = 0; i < y.numel(); ++i) {
      ASSERT_EQ(y[i], 0.0f) << l->name();
      ASSERT_EQ(dx[i], 0.0f) << l->name();
    }
    l->forward(x, ye, {.mode = nn::Mode::kEval});
    EXPECT_EQ(std::memcmp(ye.data(), x.data(), x.numel() * 4), 0) << l->name();
  }
}

// A forward that throws (shared axes that do not fit the input) leaves no draw behind: a
// backward after it is refused instead of reading the earlier draw's noise out of bounds.
TEST(Family, AFailedForwardLeavesNothingForBackward) {
  Dropout layer(0.5, Scaling::kInverted, MaskStorage::kBits, 0, {2});
  Tensor y, dx;
  layer.forward(standard_normal(Shape{2, 3, 4}, 1), y, train(1, 1));
  const Tensor flat = standard_normal(Shape{64, 100}, 2);
  EXPECT_THROW(layer.forward(flat, y, train(1, 2)), std::invalid_argument);
  EXPECT_THROW(layer.backward(flat, dx), std::logic_error);
}

TEST(Family, BadRatesAreErrorsNamingValueAndRange) {
  for (double bad : {-0.1, 1.5, std::nan("")}) {
    EXPECT_THROW(GaussianDropout{bad}, std::invalid_argument);
    EXPECT_THROW(AlphaDropout{bad}, std::invalid_argument);
  }
  for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity(), 1e31}) {
    try {
      GaussianNoise layer(bad);
      FAIL() << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr("sigma = "));
      EXPECT_THAT(e.what(), HasSubstr("[0, 1e30]"));
    }
  }
}

// Spatial dropout on [N, C, H, W] with shared axes 2+3: every element of one (example, channel)
// gets the same factor, the fraction of dropped channels is p, and each (n, c) is keyed by its
// noise index: a batch split by row_offset draws the same channels.
TEST(NoiseShape, SpatialDropoutSharesOneValuePerChannelAndKeepsTheRate) {
  const std::int64_t N = 64, C = 96, H = 5, W = 7;
  const Tensor x = filled(Shape{N, C, H, W}, 1.0f);
  for (double p : kRates) {
    Dropout layer(p, Scaling::kInverted, MaskStorage::kBits, 3, {2, 3});
    Tensor y;
    layer.forward(x, y, train(6, 2));
    std::size_t dropped = 0;
    for (std::int64_t nc = 0; nc < N * C; ++nc) {
      const float v = y[static_cast<std::size_t>(nc * H * W)];
      for (std::int64_t i = 1; i < H * W; ++i)
        ASSERT_EQ(y[static_cast<std::size_t>(nc * H * W + i)], v) << "channel " << nc;
      dropped += v == 0.0f;
    }
    EXPECT_NEAR(static_cast<double>(dropped) / (N * C), p, kK * test::binomial_sigma(N * C, p));
  }
  // Split the batch in two at row 21: the same factors.
  Dropout layer(0.5, Scaling::kInverted, MaskStorage::kBits, 3, {2, 3});
  Tensor whole, a, b;
  layer.forward(x, whole, train(6, 2));
  Tensor xa = filled(Shape{21, C, H, W}, 1.0f), xb = filled(Shape{N - 21, C, H, W}, 1.0f);
  layer.forward(xa, a, train(6, 2, 0));
  layer.forward(xb, b, train(6, 2, 21));
  EXPECT_EQ(std::memcmp(a.data(), whole.data(), a.numel() * 4), 0);
  EXPECT_EQ(std::memcmp(b.data(), whole.data() + a.numel(), b.numel() * 4), 0);
}

// Locked (variational) dropout over time: [N, T, D] with shared axis 1 keeps one mask per
// sequence for every step; Gaussian and alpha dropout share the same way.
TEST(NoiseShape, LockedDropoutIsTheSameMaskAtEveryTimeStep) {
  const std::int64_t N = 8, T = 13, D = 40;
  const Tensor x = standard_normal(Shape{N, T, D}, 4);
  std::vector<std::unique_ptr<nn::Layer>> layers;
  layers.push_back(std::make_unique<Dropout>(0.4, Scaling::kInverted, MaskStorage::kBits, 2,
                                             std::vector<int>{1}));
  layers.push_back(std::make_unique<GaussianDropout>(0.4, 2, std::vector<int>{1}));
  layers.push_back(std::make_unique<AlphaDropout>(0.4, 2, std::vector<int>{1}));
  for (auto& l : layers) {
    Tensor y;
    l->forward(x, y, train(9, 1));
    // The factor (or, for alpha, the keep decision) of (n, d) is the same at every t.
    for (std::int64_t n = 0; n < N; ++n) {
      for (std::int64_t d = 0; d < D; ++d) {
        const std::size_t i0 = static_cast<std::size_t>((n * T) * D + d);
        const bool alpha = l->kind() == "alpha_dropout";
        auto factor = [&](std::size_t i) {
          return alpha ? static_cast<float>(y[i] == static_cast<AlphaDropout&>(*l).dropped_value())
                       : y[i] / x[i];
        };
        for (std::int64_t t = 1; t < T; ++t) {
          const std::size_t i = static_cast<std::size_t>((n * T + t) * D + d);
          ASSERT_NEAR(factor(i), factor(i0), 1e-5) << l->kind() << " n " << n << " d " << d;
        }
      }
    }
  }
  EXPECT_THROW(Dropout(0.5, Scaling::kInverted, MaskStorage::kBits, 0, {3}).output_shape(x.shape()),
               std::invalid_argument);
  EXPECT_THROW(parse_shared_axes("0"), std::invalid_argument);
  EXPECT_THROW(parse_shared_axes("3+2"), std::invalid_argument);
  EXPECT_THROW(parse_shared_axes("2+"), std::invalid_argument);
  EXPECT_EQ(parse_shared_axes("1+2+3"), (std::vector<int>{1, 2, 3}));
}

// Independence: the noise of two layers (stream ids), two steps, or two Monte-Carlo samples is
// uncorrelated (|r| within k / sqrt(n)), and each is a pure function of its key.
TEST(Family, NoiseIsIndependentAcrossLayersStepsAndSamples) {
  const Tensor ones = filled(Shape{1 << 20}, 1.0f);
  const double bound = kK / std::sqrt(static_cast<double>(ones.numel()));
  auto draw = [&](nn::Layer& l, nn::Mode mode, std::uint64_t step) {
    Tensor y;
    l.forward(ones, y, {.mode = mode, .seed = 5, .step = step});
    return y;
  };
  GaussianDropout g1(0.5, 1), g2(0.5, 2);
  AlphaDropout a1(0.3, 1), a2(0.3, 2);
  for (auto [l1, l2] : {std::pair<nn::Layer*, nn::Layer*>{&g1, &g2}, {&a1, &a2}}) {
    const Tensor base = draw(*l1, nn::Mode::kTrain, 0);
    EXPECT_LT(std::fabs(test::pearson(base.span(), draw(*l2, nn::Mode::kTrain, 0).span())), bound);
    EXPECT_LT(std::fabs(test::pearson(base.span(), draw(*l1, nn::Mode::kTrain, 1).span())), bound);
    EXPECT_LT(std::fabs(test::pearson(draw(*l1, nn::Mode::kSample, 0).span(),
                                      draw(*l1, nn::Mode::kSample, 1).span())),
              bound);
    // The same key, the same bits.
    const Tensor again = draw(*l1, nn::Mode::kTrain, 0);
    EXPECT_EQ(std::memcmp(base.data(), again.data(), base.numel() * 4), 0);
  }
}

}  // namespace
}  // namespace dropkit::dropout

namespace dropkit::dropout {
namespace {

struct DcFixture {
  std::unique_ptr<DropConnect> layer;
  std::unique_ptr<nn::ParamArena> arena;
};
DcFixture dropconnect(std::int64_t in, std::int64_t out, nn::Activation f, double p,
                      Scaling scaling = Scaling::kInverted,
                      DropConnectInference inference = DropConnectInference::kMean,
                      int samples = 100, int mask_bits = kDefaultMaskBits) {
  DcFixture d{
      std::make_unique<DropConnect>(in, out, f, p, scaling, inference, samples, 12, mask_bits),
      nullptr};
  d.arena = std::make_unique<nn::ParamArena>(std::vector<nn::Layer*>{d.layer.get()});
  d.layer->init_params(4, 1);
  return d;
}

// One-hot inputs read single weights: y_j = s m_jk w_jk. A fraction p of them is 0, the kept
// ones are w_jk / (1 - p) exactly, and a new step draws a new mask; p the rate the masks realise
// at every mask width.
TEST(DropConnectTest, MasksWeightsAtTheRateAndScalesTheKeptOnes) {
  const std::int64_t in = 64, out = 512;
  for (int bits : kMaskBits) {
    for (double configured : kRates) {
      SCOPED_TRACE(::testing::Message() << "mask_bits " << bits << " p " << configured);
      auto d = dropconnect(in, out, nn::Activation::kIdentity, configured, Scaling::kInverted,
                           DropConnectInference::kMean, 100, bits);
      const double p = d.layer->effective_drop_prob();
      EXPECT_EQ(p, rng::KeepThreshold(configured, bits).effective_drop_prob());
      EXPECT_EQ(d.layer->config().at("mask_bits"), bits);
      Tensor x(Shape{in, in});  // row k: e_k
      for (std::int64_t k = 0; k < in; ++k) x[static_cast<std::size_t>(k * in + k)] = 1.0f;
      Tensor y, y2;
      d.layer->forward(x, y, train(3, 1));
      std::size_t zeros = 0;
      const float s = static_cast<float>(1.0 / (1.0 - p));
      for (std::int64_t k = 0; k < in; ++k) {
        for (std::int64_t j = 0; j < out; ++j) {
          const float v = y[static_cast<std::size_t>(k * out + j)];
          const float w = d.layer->weight()[j * in + k];
          if (v == 0.0f) {
            ++zeros;
          } else {
            ASSERT_EQ(v, w * s) << p;
          }
        }
      }
      const double n = static_cast<double>(in * out);
      EXPECT_NEAR(zeros / n, p, kK * test::binomial_sigma(n, p)) << p;
      d.layer->forward(x, y2, train(3, 2));
      EXPECT_NE(std::memcmp(y.data(), y2.data(), y.numel() * 4), 0) << "a new step, a new mask";
    }
  }
}

// The mean rule is the expectation of training's pre-activations: over many steps the average
// training output of an identity layer approaches the eval output within k sigma.
TEST(DropConnectTest, MeanRuleIsTheExpectationOfTraining) {
  for (auto scaling : {Scaling::kInverted, Scaling::kInference}) {
    auto d = dropconnect(20, 30, nn::Activation::kIdentity, 0.4, scaling);
    const Tensor x = standard_normal(Shape{2, 20}, 8);
    Tensor ye, y;
    d.layer->forward(x, ye, {.mode = nn::Mode::kEval});
    const int steps = 4000;
    std::vector<double> sum(ye.numel()), sq(ye.numel());
    for (int t = 0; t < steps; ++t) {
      d.layer->forward(x, y, train(1, static_cast<std::uint64_t>(t)));
      for (std::size_t i = 0; i < y.numel(); ++i) sum[i] += y[i], sq[i] += double(y[i]) * y[i];
    }
    for (std::size_t i = 0; i < ye.numel(); ++i) {
      const double mean = sum[i] / steps, var = sq[i] / steps - mean * mean;
      EXPECT_NEAR(mean, ye[i], kK * std::sqrt(var / steps) + 1e-6) << i;
    }
  }
}

// The Gaussian sampling rule: with the identity its output is mu (the sample mean of N(mu, v),
// within k sigma); with ReLU it is E[max(u, 0)] = mu Phi(mu / sd) + sd phi(mu / sd).
TEST(DropConnectTest, GaussianRuleMatchesItsMoments) {
  const int samples = 4000;
  const Tensor x = standard_normal(Shape{3, 16}, 6);
  auto mean_rule = dropconnect(16, 8, nn::Activation::kIdentity, 0.3);
  auto ident = dropconnect(16, 8, nn::Activation::kIdentity, 0.3, Scaling::kInverted,
                           DropConnectInference::kGaussian, samples);
  auto relu = dropconnect(16, 8, nn::Activation::kReLU, 0.3, Scaling::kInverted,
                          DropConnectInference::kGaussian, samples);
  // The same weights in all three (init_params scales by the activation's gain).
  for (auto* d : {&mean_rule, &ident}) {
    std::copy(relu.arena->values().begin(), relu.arena->values().end(), d->arena->values().begin());
  }
  Tensor mu, yi, yr, again;
  mean_rule.layer->forward(x, mu, {.mode = nn::Mode::kEval});
  ident.layer->forward(x, yi, {.mode = nn::Mode::kEval});
  relu.layer->forward(x, yr, {.mode = nn::Mode::kEval});
  relu.layer->forward(x, again, {.mode = nn::Mode::kEval});
  EXPECT_EQ(std::memcmp(yr.data(), again.data(), yr.numel() * 4), 0) << "eval is deterministic";
  const double k = 0.3 / 0.7;  // s^2 p (1 - p) for inverted scaling
  for (std::int64_t r = 0; r < 3; ++r) {
    for (std::int64_t j = 0; j < 8; ++j) {
      double v = 0;
      for (std::int64_t c = 0; c < 16; ++c) {
        const double xv = x[static_cast<std::size_t>(r * 16 + c)];
        const double wv = ident.layer->weight()[j * 16 + c];
        v += k * xv * xv * wv * wv;
      }
      const std::size_t i = static_cast<std::size_t>(r * 8 + j);
      const double sd = std::sqrt(v), m = mu[i];
      EXPECT_NEAR(yi[i], m, kK * sd / std::sqrt(samples)) << i;
      const double expect = m * 0.5 * std::erfc(-m / sd / std::sqrt(2.0)) +
                            sd * std::exp(-0.5 * m * m / (sd * sd)) / std::sqrt(2 * M_PI);
      EXPECT_NEAR(yr[i], expect, kK * sd / std::sqrt(samples)) << i;
    }
  }
}

}  // namespace
}  // namespace dropkit::dropout
