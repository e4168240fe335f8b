// `dropkit bench train`: the cost of one training step, measured against its own matrix
// products in the same run (implemented in bench_train.cpp).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace dropkit::cli {

struct BenchTrainOptions {
  std::string arch = "784-1024-1024-10";
  std::string net;  // a layer list instead of arch
  int batch = 128;
  int steps = 50;
  int threads = 0;                // 0: all
  std::string precision = "f32";  // of dense products and convolutions (kernels/gemm.h, conv.h)
};

void add_bench_train_options(CLI::App& app, BenchTrainOptions& o);
int run_bench_train(const BenchTrainOptions& o, bool json);

}  // namespace dropkit::cli
