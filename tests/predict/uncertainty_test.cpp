// The uncertainty and calibration numbers against values computed by hand on small inputs, and
// the AUROC against its definition (all pairs) on generated cases.
#include "dropkit/predict/uncertainty.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace dropkit::predict {
namespace {

std::vector<float> log_of(std::vector<double> p) {
  std::vector<float> out;
  for (double v : p) out.push_back(static_cast<float>(std::log(v)));
  return out;
}

TEST(Uncertainty, TwoSamplesOfThreeClassesByHand) {
  SampleAccumulator acc(2, 3);
  acc.add(1, log_of({0.7, 0.2, 0.1}));
  acc.add(1, log_of({0.3, 0.6, 0.1}));
  const ExampleStats s = acc.stats(1, /*label=*/1);
  // p_bar = (0.5, 0.4, 0.1).
  EXPECT_EQ(s.predicted, 0);
  EXPECT_NEAR(s.confidence, 0.5, 1e-7);
  EXPECT_NEAR(s.entropy, 0.943348, 1e-6);           // -(.5 ln .5 + .4 ln .4 + .1 ln .1)
  EXPECT_NEAR(s.expected_entropy, 0.849882, 1e-6);  // (0.801819 + 0.897946) / 2
  EXPECT_NEAR(s.mutual_information, 0.093466, 1e-6);
  EXPECT_NEAR(s.variance, 0.04, 1e-7);  // p_t[0] = 0.7, 0.3 around 0.5
  EXPECT_NEAR(s.log_prob_label, std::log(0.4), 1e-7);
  const auto p = acc.mean_probs(1);
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-7);
  EXPECT_EQ(acc.samples(0), 0u);
  EXPECT_EQ(acc.samples(1), 2u);
  EXPECT_THROW(acc.stats(0, 0), std::logic_error);  // no samples
  acc.clear();
  EXPECT_EQ(acc.samples(1), 0u);
}

TEST(Uncertainty, OneSampleHasNoModelUncertainty) {
  SampleAccumulator acc(1, 4);
  acc.add(0, log_of({0.1, 0.2, 0.3, 0.4}));
  const ExampleStats s = acc.stats(0, -1);
  EXPECT_EQ(s.predicted, 3);
  EXPECT_EQ(s.mutual_information, 0.0);
  EXPECT_NEAR(s.variance, 0.0, 1e-15);
  EXPECT_EQ(s.log_prob_label, 0.0);  // no label
}

TEST(Uncertainty, LogProbabilityOfTheLabelSurvivesUnderflow) {
  // p[label] = e^-1000 in every sample: exp underflows a double, log-sum-exp does not.
  SampleAccumulator acc(1, 2);
  for (int t = 0; t < 3; ++t) acc.add(0, std::vector<float>{0.0f, -1000.0f});
  EXPECT_NEAR(acc.stats(0, 1).log_prob_label, -1000.0, 1e-9);
  // Different magnitudes: log((e^-1 + e^-3) / 2).
  SampleAccumulator b(1, 2);
  b.add(0, std::vector<float>{-1.0f, std::log1p(-std::exp(-1.0f))});
  b.add(0, std::vector<float>{-3.0f, std::log1p(-std::exp(-3.0f))});
  EXPECT_NEAR(b.stats(0, 0).log_prob_label, std::log((std::exp(-1.0) + std::exp(-3.0)) / 2), 1e-6);
  // A probability of exactly 0 in every sample: log p = -inf, never NaN.
  SampleAccumulator z(1, 2);
  const float inf = std::numeric_limits<float>::infinity();
  z.add(0, std::vector<float>{0.0f, -inf});
  z.add(0, std::vector<float>{0.0f, -inf});
  EXPECT_EQ(z.stats(0, 1).log_prob_label, -std::numeric_limits<double>::infinity());
  EXPECT_EQ(z.stats(0, 0).log_prob_label, 0.0);
  EXPECT_THROW(z.add(1, std::vector<float>{0.0f, 0.0f}), std::invalid_argument);  // no example 1
  EXPECT_THROW(z.stats(0, 2), std::invalid_argument);                             // no class 2
}

TEST(Uncertainty, CalibrationBinsAreRightClosed) {
  EXPECT_EQ(calibration_bin(0.0), 0);
  EXPECT_EQ(calibration_bin(1.0 / 15), 0);
  EXPECT_EQ(calibration_bin(std::nextafter(1.0 / 15, 1.0)), 1);
  EXPECT_EQ(calibration_bin(0.5), 7);
  EXPECT_EQ(calibration_bin(0.4), 5);  // 6/15 exactly: (5/15, 6/15]
  EXPECT_EQ(calibration_bin(1.0), 14);
}

