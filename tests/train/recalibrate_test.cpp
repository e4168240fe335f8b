// BatchNorm recalibration: afterwards the running statistics are the averages over batches of
// the batch statistics of BN's input with dropout off, the same bits at any thread count.
#include "dropkit/train/recalibrate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "dropkit/data/batcher.h"
#include "dropkit/nn/batchnorm.h"
#include "support/idx_files.h"

namespace dropkit::train {
namespace {

using json = nlohmann::json;

model::Model bn_model() {
  // Dropout before BN: the set-up whose running variance recalibration corrects.
  model::Model m(json::parse(R"([{"kind": "dense", "units": 5},
                                 {"kind": "dropout", "drop_prob": 0.5},
                                 {"kind": "batchnorm", "momentum": 0.3},
                                 {"kind": "activation", "function": "relu"},
                                 {"kind": "dense", "units": 3}])"),
                 Shape{1, 3, 3}, {0.4f, 0.3f});
  m.init_params(2);
  return m;
}

TEST(Recalibrate, RunningStatisticsBecomeTheAverageBatchStatisticsWithDropoutOff) {
  const auto d = test::synthetic_dataset(45, 3, 3, 7);
  std::vector<std::uint32_t> rows(d.count);
  std::iota(rows.begin(), rows.end(), 0u);
  model::Model m = bn_model();
  parallel::ThreadPool pool(2);
  // Training forwards first, so that the running statistics hold the noisy ones.
  Tensor x;
  std::vector<std::uint8_t> labels;
  data::make_batch(d, rows, m.normalization(), x, labels);
  for (std::uint64_t t = 0; t < 4; ++t) m.forward(x, {.mode = nn::Mode::kTrain, .step = t});
  EXPECT_EQ(recalibrate_batchnorm(m, d, rows, 10, pool), 1u);  // batches of 10, 10, 10, 10, 5

  // By hand: BN's input in eval mode (dropout off: the dense output), per batch of 10.
  std::vector<double> mean(5, 0.0), var(5, 0.0);
  const int batches = 5;  // 10, 10, 10, 10, 5
  for (int b = 0; b < batches; ++b) {
    const std::size_t n = b < 4 ? 10 : 5;
    data::make_batch(d, std::span(rows).subspan(b * 10, n), m.normalization(), x, labels);
    const Tensor& h = m.net().forward(m.shaped_input(x), {.mode = nn::Mode::kEval}, 0, 1);
    for (int c = 0; c < 5; ++c) {
      double s = 0, sq = 0;
      for (std::size_t i = 0; i < n; ++i) s += h[i * 5 + c];
      const double mu = s / static_cast<double>(n);
      for (std::size_t i = 0; i < n; ++i) sq += (h[i * 5 + c] - mu) * (h[i * 5 + c] - mu);
      mean[c] += mu / batches;
      var[c] += sq / static_cast<double>(n - 1) / batches;
    }
  }
  const auto& bn = dynamic_cast<const nn::BatchNorm&>(m.layer(2));
  for (int c = 0; c < 5; ++c) {
    EXPECT_NEAR(bn.running_mean()[c], mean[c], 1e-5 * (1 + std::fabs(mean[c]))) << c;
    EXPECT_NEAR(bn.running_var()[c], var[c], 1e-5 * (1 + var[c])) << c;
  }

  // The same bits with 1 and 3 threads.
  for (int threads : {1, 3}) {
    model::Model other = bn_model();
    std::copy(m.params().buffers().begin(), m.params().buffers().end(),
              other.params().buffers().begin());
    parallel::ThreadPool p(threads);
    recalibrate_batchnorm(other, d, rows, 10, p);
    const auto& obn = dynamic_cast<const nn::BatchNorm&>(other.layer(2));
    for (int c = 0; c < 5; ++c) {
      EXPECT_EQ(obn.running_mean()[c], bn.running_mean()[c]);
      EXPECT_EQ(obn.running_var()[c], bn.running_var()[c]);
    }
  }
}

TEST(Recalibrate, NoBatchNormChangesNothingAndTinyBatchesAreRefused) {
  const auto d = test::synthetic_dataset(10, 3, 3, 1);
  std::vector<std::uint32_t> rows(d.count);
  std::iota(rows.begin(), rows.end(), 0u);
  model::Model plain(json::parse(R"([{"kind": "dense", "units": 3}])"), Shape{1, 3, 3});
  plain.init_params(1);
  parallel::ThreadPool pool(1);
  EXPECT_EQ(recalibrate_batchnorm(plain, d, rows, 4, pool), 0u);
  model::Model m = bn_model();
  EXPECT_THROW(recalibrate_batchnorm(m, d, rows, 1, pool), std::invalid_argument);
  EXPECT_THROW(recalibrate_batchnorm(m, d, std::span(rows).first(1), 4, pool),
               std::invalid_argument);
}

// The variance shift (Li et al. 2019): inverted dropout with keep probability q just before BN
// leaves a running variance about 1/q times the variance BN meets in eval mode, so the measured
// eval/running ratio is about q; after recalibration it is about 1. Several drop rates, k-sigma
// style bounds from the number of examples.
TEST(VarianceShift, DropoutBeforeBatchNormGivesAboutTheKeepProbabilityAndRecalibrationOne) {
  const auto d = test::synthetic_dataset(600, 4, 4, 3);
  std::vector<std::uint32_t> rows(d.count);
  std::iota(rows.begin(), rows.end(), 0u);
  parallel::ThreadPool pool(2);
  for (double p : {0.2, 0.5, 0.7}) {
    SCOPED_TRACE("drop rate " + std::to_string(p));
    // 16 inputs through a fixed dense layer, dropout, BN: BN's input is zero-mean-ish.
    model::Model m(json::array({{{"kind", "dense"}, {"units", 24}},
                                {{"kind", "dropout"}, {"drop_prob", p}},
                                {{"kind", "batchnorm"}, {"momentum", 0.02}},
                                {{"kind", "dense"}, {"units", 3}}}),
                   Shape{1, 4, 4}, {0.4f, 0.3f});
    m.init_params(5);
    Tensor x;
    std::vector<std::uint8_t> labels;
    for (std::uint64_t t = 0; t < 400; ++t) {
      const auto part = std::span(rows).subspan((t * 50) % 600, 50);
      data::make_batch(d, part, m.normalization(), x, labels);
      m.forward(x, {.mode = nn::Mode::kTrain, .step = t, .pool = &pool});
    }
    const auto shift = measure_variance_shift(m, d, rows, 64, pool);
    ASSERT_EQ(shift.size(), 1u);
    EXPECT_EQ(shift[0].layer, 2u);
    EXPECT_EQ(shift[0].channels, 24u);
    // With BN's input of mean m and variance v in eval mode, training sees variance
    // v / q + m^2 (1/q - 1), so the ratio v / that is at most q (equal for m = 0; eps adds a
    // hair). 24 channels averaged.
    EXPECT_NEAR(shift[0].eval_over_running, 1 - p, 0.08 * (1 - p) + 0.02);
    EXPECT_GT(shift[0].eval_over_running, (1 - p) * 0.9);
    // The batch size and thread count change nothing but rounding.
    parallel::ThreadPool one(1);
    EXPECT_NEAR(measure_variance_shift(m, d, rows, 7, one)[0].eval_over_running,
                shift[0].eval_over_running, 1e-9);
    recalibrate_batchnorm(m, d, rows, 64, pool);
    const auto after = measure_variance_shift(m, d, rows, 64, pool);
    EXPECT_NEAR(after[0].eval_over_running, 1.0, 0.03);
  }
}

TEST(VarianceShift, ExactOnAHandMadeBatchNormAndEmptyWithoutOne) {
  const auto d = test::synthetic_dataset(40, 2, 2, 3);
  std::vector<std::uint32_t> rows(d.count);
  std::iota(rows.begin(), rows.end(), 0u);
  parallel::ThreadPool pool(2);
  model::Model m(
      json::array({{{"kind", "batchnorm"}, {"eps", 1e-3}}, {{"kind", "dense"}, {"units", 3}}}),
      Shape{1, 2, 2}, {0.0f, 1.0f});
  m.init_params(1);
  const auto& var_entry = m.params().buffer_entries().at(1);
  ASSERT_NE(var_entry.name.find("running_var"), std::string::npos);
  m.params().buffers()[var_entry.offset] = 2.0f;  // the one channel's running variance
  // By hand: the variance of every pixel of every example (one channel).
  double s = 0, sq = 0, n = 0;
  for (std::uint32_t r : rows) {
    for (std::size_t j = 0; j < 4; ++j) {
      const double v = static_cast<float>(d.images[r * 4 + j]) / 255.0f;
      s += v;
      sq += v * v;
      ++n;
    }
  }
  const double var = sq / n - (s / n) * (s / n);
  const auto shift = measure_variance_shift(m, d, rows, 16, pool);
  ASSERT_EQ(shift.size(), 1u);
  EXPECT_NEAR(shift[0].eval_over_running, (var + 1e-3) / (2.0 + 1e-3), 1e-6);
  EXPECT_NEAR(shift[0].running_var, 2.0, 1e-7);
  model::Model plain(json::array({{{"kind", "dense"}, {"units", 3}}}), Shape{1, 2, 2});
  plain.init_params(1);
  EXPECT_TRUE(measure_variance_shift(plain, d, rows, 16, pool).empty());
}

}  // namespace
}  // namespace dropkit::train
