// The Dropout layer against docs/spec.md section 1: exact values, both scalings, every mode, the
// edge cases, the backward contract, reproducibility and thread-count invariance.
#include "dropkit/dropout/dropout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "dropkit/dropout/mask.h"

namespace dropkit::dropout {
namespace {

using nn::Context;
using nn::Mode;
using ::testing::HasSubstr;

Tensor ramp(std::int64_t rows, std::int64_t cols, float offset = 0.25f) {
  Tensor t(Shape{rows, cols});
  for (std::size_t i = 0; i < t.numel(); ++i)
    t[i] = offset + static_cast<float>(i % 97) * 0.5f - 20.0f;  // no zeros: 0.25 offset
  return t;
}

Tensor filled(const Shape& s, float v) {
  Tensor t(s);
  for (std::size_t i = 0; i < t.numel(); ++i) t[i] = v;
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * 4) == 0;
}

Context train(std::uint64_t seed = 1, std::uint64_t step = 0) {
  return {.mode = Mode::kTrain, .seed = seed, .step = step};
}

const double kDropProbs[] = {0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99};

TEST(Dropout, InvertedTrainOutputIsZeroOrScaledInput) {
  const Tensor x = ramp(37, 129);
  for (double p : kDropProbs) {
    Dropout layer(p);
    Tensor y;
    layer.forward(x, y, train());
    const float s = static_cast<float>(1.0 / (1.0 - p));
    EXPECT_EQ(layer.train_scale(), s);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < x.numel(); ++i) {
      ASSERT_TRUE(y[i] == 0.0f || y[i] == x[i] * s) << "p " << p << " i " << i;
      kept += y[i] != 0.0f;
    }
    EXPECT_GT(kept, 0u);
    if (p >= 0.1) {
      EXPECT_LT(kept, x.numel());
    }
  }
}

TEST(Dropout, InferenceScalingTrainsUnscaledAndScalesAtEval) {
  const Tensor x = ramp(8, 300);
  for (double p : kDropProbs) {
    Dropout layer(p, Scaling::kInference);
    Tensor y;
    layer.forward(x, y, train());
    for (std::size_t i = 0; i < x.numel(); ++i) ASSERT_TRUE(y[i] == 0.0f || y[i] == x[i]);
    layer.forward(x, y, {.mode = Mode::kEval});
    const float s = static_cast<float>(1.0 - p);
    for (std::size_t i = 0; i < x.numel(); ++i) ASSERT_EQ(y[i], x[i] * s);
  }
}

TEST(Dropout, InvertedEvalIsBitwiseIdentityAndDrawsNothing) {
  Tensor x = ramp(4, 50);
  x[3] = -0.0f;
  x[4] = std::numeric_limits<float>::quiet_NaN();
  Dropout layer(0.5);
  Tensor y;
  layer.forward(x, y, {.mode = Mode::kEval, .seed = 1});
  EXPECT_TRUE(same_bits(x, y));
  Tensor y2;
  layer.forward(x, y2, {.mode = Mode::kEval, .seed = 999, .step = 5});
  EXPECT_TRUE(same_bits(y, y2));  // seed and step do not matter in eval
}

TEST(Dropout, ZeroDropProbIsBitwiseIdentityForwardAndBackward) {
  for (auto scaling : {Scaling::kInverted, Scaling::kInference}) {
    Tensor x = ramp(3, 70);
    x[1] = -0.0f;
    x[2] = std::numeric_limits<float>::infinity();
    x[5] = std::numeric_limits<float>::denorm_min();
    Dropout layer(0.0, scaling);
    Tensor y, dx;
    layer.forward(x, y, train());
    EXPECT_TRUE(same_bits(x, y));
    layer.backward(x, dx);
    EXPECT_TRUE(same_bits(x, dx));
    layer.forward(x, y, {.mode = Mode::kEval});
    EXPECT_TRUE(same_bits(x, y));
  }
}

