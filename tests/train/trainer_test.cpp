// The training pipeline end to end on small synthetic data: it learns, it is reproducible for
// any thread count, and a resumed run ends bit for bit where an uninterrupted one does.
#include "dropkit/train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "dropkit/data/batcher.h"
#include "support/bf16.h"
#include "support/idx_files.h"
#include "support/temp_dir.h"

namespace dropkit::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

data::TrainTest toy_data(std::size_t train = 400, std::size_t test = 100) {
  return {test::synthetic_dataset(train, 8, 4, 1), test::synthetic_dataset(test, 8, 4, 2)};
}

TrainConfig toy_config() {
  TrainConfig c;
  c.arch = "64-160-160-4";  // 160 = three 64-column GEMM blocks: 1, 2, 3 threads split apart
  c.dropout = 0.5;
  c.input_dropout = 0.2;
  c.optimizer.lr = 0.5;
  c.optimizer.momentum = 0.9;
  c.optimizer.momentum_start = 0.5;
  c.optimizer.momentum_ramp_epochs = 3;
  c.optimizer.max_norm = 3.0;
  c.batch = 32;
  c.epochs = 4;
  c.val = 50;
  c.train_eval = 200;
  c.seed = 9;
  return c;
}

std::vector<float> params_of(Trainer& t) {
  auto v = t.model().params().values();
  return {v.begin(), v.end()};
}

TEST(Trainer, FitsTheTrainingSetToNearZeroLoss) {
  const auto data = toy_data(300, 60);
  TrainConfig c = toy_config();
  c.dropout = 0.0;
  c.input_dropout = 0.0;
  c.optimizer.max_norm = 0.0;
  c.val = 0;
  c.train_eval = 300;
  c.epochs = 60;
  parallel::ThreadPool pool(2);
  Trainer t(c, data, pool);
  EpochRecord last;
  while (t.epochs_done() < c.epochs) last = t.run_epoch();
  EXPECT_LT(last.train_eval_loss, 0.02);
  EXPECT_EQ(last.train_accuracy, 1.0);
  EXPECT_GT(last.test_accuracy, 0.9);
  EXPECT_EQ(t.steps_done(), 60u * 10);  // ceil(300 / 32) steps per epoch
}

TEST(Trainer, SameSeedSameBitsForOneTwoAndThreeThreads) {
  const auto data = toy_data();
  std::vector<float> reference;
  std::vector<double> losses;
  for (int threads : {1, 2, 3}) {
    parallel::ThreadPool pool(threads);
    TrainConfig c = toy_config();
    c.epochs = 2;
    Trainer t(c, data, pool);
    t.run_epoch();
    const auto rec = t.run_epoch();
    if (reference.empty()) {
      reference = params_of(t);
      losses.push_back(rec.train_loss);
    }
    EXPECT_EQ(params_of(t), reference) << threads << " threads";
    EXPECT_EQ(rec.train_loss, losses[0]);
  }
}

TEST(Trainer, Bf16ProductsLearnAsFp32DoesAndGiveTheSameBitsForOneTwoAndThreeThreads) {
  DROPKIT_REQUIRE_BF16();
  const auto data = toy_data();
  auto run = [&](const std::string& precision, int threads) {
    parallel::ThreadPool pool(threads);
    TrainConfig c = toy_config();
    c.precision = precision;
    Trainer t(c, data, pool);
    EpochRecord rec;
    while (t.epochs_done() < c.epochs) rec = t.run_epoch();
    return std::make_pair(params_of(t), rec);
  };
  const auto [f32_params, f32] = run("f32", 2);
  const auto [reference, bf16] = run("bf16", 1);
  EXPECT_NE(reference, f32_params);  // the products really were rounded
  EXPECT_NEAR(bf16.test_accuracy, f32.test_accuracy, 0.05);
  EXPECT_NEAR(bf16.train_eval_loss, f32.train_eval_loss, 0.1 + 0.2 * f32.train_eval_loss);
  for (int threads : {2, 3}) EXPECT_EQ(run("bf16", threads).first, reference) << threads;
}

