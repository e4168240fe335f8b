// The per-layer harness (dlib's test_layer, ggml's test-backend-ops): every registered layer
// kind, built through the registry, goes through the same checks --
//   - finite-difference gradients for backward, and backward_to equal to backward;
//   - the convention: backward OVERWRITES dx and ACCUMULATES into parameter gradients (both
//     pre-filled with non-zero values here), backward_to hands each parameter's rows to the sink
//     exactly once or leaves the parameter to the arena;
//   - its value (kind + config) round-trips through the registry and the text form, and its
//     parameters and buffers, copied into a rebuilt layer, give the same outputs bit for bit;
//   - eval mode is deterministic and ignores seed and step;
//   - Monte-Carlo sampling: T samples stacked in one call (Context::samples) equal T separate
//     calls, bit for bit, a sample of rows [a, b) with row_offset a equals those rows of the
//     whole batch's sample, and a sample draws from its own domain, not the training step's;
//   - forward and backward are bitwise identical at 1, 2 and 3 threads.
// A kind that is registered but has no examples below fails the suite: adding a layer means
// adding its examples here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "dropkit/kernels/table.h"
#include "dropkit/model/registry.h"
#include "dropkit/model/spec.h"
#include "dropkit/nn/params.h"
#include "model/layer_examples.h"
#include "support/gradcheck.h"

namespace dropkit::model {
namespace {

using json = nlohmann::json;
using test_examples::Example;
using test_examples::examples;

constexpr std::size_t kIndex = 3;  // the layer's position in an imagined model: its streams

// Inputs kept at least 0.05 away from 0, so that ReLU's and SELU's kinks stay outside the
// finite-difference step of element-wise layers.
Tensor input_for(const Shape& shape, std::uint64_t seed = 5) {
  Tensor x(shape);
  kernels::active_kernels().fill_normal({seed, 9, 9}, 0, x.data(), x.numel());
  for (std::size_t i = 0; i < x.numel(); ++i) x[i] += x[i] >= 0 ? 0.05f : -0.05f;
  return x;
}

Tensor random_like(const Shape& shape, std::uint64_t seed) {
  Tensor t(shape);
  kernels::active_kernels().fill_normal({seed, 8, 8}, 0, t.data(), t.numel());
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0;
}

// A layer built through the registry, with its own arena, initialised from a seed.
struct Built {
  std::unique_ptr<nn::Layer> layer;
  std::unique_ptr<nn::ParamArena> arena;
};
Built build(const json& value, const Shape& input) {
  Built b{create_layer(value, input, kIndex), nullptr};
  b.arena = std::make_unique<nn::ParamArena>(std::vector<nn::Layer*>{b.layer.get()});
  b.layer->init_params(17, 5);
  // Buffers get distinct values, so that a load that misses one shows.
  for (const auto& e : b.arena->buffer_entries()) {
    auto v = b.arena->values_of(e);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.5f + 0.01f * static_cast<float>(i % 7);
  }
  return b;
}

nn::Context train_ctx(parallel::ThreadPool& pool) {
  return {.mode = nn::Mode::kTrain, .seed = 21, .step = 6, .pool = &pool};
}

class LayerHarness : public ::testing::TestWithParam<std::pair<std::string, std::size_t>> {
 protected:
  const Example& ex() const { return examples().at(GetParam().first).at(GetParam().second); }
};

TEST_P(LayerHarness, GradientsMatchFiniteDifferences) {
  Built b = build(ex().layer, ex().input);
  parallel::ThreadPool pool(2);
  EXPECT_TRUE(
      test::check_gradients(*b.layer, input_for(ex().input), train_ctx(pool), {.h = ex().h}));
}

// Records what a layer's backward_to hands over, row by row.
class RecordingSink final : public nn::GradientSink {
 public:
  explicit RecordingSink(const nn::ParamArena& arena) : arena_(arena) {
    for (const auto& e : arena.entries()) got_[e.name].assign(e.numel(), 0.0f);
  }
  void consume(float* param, std::size_t r0, std::size_t r1, const float* grad) override {
    const std::lock_guard lock(mu_);
    for (const auto& e : arena_.entries()) {
      if (param != arena_.values().data() + e.offset) continue;
      const std::size_t cols = e.numel() / e.rows();
      std::copy(grad, grad + (r1 - r0) * cols, got_[e.name].begin() + r0 * cols);
      for (std::size_t r = r0; r < r1; ++r) ++rows_[e.name][r];
      return;
    }
    ADD_FAILURE() << "consume() got a pointer that starts no parameter";
  }
  std::map<std::string, std::vector<float>> got_;
  std::map<std::string, std::map<std::size_t, int>> rows_;

