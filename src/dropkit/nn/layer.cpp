#include "dropkit/nn/layer.h"

#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/core/json_text.h"

namespace dropkit::nn {

std::string Layer::name() const {
  std::string args;
  const nlohmann::json c = config();  // items() of a temporary would dangle
  for (const auto& [key, value] : c.items()) {
    args += fmt::format("{}{}={}", args.empty() ? "" : ", ", key,
                        value.is_string() ? value.get<std::string>() : json_excerpt(value));
  }
  return fmt::format("{}({})", kind(), args);
}

std::int64_t Context::block_rows(std::int64_t rows, const std::string& who) const {
  const std::uint64_t b = blocks();
  if (b == 0 || static_cast<std::uint64_t>(rows) % b != 0) {
    throw std::invalid_argument(fmt::format(
        "{}: {} rows cannot be {} stacked Monte-Carlo samples (the row count must be a multiple "
        "of Context::samples, which must be at least 1)",
        who, rows, b));
  }
  return rows / static_cast<std::int64_t>(b);
}

void check_backward(const Layer& layer, const Shape* forward_shape, const Shape& grad_shape) {
  if (forward_shape == nullptr) {
    throw std::logic_error(layer.name() + ": backward needs a preceding forward in Mode::kTrain");
  }
  if (grad_shape != *forward_shape) {
    throw std::invalid_argument(
        fmt::format("{}: gradient shape {} differs from the forward's output shape {}",
                    layer.name(), grad_shape.str(), forward_shape->str()));
  }
}

}  // namespace dropkit::nn