// Where oneDNN has no bf16 products (an AVX2-only CPU), a bf16 run is refused when the trainer
// is built, naming the precision and what to use instead; f32 runs there as everywhere.
TEST(Trainer, Bf16IsRefusedWhereOneDnnHasNone) {
  if (kernels::bf16_products_available()) GTEST_SKIP() << "this CPU has bf16 products";
  const auto data = toy_data();
  parallel::ThreadPool pool(1);
  TrainConfig c = toy_config();
  c.precision = "bf16";
  try {
    Trainer t(c, data, pool);
    FAIL() << "a bf16 trainer was built";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), testing::HasSubstr("precision = bf16"));
    EXPECT_THAT(e.what(), testing::HasSubstr("use f32"));
  }
  EXPECT_EQ(kernels::bf16_products_implementation(), "none");
  EXPECT_FALSE(kernels::bf16_products_native());
  c.precision = "f32";
  Trainer t(c, data, pool);
  EXPECT_GT(t.run_epoch().test_accuracy, 0.0);
}

TEST(Trainer, AnotherSeedGivesAnotherRun) {
  const auto data = toy_data();
  parallel::ThreadPool pool(1);
  TrainConfig a = toy_config(), b = toy_config();
  b.seed = 10;
  Trainer ta(a, data, pool), tb(b, data, pool);
  ta.run_epoch();
  tb.run_epoch();
  EXPECT_NE(params_of(ta), params_of(tb));
}

TEST(Trainer, ResumedRunEndsBitwiseIdenticalToAnUninterruptedOne) {
  const auto data = toy_data();
  for (const char* optimizer : {"sgd", "adam"}) {
    TrainConfig c = toy_config();
    c.optimizer.kind = optimizer;
    if (c.optimizer.kind == "adam") c.optimizer.lr = 0.003;
    parallel::ThreadPool pool(2);
    Trainer straight(c, data, pool);
    for (int e = 0; e < 4; ++e) straight.run_epoch();

    const test::TempDir tmp("dropkit_trainer_test");
    const fs::path& dir = tmp.path();
    {
      Trainer first(c, data, pool);
      first.run_epoch();
      first.run_epoch();
      first.save_checkpoint(dir / "checkpoint.safetensors");
    }
    Trainer resumed(read_checkpoint(dir / "checkpoint.safetensors"), data, pool);
    EXPECT_EQ(resumed.epochs_done(), 2);
    resumed.run_epoch();
    resumed.run_epoch();
    EXPECT_EQ(params_of(resumed), params_of(straight)) << optimizer;
    EXPECT_EQ(resumed.steps_done(), straight.steps_done());
    ASSERT_EQ(resumed.history().size(), 4u);
    EXPECT_EQ(resumed.history()[3].test_loss, straight.history()[3].test_loss);
    EXPECT_EQ(resumed.history()[1].train_loss, straight.history()[1].train_loss);
  }
}

TEST(Trainer, DivergenceStopsWithTheStepBeforeAnyUpdate) {
  const auto data = toy_data();
  parallel::ThreadPool pool(1);
  TrainConfig c = toy_config();
  c.optimizer.lr = 1e30;
  c.optimizer.max_norm = 0;
  Trainer t(c, data, pool);
  try {
    t.run_epoch();
    FAIL() << "no divergence";
  } catch (const TrainingDiverged& e) {
    EXPECT_GT(e.step(), 0u);
    EXPECT_THAT(e.what(), HasSubstr("step"));
  }
}

TEST(Trainer, RejectsArchitectureThatDoesNotFitTheData) {
  const auto data = toy_data();
  parallel::ThreadPool pool(1);
  TrainConfig c = toy_config();
  c.arch = "784-10";
  EXPECT_THROW(Trainer(c, data, pool), std::invalid_argument);
  c.arch = "64-3";  // labels go up to 3
  EXPECT_THROW(Trainer(c, data, pool), std::invalid_argument);
}

