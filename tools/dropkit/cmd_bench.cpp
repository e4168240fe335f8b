// `dropkit bench`: dropout kernels against the machine's copy bandwidth, measured in one run.
// `dropkit bench train` and `bench predict` live in bench_train.cpp and bench_predict.cpp.
//
// The reference is the best copy this machine does: for each size and thread count, the faster
// of memcpy and a streaming-store loop, over the same static ranges and the same pool. Every
// buffer is allocated and touched before timing (no page faults in the loop); each result is the
// median of several repetitions after a warm-up. The memory bandwidth of these VMs drifts (it
// can double within an hour, and moves within one run), so each op is timed in alternation with
// the copy: every repetition times both copies right before the op, and the ratio reported is
// the median of the per-repetition ratios, not a ratio of two medians taken minutes apart.
//
// Every op reads xs, the buffer the copy reads, backward ops too (their dy): right after the copy
// xs may sit in the last-level cache while ys, just written with streaming stores, is in DRAM,
// and where a size fits that cache (16M floats in a 260 MB L3) an op reading ys would be compared
// with a copy that read from the cache (bits backward 0.61 against 0.91 x copy that way, Intel
// family 6 model 207, 2026-12-07).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_predict.h"
#include "bench_train.h"
#include "commands.h"
#include "dropkit/core/memory.h"
#include "dropkit/dropout/alpha_dropout.h"
#include "dropkit/dropout/concrete_dropout.h"
#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/gaussian_dropout.h"
#include "dropkit/dropout/gaussian_noise.h"
#include "dropkit/dropout/mask.h"
#include "dropkit/kernels/table.h"
#include "dropkit/nn/params.h"
#include "flags.h"
#include "measure.h"
#include "progress.h"

