#include "bench_train.h"

#include <stdexcept>

namespace dropkit::cli {

void add_bench_train_options(CLI::App& app, BenchTrainOptions& o) {
  app.add_option("--arch", o.arch, "network for `bench train`")->capture_default_str();
  app.add_option("--batch", o.batch, "batch size for `bench train`")->capture_default_str();
  app.add_option("--steps", o.steps, "timed steps for `bench train`")->capture_default_str();
}

int run_bench_train(const BenchTrainOptions&, bool) {
  throw std::runtime_error("bench train: not built yet");
}

}  // namespace dropkit::cli
