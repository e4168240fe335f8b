// The optimizer update fused into backward (Layer::backward_to, Optimizer as GradientSink) must
// be the unfused update exactly: backward into the arena, then Optimizer::step. Compared bit for
// bit over several steps, for SGD, Nesterov with weight decay, and Adam, with max-norm active,
// and for one, two and three threads (the blocks of the weight gradient then split differently).
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/table.h"
#include "dropkit/model/model.h"
#include "dropkit/model/spec.h"
#include "dropkit/nn/linear.h"
#include "dropkit/train/loss.h"
#include "dropkit/train/optimizer.h"
#include "dropkit/train/trainer.h"
#include "support/thread_group.h"

namespace dropkit::train {
namespace {

Tensor random_tensor(Shape shape, std::uint64_t seed) {
  Tensor t(shape);
  kernels::active_kernels().fill_normal({seed, 3, 0}, 0, t.data(), t.numel());
  return t;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Run {
  std::unique_ptr<model::Model> model;
  model::Sequential* net;
  std::unique_ptr<Optimizer> opt;
};

// sizes: 130 hidden units give blocks of the weight gradient that do not divide evenly (128 per
// block, 64-row thread ranges); 200 -> 130 rows of 200 floats do not fill whole cache lines.
Run make_run(const OptimizerConfig& oc) {
  auto m = std::make_unique<model::Model>(
      model::mlp_layers({200, 130, 70, 10}, "relu", 0.2, 0.5, "inverted"), Shape{200});
  Run r{std::move(m), nullptr, nullptr};
  r.net = &r.model->net();
  r.net->init_params(7);
  r.opt = std::make_unique<Optimizer>(oc, r.net->params().size());
  return r;
}

void expect_fused_equals_unfused(const OptimizerConfig& oc) {
  const Tensor x = random_tensor(Shape{37, 200}, 1);
  std::vector<std::uint8_t> labels(37);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::uint8_t>(i * 7 % 10);
  for (int threads : {1, 2, 3}) {
    parallel::ThreadPool pool(threads);
    Run fused = make_run(oc), plain = make_run(oc);
    Tensor dl_fused, dl_plain;
    for (std::uint64_t step = 0; step < 4; ++step) {
      const nn::Context ctx{.mode = nn::Mode::kTrain, .seed = 3, .step = step, .pool = &pool};
      const int epoch = static_cast<int>(step);  // the learning rate and momentum change
      train_step(*fused.net, *fused.opt, epoch, x, labels, ctx, dl_fused);

      const Tensor& logits = plain.net->forward(x, ctx);
      softmax_cross_entropy(logits, labels, &dl_plain);
      plain.net->backward(dl_plain);
      plain.opt->step(plain.net->params(), epoch, pool);
    }
    auto& pf = fused.net->params();
    auto& pp = plain.net->params();
    EXPECT_TRUE(same_bits(pf.values(), pp.values())) << threads << " threads";
    for (int s = 0; s < fused.opt->num_slots(); ++s) {
      EXPECT_TRUE(same_bits(fused.opt->slot(s), plain.opt->slot(s))) << "slot " << s;
    }
    // The fused path never touches the arena's gradients; the unfused one leaves them zeroed.
    for (float g : pf.grads()) ASSERT_EQ(g, 0.0f);
    for (float g : pp.grads()) ASSERT_EQ(g, 0.0f);
  }
}

TEST(FusedUpdate, SgdWithMaxNormEqualsBackwardThenStep) {
  OptimizerConfig oc;
  oc.max_norm = 0.5;  // small enough that rows get projected
  expect_fused_equals_unfused(oc);
}

TEST(FusedUpdate, NesterovWithWeightDecayEqualsBackwardThenStep) {
  OptimizerConfig oc;
  oc.nesterov = true;
  oc.weight_decay = 1e-3;
  oc.max_norm = 0.0;
  expect_fused_equals_unfused(oc);
}

TEST(FusedUpdate, AdamEqualsBackwardThenStep) {
  OptimizerConfig oc;
  oc.kind = "adam";
  oc.lr = 1e-3;
  oc.max_norm = 0.5;
  expect_fused_equals_unfused(oc);
}

TEST(FusedUpdate, WeightGradBlocksEqualTheAccumulatedGradient) {
  const std::int64_t rows = 9, in = 33, out = 300;  // 300 rows: blocks of 128, 128, 44
  const Tensor x = random_tensor(Shape{rows, in}, 4), dy = random_tensor(Shape{rows, out}, 5);
  for (int threads : {1, 2, 3}) {
    parallel::ThreadPool pool(threads);
    std::vector<float> dw(out * in, 0.0f), db(out, 0.0f);
    kernels::linear_backward_weights(pool, rows, in, out, x.data(), dy.data(), dw.data(),
                                     db.data());
    // accumulate = false overwrites whatever was there.
    std::vector<float> ow(out * in, 7.0f), ob(out, 7.0f);
    kernels::linear_backward_weights(pool, rows, in, out, x.data(), dy.data(), ow.data(), ob.data(),
                                     false);
    EXPECT_TRUE(same_bits(dw, ow)) << threads << " threads";
    EXPECT_TRUE(same_bits(db, ob)) << threads << " threads";
    std::vector<float> bw(out * in, -1.0f), bb(out, -1.0f);
    std::vector<int> seen(out, 0);
    kernels::linear_weight_grads(
        pool, rows, in, out, x.data(), dy.data(), true,
        [&](std::int64_t j0, std::int64_t j1, const float* w, const float* b) {
          ASSERT_LE(j1 - j0, kernels::kGradBlockRows);
          std::memcpy(bw.data() + j0 * in, w, (j1 - j0) * in * sizeof(float));
          std::memcpy(bb.data() + j0, b, (j1 - j0) * sizeof(float));
          for (auto j = j0; j < j1; ++j) ++seen[j];
        });
    EXPECT_TRUE(same_bits(dw, bw)) << threads << " threads";
    EXPECT_TRUE(same_bits(db, bb)) << threads << " threads";
    EXPECT_EQ(seen, std::vector<int>(out, 1));  // every row exactly once
  }
}

// A layer with a parameter that does not implement backward_to: its gradient goes to the arena,
// and finish_step must update it from there.
class Scale final : public nn::Layer {
 public:
  std::string kind() const override { return "scale"; }
  nlohmann::json config() const override { return nlohmann::json::object(); }
  void forward(const Tensor& x, Tensor& y, const nn::Context&) override {
    y.resize(x.shape());
    for (std::size_t i = 0; i < x.numel(); ++i) y[i] = x[i] * *s_;
    x_ = &x;
  }
  void backward(const Tensor& dy, Tensor& dx) override {
    dx.resize(dy.shape());
    for (std::size_t i = 0; i < dy.numel(); ++i) {
      dx[i] = dy[i] * *s_;
      *ds_ += dy[i] * (*x_)[i];
    }
  }
  std::vector<nn::ParamSpec> param_specs() const override { return {{"s", Shape{1}}}; }
  void bind_params(std::vector<float*> v, std::vector<float*> g) override {
    s_ = v.at(0);
    ds_ = g.at(0);
  }
  void init_params(std::uint64_t, std::uint32_t) override { *s_ = 1.0f; }

 private:
  float *s_ = nullptr, *ds_ = nullptr;
  const Tensor* x_ = nullptr;
};

TEST(FusedUpdate, LayersWithoutBackwardToAreUpdatedFromTheArena) {
  auto build = [] {
    auto net = std::make_unique<model::Sequential>();
    net->add(std::make_unique<nn::Linear>(6, 5, nn::Activation::kTanh));
    net->add(std::make_unique<Scale>());
    net->add(std::make_unique<nn::Linear>(5, 3));
    net->init_params(2);
    return net;
  };
  auto fused = build(), plain = build();
  OptimizerConfig oc;
  Optimizer of(oc, fused->params().size()), op(oc, plain->params().size());
  const Tensor x = random_tensor(Shape{4, 6}, 6);
  const std::vector<std::uint8_t> labels = {0, 1, 2, 1};
  parallel::ThreadPool pool(2);
  Tensor a, b;
  for (std::uint64_t step = 0; step < 3; ++step) {
    const nn::Context ctx{.mode = nn::Mode::kTrain, .step = step, .pool = &pool};
    train_step(*fused, of, 0, x, labels, ctx, a);
    softmax_cross_entropy(plain->forward(x, ctx), labels, &b);
    plain->backward(b);
    op.step(plain->params(), 0, pool);
  }
  EXPECT_TRUE(same_bits(fused->params().values(), plain->params().values()));
  // The Scale parameter moved: the comparison above covered a real update.
  const auto& e = fused->params().entries().at(2);
  ASSERT_EQ(e.name, "1.s");
  EXPECT_NE(fused->params().values()[e.offset], 1.0f);
}

// A layer with a buffer (non-trainable state, like BatchNorm's running statistics): the arena
// keeps it apart, names it, and no optimizer path touches it.
class WithBuffer final : public nn::Layer {
 public:
  std::string kind() const override { return "with_buffer"; }
  nlohmann::json config() const override { return nlohmann::json::object(); }
  void forward(const Tensor& x, Tensor& y, const nn::Context&) override {
    y.resize(x.shape());
    for (std::size_t i = 0; i < x.numel(); ++i) y[i] = x[i] * *w_ + running_[i % 3];
  }
  void backward(const Tensor& dy, Tensor& dx) override {
    dx.resize(dy.shape());
    for (std::size_t i = 0; i < dy.numel(); ++i) {
      dx[i] = dy[i] * *w_;
      *dw_ += dy[i];
    }
  }
  std::vector<nn::ParamSpec> param_specs() const override {
    return {{"running", Shape{3}, nn::ParamRole::kBuffer},
            {"w", Shape{1}, nn::ParamRole::kTrainable, nn::kWeightDecay}};
  }
  void bind_params(std::vector<float*> v, std::vector<float*> g) override {
    running_ = v.at(0);
    EXPECT_EQ(g.at(0), nullptr);  // buffers have no gradient
    w_ = v.at(1);
    dw_ = g.at(1);
  }
  void init_params(std::uint64_t, std::uint32_t) override {
    *w_ = 1.0f;
    running_[0] = 1.5f, running_[1] = -2.0f, running_[2] = 4.0f;
  }

 private:
  float *running_ = nullptr, *w_ = nullptr, *dw_ = nullptr;
};

TEST(FusedUpdate, BuffersAreNamedApartAndNeverUpdated) {
  model::Sequential net;
  net.add(std::make_unique<nn::Linear>(4, 3));
  net.add(std::make_unique<WithBuffer>());
  net.add(std::make_unique<nn::Linear>(3, 2));
  net.build({"layers.0.dense", "layers.1.with_buffer", "layers.2.dense"});
  net.init_params(3);
  const auto& arena = net.params();
  ASSERT_EQ(arena.buffer_entries().size(), 1u);
  EXPECT_EQ(arena.buffer_entries()[0].name, "layers.1.with_buffer.running");
  for (const auto& e : arena.entries()) EXPECT_NE(e.name, "layers.1.with_buffer.running");
  const std::vector<float> buffers(arena.buffers().begin(), arena.buffers().end());
  OptimizerConfig oc;
  oc.weight_decay = 0.1;
  Optimizer opt(oc, net.params().size());
  parallel::ThreadPool pool(2);
  const Tensor x = random_tensor(Shape{5, 4}, 3);
  const std::vector<std::uint8_t> labels = {0, 1, 1, 0, 1};
  Tensor dl;
  const float w_before = net.params().values()[net.params().entries()[2].offset];
  for (std::uint64_t step = 0; step < 3; ++step) {
    train_step(net, opt, 0, x, labels, {.mode = nn::Mode::kTrain, .step = step, .pool = &pool}, dl);
  }
  EXPECT_TRUE(std::equal(buffers.begin(), buffers.end(), net.params().buffers().begin()));
  EXPECT_NE(net.params().values()[net.params().entries()[2].offset], w_before);  // w trained
}

TEST(FusedUpdate, SinkContractViolationsAreErrors) {
  nn::Linear layer(4, 3);
  nn::ParamArena arena({&layer});
  Optimizer opt(OptimizerConfig{}, arena.size());
  parallel::ThreadPool pool(1);
  const std::vector<float> g(12, 0.5f);
  EXPECT_THROW(opt.consume(layer.weight(), 0, 3, g.data()), std::logic_error);  // no step
  EXPECT_THROW(opt.finish_step(pool), std::logic_error);
  opt.begin_step(arena, 0);
  EXPECT_THROW(opt.consume(layer.weight() + 1, 0, 1, g.data()), std::invalid_argument);
  EXPECT_THROW(opt.consume(layer.weight(), 2, 4, g.data()), std::invalid_argument);
  EXPECT_THROW(opt.consume(layer.weight(), 2, 2, g.data()), std::invalid_argument);
  float outside = 0.0f;
  EXPECT_THROW(opt.consume(&outside, 0, 1, g.data()), std::invalid_argument);
  // Two of the weight's three rows: a layer that broke the contract.
  opt.consume(layer.weight(), 0, 2, g.data());
  EXPECT_THROW(opt.finish_step(pool), std::logic_error);
  // A new step starts clean: all rows given, the bias taken from the arena.
  opt.begin_step(arena, 0);
  opt.consume(layer.weight(), 0, 3, g.data());
  EXPECT_NO_THROW(opt.finish_step(pool));
  Optimizer other(OptimizerConfig{}, arena.size() + 1);
  EXPECT_THROW(other.begin_step(arena, 0), std::invalid_argument);
}

// One dense layer (3 -> 2), built and initialised: the net of the step's argument checks.
void one_dense_layer(model::Sequential& net) {
  net.add(std::make_unique<nn::Linear>(3, 2));
  net.build({"layers.0.dense"});
  net.init_params(4);
}

// A step whose loss is summed over processes (ctx.peers) must add its gradients over the same
// processes (dp), and the other way round: a mismatch is refused before anything changes.
TEST(TrainStep, PeersWithoutADataParallelAreRefusedUntouched) {
  struct OneProcess final : nn::BatchPeers {
    std::size_t batch_rows() const override { return 2; }
    void sum(std::span<double>) const override {}
  } peers;
  model::Sequential net;
  one_dense_layer(net);
  Optimizer opt(OptimizerConfig{}, net.params().size());
  parallel::ThreadPool pool(1);
  const Tensor x = random_tensor(Shape{2, 3}, 5);
  const std::vector<std::uint8_t> labels = {0, 1};
  const std::vector<float> before(net.params().values().begin(), net.params().values().end());
  Tensor dl;
  EXPECT_THROW(train_step(net, opt, 0, x, labels,
                          {.mode = nn::Mode::kTrain, .pool = &pool, .peers = &peers}, dl),
               std::invalid_argument);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), net.params().values().begin()));
  train_step(net, opt, 0, x, labels, {.mode = nn::Mode::kTrain, .pool = &pool}, dl);
  EXPECT_FALSE(std::equal(before.begin(), before.end(), net.params().values().begin()));
}

