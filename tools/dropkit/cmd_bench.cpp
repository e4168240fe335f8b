// `dropkit bench`: dropout kernels against the machine's copy bandwidth, measured in one run.
// `dropkit bench train`: one training step against its matrix products alone (cmd_train.cpp).
//
// The reference is the best copy this machine does: for each size and thread count, the faster
// of memcpy and a streaming-store loop, over the same static ranges and the same pool. Every
// buffer is allocated and touched before timing (no page faults in the loop); each result is the
// median of several repetitions after a warm-up.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
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
#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/gaussian_dropout.h"
#include "dropkit/dropout/gaussian_noise.h"
#include "dropkit/dropout/mask.h"
#include "dropkit/kernels/table.h"
#include "measure.h"

namespace dropkit::cli {
namespace {

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

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
  double seconds;
  double bytes;
  double copy_seconds;
};

int run_kernels(bool json, std::vector<std::size_t> sizes, int reps_scale) {
  const int all = resolve_threads(0);
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

  for (std::size_t n : sizes) {
    // Repetitions: more for small sizes, where one run is short and noisy.
    const int reps = 3 + reps_scale * (n <= (1u << 20) ? 8 : n <= (16u << 20) ? 3 : 1);
    Tensor xs(Shape{static_cast<std::int64_t>(n)}), ys(xs.shape()), dxs(xs.shape());
    std::memcpy(xs.data(), x.data(), n * sizeof(float));
    for (int threads : thread_counts) {
      parallel::ThreadPool pool(threads);
      auto split = [&](auto&& fn) {
        parallel::parallel_for(pool, n, 64, [&](std::size_t b, std::size_t e) { fn(b, e); });
      };
      const double t_memcpy = median_seconds(reps, [&] {
        split([&](std::size_t b, std::size_t e) {
          std::memcpy(ys.data() + b, xs.data() + b, (e - b) * sizeof(float));
        });
      });
      const double t_stream = median_seconds(reps, [&] {
        split([&](std::size_t b, std::size_t e) {
          k.copy_streaming(xs.data() + b, ys.data() + b, e - b);
        });
      });
      const double copy = std::min(t_memcpy, t_stream);
      const double b8 = 8.0 * static_cast<double>(n);
      rows.push_back({"memcpy", n, threads, t_memcpy, b8, copy});
      rows.push_back({"copy_streaming", n, threads, t_stream, b8, copy});
      rows.push_back({"copy", n, threads, copy, b8, copy});

      const nn::Context ctx{.mode = nn::Mode::kTrain, .seed = 7, .step = 1, .pool = &pool};
      dropout::Dropout recompute(0.5, dropout::Scaling::kInverted, dropout::MaskStorage::kRecompute,
                                 1);
      dropout::Dropout stored(0.5, dropout::Scaling::kInverted, dropout::MaskStorage::kBits, 1);
      rows.push_back({"dropout_forward", n, threads,
                      median_seconds(reps, [&] { recompute.forward(xs, ys, ctx); }), b8, copy});
      rows.push_back({"dropout_backward_recompute", n, threads,
                      median_seconds(reps, [&] { recompute.backward(ys, dxs); }), b8, copy});
      rows.push_back({"dropout_forward_bits", n, threads,
                      median_seconds(reps, [&] { stored.forward(xs, ys, ctx); }),
                      b8 + static_cast<double>(n) / 8, copy});
      rows.push_back({"dropout_backward_bits", n, threads,
                      median_seconds(reps, [&] { stored.backward(ys, dxs); }),
                      b8 + static_cast<double>(n) / 8, copy});
      // Keep decisions from 16- and 8-bit fields (mask_bits; 2 and 4 elements per Philox word).
      for (int mask_bits : {16, 8}) {
        dropout::Dropout narrow(0.5, dropout::Scaling::kInverted, dropout::MaskStorage::kRecompute,
                                1, {}, mask_bits);
        rows.push_back({fmt::format("dropout_forward_{}bit", mask_bits), n, threads,
                        median_seconds(reps, [&] { narrow.forward(xs, ys, ctx); }), b8, copy});
        rows.push_back({fmt::format("dropout_backward_recompute_{}bit", mask_bits), n, threads,
                        median_seconds(reps, [&] { narrow.backward(ys, dxs); }), b8, copy});
      }
      // The rest of the family, in the same fused pass (dropout/mask.h).
      dropout::GaussianDropout gaussian(0.5, 1);
      dropout::GaussianNoise noise(1.0, 1);
      dropout::AlphaDropout alpha(0.1, 1);
      rows.push_back({"gaussian_dropout_forward", n, threads,
                      median_seconds(reps, [&] { gaussian.forward(xs, ys, ctx); }), b8, copy});
      rows.push_back({"gaussian_dropout_backward", n, threads,
                      median_seconds(reps, [&] { gaussian.backward(ys, dxs); }), b8, copy});
      rows.push_back({"gaussian_noise_forward", n, threads,
                      median_seconds(reps, [&] { noise.forward(xs, ys, ctx); }), b8, copy});
      rows.push_back({"alpha_dropout_forward", n, threads,
                      median_seconds(reps, [&] { alpha.forward(xs, ys, ctx); }), b8, copy});
      rows.push_back({"alpha_dropout_backward", n, threads,
                      median_seconds(reps, [&] { alpha.backward(ys, dxs); }), b8, copy});
      // Spatial dropout: [n / 1024, 16, 8, 8], one mask value per example and channel.
      if (n % 1024 == 0) {
        const Shape flat = xs.shape(), nchw{static_cast<std::int64_t>(n / 1024), 16, 8, 8};
        xs.reshape(nchw);
        dropout::Dropout spatial(0.5, dropout::Scaling::kInverted, dropout::MaskStorage::kBits, 1,
                                 {2, 3});
        rows.push_back({"dropout_forward_spatial", n, threads,
                        median_seconds(reps, [&] { spatial.forward(xs, ys, ctx); }), b8, copy});
        xs.reshape(flat);
      }
      const rng::StreamKey s{7, 1, 1};
      rows.push_back({"philox_bits", n, threads,
                      median_seconds(reps,
                                     [&] {
                                       split([&](std::size_t b, std::size_t e) {
                                         k.fill_bits(s, b, words.data() + b, e - b);
                                       });
                                     }),
                      4.0 * static_cast<double>(n), copy});
    }
  }

  auto gbs = [](const Row& r) { return r.bytes / r.seconds / 1e9; };
  // Ratio of bandwidths: for 8-byte-per-element ops, copy time / op time.
  auto ratio = [&](const Row& r) { return gbs(r) / (8.0 * r.n / r.copy_seconds / 1e9); };
  if (json) {
    nlohmann::json j{{"cpu", cpu_name()},
                     {"threads", all},
                     {"isa", k.name},
                     {"results", nlohmann::json::array()}};
    for (const auto& r : rows) {
      j["results"].push_back({{"op", r.op},
                              {"n", r.n},
                              {"threads", r.threads},
                              {"seconds_median", r.seconds},
                              {"gb_per_s", gbs(r)},
                              {"ratio_to_copy", ratio(r)}});
    }
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("cpu: {}   isa: {}   threads: 1 and {}\n", cpu_name(), k.name, all);
  fmt::print("{:<28} {:>10} {:>7} {:>12} {:>9} {:>8}\n", "op", "n", "threads", "median ms", "GB/s",
             "x copy");
  for (const auto& r : rows) {
    fmt::print("{:<28} {:>10} {:>7} {:>12.3f} {:>9.2f} {:>8.3f}\n", r.op, r.n, r.threads,
               r.seconds * 1e3, gbs(r), ratio(r));
  }
  return 0;
}

}  // namespace

Run add_bench(CLI::App& app) {
  struct Opts {
    std::string what = "kernels";
    bool json = false;
    std::vector<std::size_t> sizes{1u << 20, 16u << 20, 64u << 20};
    int reps = 4;
    BenchTrainOptions train;
    BenchPredictOptions predict;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("what", o->what,
                 "kernels (dropout against copy), train (a training step) or predict "
                 "(Monte-Carlo prediction)")
      ->check(CLI::IsMember({"kernels", "train", "predict"}))
      ->capture_default_str();
  app.add_flag("--json", o->json, "print one JSON object on stdout and nothing else");
  app.add_option("--sizes", o->sizes, "element counts for `bench kernels`")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 32))
      ->capture_default_str();
  app.add_option("--reps", o->reps, "repetition scale (more is steadier and slower)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  add_bench_train_options(app, o->train);
  add_bench_predict_options(app, o->predict);
  return [o] {
    if (o->what == "train") return run_bench_train(o->train, o->json);
    if (o->what == "predict") return run_bench_predict(o->predict, o->train.threads, o->json);
    return run_kernels(o->json, o->sizes, o->reps);
  };
}

}  // namespace dropkit::cli
