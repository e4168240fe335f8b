#include "dropkit/dropout/gaussian_dropout.h"

#include <algorithm>
#include <cmath>

#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/noise_shape.h"
#include "dropkit/dropout/options.h"
#include "dropkit/kernels/table.h"

namespace dropkit::dropout {

GaussianDropout::GaussianDropout(double drop_prob, std::uint32_t stream_id,
                                 std::vector<int> shared_axes)
    : NoiseLayer(stream_id, std::move(shared_axes)),
      drop_prob_(checked_drop_prob(drop_prob)),
      sigma_(drop_prob < 1.0 ? static_cast<float>(std::sqrt(drop_prob / (1.0 - drop_prob)))
                             : 0.0f) {}

nlohmann::json GaussianDropout::config() const {
  return {{"drop_prob", drop_prob_}, {"shared_axes", shared_axes_text(shared_axes())}};
}

void GaussianDropout::apply(const Draw& d, const Tensor& v, Tensor& out) {
  resize_output(d, v, out);
  if (drop_prob_ == 1.0) {
    std::fill(out.span().begin(), out.span().end(), 0.0f);
    return;
  }
  if (!d.shared) {
    each_block(d, [&](parallel::ThreadPool& p, const rng::StreamKey& key, std::uint64_t first,
                      std::size_t b, std::size_t n) {
      apply_gaussian(p, key, first, NoiseKind::kMultiplicative, sigma_, input_of(d, v, b, n),
                     out.span().subspan(b, n));
    });
    return;
  }
  // (A noise value of exactly 0 makes its elements exactly 0, as for dropout.)
  broadcast(
      d, v, noise_.data(), out.data(), [](float a, float e) { return e != 0.0f ? a * e : 0.0f; },
      [](const float* x, float* y, const float* e, std::size_t runs, std::size_t len,
         bool streaming) {
        kernels::active_kernels().run_scale(x, y, e, runs, len, 1.0f, streaming);
      });
}

void GaussianDropout::forward(const Tensor& x, Tensor& y, const nn::Context& ctx) {
  if (ctx.mode == nn::Mode::kEval) {
    forget_draw();
    if (&y != &x) y.resize(x.shape());
    scale_copy(ctx.threads(), 1.0f, x.span(), y.span());
    return;
  }
  const Draw& d = begin_draw(x, ctx);
  if (d.shared) {  // e per noise element: 1 + s z
    noise_.resize(d.noise);
    std::fill(noise_.span().begin(), noise_.span().end(), 1.0f);
    each_block(d, [&](parallel::ThreadPool& p, const rng::StreamKey& key, std::uint64_t first,
                      std::size_t b, std::size_t n) {
      const auto noise = noise_.span().subspan(b, n);
      apply_gaussian(p, key, first, NoiseKind::kMultiplicative, sigma_, noise, noise);
    });
  }
  apply(d, x, y);
}

void GaussianDropout::backward(const Tensor& dy, Tensor& dx) {
  apply(saved_draw(dy), dy, dx);
}

nn::LayerKind GaussianDropout::registration() {
  return {
      .kind = kKind,
      .summary = "multiplicative N(1, p/(1-p)) noise: Bernoulli dropout's variance at drop rate p",
      .options = {drop_prob_option(), shared_axes_option()},
      .positional = {"drop_prob"},
      .create = [](const nlohmann::json& c, const Shape&,
                   std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<GaussianDropout>(c.at("drop_prob").get<double>(),
                                                 layer_stream(index), shared_axes_of(c));
      },
  };
}

}  // namespace dropkit::dropout
