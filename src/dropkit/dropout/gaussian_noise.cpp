#include "dropkit/dropout/gaussian_noise.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/options.h"

namespace dropkit::dropout {

GaussianNoise::GaussianNoise(double sigma, std::uint32_t stream_id)
    : NoiseLayer(stream_id, {}), sigma_(sigma) {
  if (!(sigma >= 0.0 && sigma <= kMaxSigma)) {  // NaN fails too
    throw std::invalid_argument(
        fmt::format("sigma = {} is outside [0, 1e30] (the noise's standard deviation)", sigma));
  }
}

void GaussianNoise::forward(const Tensor& x, Tensor& y, const nn::Context& ctx) {
  if (ctx.mode == nn::Mode::kEval) {
    forget_draw();
    if (&y != &x) y.resize(x.shape());
    scale_copy(ctx.threads(), 1.0f, x.span(), y.span());
    return;
  }
  const Draw& d = begin_draw(x, ctx);
  resize_output(d, x, y);
  each_block(d, [&](parallel::ThreadPool& p, const rng::StreamKey& key, std::uint64_t first,
                    std::size_t b, std::size_t n) {
    apply_gaussian(p, key, first, NoiseKind::kAdditive, static_cast<float>(sigma_),
                   input_of(d, x, b, n), y.span().subspan(b, n));
  });
}

void GaussianNoise::backward(const Tensor& dy, Tensor& dx) {
  const Draw& d = saved_draw(dy);
  if (&dx != &dy) dx.resize(dy.shape());
  scale_copy(*d.pool, 1.0f, dy.span(), dx.span());
}

nn::LayerKind GaussianNoise::registration() {
  return {
      .kind = kKind,
      .summary = "additive N(0, sigma^2) noise (Bishop 1995)",
      .options = {{.name = "sigma",
                   .type = Option::Type::kReal,
                   .default_value = nullptr,
                   .help = "standard deviation of the noise",
                   .min = 0,
                   .max = GaussianNoise::kMaxSigma}},
      .positional = {"sigma"},
      .create = [](const nlohmann::json& c, const Shape&,
                   std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<GaussianNoise>(c.at("sigma").get<double>(), layer_stream(index));
      },
  };
}

}  // namespace dropkit::dropout