TEST(Uncertainty, AccuracyNllBrierAndEceByHand) {
  AggregateAccumulator agg;
  // (predicted, confidence, p_bar, label)
  struct Case {
    int predicted;
    double confidence;
    std::vector<double> p;
    int label;
  };
  const std::vector<Case> cases = {
      {0, 0.95, {0.95, 0.05}, 0},  // bin 14, right
      {0, 0.95, {0.95, 0.05}, 1},  // bin 14, wrong
      {1, 0.5, {0.5, 0.5}, 1},     // bin 7, right (a tie predicts... whatever `predicted` says)
      {0, 0.4, {0.4, 0.6}, 1},     // bin 5, wrong (not the argmax, but ECE takes it as given)
  };
  double nll = 0, brier = 0;
  for (const Case& c : cases) {
    ExampleStats s;
    s.predicted = c.predicted;
    s.confidence = c.confidence;
    s.log_prob_label = std::log(c.p[c.label]);
    agg.add(s, c.p, c.label);
    nll -= std::log(c.p[c.label]);
    for (int k = 0; k < 2; ++k) brier += std::pow(c.p[k] - (k == c.label), 2);
  }
  const Aggregate a = agg.result();
  EXPECT_EQ(a.count, 4u);
  EXPECT_DOUBLE_EQ(a.accuracy, 0.5);
  EXPECT_NEAR(a.nll, nll / 4, 1e-12);
  EXPECT_NEAR(a.brier, brier / 4, 1e-12);
  EXPECT_NEAR(a.brier, (0.005 + 1.805 + 0.5 + 0.32) / 4, 1e-12);
  // |0.5 - 0.95| * 2/4 + |1 - 0.5| * 1/4 + |0 - 0.4| * 1/4
  EXPECT_NEAR(a.ece, 0.45, 1e-12);
  EXPECT_EQ(a.bins[14].count, 2u);
  EXPECT_EQ(a.bins[7].correct, 1u);
  EXPECT_TRUE(std::isnan(AggregateAccumulator().result().accuracy));
  EXPECT_THROW(agg.add(ExampleStats{}, std::vector<double>{0.5, 0.5}, 2), std::invalid_argument);
}

// The definition: P(score of a positive > score of a negative) + P(tie) / 2, over all pairs.
double auroc_by_pairs(const std::vector<double>& s, const std::vector<std::uint8_t>& pos) {
  double wins = 0, pairs = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    for (std::size_t j = 0; j < s.size(); ++j) {
      if (!pos[i] || pos[j]) continue;
      pairs += 1;
      wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
    }
  }
  return wins / pairs;
}

TEST(Uncertainty, AurocIsTheMannWhitneyStatisticWithTies) {
  EXPECT_DOUBLE_EQ(auroc(std::vector<double>{1, 2, 3, 4}, std::vector<std::uint8_t>{0, 0, 1, 1}),
                   1.0);
  EXPECT_DOUBLE_EQ(auroc(std::vector<double>{1, 2, 3, 4}, std::vector<std::uint8_t>{1, 1, 0, 0}),
                   0.0);
  EXPECT_DOUBLE_EQ(auroc(std::vector<double>{7, 7, 7}, std::vector<std::uint8_t>{1, 0, 0}), 0.5);
  EXPECT_TRUE(std::isnan(auroc(std::vector<double>{1, 2}, std::vector<std::uint8_t>{1, 1})));
  EXPECT_THROW(auroc(std::vector<double>{1, std::nan("")}, std::vector<std::uint8_t>{1, 0}),
               std::invalid_argument);
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t n = 2 + rng() % 60;
    std::vector<double> s(n);
    std::vector<std::uint8_t> pos(n);
    for (std::size_t i = 0; i < n; ++i) {
      s[i] = static_cast<double>(rng() % (1 + trial % 7));  // many ties
      pos[i] = rng() % 3 == 0;
    }
    pos[0] = 1;
    pos[1] = 0;
    ASSERT_NEAR(auroc(s, pos), auroc_by_pairs(s, pos), 1e-12) << "trial " << trial;
  }
}

}  // namespace
}  // namespace dropkit::predict