 private:
  const nn::ParamArena& arena_;
  std::mutex mu_;
};

TEST_P(LayerHarness, BackwardOverwritesDxAccumulatesGradsAndBackwardToAgrees) {
  parallel::ThreadPool pool(2);
  const Tensor x = input_for(ex().input);
  // Reference: backward into zeroed gradients, into an empty dx.
  Built ref = build(ex().layer, ex().input);
  Tensor y;
  ref.layer->forward(x, y, train_ctx(pool));
  const Tensor dy = random_like(y.shape(), 4);
  ref.arena->zero_grads();
  Tensor dx_ref;
  ref.layer->backward(dy, dx_ref);
  const std::vector<float> g(ref.arena->grads().begin(), ref.arena->grads().end());
  ASSERT_EQ(dx_ref.shape(), x.shape());

  // The same with dx and the gradients pre-filled: dx is overwritten, gradients accumulate.
  Built pre = build(ex().layer, ex().input);
  pre.layer->forward(x, y, train_ctx(pool));
  for (std::size_t i = 0; i < pre.arena->grads().size(); ++i)
    pre.arena->grads()[i] = 0.25f + 0.125f * static_cast<float>(i % 5);
  const std::vector<float> p(pre.arena->grads().begin(), pre.arena->grads().end());
  Tensor dx = random_like(x.shape(), 99);
  pre.layer->backward(dy, dx);
  EXPECT_TRUE(same_bits(dx, dx_ref)) << "backward must overwrite dx";
  for (std::size_t i = 0; i < g.size(); ++i) {
    ASSERT_NEAR(pre.arena->grads()[i], p[i] + g[i],
                1e-5 * (std::fabs(p[i]) + std::fabs(g[i])) + 1e-6)
        << "gradient " << i << " must accumulate";
  }

  // backward_to: every row of a parameter to the sink exactly once (then the arena is untouched)
  // or none (then it accumulated into the arena like backward); dx as backward's.
  Built fused = build(ex().layer, ex().input);
  fused.layer->forward(x, y, train_ctx(pool));
  for (std::size_t i = 0; i < fused.arena->grads().size(); ++i) fused.arena->grads()[i] = p[i];
  RecordingSink sink(*fused.arena);
  Tensor dx_fused = random_like(x.shape(), 98);
  fused.layer->backward_to(dy, dx_fused, sink);
  EXPECT_TRUE(same_bits(dx_fused, dx_ref));
  for (const auto& e : fused.arena->entries()) {
    const auto& rows = sink.rows_[e.name];
    if (rows.empty()) {
      for (std::size_t i = e.offset; i < e.offset + e.numel(); ++i)
        ASSERT_NEAR(fused.arena->grads()[i], p[i] + g[i],
                    1e-5 * (std::fabs(p[i]) + std::fabs(g[i])) + 1e-6);
      continue;
    }
    ASSERT_EQ(rows.size(), e.rows()) << e.name << ": every row or none";
    for (const auto& [r, n] : rows) ASSERT_EQ(n, 1) << e.name << " row " << r;
    for (std::size_t i = 0; i < e.numel(); ++i) {
      ASSERT_EQ(sink.got_[e.name][i], g[e.offset + i]) << e.name << "[" << i << "]";
      ASSERT_EQ(fused.arena->grads()[e.offset + i], p[e.offset + i]) << "arena touched";
    }
  }
}

TEST_P(LayerHarness, ValueAndParametersRoundTrip) {
  Built a = build(ex().layer, ex().input);
  const json value = layer_value(*a.layer);
  EXPECT_EQ(value, complete_layer_config(ex().layer)) << "config() must be the complete config";
  EXPECT_EQ(complete_layer_config(value), value);
  // Through the text form too.
  const json parsed = parse_net_text(layer_to_text(value));
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0], value) << layer_to_text(value);

  // A layer rebuilt from the value, given the first one's parameters and buffers, computes the
  // same outputs bit for bit, in every mode.
  Built b = build(value, ex().input);
  ASSERT_EQ(b.arena->entries().size(), a.arena->entries().size());
  std::copy(a.arena->values().begin(), a.arena->values().end(), b.arena->values().begin());
  std::copy(a.arena->buffers().begin(), a.arena->buffers().end(), b.arena->buffers().begin());
  parallel::ThreadPool pool(2);
  const Tensor x = input_for(ex().input);
  for (auto mode : {nn::Mode::kEval, nn::Mode::kTrain, nn::Mode::kSample}) {
    const nn::Context ctx{.mode = mode, .seed = 8, .step = 2, .pool = &pool};
    Tensor ya, yb;
    a.layer->forward(x, ya, ctx);
    b.layer->forward(x, yb, ctx);
    EXPECT_TRUE(same_bits(ya, yb)) << "mode " << static_cast<int>(mode);
    EXPECT_EQ(ya.shape(), a.layer->output_shape(x.shape()));
  }
}

