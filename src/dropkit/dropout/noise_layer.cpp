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
  // Built apart and then stored whole: a forward that throws (a shape the shared axes do not
  // fit) leaves no draw behind for a backward to misuse.
  has_draw_ = false;
  Draw d;
  d.shape = x.shape();
  d.noise = shared_axes_.empty() ? x.shape() : noise_shape(x.shape(), shared_axes_);
  d.shared = d.noise != d.shape;
  d.key = ctx.noise_key(stream_id_);
  // Rows are the leading axis: a worker holding rows [r, r + n) of a batch draws what a single
  // process draws for them (SPEC 2); a stacked sample block starts at the same row_offset.
  d.first = ctx.row_offset * d.noise.row_size();
  d.blocks = ctx.blocks();
  ctx.block_rows(x.shape().rank() ? x.shape()[0] : 0, name());
  d.pool = &ctx.threads();
  draw_ = std::move(d);
  has_draw_ = ctx.mode == nn::Mode::kTrain;
  return draw_;
}

const NoiseLayer::Draw& NoiseLayer::saved_draw(const Tensor& dy) const {
  nn::check_backward(*this, has_draw_ ? &draw_.shape : nullptr, dy.shape());
  return draw_;
}

}  // namespace dropkit::dropout
