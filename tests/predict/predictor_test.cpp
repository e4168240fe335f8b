// Monte-Carlo prediction over a data set: sample t of example i is the same whatever the chunking,
// the range predicted, the thread count or the samples stacked per pass; the first k samples of a
// T-sample run are a k-sample run; the deterministic prediction is the eval-mode forward.
#include "dropkit/predict/predictor.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <map>

#include "dropkit/data/batcher.h"
#include "support/idx_files.h"

namespace dropkit::predict {
namespace {

using json = nlohmann::json;

// Per (example, count): the statistics and p_bar.
struct Got {
  ExampleStats stats;
  std::vector<double> probs;
};
using Results = std::map<std::pair<std::size_t, std::uint64_t>, Got>;

Results run(model::Model& m, const data::Dataset& d, std::size_t begin, std::size_t end,
            const PredictOptions& o, int threads = 2) {
  parallel::ThreadPool pool(threads);
  Results r;
  predict(m, d, begin, end, o, pool, [&](const ExampleResult& e) {
    EXPECT_TRUE(
        r.emplace(std::pair(e.index, e.samples), Got{e.stats, {e.probs.begin(), e.probs.end()}})
            .second)
        << "reported twice";
    EXPECT_EQ(e.label, d.labels[e.index]);
  });
  return r;
}

// Exact: bit for bit; otherwise to 1e-5 (a product's rounding may follow its row count).
void expect_same(const Got& a, const Got& b, bool exact, const std::string& what) {
  ASSERT_EQ(a.probs.size(), b.probs.size());
  for (std::size_t c = 0; c < a.probs.size(); ++c) {
    if (exact) {
      ASSERT_EQ(std::bit_cast<std::uint64_t>(a.probs[c]), std::bit_cast<std::uint64_t>(b.probs[c]))
          << what << ", class " << c;
    } else {
      ASSERT_NEAR(a.probs[c], b.probs[c], 1e-5) << what << ", class " << c;
    }
  }
  if (exact) {
    EXPECT_EQ(std::bit_cast<std::uint64_t>(a.stats.mutual_information),
              std::bit_cast<std::uint64_t>(b.stats.mutual_information))
        << what;
  }
}

const data::Dataset& images() {
  static const data::Dataset d = test::synthetic_dataset(37, 2, 4, 3);  // 2x2 images, 4 classes
  return d;
}

// Noise only after the last product: its masks decide the output bit for bit. Logits are the
// four (normalised) pixels, dropped.
model::Model noise_only_model() {
  model::Model m(json::parse(R"([{"kind": "flatten"}, {"kind": "dropout", "drop_prob": 0.5}])"),
                 Shape{1, 2, 2}, {0.5f, 0.25f});
  m.init_params(1);
  return m;
}

// An MLP with input dropout, a hidden dropout and a Gaussian dropout: no deterministic prefix.
model::Model mlp_model(const char* first = R"({"kind": "dropout", "drop_prob": 0.2})") {
  model::Model m(json::parse(std::string("[") + first + R"(,
        {"kind": "dense", "units": 33, "activation": "relu"},
        {"kind": "dropout", "drop_prob": 0.5},
        {"kind": "dense", "units": 21, "activation": "tanh"},
        {"kind": "gaussian_dropout", "drop_prob": 0.3},
        {"kind": "dense", "units": 4}])"),
                 Shape{1, 2, 2}, {0.5f, 0.25f});
  m.init_params(3);
  return m;
}

TEST(Predictor, SampleMasksDoNotDependOnChunkingRangeOrThreads) {
  const auto& d = images();
  for (bool noise_only : {true, false}) {
    SCOPED_TRACE(noise_only ? "noise only" : "mlp");
    model::Model m = noise_only ? noise_only_model() : mlp_model();
    const Results ref = run(m, d, 0, d.count, {.samples = 7, .seed = 4, .max_rows = 4096});
    ASSERT_EQ(ref.size(), d.count);
    // One example per chunk and one sample per pass; 3 examples per chunk; a sub-range; threads.
    for (std::size_t max_rows : {1u, 3u, 21u, 50u}) {
      for (int threads : {1, 3}) {
        const std::size_t begin = max_rows == 21 ? 5 : 0, end = max_rows == 21 ? 30 : d.count;
        const Results r =
            run(m, d, begin, end, {.samples = 7, .seed = 4, .max_rows = max_rows}, threads);
        ASSERT_EQ(r.size(), end - begin);
        for (const auto& [key, got] : r) {
          expect_same(
              got, ref.at(key), noise_only,
              "max_rows " + std::to_string(max_rows) + ", example " + std::to_string(key.first));
        }
      }
    }
    // The same settings give the same bits at any thread count, products included.
    const Results one = run(m, d, 0, d.count, {.samples = 7, .seed = 4, .max_rows = 12}, 1);
    const Results three = run(m, d, 0, d.count, {.samples = 7, .seed = 4, .max_rows = 12}, 3);
    for (const auto& [key, got] : one) expect_same(got, three.at(key), true, "threads");
    // Another seed gives other samples.
    const Results other = run(m, d, 0, d.count, {.samples = 7, .seed = 5, .max_rows = 4096});
    int differ = 0;
    for (const auto& [key, got] : other) differ += got.probs != ref.at(key).probs;
    EXPECT_GT(differ, static_cast<int>(d.count) / 2);
  }
}

TEST(Predictor, TheFirstKSamplesAreAKSampleRun) {
  const auto& d = images();
  for (bool noise_only : {true, false}) {
    model::Model m = noise_only ? noise_only_model() : mlp_model();
    const Results all =
        run(m, d, 0, d.count, {.samples = 12, .seed = 2, .report_at = {3, 1}, .max_rows = 24});
    ASSERT_EQ(all.size(), 3 * d.count);
    for (std::uint64_t k : {1u, 3u, 12u}) {
      const Results alone = run(m, d, 0, d.count, {.samples = k, .seed = 2, .max_rows = 24});
      for (const auto& [key, got] : alone)
        expect_same(all.at({key.first, k}), got, noise_only, "k = " + std::to_string(k));
    }
  }
}

TEST(Predictor, DeterministicIsTheEvalForward) {
  const auto& d = images();
  model::Model m = mlp_model();
  const Results r = run(m, d, 0, d.count, {});
  std::vector<std::uint32_t> rows(d.count);
  std::iota(rows.begin(), rows.end(), 0u);
  Tensor x;
  std::vector<std::uint8_t> labels;
  data::make_batch(d, rows, m.normalization(), x, labels);
  const Tensor& logits = m.forward(x, {.mode = nn::Mode::kEval});
  for (std::size_t i = 0; i < d.count; ++i) {
    const Got& g = r.at({i, 1});
    double z = 0;
    for (int c = 0; c < 4; ++c) z += std::exp(static_cast<double>(logits[i * 4 + c]));
    for (int c = 0; c < 4; ++c)
      EXPECT_NEAR(g.probs[c], std::exp(static_cast<double>(logits[i * 4 + c])) / z, 1e-6);
    EXPECT_EQ(g.stats.mutual_information, 0.0);
    EXPECT_EQ(g.stats.variance, 0.0);
  }
}

TEST(Predictor, MonteCarloSamplesVaryAndAModelWithoutNoiseHasNoModelUncertainty) {
  const auto& d = images();
  model::Model m = mlp_model();
  const Results r = run(m, d, 0, d.count, {.samples = 20, .seed = 1});
  double mi = 0;
  for (const auto& [key, got] : r) mi += got.stats.mutual_information;
  EXPECT_GT(mi / static_cast<double>(d.count), 1e-3);
  // Without noise (no stochastic layer, or layers that draw but change nothing) the T samples
  // are T copies of the eval output.
  for (const char* net : {R"([{"kind": "dense", "units": 4}])",
                          R"([{"kind": "dropout", "drop_prob": 0.0}, {"kind": "dense", "units": 4},
                              {"kind": "gaussian_noise", "sigma": 0.0}])"}) {
    SCOPED_TRACE(net);
    model::Model quiet(json::parse(net), Shape{1, 2, 2});
    quiet.init_params(2);
    const Results det = run(quiet, d, 0, d.count, {});
    const Results mc = run(quiet, d, 0, d.count, {.samples = 5, .seed = 1});
    for (const auto& [key, got] : mc) {
      EXPECT_NEAR(got.stats.mutual_information, 0.0, 1e-12);  // rounding of the mean
      EXPECT_NEAR(got.stats.variance, 0.0, 1e-15);
      expect_same(got, det.at({key.first, 1}), false, "no noise");
    }
  }
}

