// `dropkit bench predict`: T Monte-Carlo samples over a data set (predict::predict, exactly what
// `dropkit predict --mc T` runs) against its reference: T times the matrix
// products of one stochastic pass over the same examples. The products are timed on their own,
// with the same kernels, on blocks of the row count predict stacks per pass and on blocks four
// times as tall; the faster is the reference (a slow reference would flatter the ratio). Rounds
// interleave the two, and the ratio is the median of per-round ratios.
//
// The images are random bytes: a dense network's cost does not depend on the pixel values.
#include "bench_predict.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/table.h"
#include "dropkit/model/spec.h"
#include "dropkit/predict/predictor.h"
#include "dropkit/train/checkpoint.h"
#include "dropkit/train/config.h"
#include "dropkit/train/run_dir.h"
#include "flags.h"
#include "measure.h"
#include "progress.h"

namespace dropkit::cli {

void add_bench_predict_options(CLI::App& app, BenchPredictOptions& o) {
  app.add_option("--model", o.model,
                 "a run directory (default: `train`'s default network, random weights)");
  add_number_flag(app, "mc", o.mc, "samples T", 1, 100000);
  add_number_flag(app, "examples", o.examples, "examples predicted", 1, 1 << 24);
  add_number_flag(app, "batch_rows", o.batch_rows, "rows per stacked pass", 1, 1 << 20);
  add_number_flag(app, "rounds", o.rounds, "timed rounds", 1, 1000);
}

namespace {

// The model to predict with: a run directory's, or `train`'s default network with random
// weights; it must take one-channel images.
std::unique_ptr<model::Model> bench_model(const BenchPredictOptions& o) {
  std::unique_ptr<model::Model> model;
  if (o.model.empty()) {
    model =
        std::make_unique<model::Model>(train::TrainConfig::defaults().layers(), Shape{1, 28, 28});
    model->init_params(1);
  } else {
    model = std::move(
        train::read_checkpoint(std::filesystem::path(o.model) / train::kCheckpointFile).model);
  }
  const Shape& in = model->input_shape();
  if (in.rank() != 3 || in[0] != 1) {
    throw std::invalid_argument("bench predict: the model must take one-channel images, not " +
                                in.str());
  }
  return model;
}

// `count` images of random bytes of the model's input size.
data::Dataset random_images(const model::Model& model, std::size_t count) {
  const Shape& in = model.input_shape();
  data::Dataset d;
  d.count = count;
  d.rows = static_cast<std::size_t>(in[1]);
  d.cols = static_cast<std::size_t>(in[2]);
  d.images.resize(d.count * d.features());
  std::vector<std::uint32_t> bits((d.images.size() + 3) / 4);
  kernels::active_kernels().fill_bits({7, 7, 7}, 0, bits.data(), bits.size());
  std::memcpy(d.images.data(), bits.data(), d.images.size());
  return d;
}

// The reference: the matrix products of a prediction alone. Every dense layer from the first
// stochastic one on runs T x examples rows (one pass per sample), those before it examples rows
// (predict runs them once per example, not T times); on random operands of the layers' shapes,
// in blocks of a given row count.
class ProductsReference {
 public:
  ProductsReference(const model::Model& model, const BenchPredictOptions& o, std::int64_t tallest,
                    parallel::ThreadPool& pool)
      : examples_(static_cast<double>(o.examples)),
        per_sample_rows_(static_cast<double>(o.mc) * static_cast<double>(o.examples)),
        pool_(pool) {
    const std::size_t k = predict::first_stochastic_layer(model);
    for (std::size_t i = 0; i < model.size(); ++i) {
      const std::string kind = model.layer(i).kind();
      if (kind != "dense" && kind != "dropconnect") continue;
      const Shape s = model.layer_input_shape(i, 1);
      dense_.push_back(
          {static_cast<std::int64_t>(s.row_size()), model.layer(i).output_shape(s)[1], i >= k});
    }
    std::int64_t widest = 1;
    for (const Dense& l : dense_) widest = std::max({widest, l.in, l.out});
    a_ = Tensor(Shape{tallest, widest});
    c_ = Tensor(Shape{tallest, widest});
    w_ = Tensor(Shape{widest, widest});
    kernels::active_kernels().fill_normal({3, 3, 3}, 0, a_.data(), a_.numel());
    kernels::active_kernels().fill_normal({4, 4, 4}, 0, w_.data(), w_.numel());
  }

