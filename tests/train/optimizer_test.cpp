// The optimizers (train/optimizer.h): SGD with momentum in the paper's form, max-norm on hidden
// rows only (and fused into the update with the same bits), Adam's first step.
#include "dropkit/train/optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "dropkit/nn/linear.h"
#include "dropkit/nn/params.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::train {
namespace {

TEST(OptimizerTest, SgdMomentumStepHasThePapersForm) {
  nn::Linear layer(2, 2, nn::Activation::kIdentity);
  nn::ParamArena arena({&layer});
  OptimizerConfig c;
  c.lr = 0.5;
  c.momentum = 0.9;
  c.momentum_start = 0.5;
  c.momentum_ramp_epochs = 4;
  Optimizer opt(c, arena.size());
  EXPECT_DOUBLE_EQ(opt.momentum_at(0), 0.5);
  EXPECT_DOUBLE_EQ(opt.momentum_at(2), 0.7);
  EXPECT_DOUBLE_EQ(opt.momentum_at(9), 0.9);
  parallel::ThreadPool pool(1);
  layer.weight()[0] = 1.0f;
  arena.grads()[0] = 2.0f;
  opt.step(arena, 0, pool);
  // v = 0.5 * 0 - (1 - 0.5) * 0.5 * 2 = -0.5; w = 1 - 0.5
  EXPECT_FLOAT_EQ(layer.weight()[0], 0.5f);
  EXPECT_EQ(arena.grads()[0], 0.0f);  // consumed
  arena.grads()[0] = 2.0f;
  opt.step(arena, 0, pool);
  // v = 0.5 * -0.5 - 0.5 = -0.75
  EXPECT_FLOAT_EQ(layer.weight()[0], -0.25f);
}

TEST(OptimizerTest, MaxNormProjectsLongHiddenRowsOnly) {
  nn::Linear hidden(3, 2, nn::Activation::kReLU), output(2, 2);
  nn::ParamArena arena({&hidden, &output}, {}, /*last_is_output=*/true);
  const float w[] = {3, 4, 0, 0.3f, 0.4f, 0};  // row norms 5 and 0.5
  std::copy(w, w + 6, hidden.weight());
  std::fill(output.weight(), output.weight() + 4, 10.0f);
  parallel::ThreadPool pool(2);
  EXPECT_EQ(apply_max_norm(arena, 2.0, pool), 1u);
  EXPECT_FLOAT_EQ(hidden.weight()[0], 1.2f);
  EXPECT_FLOAT_EQ(hidden.weight()[1], 1.6f);
  EXPECT_FLOAT_EQ(hidden.weight()[3], 0.3f);  // short row untouched
  EXPECT_EQ(output.weight()[0], 10.0f);       // the output layer has no hidden units
}

TEST(OptimizerTest, FusedMaxNormEqualsUpdateThenProject) {
  nn::Linear a(300, 70, nn::Activation::kReLU), b(300, 70, nn::Activation::kReLU);
  nn::ParamArena pa({&a}), pb({&b});
  a.init_params(1, 1);
  b.init_params(1, 1);
  for (std::size_t i = 0; i < pa.size(); ++i) {
    pa.grads()[i] = pb.grads()[i] = 0.05f * static_cast<float>(i % 17) - 0.4f;
  }
  OptimizerConfig with, without;
  with.max_norm = 1.0;  // He init rows have norm ~1.4: most get projected
  without.max_norm = 0.0;
  Optimizer oa(with, pa.size()), ob(without, pb.size());
  parallel::ThreadPool pool(2);
  oa.step(pa, 0, pool);
  ob.step(pb, 0, pool);
  EXPECT_GT(apply_max_norm(pb, 1.0, pool), 10u);
  EXPECT_TRUE(std::equal(pa.values().begin(), pa.values().end(), pb.values().begin()));
}

TEST(OptimizerTest, AdamFirstStepIsLrTimesSign) {
  nn::Linear layer(1, 2);
  nn::ParamArena arena({&layer});
  OptimizerConfig c;
  c.kind = "adam";
  c.lr = 0.01;
  Optimizer opt(c, arena.size());
  parallel::ThreadPool pool(1);
  arena.grads()[0] = 3.0f;
  arena.grads()[1] = -0.001f;
  opt.step(arena, 0, pool);
  EXPECT_NEAR(layer.weight()[0], -0.01f, 1e-6);
  EXPECT_NEAR(layer.weight()[1], 0.01f, 1e-4);
  EXPECT_THROW(Optimizer({.kind = "rmsprop"}, 1), std::invalid_argument);
}

}  // namespace
}  // namespace dropkit::train
