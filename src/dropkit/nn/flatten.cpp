#include "dropkit/nn/flatten.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace dropkit::nn {

Shape Flatten::output_shape(const Shape& in) const {
  if (in.rank() < 1) {
    throw std::invalid_argument(
        fmt::format("{}: input shape {} has no example axis", name(), in.str()));
  }
  return Shape{in[0], static_cast<std::int64_t>(in.row_size())};
}

void Flatten::forward(const Tensor& x, Tensor& y, const Context& ctx) {
  if (&x == &y) throw std::invalid_argument(name() + ": cannot run in place");
  y.resize(output_shape(x.shape()));
  std::copy(x.span().begin(), x.span().end(), y.span().begin());
  has_train_forward_ = ctx.mode == Mode::kTrain;
  in_shape_ = x.shape();
  out_shape_ = y.shape();
}

void Flatten::backward(const Tensor& dy, Tensor& dx) {
  check_backward(*this, has_train_forward_ ? &out_shape_ : nullptr, dy.shape());
  if (&dx == &dy) throw std::invalid_argument(name() + ": cannot run backward in place");
  if (!needs_input_grad_) return;
  dx.resize(in_shape_);
  std::copy(dy.span().begin(), dy.span().end(), dx.span().begin());
}

LayerKind Flatten::registration() {
  return {
      .kind = kKind,
      .summary = "[examples, d1, d2, ...] -> [examples, d1*d2*...]",
      .options = {},
      .positional = {},
      .create = [](const nlohmann::json&, const Shape&, std::size_t) -> std::unique_ptr<Layer> {
        return std::make_unique<Flatten>();
      },
  };
}

}  // namespace dropkit::nn