  // Every layer's rows in blocks of `block` rows (at most the `tallest` constructed with).
  void run(std::int64_t block) {
    for (const Dense& l : dense_) {
      const double rows = rows_of(l);
      const auto blocks = static_cast<std::int64_t>(rows / static_cast<double>(block));
      const std::int64_t rest = static_cast<std::int64_t>(rows) - blocks * block;
      for (std::int64_t b = 0; b <= blocks; ++b) {
        const std::int64_t r = b < blocks ? block : rest;
        if (r == 0) continue;
        kernels::linear_forward(pool_, r, l.in, l.out, a_.data(), w_.data(), c_.data(),
                                [](std::int64_t, std::int64_t) {});
      }
    }
  }

  double flops() const {
    double f = 0;
    for (const Dense& l : dense_)
      f += 2.0 * rows_of(l) * static_cast<double>(l.in) * static_cast<double>(l.out);
    return f;
  }

 private:
  struct Dense {
    std::int64_t in, out;
    bool per_sample;
  };
  double rows_of(const Dense& l) const { return l.per_sample ? per_sample_rows_ : examples_; }

  double examples_, per_sample_rows_;
  parallel::ThreadPool& pool_;
  std::vector<Dense> dense_;
  Tensor a_, c_, w_;
};

}  // namespace

int run_bench_predict(const BenchPredictOptions& o, int threads_flag, bool json) {
  const int threads = resolve_threads(threads_flag);
  parallel::ThreadPool pool(threads);
  parallel::ScopedFlushDenormals flush;
  const std::unique_ptr<model::Model> model = bench_model(o);
  const data::Dataset d = random_images(*model, o.examples);
  const predict::PredictOptions po{.samples = o.mc, .seed = 1, .max_rows = o.batch_rows};
  auto run_predict = [&] {
    predict::predict(*model, d, 0, d.count, po, pool, [](const predict::ExampleResult&) {});
  };
  const std::size_t group = std::min<std::size_t>(o.mc, o.batch_rows);
  const std::size_t chunk = std::max<std::size_t>(1, o.batch_rows / group);
  const auto stacked = static_cast<std::int64_t>(group * chunk);  // rows per pass of predict
  // The reference is the faster of the products in predict's blocks and in blocks 4x taller.
  const std::int64_t tallest = 4 * stacked;
  ProductsReference products(*model, o, tallest, pool);
  const double flops = products.flops();

  // Warm-up: buffers faulted in, oneDNN kernels generated.
  predict::predict(*model, d, 0, std::min<std::size_t>(d.count, chunk), po, pool,
                   [](const predict::ExampleResult&) {});
  products.run(stacked);
  std::vector<double> tp, ts, tt, ratios;
  ProgressBar bar(stderr, "bench predict, rounds", json);
  for (int r = 0; r < o.rounds; ++r) {
    bar(static_cast<std::size_t>(r), static_cast<std::size_t>(o.rounds));
    tp.push_back(seconds_of(run_predict));
    ts.push_back(seconds_of([&] { products.run(stacked); }));
    tt.push_back(seconds_of([&] { products.run(tallest); }));
    ratios.push_back(tp.back() / std::min(ts.back(), tt.back()));
  }
  bar.finish();
  const double pred = median(tp), ref = std::min(median(ts), median(tt)), ratio = median(ratios);
  if (json) {
    nlohmann::json j = machine_json();
    j.update(nlohmann::json{{"net", model->spec()},
                            {"samples", o.mc},
                            {"examples", o.examples},
                            {"threads", threads},
                            {"rows_per_pass", stacked},
                            {"predict_seconds", pred},
                            {"products_seconds", ref},
                            {"products_stacked_rows_seconds", median(ts)},
                            {"products_4x_rows_seconds", median(tt)},
                            {"products_gflops", flops / ref / 1e9},
                            {"predict_over_products", ratio}});
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("bench predict: {}, T = {} on {} examples, {} threads, {} kernels, median of {}\n",
             model->spec(), o.mc, o.examples, threads, kernels::active_kernels().name, o.rounds);
  fmt::print("  Monte-Carlo prediction      {:8.3f} s\n", pred);
  fmt::print(
      "  T x products of one pass    {:8.3f} s  ({:.0f} GFLOP/s; {} rows {:.3f} s, {} rows "
      "{:.3f} s)\n",
      ref, flops / ref / 1e9, stacked, median(ts), tallest, median(tt));
  fmt::print("  prediction / products       {:8.3f}  (median of per-round ratios)\n", ratio);
  return 0;
}

}  // namespace dropkit::cli