TEST(Dropout, DropProbOneGivesZerosAndZeroGradientWithoutNanOrInf) {
  for (auto scaling : {Scaling::kInverted, Scaling::kInference}) {
    for (auto storage : {MaskStorage::kRecompute, MaskStorage::kBits}) {
      Tensor x = ramp(5, 33);
      x[0] = std::numeric_limits<float>::infinity();
      x[1] = std::numeric_limits<float>::max();
      Dropout layer(1.0, scaling, storage);
      Tensor y, dx;
      layer.forward(x, y, train());
      for (std::size_t i = 0; i < y.numel(); ++i) ASSERT_EQ(y[i], 0.0f);
      layer.backward(filled(x.shape(), 1e30f), dx);
      for (std::size_t i = 0; i < dx.numel(); ++i) ASSERT_EQ(dx[i], 0.0f);
      layer.forward(x, y, {.mode = Mode::kEval});
      for (std::size_t i = 0; i < y.numel(); ++i) {
        ASSERT_FALSE(std::isnan(y[i]));
        // Eval: inverted returns h, inference returns h * (1 - 1) = 0.
        ASSERT_EQ(y[i], scaling == Scaling::kInverted ? x[i] : 0.0f);
      }
    }
  }
}

TEST(Dropout, WholeRowDroppedFlowsZerosWithoutNan) {
  // Width 2 at drop rate 0.9: many rows lose every unit.
  Dropout layer(0.9);
  const Tensor x = filled(Shape{1000, 2}, 3.0f);
  Tensor y, dx;
  layer.forward(x, y, train(4));
  int empty_rows = 0;
  for (int r = 0; r < 1000; ++r) empty_rows += y[2 * r] == 0.0f && y[2 * r + 1] == 0.0f;
  EXPECT_GT(empty_rows, 700);
  layer.backward(filled(x.shape(), 1.0f), dx);
  for (std::size_t i = 0; i < dx.numel(); ++i) ASSERT_FALSE(std::isnan(dx[i]));
}

TEST(Dropout, ExpectationIsPreservedWithinKSigma) {
  // y_i = c m_i / (1-p): mean c, per-element sd c sqrt(p / (1-p)).
  const double c = 2.0;
  const Tensor x = filled(Shape{1 << 20}, static_cast<float>(c));
  for (double p : kDropProbs) {
    for (auto scaling : {Scaling::kInverted, Scaling::kInference}) {
      Dropout layer(p, scaling);
      Tensor y, ye;
      layer.forward(x, y, train(17, 3));
      layer.forward(x, ye, {.mode = Mode::kEval});
      double sum = 0;
      for (std::size_t i = 0; i < y.numel(); ++i) sum += y[i];
      const double mean = sum / static_cast<double>(y.numel());
      const double expected = ye[0];  // the inference output: c, or c (1-p)
      const double sd_elem =
          scaling == Scaling::kInverted ? c * std::sqrt(p / (1 - p)) : c * std::sqrt(p * (1 - p));
      const double sigma = sd_elem / std::sqrt(static_cast<double>(y.numel()));
      EXPECT_NEAR(mean, expected, 6 * sigma) << "p " << p;
    }
  }
}

TEST(Dropout, GradientIsMaskTimesScaleExactly) {
  const Tensor x = ramp(64, 100);
  const Tensor dy = ramp(64, 100, 1.125f);
  for (double p : {0.1, 0.5, 0.9}) {
    for (auto scaling : {Scaling::kInverted, Scaling::kInference}) {
      Dropout layer(p, scaling);
      Tensor y, dx;
      layer.forward(x, y, train(3, 8));
      layer.backward(dy, dx);
      const float s = layer.train_scale();
      for (std::size_t i = 0; i < x.numel(); ++i) {
        const bool kept = y[i] != 0.0f;  // x has no zeros
        ASSERT_EQ(dx[i], kept ? dy[i] * s : 0.0f);
      }
    }
  }
}

