// `dropkit bench train`: the cost of one training step, measured against its own matrix
// products in the same run (implemented in bench_train.cpp).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "dropkit/train/config.h"

namespace dropkit::cli {

// The net, batch and precision are `train`'s options (train/config.h), with its defaults: the
// step measured is the step `dropkit train` runs.
struct BenchTrainOptions {
  std::string arch = train::TrainConfig::defaults().arch;
  std::string net = train::TrainConfig::defaults().net;  // a layer list instead of arch
  int batch = train::TrainConfig::defaults().batch;
  // of dense products and convolutions (kernels/gemm.h, conv.h)
  std::string precision = train::TrainConfig::defaults().precision;
  int steps = 50;
};

void add_bench_train_options(CLI::App& app, BenchTrainOptions& o);
int run_bench_train(const BenchTrainOptions& o, int threads, bool json);

}  // namespace dropkit::cli