TEST(TrainStep, ADataParallelStepWithoutItsPeersIsRefusedUntouched) {
  test::ThreadGroup(2).run([](parallel::ProcessGroup& g) {
    DataParallel dp(g, 256);
    model::Sequential net;
    one_dense_layer(net);
    Optimizer opt(OptimizerConfig{}, net.params().size());
    parallel::ThreadPool pool(1);
    const DataParallel::Share share = dp.begin_step(256);
    const Tensor x = random_tensor(Shape{static_cast<std::int64_t>(share.end - share.begin), 3}, 6);
    const std::vector<std::uint8_t> labels(share.end - share.begin, 1);
    const std::vector<float> before(net.params().values().begin(), net.params().values().end());
    Tensor dl;
    EXPECT_THROW(
        train_step(net, opt, 0, x, labels, {.mode = nn::Mode::kTrain, .pool = &pool}, dl, &dp),
        std::invalid_argument);
    EXPECT_TRUE(std::equal(before.begin(), before.end(), net.params().values().begin()));
  });
}

TEST(FusedUpdate, LinearBackwardRefusesToRunInPlace) {
  nn::Linear layer(3, 3);
  nn::ParamArena arena({&layer});
  layer.init_params(1, 1);
  parallel::ThreadPool pool(1);
  const Tensor x = random_tensor(Shape{2, 3}, 8);
  Tensor y;
  layer.forward(x, y, {.mode = nn::Mode::kTrain, .pool = &pool});
  Tensor dy = random_tensor(Shape{2, 3}, 9);
  EXPECT_THROW(layer.backward(dy, dy), std::invalid_argument);
}

}  // namespace
}  // namespace dropkit::train
