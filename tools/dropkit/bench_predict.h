// `dropkit bench predict`: Monte-Carlo prediction (T samples over a data set) against T times
// the matrix products of one stochastic pass, measured in the same run (bench_predict.cpp).
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace dropkit::cli {

struct BenchPredictOptions {
  std::string model;  // a run directory; empty: the default network, randomly initialised
  std::uint64_t mc = 50;
  std::size_t examples = 10000;
  std::size_t batch_rows = 2048;
  int rounds = 3;
};

void add_bench_predict_options(CLI::App& app, BenchPredictOptions& o);
int run_bench_predict(const BenchPredictOptions& o, int threads, bool json);

}  // namespace dropkit::cli
