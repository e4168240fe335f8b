// "Same seed, same bits, whatever the thread count" (docs/spec.md section 2), as a property: whole
// training steps of generated networks -- widths odd, prime, and multiples of the 64-column grid,
// several batch sizes -- give bitwise identical parameters and optimizer state at 1 to 16
// threads (more threads than cores is fine: the split is what is tested, not the speed).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "dropkit/kernels/table.h"
#include "dropkit/model/model.h"
#include "dropkit/model/spec.h"
#include "dropkit/train/trainer.h"
#include "support/bf16.h"

namespace dropkit::train {
namespace {

struct Case {
  std::vector<std::int64_t> sizes;
  std::int64_t batch;
};

// Three steps of SGD with max-norm (and one with Adam) on the net; returns every parameter and
// the optimizer's slots.
std::vector<float> train_three_steps(const nlohmann::json& layers, const Shape& example,
                                     std::int64_t batch, std::int64_t classes, int threads,
                                     const std::string& optimizer,
                                     kernels::Precision precision = kernels::Precision::kF32) {
  parallel::ThreadPool pool(threads);
  model::Model m(layers, example);
  m.init_params(3);
  OptimizerConfig oc;
  oc.kind = optimizer;
  oc.lr = optimizer == "adam" ? 0.001 : 0.05;
  oc.max_norm = 2.0;
  Optimizer opt(oc, m.params().size());
  Tensor x(example.with_batch(batch)), dl;
  kernels::active_kernels().fill_normal({9, 9, 9}, 0, x.data(), x.numel());
  std::vector<std::uint8_t> labels(static_cast<std::size_t>(batch));
  for (std::size_t i = 0; i < labels.size(); ++i)
    labels[i] = static_cast<std::uint8_t>(i % static_cast<std::size_t>(classes));
  for (std::uint64_t step = 0; step < 3; ++step) {
    train_step(
        m.net(), opt, 0, x, labels,
        {.mode = nn::Mode::kTrain, .seed = 1, .step = step, .precision = precision, .pool = &pool},
        dl);
  }
  std::vector<float> all(m.params().values().begin(), m.params().values().end());
  for (int s = 0; s < opt.num_slots(); ++s)
    all.insert(all.end(), opt.slot(s).begin(), opt.slot(s).end());
  return all;
}

std::vector<float> train_three_steps(const Case& c, int threads, const std::string& optimizer) {
  return train_three_steps(model::mlp_layers(c.sizes, "relu", 0.2, 0.5, "inverted"),
                           Shape{c.sizes[0]}, c.batch, c.sizes.back(), threads, optimizer);
}

TEST(ThreadInvariance, WholeTrainingStepsAreTheSameBitsAtOneToSixteenThreads) {
  std::vector<Case> cases = {
      {{784, 128, 10}, 128},  {{784, 192, 10}, 64}, {{784, 256, 10}, 128},
      {{64, 384, 10}, 100},   {{50, 2048, 10}, 32}, {{784, 1024, 1024, 10}, 128},
      {{97, 131, 67, 7}, 33}, {{13, 509, 10}, 1},   {{300, 130, 70, 10}, 37}};
  std::mt19937 gen(2026);
  for (int extra = 0; extra < 6; ++extra) {  // and some generated ones
    Case c;
    c.sizes = {1 + static_cast<std::int64_t>(gen() % 400)};
    const int hidden = 1 + static_cast<int>(gen() % 3);
    for (int h = 0; h < hidden; ++h) c.sizes.push_back(1 + static_cast<std::int64_t>(gen() % 700));
    c.sizes.push_back(2 + static_cast<std::int64_t>(gen() % 20));
    c.batch = 1 + static_cast<std::int64_t>(gen() % 200);
    cases.push_back(c);
  }
  for (const auto& c : cases) {
    std::string name;
    for (auto s : c.sizes) name += std::to_string(s) + "-";
    name += " batch " + std::to_string(c.batch);
    SCOPED_TRACE(name);
    const auto reference = train_three_steps(c, 1, "sgd");
    for (int threads : {2, 3, 4, 5, 7, 8, 13, 16}) {
      const auto got = train_three_steps(c, threads, "sgd");
      ASSERT_EQ(got.size(), reference.size());
      EXPECT_EQ(std::memcmp(got.data(), reference.data(), got.size() * sizeof(float)), 0)
          << threads << " threads";
    }
  }
  // Adam on one of them.
  const auto adam1 = train_three_steps(cases[2], 1, "adam");
  for (int threads : {2, 16}) {
    const auto got = train_three_steps(cases[2], threads, "adam");
    EXPECT_EQ(std::memcmp(got.data(), adam1.data(), got.size() * sizeof(float)), 0) << threads;
  }
}

// Convolutional nets (conv2d, batchnorm, max_pool2d, spatial dropout, dense): batch sizes below,
// at and across the convolutions' 16-example grid.
struct ConvCase {
  std::string net;
  Shape example;
  std::int64_t batch;
};

void expect_conv_steps_thread_invariant(const std::vector<ConvCase>& cases,
                                        kernels::Precision precision) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.net + " batch " + std::to_string(c.batch));
    const auto layers = model::parse_net_text(c.net);
    const std::int64_t classes = layers.back()["units"].get<std::int64_t>();
    const auto reference =
        train_three_steps(layers, c.example, c.batch, classes, 1, "sgd", precision);
    for (int threads : {2, 3, 5, 8, 16}) {
      const auto got =
          train_three_steps(layers, c.example, c.batch, classes, threads, "sgd", precision);
      ASSERT_EQ(got.size(), reference.size());
      EXPECT_EQ(std::memcmp(got.data(), reference.data(), got.size() * sizeof(float)), 0)
          << threads << " threads";
    }
  }
}

TEST(ThreadInvariance, ConvolutionalTrainingStepsAreTheSameBitsAtOneToSixteenThreads) {
  const std::vector<ConvCase> cases = {
      {"conv2d:8:3:padding=1,batchnorm,relu,max_pool2d,dropout:0.2:shared_axes=2+3,"
       "conv2d:6:3:relu,dense:17:relu,dropout:0.5,dense:10",
       Shape{1, 12, 12}, 37},
      {"conv2d:5:5:stride=2:padding=2:relu,max_pool2d:3:2:padding=1,dense:7", Shape{3, 11, 9}, 16},
      {"conv2d:4:2:tanh,batchnorm,dense:5", Shape{2, 6, 6}, 70},
      {"conv2d:3:3,max_pool2d,dense:4", Shape{1, 8, 8}, 3}};
  expect_conv_steps_thread_invariant(cases, kernels::Precision::kF32);
}

// The same with bf16 products and convolutions (`--precision bf16`), and a wide dense layer so
// the dense grid splits too.
TEST(ThreadInvariance, Bf16ConvolutionalTrainingStepsAreTheSameBitsAtOneToSixteenThreads) {
  DROPKIT_REQUIRE_BF16();
  const std::vector<ConvCase> cases = {
      {"conv2d:8:3:padding=1,batchnorm,relu,max_pool2d,dropout:0.2:shared_axes=2+3,"
       "conv2d:6:3:relu,dense:300:relu,dropout:0.5,dense:10",
       Shape{1, 12, 12}, 37},
      {"conv2d:5:5:stride=2:padding=2:relu,max_pool2d:3:2:padding=1,dense:7", Shape{3, 11, 9}, 16}};
  expect_conv_steps_thread_invariant(cases, kernels::Precision::kBf16);
}

}  // namespace
}  // namespace dropkit::train
