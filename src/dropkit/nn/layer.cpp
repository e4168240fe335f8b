#include "dropkit/nn/layer.h"

#include <stdexcept>

#include <fmt/format.h>

namespace dropkit::nn {

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
