// Activation statistics (the paper's sparsity figures): against a direct computation from the
// model's own forward pass, the same for any batch size and thread count, and a clear error for
// a layer that does not exist.
#include "dropkit/train/activations.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>

#include "dropkit/data/batcher.h"
#include "support/idx_files.h"

namespace dropkit::train {
namespace {

using json = nlohmann::json;

model::Model relu_model() {
  model::Model m(json::parse(R"([{"kind": "dropout", "drop_prob": 0.3},
                                 {"kind": "dense", "units": 7, "activation": "relu"},
                                 {"kind": "dropout", "drop_prob": 0.5},
                                 {"kind": "dense", "units": 3}])"),
                 Shape{1, 4, 4}, {0.4f, 0.3f});
  m.init_params(5);
  return m;
}

TEST(ActivationStatistics, AreTheMeansOfTheEvalForwardPerUnitAndPerExample) {
  const auto d = test::synthetic_dataset(53, 4, 3, 11);
  std::vector<std::uint32_t> rows(d.count);
  std::iota(rows.begin(), rows.end(), 0u);
  model::Model m = relu_model();
  parallel::ThreadPool pool(1);
  // Direct: the whole set in one eval-mode forward through layers 1-2.
  Tensor x;
  std::vector<std::uint8_t> labels;
  data::make_batch(d, rows, m.normalization(), x, labels);
  const Tensor& h =
      m.net().forward(m.shaped_input(x), {.mode = nn::Mode::kEval, .pool = &pool}, 0, 2);
  const Tensor hidden = h.clone();
  for (std::size_t batch : {1u, 7u, 16u, 53u, 100u}) {
    std::vector<double> first_means;
    for (std::size_t threads : {1u, 2u, 3u}) {
      parallel::ThreadPool p(threads);
      const ActivationStats s = activation_statistics(m, d, rows, 2, batch, p);
      if (first_means.empty()) first_means = s.unit_mean;
      EXPECT_EQ(s.unit_mean, first_means) << "threads " << threads;  // bitwise
      ASSERT_EQ(s.units, 7u);
      ASSERT_EQ(s.examples, 53u);
      ASSERT_EQ(s.unit_mean.size(), 7u);
      ASSERT_EQ(s.active_fraction.size(), 53u);
      double total = 0;
      int any_zero = 0;
      for (std::size_t j = 0; j < 7; ++j) {
        double sum = 0;
        for (std::size_t i = 0; i < 53; ++i) sum += hidden.data()[i * 7 + j];
        EXPECT_NEAR(s.unit_mean[j], sum / 53, 1e-6) << j;  // GEMM rounding differs by batch
        total += sum;
      }
      for (std::size_t i = 0; i < 53; ++i) {
        int active = 0;
        for (std::size_t j = 0; j < 7; ++j) active += hidden.data()[i * 7 + j] > 0 ? 1 : 0;
        any_zero += active < 7 ? 1 : 0;
        EXPECT_EQ(s.active_fraction[i], active / 7.0) << i;
      }
      EXPECT_NEAR(s.mean, total / (53 * 7), 1e-6);
      EXPECT_GT(any_zero, 0);  // ReLU silenced some units: the fractions are not all 1
    }
  }
}

TEST(ActivationStatistics, ALayerOutsideTheModelIsRefusedNamingTheRange) {
  const auto d = test::synthetic_dataset(10, 4, 3, 11);
  std::vector<std::uint32_t> rows(d.count);
  std::iota(rows.begin(), rows.end(), 0u);
  model::Model m = relu_model();
  parallel::ThreadPool pool(1);
  for (std::size_t layer : {0u, 5u}) {
    try {
      activation_statistics(m, d, rows, layer, 8, pool);
      ADD_FAILURE() << layer;
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), ::testing::HasSubstr("layers 1 to 4"));
    }
  }
  EXPECT_THROW(activation_statistics(m, d, {}, 2, 8, pool), std::invalid_argument);
  // The last layer is allowed: the logits.
  EXPECT_EQ(activation_statistics(m, d, rows, 4, 8, pool).units, 3u);
}

}  // namespace
}  // namespace dropkit::train