// Monte-Carlo dropout with BatchNorm: the samples use BN's running statistics, never the
// batch's. With batch statistics an example's prediction would depend on the examples predicted
// with it (and T samples of one example would be normalised against each other).
TEST(Predictor, BatchNormSamplesWithItsRunningStatistics) {
  const auto& d = images();
  // BN after the first dropout, so that it runs in the sampled part, not the eval-mode prefix.
  model::Model m(json::parse(R"([{"kind": "dense", "units": 12},
                                 {"kind": "dropout", "drop_prob": 0.5},
                                 {"kind": "dense", "units": 9},
                                 {"kind": "batchnorm", "momentum": 0.5},
                                 {"kind": "activation", "function": "relu"},
                                 {"kind": "dense", "units": 4}])"),
                 Shape{1, 2, 2}, {0.5f, 0.25f});
  m.init_params(5);
  // Move the running statistics away from their initial (0, 1) with a few training forwards.
  std::vector<std::uint32_t> rows(d.count);
  std::iota(rows.begin(), rows.end(), 0u);
  Tensor x;
  std::vector<std::uint8_t> labels;
  data::make_batch(d, rows, m.normalization(), x, labels);
  for (int step = 0; step < 3; ++step)
    m.forward(x, {.mode = nn::Mode::kTrain, .seed = 1, .step = static_cast<std::uint64_t>(step)});
  // The whole set in one chunk against one example at a time: the same samples.
  const Results together = run(m, d, 0, d.count, {.samples = 6, .seed = 3, .max_rows = 4096});
  for (std::size_t i = 0; i < d.count; i += 5) {
    const Results alone = run(m, d, i, i + 1, {.samples = 6, .seed = 3, .max_rows = 6});
    expect_same(alone.at({i, 6}), together.at({i, 6}), false, "example " + std::to_string(i));
  }
  EXPECT_EQ(first_stochastic_layer(m), 1u);
}

