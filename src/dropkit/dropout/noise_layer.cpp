#include "dropkit/dropout/noise_layer.h"

#include <stdexcept>

#include "dropkit/dropout/mask.h"
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
  d.blocks = ctx.blocks();
  d.shared_input = ctx.mode == nn::Mode::kSample && ctx.shared_input;
  if (x.shape().rank() == 0) throw std::invalid_argument(name() + ": a scalar input has no rows");
  d.shape = d.shared_input
                ? x.shape().example().with_batch(x.shape()[0] * static_cast<std::int64_t>(d.blocks))
                : x.shape();
  d.noise = shared_axes_.empty() ? d.shape : noise_shape(d.shape, shared_axes_);
  d.shared = d.noise != d.shape;
  d.key = ctx.noise_key(stream_id_);
  // Rows are the leading axis: a worker holding rows [r, r + n) of a batch draws what a single
  // process draws for them (docs/spec.md section 2); a stacked sample block starts at the same
  // row_offset.
  d.first = ctx.row_offset * d.noise.row_size();
  ctx.block_rows(d.shape[0], name());
  d.pool = &ctx.threads();
  draw_ = std::move(d);
  has_draw_ = ctx.mode == nn::Mode::kTrain;
  return draw_;
}

void NoiseLayer::resize_output(const Draw& d, const Tensor& x, Tensor& y) const {
  if (&y == &x) {
    if (d.shared_input) throw std::invalid_argument(name() + ": a shared input cannot be in place");
    return;
  }
  y.resize(d.shape);
}

void NoiseLayer::copy_blocks(const Draw& d, const Tensor& x, Tensor& y) {
  if (&y == &x) return;
  const std::size_t n = x.numel();
  for (std::uint64_t b = 0; b < (d.shared_input ? d.blocks : 1); ++b)
    scale_copy(*d.pool, 1.0f, x.span(), y.span().subspan(b * n, n));
}

const NoiseLayer::Draw& NoiseLayer::saved_draw(const Tensor& dy) const {
  nn::check_backward(*this, has_draw_ ? &draw_.shape : nullptr, dy.shape());
  return draw_;
}

}  // namespace dropkit::dropout