namespace dropkit::cli {
namespace {

template <class Fn>
double median_seconds(int reps, Fn&& fn) {
  fn();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) t.push_back(seconds_of(fn));
  return median(std::move(t));
}

struct Row {
  std::string op;
  std::size_t n;
  int threads;
  double seconds;       // the op's median
  double bytes;         // moved by one call
  double copy_seconds;  // the median of the copies timed next to it
  double ratio;         // median over repetitions of (bytes / seconds) / (8 n / copy seconds)
};

// The dropout family's passes, each timed by `measure(name, bytes moved, fn)` in alternation
// with the copy: Bernoulli dropout (recompute and bits storage, 32-, 16- and 8-bit fields), the
// rest of the family, spatial and concrete dropout. xs holds the input (n elements).
template <typename Measure>
void time_family(Measure& measure, Tensor& xs, Tensor& ys, Tensor& dxs, const nn::Context& ctx) {
  const auto n = static_cast<std::size_t>(xs.numel());
  const double b8 = 8.0 * static_cast<double>(n);
  dropout::Dropout recompute(0.5, dropout::Scaling::kInverted, dropout::MaskStorage::kRecompute, 1);
  dropout::Dropout stored(0.5, dropout::Scaling::kInverted, dropout::MaskStorage::kBits, 1);
  measure("dropout_forward", b8, [&] { recompute.forward(xs, ys, ctx); });
  measure("dropout_backward_recompute", b8, [&] { recompute.backward(xs, dxs); });
  measure("dropout_forward_bits", b8 + static_cast<double>(n) / 8,
          [&] { stored.forward(xs, ys, ctx); });
  measure("dropout_backward_bits", b8 + static_cast<double>(n) / 8,
          [&] { stored.backward(xs, dxs); });
  // Keep decisions from 16- and 8-bit fields (mask_bits; 2 and 4 elements per Philox word).
  for (int mask_bits : {16, 8}) {
    dropout::Dropout narrow(0.5, dropout::Scaling::kInverted, dropout::MaskStorage::kRecompute, 1,
                            {}, mask_bits);
    measure(fmt::format("dropout_forward_{}bit", mask_bits), b8,
            [&] { narrow.forward(xs, ys, ctx); });
    measure(fmt::format("dropout_backward_recompute_{}bit", mask_bits), b8,
            [&] { narrow.backward(xs, dxs); });
  }
  // The rest of the family, in the same fused pass (dropout/mask.h).
  dropout::GaussianDropout gaussian(0.5, 1);
  dropout::GaussianNoise noise(1.0, 1);
  dropout::AlphaDropout alpha(0.1, 1);
  measure("gaussian_dropout_forward", b8, [&] { gaussian.forward(xs, ys, ctx); });
  measure("gaussian_dropout_backward", b8, [&] { gaussian.backward(xs, dxs); });
  measure("gaussian_noise_forward", b8, [&] { noise.forward(xs, ys, ctx); });
  measure("alpha_dropout_forward", b8, [&] { alpha.forward(xs, ys, ctx); });
  measure("alpha_dropout_backward", b8, [&] { alpha.backward(xs, dxs); });
  // Spatial dropout: [n / 1024, 16, 8, 8], one mask value per example and channel.
  if (n % 1024 == 0) {
    const Shape flat = xs.shape(), nchw{static_cast<std::int64_t>(n / 1024), 16, 8, 8};
    xs.reshape(nchw);
    dropout::Dropout spatial(0.5, dropout::Scaling::kInverted, dropout::MaskStorage::kBits, 1,
                             {2, 3});
    measure("dropout_forward_spatial", b8, [&] { spatial.forward(xs, ys, ctx); });
    xs.reshape(flat);
  }
  // Concrete dropout on [n / 1024, 1024]: the relaxed mask (a k-th power per element, k = 10)
  // in forward and again in backward, which also reads x for the rate's gradient.
  if (n % 1024 == 0) {
    const Shape flat = xs.shape();
    xs.reshape(Shape{static_cast<std::int64_t>(n / 1024), 1024});
    dropout::ConcreteDropout concrete(1024, 0.5, 0.1, 1e-4, 1);
    nn::ParamArena arena({&concrete});
    concrete.init_params(0, 0);
    measure("concrete_dropout_forward", b8, [&] { concrete.forward(xs, ys, ctx); });
    measure("concrete_dropout_backward", 1.5 * b8, [&] { concrete.backward(xs, dxs); });
    xs.reshape(flat);
  }
}

// The rows as one JSON object (--json) or a table, with the machine they were measured on.
void print_rows(bool json, const std::vector<Row>& rows, int all) {
  const auto& k = kernels::active_kernels();
  auto gbs = [](const Row& r) { return r.bytes / r.seconds / 1e9; };
  if (json) {
    nlohmann::json j = machine_json();
    j["threads"] = all;
    j["results"] = nlohmann::json::array();
    for (const auto& r : rows) {
      j["results"].push_back({{"op", r.op},
                              {"n", r.n},
                              {"threads", r.threads},
                              {"seconds_median", r.seconds},
                              {"gb_per_s", gbs(r)},
                              {"copy_seconds_median", r.copy_seconds},
                              {"ratio_to_copy", r.ratio}});
    }
    fmt::print("{}\n", j.dump(2));
    return;
  }
  const nlohmann::json m = machine_json();
  fmt::print("cpu: {} ({}, family {}, model {})   isa: {}   threads: 1 and {}\n",
             m["cpu"].get<std::string>(), m["cpu_vendor"].get<std::string>(),
             m["cpu_family"].get<std::string>(), m["cpu_model"].get<std::string>(), k.name, all);
  fmt::print("{:<28} {:>10} {:>7} {:>12} {:>9} {:>8}\n", "op", "n", "threads", "median ms", "GB/s",
             "x copy");
  for (const auto& r : rows) {
    fmt::print("{:<28} {:>10} {:>7} {:>12.3f} {:>9.2f} {:>8.3f}\n", r.op, r.n, r.threads,
               r.seconds * 1e3, gbs(r), r.ratio);
  }
}

int run_kernels(bool json, std::vector<std::size_t> sizes, int reps_scale, int threads) {
  const int all = resolve_threads(threads);  // measured at 1 thread and at this many
  std::vector<int> thread_counts{1};
  if (all > 1) thread_counts.push_back(all);
  std::vector<Row> rows;
  const std::size_t max_n = *std::max_element(sizes.begin(), sizes.end());
  // Three float buffers, the Philox words and the mask bits: about 16 bytes per element.
  check_fits_in_memory(std::uint64_t{max_n} * 17, fmt::format("bench --sizes {}", max_n));
  Tensor x(Shape{static_cast<std::int64_t>(max_n)}), y(x.shape()), dx(x.shape());
  for (std::size_t i = 0; i < max_n; ++i) x[i] = static_cast<float>(i % 1000) * 0.001f;
  std::vector<std::uint32_t> words(max_n);
  std::vector<std::uint64_t> bits(dropout::mask_words(0, max_n));
  const auto& k = kernels::active_kernels();

  ProgressBar bar(stderr, "bench kernels, sizes x thread counts", json);
  std::size_t stage = 0;
  const std::size_t stages = sizes.size() * thread_counts.size();
  for (std::size_t n : sizes) {
    // Repetitions: more for small sizes, where one run is short and noisy.
    const int reps = 3 + reps_scale * (n <= (1u << 20) ? 8 : n <= (16u << 20) ? 3 : 1);
    Tensor xs(Shape{static_cast<std::int64_t>(n)}), ys(xs.shape()), dxs(xs.shape());
    std::memcpy(xs.data(), x.data(), n * sizeof(float));
    for (int threads : thread_counts) {
      bar(stage++, stages);
      parallel::ThreadPool pool(threads);
      auto split = [&](auto&& fn) {
        parallel::parallel_for(pool, n, 64, [&](std::size_t b, std::size_t e) { fn(b, e); });
      };
      auto memcpy_all = [&] {
        split([&](std::size_t b, std::size_t e) {
          std::memcpy(ys.data() + b, xs.data() + b, (e - b) * sizeof(float));
        });
      };
      auto stream_all = [&] {
        split([&](std::size_t b, std::size_t e) {
          k.copy_streaming(xs.data() + b, ys.data() + b, e - b);
        });
      };
      const double b8 = 8.0 * static_cast<double>(n);
      const double t_memcpy = median_seconds(reps, memcpy_all);
      const double t_stream = median_seconds(reps, stream_all);
      const double copy = std::min(t_memcpy, t_stream);
      rows.push_back({"memcpy", n, threads, t_memcpy, b8, copy, copy / t_memcpy});
      rows.push_back({"copy_streaming", n, threads, t_stream, b8, copy, copy / t_stream});
      rows.push_back({"copy", n, threads, copy, b8, copy, 1.0});
      // Times op in alternation with the best copy (see the top of the file) and adds its row.
      auto measure = [&](std::string op, double bytes, auto&& fn) {
        fn();  // warm-up
        std::vector<double> t, c, r;
        for (int rep = 0; rep < reps; ++rep) {
          const double copy_now = std::min(seconds_of(memcpy_all), seconds_of(stream_all));
          const double op_now = seconds_of(fn);
          t.push_back(op_now);
          c.push_back(copy_now);
          r.push_back(bytes * copy_now / (b8 * op_now));
        }
        rows.push_back({std::move(op), n, threads, median(std::move(t)), bytes,
                        median(std::move(c)), median(std::move(r))});
      };

      const nn::Context ctx{.mode = nn::Mode::kTrain, .seed = 7, .step = 1, .pool = &pool};
      time_family(measure, xs, ys, dxs, ctx);
      const rng::StreamKey s{7, 1, 1};
      measure("philox_bits", 4.0 * static_cast<double>(n), [&] {
        split([&](std::size_t b, std::size_t e) { k.fill_bits(s, b, words.data() + b, e - b); });
      });
    }
  }

  bar.finish();
  print_rows(json, rows, all);
  return 0;
}

}  // namespace