TEST(Trainer, ExcludedClassesAreNeverTrainedOnValidatedOrTested) {
  const auto data = toy_data(400, 100);  // labels cycle 0, 1, 2, 3
  TrainConfig c = toy_config();
  c.epochs = 1;
  c.exclude_classes = "3,1";
  parallel::ThreadPool pool(2);
  Trainer t(c, data, pool);
  const EpochRecord rec = t.run_epoch();
  EXPECT_EQ(t.evaluate_test().count, 50u);  // the test examples of classes 0 and 2
  EXPECT_EQ(t.test_examples(), 50u);
  EXPECT_EQ(t.train_examples(), 175u);
  EXPECT_EQ(t.val_examples(), 25u);
  EXPECT_EQ(rec.step, 6u);  // ceil(175 / 32): half of the 350 training rows
  // Every excluded training example can be changed without changing the run.
  auto other = data;
  for (std::size_t i = 0; i < other.train.count; ++i) {
    if (other.train.labels[i] % 2 == 1) {
      for (std::size_t p = 0; p < other.train.features(); ++p)
        other.train.images[i * other.train.features() + p] = 255;
    }
  }
  Trainer t2(c, other, pool);
  const EpochRecord rec2 = t2.run_epoch();
  EXPECT_EQ(rec2.val_loss, rec.val_loss);
  EXPECT_EQ(params_of(t2), params_of(t));
  // A class the model has no output for, and a list that leaves no class, are refused.
  c.exclude_classes = "4";
  EXPECT_THROW(Trainer(c, data, pool), std::invalid_argument);
  c.exclude_classes = "0,1,2,3";
  EXPECT_THROW(Trainer(c, data, pool), std::invalid_argument);
}

TEST(Trainer, TrainSizeUsesExactlyTheFirstExamplesOfTheTrainingSplit) {
  const auto data = toy_data(400, 100);
  parallel::ThreadPool pool(2);
  for (std::uint64_t size : {1u, 37u, 64u, 200u, 350u}) {
    TrainConfig c = toy_config();
    c.epochs = 1;
    c.train_size = size;
    Trainer t(c, data, pool);
    const EpochRecord rec = t.run_epoch();
    EXPECT_EQ(t.train_examples(), size);
    EXPECT_EQ(t.val_examples(), 50u);  // the hold-out does not change
    EXPECT_EQ(rec.step, (size + 31) / 32);
    // Changing any example beyond the first `size` does not change the run.
    auto other = data;
    for (std::size_t i = size; i < 350; ++i) {
      for (std::size_t p = 0; p < other.train.features(); ++p)
        other.train.images[i * other.train.features() + p] ^= 0x5a;
    }
    Trainer t2(c, other, pool);
    t2.run_epoch();
    EXPECT_EQ(params_of(t2), params_of(t)) << size;
  }
  TrainConfig c = toy_config();
  c.train_size = 351;  // 350 training examples after the 50 held out
  try {
    Trainer t(c, data, pool);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("`train_size` 351"));
    EXPECT_THAT(e.what(), HasSubstr("[1, 350]"));
  }
}

TEST(Trainer, StepLossSpreadIsTheSampleStdOfTheStepsLosses) {
  const auto data = toy_data(400, 100);
  parallel::ThreadPool pool(2);
  TrainConfig c = toy_config();
  c.epochs = 1;
  // The same epoch step by step: the step losses come from the progress callback's running
  // mean (loss_sum / seen), undone.
  Trainer t(c, data, pool);
  std::vector<double> means;
  const EpochRecord rec =
      t.run_epoch([&](std::size_t, std::size_t, double m) { means.push_back(m); });
  ASSERT_EQ(means.size(), 11u);  // ceil(350 / 32)
  std::vector<double> losses;
  double prev = 0;
  for (std::size_t s = 0; s < means.size(); ++s) {
    const double seen = static_cast<double>(std::min<std::size_t>(350, 32 * (s + 1)));
    const double batch = seen - static_cast<double>(32 * s);
    losses.push_back((means[s] * seen - prev) / batch);
    prev = means[s] * seen;
  }
  double mean = 0;
  for (double l : losses) mean += l / static_cast<double>(losses.size());
  double var = 0;
  for (double l : losses) var += (l - mean) * (l - mean) / static_cast<double>(losses.size() - 1);
  EXPECT_GT(rec.step_loss_std, 0.0);
  EXPECT_NEAR(rec.step_loss_std, std::sqrt(var), 1e-9);
  // Kept in the history's JSON; a record without it reads as 0.
  EXPECT_EQ(EpochRecord::from_json(rec.to_json()).step_loss_std, rec.step_loss_std);
  auto j = rec.to_json();
  j.erase("step_loss_std");
  EXPECT_EQ(EpochRecord::from_json(j).step_loss_std, 0.0);
  // One step per epoch has no spread.
  c.train_size = 20;
  Trainer one(c, data, pool);
  EXPECT_EQ(one.run_epoch().step_loss_std, 0.0);
}

