// Small helpers the subcommands share: the thread count a user means, wall-clock timing, the
// median that every benchmark and the training summary report, and the machine a figure was
// measured on.
#pragma once

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

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
  nlohmann::json j{{"cpu", "unknown"},
                   {"cpu_vendor", "unknown"},
                   {"cpu_family", "unknown"},
                   {"cpu_model", "unknown"}};
  const std::pair<const char*, const char*> fields[] = {{"model name", "cpu"},
                                                        {"vendor_id", "cpu_vendor"},
                                                        {"cpu family", "cpu_family"},
                                                        {"model", "cpu_model"}};
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line) && !line.empty();) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    for (const auto& [name, field] : fields) {
      if (key == name) j[field] = value;
    }
  }
  j["isa"] = kernels::active_kernels().name;
  return j;
}

}  // namespace dropkit::cli