// `bench` has three subcommands, each with its own flags; --threads and --json are the bench's
// own and may come before or after the subcommand. `bench` alone runs `bench kernels`.
Run add_bench(CLI::App& app) {
  struct Opts {
    bool json = false;
    int threads = 0;
    std::vector<std::size_t> sizes{1u << 20, 16u << 20, 64u << 20};
    int reps = 4;
    BenchTrainOptions train;
    BenchPredictOptions predict;
  };
  auto o = std::make_shared<Opts>();
  app.require_subcommand(0, 1);
  add_json_flag(app, o->json, " and nothing else");
  add_threads_flag(app, o->threads);
  CLI::App* kernels_app =
      app.add_subcommand("kernels", "dropout kernels against the copy bandwidth (the default)");
  kernels_app->fallthrough();
  add_number_list_flag(*kernels_app, "sizes", o->sizes,
                       "element counts (space- or comma-separated)", 1, 4294967296.0);
  add_number_flag(*kernels_app, "reps", o->reps, "repetition scale (more is steadier and slower)",
                  1, 100);
  CLI::App* train_app =
      app.add_subcommand("train", "one training step against its own matrix products");
  train_app->fallthrough();
  add_bench_train_options(*train_app, o->train);
  CLI::App* predict_app = app.add_subcommand(
      "predict", "Monte-Carlo prediction against T times the products of one pass");
  predict_app->fallthrough();
  add_bench_predict_options(*predict_app, o->predict);
  return [o, train_app, predict_app] {
    if (train_app->parsed()) return run_bench_train(o->train, o->threads, o->json);
    if (predict_app->parsed()) return run_bench_predict(o->predict, o->threads, o->json);
    return run_kernels(o->json, o->sizes, o->reps, o->threads);
  };
}

}  // namespace dropkit::cli