TEST(Trainer, ALastBatchOfOneExampleIsRefusedUpFrontForBatchNorm) {
  const auto data = toy_data(400, 100);
  TrainConfig c = toy_config();
  c.net = "dense:16,batchnorm,relu,dense:4";
  c.val = 47;  // 353 training examples = 11 batches of 32 and one of 1
  parallel::ThreadPool pool(1);
  try {
    Trainer t(c, data, pool);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("last batch of 1 example"));
  }
  c.val = 46;  // a last batch of 2
  Trainer t(c, data, pool);
  EXPECT_NO_THROW(t.run_epoch());
}

TEST(TrainConfigTest, JsonRoundTripAndValidation) {
  TrainConfig c = toy_config();
  EXPECT_EQ(TrainConfig::from_json(c.to_json()).to_json(), c.to_json());
  c.dropout = 1.5;
  try {
    c.validate();
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("[0, 1]"));
  }
  c = toy_config();
  c.batch = 0;
  EXPECT_THROW(c.validate(), std::invalid_argument);
  c = toy_config();
  c.optimizer.momentum = 1.0;
  EXPECT_THROW(c.validate(), std::invalid_argument);
}

// Over the whole option table: every field round-trips through JSON with a non-default value,
// a missing key keeps its default, and a value outside its range is refused naming the option
// and the range, leaving the config as it was.
TEST(TrainConfigTest, EveryOptionRoundTripsDefaultsAndChecksItsRange) {
  const TrainConfig defaults;
  for (const auto& f : TrainConfig::fields()) {
    const Option& o = f.option;
    SCOPED_TRACE(o.name);
    EXPECT_EQ(defaults.get(o.name), o.default_value);
    nlohmann::json other;  // a valid value other than the default
    switch (o.type) {
      case Option::Type::kBool:
        other = !o.default_value.get<bool>();
        break;
      case Option::Type::kString:
        if (!o.choices.empty()) {
          other = o.choices.back() == o.default_value ? o.choices.front() : o.choices.back();
        } else {
          other = o.name == "arch" ? "64-7-4" : o.name == "exclude_classes" ? "1,3" : "dense:4";
        }
        break;
      case Option::Type::kInt:
        other = o.default_value.get<std::int64_t>() == 1 ? 2 : 1;
        break;
      case Option::Type::kReal:
        other = o.default_value.get<double>() == 0.5 ? 0.25 : 0.5;
        break;
    }
    TrainConfig c;
    c.set(o.name, other);
    EXPECT_EQ(c.get(o.name), other);
    nlohmann::json j = c.to_json();
    EXPECT_EQ(TrainConfig::from_json(j).get(o.name), other);
    j.erase(o.name);
    EXPECT_EQ(TrainConfig::from_json(j).get(o.name), o.default_value);
    if (o.type == Option::Type::kInt || o.type == Option::Type::kReal) {
      const double bad = std::isfinite(o.min) ? o.min - 1 : o.max + 1;
      if (!std::isfinite(bad)) continue;
      const nlohmann::json v = o.type == Option::Type::kInt
                                   ? nlohmann::json(static_cast<std::int64_t>(bad))
                                   : nlohmann::json(bad);
      try {
        c.set(o.name, v);
        ADD_FAILURE() << "accepted " << v;
      } catch (const std::invalid_argument& e) {
        EXPECT_THAT(e.what(), HasSubstr(o.name + " = "));
        EXPECT_THAT(e.what(), HasSubstr(o.range_text()));
      }
      EXPECT_EQ(c.get(o.name), other);
    }
  }
  EXPECT_THROW(TrainConfig::from_json({{"no_such_option", 1}}), std::invalid_argument);
}

}  // namespace
}  // namespace dropkit::train