TEST_P(LayerHarness, EvalIsDeterministicAndIgnoresSeedAndStep) {
  Built b = build(ex().layer, ex().input);
  parallel::ThreadPool pool(2);
  const Tensor x = input_for(ex().input);
  Tensor y1, y2;
  b.layer->forward(x, y1, {.mode = nn::Mode::kEval, .seed = 1, .step = 0, .pool = &pool});
  b.layer->forward(x, y2, {.mode = nn::Mode::kEval, .seed = 77, .step = 1234, .pool = &pool});
  EXPECT_TRUE(same_bits(y1, y2));
  for (std::size_t i = 0; i < y1.numel(); ++i) ASSERT_TRUE(std::isfinite(y1[i]));
}

// One sample of the given rows of x (a copy of them, with the row offset they have in x).
Tensor sample_of(nn::Layer& layer, const Tensor& x, std::int64_t row0, std::int64_t rows,
                 std::uint64_t step, parallel::ThreadPool& pool) {
  const std::size_t per = x.shape().row_size();
  Tensor part(
      x.shape().example().with_batch(rows),
      x.span().subspan(static_cast<std::size_t>(row0) * per, static_cast<std::size_t>(rows) * per));
  Tensor y;
  layer.forward(part, y,
                {.mode = nn::Mode::kSample,
                 .seed = 8,
                 .step = step,
                 .row_offset = 40 + static_cast<std::uint64_t>(row0),
                 .pool = &pool});
  return y;
}

// Noise is the same whatever the batch, bit for bit. A matrix product's rounding may depend on
// the row count it is given (oneDNN picks kernels by shape), so a layer with one (dense,
// dropconnect) is held to 1e-5 relative: a wrong mask would be off by far more.
void expect_same_sample(const float* got, const float* want, std::size_t n, bool exact,
                        const std::string& what) {
  for (std::size_t i = 0; i < n; ++i) {
    if (exact) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want[i]))
          << what << ", element " << i << ": " << got[i] << " vs " << want[i];
    } else {
      ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << what << ", element " << i;
    }
  }
}

TEST_P(LayerHarness, StackedSamplesEqualSeparateSamplesWhateverTheBatch) {
  Built b = build(ex().layer, ex().input);
  const bool exact = b.layer->param_specs().empty();
  parallel::ThreadPool pool(2);
  const std::int64_t n = ex().input[0];
  constexpr std::uint64_t kSamples = 3, kStep = 5;
  // Block s holds its own values (a layer that mixed blocks up would show it).
  const Tensor stacked = input_for(ex().input.example().with_batch(n * kSamples), 11);
  Tensor y;
  b.layer->forward(stacked, y,
                   {.mode = nn::Mode::kSample,
                    .seed = 8,
                    .step = kStep,
                    .row_offset = 40,
                    .samples = kSamples,
                    .pool = &pool});
  ASSERT_EQ(y.shape(), b.layer->output_shape(stacked.shape()));
  const std::size_t out_per = y.shape().row_size();
  for (std::uint64_t s = 0; s < kSamples; ++s) {
    const auto row0 = static_cast<std::int64_t>(s) * n;
    // Sample kStep + s of the examples at offset 40.., computed alone...
    Tensor x_s(ex().input,
               stacked.span().subspan(static_cast<std::size_t>(row0) * ex().input.row_size(),
                                      ex().input.numel()));
    Tensor alone;
    b.layer->forward(
        x_s, alone,
        {.mode = nn::Mode::kSample, .seed = 8, .step = kStep + s, .row_offset = 40, .pool = &pool});
    expect_same_sample(y.data() + row0 * out_per, alone.data(), alone.numel(), exact,
                       "sample " + std::to_string(s));
    // ...and one row at a time, each with its own offset.
    for (std::int64_t r = 0; r < n; ++r) {
      const Tensor row = sample_of(*b.layer, x_s, r, 1, kStep + s, pool);
      expect_same_sample(row.data(), alone.data() + r * out_per, out_per, exact,
                         "sample " + std::to_string(s) + ", row " + std::to_string(r));
    }
  }
  // A shared input (one block, read by every sample) gives what its stacked copies give.
  if (b.layer->stochastic()) {
    const std::size_t per = ex().input.numel();
    Tensor one(ex().input, stacked.span().first(per));
    Tensor copies(stacked.shape());
    for (std::uint64_t s = 0; s < kSamples; ++s)
      std::copy(one.span().begin(), one.span().end(), copies.span().begin() + s * per);
    Tensor from_copies, from_shared;
    nn::Context ctx{.mode = nn::Mode::kSample,
                    .seed = 8,
                    .step = kStep,
                    .row_offset = 40,
                    .samples = kSamples,
                    .pool = &pool};
    b.layer->forward(copies, from_copies, ctx);
    ctx.shared_input = true;
    b.layer->forward(one, from_shared, ctx);
    ASSERT_EQ(from_shared.shape(), from_copies.shape());
    expect_same_sample(from_shared.data(), from_copies.data(), from_copies.numel(), exact,
                       "shared input");
    EXPECT_THROW(b.layer->forward(one, one, ctx), std::invalid_argument);  // in place
  }
  // A noise layer refuses rows that are not a multiple of the samples.
  if (b.layer->stochastic() && n * kSamples > 1) {
    const Tensor odd = input_for(ex().input.example().with_batch(n * kSamples - 1));
    Tensor y_odd;
    EXPECT_THROW(b.layer->forward(odd, y_odd,
                                  {.mode = nn::Mode::kSample, .samples = kSamples, .pool = &pool}),
                 std::invalid_argument);
  }
}

