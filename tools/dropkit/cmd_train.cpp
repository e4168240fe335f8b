#include <stdexcept>

#include "commands.h"

namespace dropkit::cli {
Run add_train(CLI::App&) {
  return []() -> int { throw std::runtime_error("train: not built yet"); };
}
Run add_eval(CLI::App&) {
  return []() -> int { throw std::runtime_error("eval: not built yet"); };
}
}  // namespace dropkit::cli