TEST(Dropout, RecomputeAndBitsGiveTheSameGradientBits) {
  const Tensor x = ramp(33, 1001);
  const Tensor dy = ramp(33, 1001, 0.75f);
  for (double p : kDropProbs) {
    Dropout recompute(p, Scaling::kInverted, MaskStorage::kRecompute, 5);
    Dropout bits(p, Scaling::kInverted, MaskStorage::kBits, 5);
    Tensor y1, y2, dx1, dx2;
    recompute.forward(x, y1, train(9, 2));
    bits.forward(x, y2, train(9, 2));
    EXPECT_TRUE(same_bits(y1, y2));
    recompute.backward(dy, dx1);
    bits.backward(dy, dx2);
    EXPECT_TRUE(same_bits(dx1, dx2)) << "p " << p;
  }
  EXPECT_EQ(Dropout::saved_bytes(MaskStorage::kRecompute, 1000000), 0u);
  EXPECT_EQ(Dropout::saved_bytes(MaskStorage::kBits, 1000000), 15625u * 8);  // 1 bit each
}

TEST(Dropout, SameKeySameBitsAnyOtherKeyAnotherMask) {
  const Tensor x = ramp(16, 256);
  auto run = [&](std::uint64_t seed, std::uint32_t layer_id, std::uint64_t step) {
    Dropout layer(0.5, Scaling::kInverted, MaskStorage::kRecompute, layer_id);
    Tensor y;
    layer.forward(x, y, train(seed, step));
    return y;
  };
  const Tensor base = run(1, 1, 1);
  EXPECT_TRUE(same_bits(base, run(1, 1, 1)));
  EXPECT_FALSE(same_bits(base, run(2, 1, 1)));
  EXPECT_FALSE(same_bits(base, run(1, 2, 1)));
  EXPECT_FALSE(same_bits(base, run(1, 1, 2)));
}

TEST(Dropout, BitwiseIdenticalForOneTwoThreeAndEightThreads) {
  // Large enough to be split across threads, odd-sized to leave ragged ranges.
  const Tensor x = ramp(391, 517);
  const Tensor dy = ramp(391, 517, 0.5f);
  Tensor ref_y, ref_dx;
  for (int threads : {1, 2, 3, 8}) {
    for (auto storage : {MaskStorage::kRecompute, MaskStorage::kBits}) {
      parallel::ThreadPool pool(threads);
      Dropout layer(0.3, Scaling::kInverted, storage, 2);
      Tensor y, dx;
      layer.forward(x, y, {.mode = Mode::kTrain, .seed = 5, .step = 6, .pool = &pool});
      layer.backward(dy, dx);
      if (ref_y.numel() == 0) {
        ref_y = y.clone();
        ref_dx = dx.clone();
      }
      EXPECT_TRUE(same_bits(ref_y, y)) << threads << " threads";
      EXPECT_TRUE(same_bits(ref_dx, dx)) << threads << " threads";
    }
  }
}

TEST(Dropout, SplittingTheBatchByRowOffsetReproducesTheWholeBatch) {
  const Tensor x = ramp(10, 77);
  Dropout layer(0.5, Scaling::kInverted, MaskStorage::kRecompute, 3);
  Tensor whole;
  layer.forward(x, whole, train(8, 1));
  for (std::int64_t split : {1, 3, 7}) {
    Tensor top(Shape{split, 77}), bottom(Shape{10 - split, 77});
    std::memcpy(top.data(), x.data(), top.numel() * 4);
    std::memcpy(bottom.data(), x.data() + top.numel(), bottom.numel() * 4);
    Tensor yt, yb;
    layer.forward(top, yt, {.mode = Mode::kTrain, .seed = 8, .step = 1, .row_offset = 0});
    layer.forward(bottom, yb,
                  {.mode = Mode::kTrain,
                   .seed = 8,
                   .step = 1,
                   .row_offset = static_cast<std::uint64_t>(split)});
    EXPECT_EQ(std::memcmp(yt.data(), whole.data(), yt.numel() * 4), 0);
    EXPECT_EQ(std::memcmp(yb.data(), whole.data() + yt.numel(), yb.numel() * 4), 0);
  }
}

