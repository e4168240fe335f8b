// Small helpers the subcommands share: the thread count a user means, wall-clock timing, the
// median that every benchmark and the training summary report, and the machine a figure was
// measured on.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/core/machine.h"
#include "dropkit/kernels/table.h"

namespace dropkit::cli {

// --threads 0 means every core.
inline int resolve_threads(int threads) {
  if (threads > 0) return threads;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

template <class Fn>
double seconds_of(Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The median; the mean of the two middle values for an even count; 0 for none.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// The fields of /proc/cpuinfo that identify a machine kind ("unknown" where absent), and the
// kernel table in use: every benchmark's JSON carries them, so each figure is attributable.
inline nlohmann::json machine_json() {
  const Machine m = this_machine();
  nlohmann::json j{
      {"cpu", m.cpu}, {"cpu_vendor", m.vendor}, {"cpu_family", m.family}, {"cpu_model", m.model}};
  j["isa"] = kernels::active_kernels().name;
  return j;
}

}  // namespace dropkit::cli
