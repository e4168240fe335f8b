// Concrete dropout (dropout/concrete_dropout.h): the relaxed mask's moments at several rates and
// temperatures against their integrals, each element against the formula in double, the
// regularizer's gradients against finite differences of its value, training that moves the rate
// and records it, and clear errors. (The layer harness checks its backward, the logit's gradient
// included, by finite differences; tests/train/data_parallel_test.cpp its regularizer under
// data-parallel training.)
#include "dropkit/dropout/concrete_dropout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "dropkit/model/model.h"
#include "dropkit/model/sequential.h"
#include "dropkit/model/spec.h"
#include "dropkit/nn/linear.h"
#include "dropkit/rng/philox.h"
#include "dropkit/train/optimizer.h"
#include "dropkit/train/trainer.h"
#include "support/idx_files.h"
#include "support/stats.h"

namespace dropkit::dropout {
namespace {

using ::testing::HasSubstr;

constexpr double kK = 6.0;          // k-sigma (tests/support/stats.h)
constexpr std::int64_t kRows = 64;  // 64 x 2^16 = 2^22 elements
constexpr std::int64_t kCols = 1 << 16;

nn::Context train(std::uint64_t seed, std::uint64_t step) {
  return {.mode = nn::Mode::kTrain, .seed = seed, .step = step};
}

// E[keep^m] for the relaxed mask keep = sigmoid(-(theta + s) / t), s = logit(u) ~ Logistic(0, 1):
// the integral over s with the logistic density sigmoid(s) sigmoid(-s), by the trapezoid rule
// (spectrally accurate for a smooth integrand that decays like this one).
double keep_moment(double p, double t, int m) {
  const double theta = std::log(p / (1 - p));
  const double h = 1e-3;
  double sum = 0;
  for (double s = -80; s <= 80; s += h) {
    const double keep = 1 / (1 + std::exp((theta + s) / t));
    const double density = 1 / ((1 + std::exp(-s)) * (1 + std::exp(s)));
    sum += std::pow(keep, m) * density;
  }
  return sum * h;
}

TEST(ConcreteDropout, RelaxedMaskMomentsMatchTheirIntegralsAtSeveralRatesAndTemperatures) {
  Tensor ones(Shape{kRows, kCols});
  std::fill(ones.span().begin(), ones.span().end(), 1.0f);
  const double n = static_cast<double>(ones.numel());
  for (double t : {0.1, 0.2, 0.5, 1.0}) {
    for (double p : {0.05, 0.1, 0.3, 0.5, 0.7, 0.9}) {
      SCOPED_TRACE(testing::Message() << "p " << p << " temperature " << t);
      ConcreteDropout layer(kCols, p, t, 1e-4, 5);
      nn::ParamArena arena({&layer});
      layer.init_params(0, 0);
      EXPECT_NEAR(layer.drop_prob(), p, 1e-6);
      Tensor y;
      layer.forward(ones, y, train(11, 3));
      // y = keep / (1 - p): its mean and its second moment against the integrals.
      const auto m = test::moments(y.span());
      const double mean = keep_moment(p, t, 1) / (1 - p);
      const double second = keep_moment(p, t, 2) / ((1 - p) * (1 - p));
      EXPECT_NEAR(m.mean, mean, kK * std::sqrt(m.var / n));
      double sq = 0, sq2 = 0;
      for (float v : y.span()) {
        sq += static_cast<double>(v) * v;
        sq2 += std::pow(static_cast<double>(v), 4);
      }
      const double var_sq = sq2 / n - (sq / n) * (sq / n);
      EXPECT_NEAR(sq / n, second, kK * std::sqrt(var_sq / n));
      // As t -> 0 the mask becomes Bernoulli, E[keep] -> 1 - p: at t = 0.1 the layer's mean is
      // within 5 % of the identity.
      if (t == 0.1) {
        EXPECT_NEAR(m.mean, 1.0, 0.05);
      }
    }
  }
}

TEST(ConcreteDropout, EveryElementIsTheFormulaOfItsCounter) {
  const std::int64_t rows = 5, cols = 333;
  Tensor x(Shape{rows, cols});
  for (std::size_t i = 0; i < x.numel(); ++i) x[i] = 0.25f + 0.01f * static_cast<float>(i % 97);
  for (double t : {0.1, 0.25, 1.0}) {
    ConcreteDropout layer(cols, 0.3, t, 1e-4, 9);
    nn::ParamArena arena({&layer});
    layer.init_params(0, 0);
    const std::uint64_t offset = 128;  // a worker holding rows [128, 133) of a bigger batch
    nn::Context ctx = train(4, 17);
    ctx.row_offset = offset;
    Tensor y;
    layer.forward(x, y, ctx);
    const double p = layer.drop_prob(), a = p / (1 - p);
    for (std::size_t i = 0; i < x.numel(); ++i) {
      const double u = rng::uniform_at({4, 9, 17}, offset * cols + i);
      const double keep = 1 / (1 + std::pow(a * u / (1 - u), 1 / t));
      const double want = x[i] * keep / (1 - p);
      ASSERT_NEAR(y[i], want, 2e-6 * std::abs(want) + 1e-30) << i;
    }
  }
}

// The regularizer's value R(theta, W) and the gradients it hands the optimizer.
struct Penalized {
  model::Sequential net;
  ConcreteDropout* cd;
  nn::Linear* dense;
  explicit Penalized(double length_scale) {
    auto c = std::make_unique<ConcreteDropout>(20, 0.3, 0.1, length_scale, 1);
    auto d = std::make_unique<nn::Linear>(20, 7);
    cd = c.get();
    dense = d.get();
    net.add(std::move(c));
    net.add(std::move(d));
    net.init_params(3);
  }
  double value(std::size_t n, std::vector<nn::PenaltyGradient>& g) {
    return net.penalty(n, parallel::serial_pool(), g);
  }
};

TEST(ConcreteDropout, RegularizerGradientsMatchFiniteDifferencesOfItsValue) {
  for (double l : {0.0, 1e-4, 3.0}) {
    SCOPED_TRACE(l);
    Penalized m(l);
    const std::size_t n = 500;
    std::vector<nn::PenaltyGradient> g;
    const double r = m.value(n, g);
    ASSERT_EQ(g.size(), 2u);
    const std::span<const float> w = static_cast<const nn::Layer&>(*m.dense).weight();
    EXPECT_EQ(g[0].param, w.data());
    EXPECT_EQ(g[0].shift, 0.0f);
    float* logit = m.net.params().values().data();
    EXPECT_EQ(g[1].param, logit);
    EXPECT_EQ(g[1].decay, 0.0f);
    // The value: (l^2 / N) ||W||^2 / (1 - p) + (2 / N) K (p log p + (1 - p) log(1 - p)).
    const double p = m.cd->drop_prob();
    double sq = 0;
    for (float v : w) sq += static_cast<double>(v) * v;
    EXPECT_NEAR(
        r, l * l / n * sq / (1 - p) + 2.0 / n * 20 * (p * std::log(p) + (1 - p) * std::log(1 - p)),
        1e-7 * std::abs(r));  // the norm is summed in float lanes (kernels/table.h)
    std::vector<nn::PenaltyGradient> unused;
    const float h = 1e-2f;
    const float theta = *logit;
    *logit = theta + h;
    const double up = m.value(n, unused);
    *logit = theta - h;
    const double down = m.value(n, unused);
    *logit = theta;
    EXPECT_NEAR(g[1].shift, (up - down) / (2 * h), 1e-3 * std::abs(g[1].shift) + 1e-9);
    float* w0 = m.dense->weight() + 5;
    const float v = *w0;
    *w0 = v + h;
    const double wup = m.value(n, unused);
    *w0 = v - h;
    const double wdown = m.value(n, unused);
    *w0 = v;
    EXPECT_NEAR(g[0].decay * v, (wup - wdown) / (2 * h), 1e-4 * std::abs(g[0].decay * v) + 1e-12);
  }
}

TEST(ConcreteDropout, BadOptionsAndPlacesAreErrorsNamingThem) {
  auto err = [](auto make) -> std::string {
    try {
      make();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_THAT(err([] { ConcreteDropout(4, 0.3, 0.3); }), HasSubstr("temperature = 0.3 is not 1/k"));
  EXPECT_THAT(err([] { ConcreteDropout(4, 0.3, 0.001); }), HasSubstr("not 1/k"));
  EXPECT_THAT(err([] { ConcreteDropout(4, 0.0); }),
              HasSubstr("drop_prob = 0 is outside [0.001, 0.999]"));
  EXPECT_THAT(err([] { ConcreteDropout(4, 1.0); }), HasSubstr("outside [0.001, 0.999]"));
  EXPECT_THAT(err([] { ConcreteDropout(4, 0.5, 0.1, -1.0); }), HasSubstr("length_scale = -1"));
  const Shape in{1, 28, 28};
  EXPECT_THAT(
      err([&] { model::Model(model::parse_net_text("concrete_dropout,relu,dense:4"), in); }),
      HasSubstr("must be followed by a layer with weights"));
  EXPECT_THAT(err([&] { model::Model(model::parse_net_text("dense:8,concrete_dropout"), in); }),
              HasSubstr("the end of the network"));
  // A model with the regularizer cannot train without the training set's size.
  Penalized m(1.0);
  std::vector<nn::PenaltyGradient> g;
  EXPECT_THAT(err([&] { m.value(0, g); }), HasSubstr("number of training examples"));
  // A backward without a Train forward.
  ConcreteDropout lone(3, 0.5);
  nn::ParamArena arena({&lone});
  Tensor dy(Shape{2, 3}), dx;
  EXPECT_THROW(lone.backward(dy, dx), std::logic_error);
  // Training in place is refused (backward reads the input); a forward that throws leaves no
  // earlier draw for a backward to misuse.
  Tensor x(Shape{2, 3});
  std::fill(x.span().begin(), x.span().end(), 1.0f);
  EXPECT_THAT(err([&] { lone.forward(x, x, train(1, 1)); }), HasSubstr("cannot train in place"));
  Tensor y;
  lone.forward(x, y, train(1, 1));
  Tensor wide(Shape{2, 4});
  EXPECT_THAT(err([&] { lone.forward(wide, y, train(1, 2)); }), HasSubstr("3 values per example"));
  EXPECT_THROW(lone.backward(dy, dx), std::logic_error);
  // Unbound (used as a function, as from Python): the initial rate, and dx from backward.
  lone.forward(x, y, train(1, 3));
  lone.backward(dy, dx);
  EXPECT_EQ(dx.shape(), x.shape());
}

TEST(ConcreteDropout, TheOptimizerAddsThePenaltyToTheBatchGradientOnce) {
  Penalized m(3.0);
  std::vector<nn::PenaltyGradient> g;
  m.value(500, g);
  train::OptimizerConfig oc;
  oc.lr = 0.1;
  oc.momentum = oc.momentum_start = 0.0;  // v = -lr g: w' = w - lr g
  oc.max_norm = 0;
  auto& arena = m.net.params();
  const std::vector<float> w0(arena.values().begin(), arena.values().end());
  train::Optimizer opt(oc, arena.size());
  opt.begin_step(arena, 0);
  opt.add_penalties(g);
  arena.zero_grads();  // no data gradient: the update is the penalty's alone
  opt.finish_step(parallel::serial_pool());
  const std::span<const float> w1 = arena.values();
  // The logit is the arena's first value, then the dense layer's weight.
  EXPECT_NEAR(w1[0], w0[0] - 0.1 * g[1].shift, 1e-6 * std::abs(w0[0]) + 1e-7);
  EXPECT_NE(w1[0], w0[0]);
  for (std::size_t i = 1; i <= 140; ++i) {
    EXPECT_NEAR(w1[i], w0[i] - 0.1 * g[0].decay * w0[i], 1e-6 * std::abs(w0[i]) + 1e-9) << i;
  }
  // After a row was updated, a penalty can no longer join that step.
  opt.begin_step(arena, 0);
  std::vector<float> zero(140, 0.0f);
  opt.consume(m.dense->weight(), 0, 7, zero.data());
  EXPECT_THROW(opt.add_penalties(g), std::logic_error);
}

TEST(ConcreteDropout, TrainingMovesTheRatesAndRecordsThemEveryEpoch) {
  const data::TrainTest data{test::synthetic_dataset(600, 8, 4, 3),
                             test::synthetic_dataset(100, 8, 4, 4)};
  train::TrainConfig c;
  c.net = "concrete_dropout:0.3,dense:64:relu,concrete_dropout:0.2:length_scale=5,dense:4";
  c.epochs = 3;
  c.val = 50;
  c.batch = 50;
  c.optimizer.lr = 0.5;
  parallel::ThreadPool pool(2);
  train::Trainer t(c, data, pool);
  while (t.epochs_done() < c.epochs) t.run_epoch();
  const auto& h = t.history();
  ASSERT_EQ(h.size(), 3u);
  std::vector<double> before{0.3, 0.2};
  for (const auto& r : h) {
    ASSERT_EQ(r.drop_rates.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_GT(r.drop_rates[i], 0.0);
      EXPECT_LT(r.drop_rates[i], 1.0);
      EXPECT_NE(r.drop_rates[i], before[i]) << "epoch " << r.epoch << " layer " << i;
    }
    before = r.drop_rates;
  }
  EXPECT_EQ(h.back().drop_rates, t.model().learned_drop_probs());
  // The weight term pushes the rate down: a much larger length scale ends with a lower rate.
  train::TrainConfig strong = c;
  strong.net = "concrete_dropout:0.3,dense:64:relu,concrete_dropout:0.2:length_scale=50,dense:4";
  train::Trainer s(strong, data, pool);
  while (s.epochs_done() < strong.epochs) s.run_epoch();
  EXPECT_LT(s.history().back().drop_rates[1], h.back().drop_rates[1] - 0.01);
  // Written to the history and read back; refused when not rates.
  const auto j = h.back().to_json();
  EXPECT_EQ(train::EpochRecord::from_json(j).drop_rates, h.back().drop_rates);
  auto bad = j;
  bad["drop_rates"] = {0.2, 1.5};
  EXPECT_THROW(train::EpochRecord::from_json(bad), std::invalid_argument);
  bad["drop_rates"] = "0.2";
  EXPECT_THROW(train::EpochRecord::from_json(bad), std::invalid_argument);
}

}  // namespace
}  // namespace dropkit::dropout