TEST(Dropout, InPlaceForwardAndBackwardMatchOutOfPlace) {
  for (auto storage : {MaskStorage::kRecompute, MaskStorage::kBits}) {
    const Tensor x = ramp(50, 333);
    Dropout a(0.4, Scaling::kInverted, storage, 1), b(0.4, Scaling::kInverted, storage, 1);
    Tensor y, dx;
    a.forward(x, y, train(2, 2));
    a.backward(x, dx);
    Tensor inplace = x.clone();
    b.forward(inplace, inplace, train(2, 2));
    EXPECT_TRUE(same_bits(y, inplace));
    Tensor grad = x.clone();
    b.backward(grad, grad);
    EXPECT_TRUE(same_bits(dx, grad));
  }
}

TEST(Dropout, SampleModeDrawsMasksBySampleIndexAndHasNoBackward) {
  const Tensor x = ramp(20, 64);
  Dropout layer(0.5);
  Tensor s0, s0again, s1, e, dx;
  layer.forward(x, s0, {.mode = Mode::kSample, .seed = 3, .step = 0});
  layer.forward(x, s0again, {.mode = Mode::kSample, .seed = 3, .step = 0});
  layer.forward(x, s1, {.mode = Mode::kSample, .seed = 3, .step = 1});
  layer.forward(x, e, {.mode = Mode::kEval});
  EXPECT_TRUE(same_bits(s0, s0again));
  EXPECT_FALSE(same_bits(s0, s1));
  EXPECT_FALSE(same_bits(s0, e));
  EXPECT_THROW(layer.backward(x, dx), std::logic_error);
}

TEST(Dropout, InvalidDropProbThrowsNamingValueAndRange) {
  for (double bad :
       {-0.1, 1.0000001, 2.0, std::nan(""), -std::numeric_limits<double>::infinity()}) {
    try {
      Dropout layer(bad);
      FAIL() << "no error for " << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr("[0, 1]"));
      EXPECT_THAT(e.what(), HasSubstr("drop_prob"));
    }
  }
  try {
    Dropout layer(1.5);
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("1.5"));
  }
}

TEST(Dropout, BackwardErrorsAreClearAndChangeNothing) {
  Dropout layer(0.5);
  const Tensor x = ramp(4, 10);
  Tensor dx;
  EXPECT_THROW(layer.backward(x, dx), std::logic_error);  // no forward yet
  Tensor y;
  layer.forward(x, y, train(1, 1));
  Tensor good;
  layer.backward(x, good);
  try {
    layer.backward(ramp(4, 11), dx);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("[4, 11]"));
    EXPECT_THAT(e.what(), HasSubstr("[4, 10]"));
  }
  Tensor again;
  layer.backward(x, again);  // the failed call left the saved state intact
  EXPECT_TRUE(same_bits(good, again));
  layer.forward(x, y, {.mode = Mode::kEval});
  EXPECT_THROW(layer.backward(x, dx), std::logic_error);  // eval forward leaves nothing
}

TEST(MaskModule, EdgeProbabilitiesWriteConsistentBits) {
  parallel::ThreadPool pool(1);
  std::vector<float> x(130, 1.0f), y(130);
  for (double p : {0.0, 1.0}) {
    std::vector<std::uint64_t> bits(mask_words(5, 130), 0x5555555555555555ull);
    apply_keep_mask(pool, {1, 1, 1}, 5, rng::KeepThreshold(p), 1.0f, x, y, bits);
    std::vector<float> z(130);
    apply_stored_mask(pool, bits, 5, 1.0f, x, z);
    EXPECT_EQ(y, z);
    EXPECT_EQ(bits[0] & 0x1F, 0x15u);  // the five bits before the range are untouched
  }
  EXPECT_THROW(
      apply_keep_mask(pool, {}, 0, rng::KeepThreshold(0.5), 1.0f, x, std::span<float>(y).first(5)),
      std::invalid_argument);
}

}  // namespace
}  // namespace dropkit::dropout
