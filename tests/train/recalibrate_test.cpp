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

}  // namespace
}  // namespace dropkit::train