TEST(Predictor, BadRequestsAreRefused) {
  const auto& d = images();
  model::Model m = mlp_model();
  parallel::ThreadPool pool(1);
  const auto none = [](const ExampleResult&) {};
  EXPECT_THROW(predict(m, d, 0, d.count + 1, {}, pool, none), std::invalid_argument);
  EXPECT_THROW(predict(m, d, 5, 4, {}, pool, none), std::invalid_argument);
  EXPECT_THROW(predict(m, d, 0, 1, {.samples = 3, .report_at = {4}}, pool, none),
               std::invalid_argument);
  EXPECT_THROW(predict(m, d, 0, 1, {.samples = 3, .report_at = {0}}, pool, none),
               std::invalid_argument);
  EXPECT_EQ(report_counts({.samples = 10, .report_at = {5, 1, 5}}),
            (std::vector<std::uint64_t>{1, 5, 10}));
  const auto wide = test::synthetic_dataset(3, 3, 4, 1);  // 3x3 images: 9 values, not 4
  EXPECT_THROW(predict(m, wide, 0, 3, {}, pool, none), std::invalid_argument);
  EXPECT_EQ(first_stochastic_layer(m), 0u);
  // A label the model has no output for (5 classes of data, 4 outputs).
  const auto five = test::synthetic_dataset(10, 2, 5, 1);
  EXPECT_THROW(predict(m, five, 0, 10, {}, pool, none), std::invalid_argument);
}

}  // namespace
}  // namespace dropkit::predict
