// The one progress line of the CLI: `train`'s epochs, `predict`'s examples, `bench`'s rounds.
// Drawn in place ("\r") on a terminal only, at most ten times a second, and erased when the
// work ends; a command with --json, or whose stream is not a terminal (a pipe, a file, a test),
// gets nothing.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include <fmt/format.h>

namespace dropkit::cli {

class ProgressBar {
 public:
  // `label` leads the line ("epoch 3/150", "predict, T = 1000"); quiet: never draw.
  ProgressBar(std::FILE* f, std::string label, bool quiet = false)
      : f_(f), on_(!quiet && isatty(fileno(f))), label_(std::move(label)) {}
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar() { finish(); }

  // `done` of `total` units, with the running loss when there is one.
  void operator()(std::size_t done, std::size_t total, std::optional<double> loss = {}) {
    if (!on_ || total == 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (done != total && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    const int width = 30;
    const auto filled = static_cast<int>(static_cast<double>(width) * static_cast<double>(done) /
                                         static_cast<double>(total));
    fmt::print(f_, "\r{} [{}{}] {}/{}", label_, std::string(filled, '#'),
               std::string(width - filled, '.'), done, total);
    if (loss) fmt::print(f_, " loss {:.4f}", *loss);
    std::fflush(f_);
  }
  // Erases the line (once).
  void finish() {
    if (drawn_) fmt::print(f_, "\r\033[K");
    drawn_ = false;
  }

 private:
  std::FILE* f_;
  bool on_;
  std::string label_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace dropkit::cli
