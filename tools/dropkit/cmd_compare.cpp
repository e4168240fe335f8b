// `dropkit compare`: finished runs side by side, an accuracy table and one SVG of their curves.
#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

#include "commands.h"
#include "dropkit/core/atomic_file.h"
#include "dropkit/report/svg.h"
#include "dropkit/train/run_dir.h"
#include "flags.h"

namespace dropkit::cli {
namespace fs = std::filesystem;

Run add_compare(CLI::App& app) {
  struct Opts {
    std::vector<std::string> runs;
    std::string svg;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("runs", o->runs, "run directories written by `dropkit train --out`")
      ->required()
      ->expected(1, 8)
      ->check(kNonEmptyPath);
  app.add_option("--svg", o->svg, "write every run's train and test error into one SVG")
      ->check(kNonEmptyPath);
  return [o] {
    // The SVG must not replace a file of a run it compares.
    std::vector<NamedPath> inputs;
    for (const auto& run : o->runs) {
      for (const char* f : train::kRunFiles)
        inputs.push_back({"a file of the run", fs::path(run) / f});
    }
    const std::vector<NamedPath> outputs = {{"--svg", o->svg}};
    check_outputs_distinct(inputs, outputs);
    const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd",
                            "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"};
    std::vector<report::Series> series;
    // Every run is read and checked before anything is printed.
    std::vector<std::vector<train::EpochRecord>> histories;
    for (const auto& run : o->runs) {
      histories.push_back(train::read_metrics(fs::path(run) / train::kMetricsFile, false));
      if (histories.back().empty()) {
        throw std::runtime_error((fs::path(run) / train::kMetricsFile).string() + ": no epochs");
      }
    }
    fmt::print("{:<28} {:>7} {:>9} {:>9} {:>9} {:>9}\n", "run", "epochs", "train acc", "test acc",
               "gap", "best test");
    for (std::size_t i = 0; i < o->runs.size(); ++i) {
      const fs::path dir = o->runs[i];
      const auto& h = histories[i];
      const auto& last = h.back();
      double best = 0;
      for (const auto& r : h) best = std::max(best, r.test_accuracy);
      fmt::print("{:<28} {:>7} {:>9.4f} {:>9.4f} {:>9.4f} {:>9.4f}\n", dir.filename().string(),
                 last.epoch, last.train_accuracy, last.test_accuracy,
                 last.train_accuracy - last.test_accuracy, best);
      for (auto& series_i : train::error_series(h, dir.filename().string() + ": ", colors[i % 8]))
        series.push_back(std::move(series_i));
    }
    if (!o->svg.empty()) {
      write_file_atomic(o->svg,
                        report::line_chart_svg("train and test error", "error (%)", series));
      fmt::print("wrote {}\n", o->svg);
    }
    return 0;
  };
}

}  // namespace dropkit::cli
