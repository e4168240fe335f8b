#include "dropkit/dropout/dropout.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/noise_shape.h"
#include "dropkit/dropout/options.h"
#include "dropkit/kernels/table.h"

namespace dropkit::dropout {

double checked_drop_prob(double drop_prob, const char* what) {
  if (!(drop_prob >= 0.0 && drop_prob <= 1.0)) {  // NaN fails both comparisons
    throw std::invalid_argument(
        fmt::format("{} = {} is outside the valid range [0, 1] (the probability to DROP a unit)",
                    what, drop_prob));
  }
  return drop_prob;
}

Dropout::Dropout(double drop_prob, Scaling scaling, MaskStorage storage, std::uint32_t stream_id,
                 std::vector<int> shared_axes, int mask_bits)
    : NoiseLayer(stream_id, std::move(shared_axes)),
      drop_prob_(checked_drop_prob(drop_prob)),
      scaling_(scaling),
      storage_(storage),
      keep_(drop_prob, mask_bits),  // checks mask_bits
      // Scaled by the rate the masks realise, so the expectation is exact (docs/spec.md section 2).
      train_scale_(train_scale_of(keep_.effective_drop_prob(), scaling)),
      eval_scale_(eval_scale_of(keep_.effective_drop_prob(), scaling)) {}

float train_scale_of(double drop_prob, Scaling scaling) {
  if (scaling == Scaling::kInference) return 1.0f;
  // p = 1 under inverted scaling would be 1/0; nothing is ever kept then, so the scale is never
  // applied and 0 is as good as any value and cannot create an Inf.
  return drop_prob < 1.0 ? static_cast<float>(1.0 / (1.0 - drop_prob)) : 0.0f;
}

float eval_scale_of(double drop_prob, Scaling scaling) {
  return scaling == Scaling::kInference ? static_cast<float>(1.0 - drop_prob) : 1.0f;
}

std::string_view scaling_name(Scaling s) {
  return s == Scaling::kInverted ? "inverted" : "inference";
}

Scaling parse_scaling(std::string_view name) {
  if (name == "inverted") return Scaling::kInverted;
  if (name == "inference") return Scaling::kInference;
  throw std::invalid_argument(fmt::format("scaling '{}' is not one of inverted, inference", name));
}

std::string_view storage_name(MaskStorage s) {
  return s == MaskStorage::kBits ? "bits" : "recompute";
}

MaskStorage parse_storage(std::string_view name) {
  if (name == "bits") return MaskStorage::kBits;
  if (name == "recompute") return MaskStorage::kRecompute;
  throw std::invalid_argument(fmt::format("mask_storage '{}' is not one of bits, recompute", name));
}

nlohmann::json Dropout::config() const {
  return {{"drop_prob", drop_prob_},
          {"scaling", scaling_name(scaling_)},
          {"mask_storage", storage_name(storage_)},
          {"shared_axes", shared_axes_text(shared_axes())},
          {"mask_bits", keep_.width()}};
}

std::size_t Dropout::saved_bytes(MaskStorage storage, std::size_t n) {
  return storage == MaskStorage::kBits ? mask_words(0, n) * sizeof(std::uint64_t) : 0;
}

namespace {
// A shared mask value m (scale or 0) on one element, and on a run of elements.
float masked(float v, float m) {
  return m != 0.0f ? v * m : 0.0f;
}
void run_masked(const float* x, float* y, const float* f, std::size_t runs, std::size_t len,
                bool streaming) {
  kernels::active_kernels().run_scale(x, y, f, runs, len, 1.0f, streaming);
}
}  // namespace

void Dropout::forward(const Tensor& x, Tensor& y, const nn::Context& ctx) {
  auto& pool = ctx.threads();
  if (ctx.mode == nn::Mode::kEval) {
    forget_draw();
    if (&y != &x) y.resize(x.shape());
    if (keep_.drops_all() && scaling_ == Scaling::kInference) {
      std::fill(y.span().begin(), y.span().end(), 0.0f);  // h * (1 - 1), without 0 * Inf = NaN
    } else {
      scale_copy(pool, eval_scale_, x.span(), y.span());
    }
    return;
  }
  const Draw& d = begin_draw(x, ctx);
  resize_output(d, x, y);
  if (d.shared) {
    // One mask value per noise element: keep ? scale : 0, broadcast over the shared axes.
    noise_.resize(d.noise);
    std::fill(noise_.span().begin(), noise_.span().end(), 1.0f);
    each_block(d, [&](parallel::ThreadPool& p, const rng::StreamKey& key, std::uint64_t first,
                      std::size_t b, std::size_t n) {
      const auto noise = noise_.span().subspan(b, n);
      apply_keep_mask(p, key, first, keep_, train_scale_, noise, noise);
    });
    broadcast(d, x, noise_.data(), y.data(), masked, run_masked);
    return;
  }
  // Bits are kept only in Train, which has one block.
  const bool keep_bits =
      ctx.mode == nn::Mode::kTrain && needs_backward_ && storage_ == MaskStorage::kBits;
  if (keep_bits) bits_.assign(mask_words(d.first, x.numel()), 0);
  each_block(d, [&](parallel::ThreadPool& p, const rng::StreamKey& key, std::uint64_t first,
                    std::size_t b, std::size_t n) {
    apply_keep_mask(p, key, first, keep_, train_scale_, input_of(d, x, b, n),
                    y.span().subspan(b, n),
                    keep_bits ? std::span(bits_) : std::span<std::uint64_t>());
  });
}

void Dropout::backward(const Tensor& dy, Tensor& dx) {
  const Draw& d = saved_draw(dy);
  if (!needs_backward_) {
    throw std::logic_error(name() + ": backward after set_needs_backward(false)");
  }
  if (&dx != &dy) dx.resize(dy.shape());
  if (d.shared) {
    broadcast_noise(*d.pool, d.shape, d.noise, dy.data(), noise_.data(), dx.data(), masked,
                    run_masked);
  } else if (storage_ == MaskStorage::kBits) {
    apply_stored_mask(*d.pool, bits_, d.first, train_scale_, dy.span(), dx.span());
  } else {
    apply_keep_mask(*d.pool, d.key, d.first, keep_, train_scale_, dy.span(), dx.span());
  }
}

nn::LayerKind Dropout::registration() {
  return {
      .kind = kKind,
      .summary = "Bernoulli dropout (Srivastava et al. 2014); drop_prob is the probability to DROP",
      .options = {drop_prob_option(),
                  scaling_option(),
                  {.name = "mask_storage",
                   .type = Option::Type::kString,
                   .default_value = storage_name(Dropout::kDefaultStorage),
                   .help = "what backward reads: 1 bit per element, or the mask recomputed",
                   .choices = {"bits", "recompute"}},
                  shared_axes_option(),
                  mask_bits_option()},
      .positional = {"drop_prob", "scaling"},
      .create = [](const nlohmann::json& c, const Shape&,
                   std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<Dropout>(
            c.at("drop_prob").get<double>(), parse_scaling(c.at("scaling").get<std::string>()),
            parse_storage(c.at("mask_storage").get<std::string>()), layer_stream(index),
            shared_axes_of(c), c.at("mask_bits").get<int>());
      },
  };
}

}  // namespace dropkit::dropout
