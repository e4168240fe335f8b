#include "dropkit/dropout/alpha_dropout.h"

#include <algorithm>
#include <cmath>

#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/noise_shape.h"
#include "dropkit/dropout/options.h"
#include "dropkit/kernels/table.h"

namespace dropkit::dropout {
namespace {

double alpha_a(double p) {
  return 1.0 / std::sqrt((1.0 - p) * (1.0 + p * kAlphaPrime * kAlphaPrime));
}

}  // namespace

AlphaDropout::AlphaDropout(double drop_prob, std::uint32_t stream_id, std::vector<int> shared_axes,
                           int mask_bits)
    : NoiseLayer(stream_id, std::move(shared_axes)),
      drop_prob_(checked_drop_prob(drop_prob)),
      keep_(drop_prob, mask_bits) {
  // In double, rounded once, at the rate the masks realise; p = 1 takes the limit (a is never
  // applied then: all dropped).
  const double p = keep_.effective_drop_prob();
  if (p < 1.0) {
    a_ = static_cast<float>(alpha_a(p));
    b_ = static_cast<float>(-alpha_a(p) * kAlphaPrime * p);
    c_ = static_cast<float>(alpha_a(p) * kAlphaPrime * (1.0 - p));
  }
}

nlohmann::json AlphaDropout::config() const {
  return {{"drop_prob", drop_prob_},
          {"shared_axes", shared_axes_text(shared_axes())},
          {"mask_bits", keep_.width()}};
}

void AlphaDropout::forward(const Tensor& x, Tensor& y, const nn::Context& ctx) {
  auto& pool = ctx.threads();
  if (ctx.mode == nn::Mode::kEval) {
    forget_draw();
    if (&y != &x) y.resize(x.shape());
    scale_copy(pool, 1.0f, x.span(), y.span());
    return;
  }
  const Draw& d = begin_draw(x, ctx);
  resize_output(d, x, y);
  if (keep_.keeps_all()) {
    copy_blocks(d, x, y);  // p = 0 in training: the identity, bitwise
    return;
  }
  if (!d.shared) {
    each_block(d, [&](parallel::ThreadPool& p, const rng::StreamKey& key, std::uint64_t first,
                      std::size_t b, std::size_t n) {
      apply_keep_affine(p, key, first, keep_, a_, b_, c_, input_of(d, x, b, n),
                        y.span().subspan(b, n));
    });
    return;
  }
  noise_.resize(d.noise);  // 1 kept, 0 dropped, per noise element
  std::fill(noise_.span().begin(), noise_.span().end(), 1.0f);
  each_block(d, [&](parallel::ThreadPool& p, const rng::StreamKey& key, std::uint64_t first,
                    std::size_t b, std::size_t n) {
    const auto noise = noise_.span().subspan(b, n);
    apply_keep_mask(p, key, first, keep_, 1.0f, noise, noise);
  });
  const float a = a_, b = b_, c = c_;
  broadcast(
      d, x, noise_.data(), y.data(), [=](float v, float k) { return k != 0.0f ? a * v + b : c; },
      [=](const float* xs, float* ys, const float* k, std::size_t runs, std::size_t len,
          bool streaming) {
        kernels::active_kernels().run_affine(xs, ys, k, runs, len, a, b, c, streaming);
      });
}

void AlphaDropout::backward(const Tensor& dy, Tensor& dx) {
  const Draw& d = saved_draw(dy);
  if (&dx != &dy) dx.resize(dy.shape());
  if (keep_.keeps_all()) {
    scale_copy(*d.pool, 1.0f, dy.span(), dx.span());
  } else if (!d.shared) {
    apply_keep_mask(*d.pool, d.key, d.first, keep_, a_, dy.span(), dx.span());
  } else {
    const float a = a_;
    broadcast_noise(
        *d.pool, d.shape, d.noise, dy.data(), noise_.data(), dx.data(),
        [=](float v, float k) { return k != 0.0f ? v * a : 0.0f; },
        [=](const float* xs, float* ys, const float* k, std::size_t runs, std::size_t len,
            bool streaming) {
          kernels::active_kernels().run_scale(xs, ys, k, runs, len, a, streaming);  // k in {0, 1}
        });
  }
}

nn::LayerKind AlphaDropout::registration() {
  return {
      .kind = kKind,
      .summary = "alpha dropout for SELU nets (Klambauer et al. 2017): keeps mean 0, variance 1",
      .options = {drop_prob_option(), shared_axes_option(), mask_bits_option()},
      .positional = {"drop_prob"},
      .create = [](const nlohmann::json& c, const Shape&,
                   std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<AlphaDropout>(c.at("drop_prob").get<double>(), layer_stream(index),
                                              shared_axes_of(c), c.at("mask_bits").get<int>());
      },
  };
}

}  // namespace dropkit::dropout