TEST_P(LayerHarness, SamplesDoNotReplayTrainingMasks) {
  Built b = build(ex().layer, ex().input);
  if (!b.layer->stochastic()) GTEST_SKIP() << "no noise";
  parallel::ThreadPool pool(2);
  const Tensor x = input_for(ex().input);
  bool varies = false, differs = false;
  Tensor first_train;
  for (std::uint64_t t = 0; t < 8; ++t) {
    Tensor train, sample;
    b.layer->forward(x, train, {.mode = nn::Mode::kTrain, .seed = 8, .step = t, .pool = &pool});
    b.layer->forward(x, sample, {.mode = nn::Mode::kSample, .seed = 8, .step = t, .pool = &pool});
    if (t == 0) first_train = train.clone();
    varies = varies || !same_bits(train, first_train);
    differs = differs || !same_bits(train, sample);
  }
  // A layer whose draws do not change its output (p = 0 or 1, sigma 0) cannot show it.
  if (!varies) GTEST_SKIP() << "the noise does not change the output";
  EXPECT_TRUE(differs) << "sample t replays training step t for t = 0..7";
}

TEST_P(LayerHarness, BitwiseIdenticalAtOneTwoAndThreeThreads) {
  const Tensor x = input_for(ex().input);
  Tensor y_ref, dx_ref;
  std::vector<float> g_ref;
  for (int threads : {1, 2, 3}) {
    parallel::ThreadPool pool(threads);
    Built b = build(ex().layer, ex().input);
    Tensor y, dx;
    b.layer->forward(x, y, train_ctx(pool));
    const Tensor dy = random_like(y.shape(), 4);
    b.arena->zero_grads();
    b.layer->backward(dy, dx);
    if (threads == 1) {
      y_ref = y.clone();
      dx_ref = dx.clone();
      g_ref.assign(b.arena->grads().begin(), b.arena->grads().end());
      continue;
    }
    EXPECT_TRUE(same_bits(y, y_ref)) << threads << " threads";
    EXPECT_TRUE(same_bits(dx, dx_ref)) << threads << " threads";
    EXPECT_TRUE(std::equal(g_ref.begin(), g_ref.end(), b.arena->grads().begin()))
        << threads << " threads";
  }
}

std::vector<std::pair<std::string, std::size_t>> all_examples() {
  std::vector<std::pair<std::string, std::size_t>> all;
  for (const auto& [kind, list] : examples())
    for (std::size_t i = 0; i < list.size(); ++i) all.emplace_back(kind, i);
  return all;
}

INSTANTIATE_TEST_SUITE_P(Registered, LayerHarness, ::testing::ValuesIn(all_examples()),
                         [](const auto& info) {
                           return info.param.first + "_" + std::to_string(info.param.second);
                         });

TEST(LayerHarnessCoverage, EveryRegisteredKindHasExamples) {
  for (const auto& k : layer_kinds()) {
    EXPECT_TRUE(examples().contains(k.kind))
        << "layer kind '" << k.kind << "' is registered but the harness has no examples for it";
  }
  for (const auto& [kind, list] : examples()) EXPECT_NO_THROW(find_layer_kind(kind)) << kind;
}

}  // namespace
}  // namespace dropkit::model
