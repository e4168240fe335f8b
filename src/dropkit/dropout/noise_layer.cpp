#include "dropkit/dropout/noise_layer.h"

#include <stdexcept>

#include "dropkit/dropout/noise_shape.h"

namespace dropkit::dropout {

Shape NoiseLayer::output_shape(const Shape& in) const {
  try {
    noise_shape(in, shared_axes_);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(name() + ": " + e.what());
  }
  return in;
}

const NoiseLayer::Draw& NoiseLayer::begin_draw(const Tensor& x, const nn::Context& ctx) {
  draw_.shape = x.shape();
  draw_.noise = shared_axes_.empty() ? x.shape() : noise_shape(x.shape(), shared_axes_);
  draw_.shared = draw_.noise != draw_.shape;
  draw_.key = {ctx.seed, stream_id_, ctx.step};
  // Rows are the leading axis: a worker holding rows [r, r + n) of a batch draws what a single
  // process draws for them (SPEC 2).
  draw_.first = ctx.row_offset * draw_.noise.row_size();
  draw_.pool = &ctx.threads();
  has_draw_ = ctx.mode == nn::Mode::kTrain;
  return draw_;
}

const NoiseLayer::Draw& NoiseLayer::saved_draw(const Tensor& dy) const {
  nn::check_backward(*this, has_draw_ ? &draw_.shape : nullptr, dy.shape());
  return draw_;
}

}  // namespace dropkit::dropout
