#include "dropkit/dropout/dropconnect.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/options.h"
#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/table.h"
#include "dropkit/nn/activation.h"

namespace dropkit::dropout {

DropConnect::DropConnect(std::int64_t in, std::int64_t out, nn::Activation f, double drop_prob,
                         Scaling scaling, DropConnectInference inference, int samples,
                         std::uint32_t stream_id, int mask_bits)
    : nn::Linear(in, out, f),
      drop_prob_(checked_drop_prob(drop_prob)),
      scaling_(scaling),
      inference_(inference),
      samples_(samples),
      stream_id_(stream_id),
      keep_(drop_prob, mask_bits),
      // Scaled by the rate the masks realise, so the expectation is exact (docs/spec.md section 2).
      train_scale_(train_scale_of(keep_.effective_drop_prob(), scaling)),
      eval_scale_(eval_scale_of(keep_.effective_drop_prob(), scaling)) {
  if (samples < 1 || samples > 100000) {
    throw std::invalid_argument(fmt::format("samples = {} is outside [1, 100000]", samples));
  }
}

nlohmann::json DropConnect::config() const {
  nlohmann::json c = nn::Linear::config();
  c["drop_prob"] = drop_prob_;
  c["scaling"] = scaling_name(scaling_);
  c["inference"] = inference_ == DropConnectInference::kMean ? "mean" : "gaussian";
  c["samples"] = samples_;
  c["mask_bits"] = keep_.width();
  return c;
}

void DropConnect::forward(const Tensor& x, Tensor& y, const nn::Context& ctx) {
  auto& pool = ctx.threads();
  const auto w = std::span<const float>(w_, static_cast<std::size_t>(in_ * out_));
  wm_.resize(Shape{out_, in_});
  if (ctx.mode == nn::Mode::kEval) {
    if (inference_ == DropConnectInference::kGaussian && drop_prob_ > 0.0 && drop_prob_ < 1.0) {
      gaussian_rule(x, y, ctx);
      return;
    }
    if (keep_.drops_all() && scaling_ == Scaling::kInference) {
      std::fill(wm_.span().begin(), wm_.span().end(), 0.0f);  // W (1 - 1), never 0 * Inf
    } else {
      scale_copy(pool, eval_scale_, w, wm_.span());
    }
    run_forward(x, y, ctx, wm_.data());
    return;
  }
  if (ctx.mode == nn::Mode::kSample && (ctx.samples != 1 || ctx.shared_input)) {
    // Stacked samples: block s is one product with W masked by sample step + s, on its own rows
    // of x or, with a shared input, on all of x.
    const bool shared = ctx.shared_input;
    if (ctx.samples == 0) throw std::invalid_argument(name() + ": Context::samples is 0");
    const std::int64_t rows = shared ? x.shape()[0] : ctx.block_rows(x.shape()[0], name());
    if (&x == &y) throw std::invalid_argument(name() + ": cannot run in place");
    y.resize(output_shape(
        x.shape().example().with_batch(rows * static_cast<std::int64_t>(ctx.samples))));
    for (std::uint64_t s = 0; s < ctx.samples; ++s) {
      apply_keep_mask(pool, ctx.noise_key(stream_id_, s), 0, keep_, train_scale_, w, wm_.span());
      const auto r0 = static_cast<std::int64_t>(s) * rows;
      product(pool, rows, x.data() + (shared ? 0 : r0 * in_), wm_.data(), y.data() + r0 * out_);
    }
    x_ = y_ = nullptr;  // no backward after Sample
    return;
  }
  saved_key_ = ctx.noise_key(stream_id_);
  apply_keep_mask(pool, saved_key_, 0, keep_, train_scale_, w, wm_.span());
  run_forward(x, y, ctx, wm_.data());
}

void DropConnect::backward(const Tensor& dy, Tensor& dx) {
  const float* dz = output_grad(dy, dx);
  const std::int64_t rows = x_->shape()[0];
  // dW = s M o (dz^T x): the unmasked product, masked by the forward's mask, then accumulated.
  dwm_.resize(Shape{out_, in_});
  kernels::linear_backward_weights(*pool_, rows, in_, out_, x_->data(), dz, dwm_.data(), nullptr,
                                   /*accumulate=*/false, precision_);
  apply_keep_mask(*pool_, saved_key_, 0, keep_, train_scale_, dwm_.span(), dwm_.span());
  // dW += the masked product; db += the column sums of dz (rows in order within a leaf, the
  // leaves up the leaf tree, kernels/leaves.h: the same bits for any thread count or split of
  // the batch). Threads take whole rows of W and columns of dz.
  const auto in = static_cast<std::size_t>(in_), out = static_cast<std::size_t>(out_);
  parallel::parallel_for(*pool_, out, 16, [&](std::size_t j0, std::size_t j1) {
    for (std::size_t i = j0 * in; i < j1 * in; ++i) dw_[i] += dwm_[i];
    thread_local std::vector<float> sums;
    sums.resize(j1 - j0);
    kernels::sum_leaves<float>(static_cast<std::size_t>(rows), j1 - j0, sums.data(),
                               [&](std::size_t r0, std::size_t r1, float* into) {
                                 for (std::size_t j = j0; j < j1; ++j) {
                                   float sum = 0.0f;
                                   for (std::size_t r = r0; r < r1; ++r) sum += dz[r * out + j];
                                   into[j - j0] = sum;
                                 }
                               });
    for (std::size_t j = j0; j < j1; ++j) db_[j] += sums[j - j0];
  });
  input_grad(dz, dx, wm_.data());
}

void DropConnect::gaussian_rule(const Tensor& x, Tensor& y, const nn::Context& ctx) {
  auto& pool = ctx.threads();
  const std::size_t nw = static_cast<std::size_t>(in_ * out_);
  const std::int64_t rows = x.shape()[0];
  const double p = keep_.effective_drop_prob(), s = train_scale_;
  const auto k = static_cast<float>(s * s * p * (1.0 - p));
  // mu = x (c W)^T + b, without the activation.
  scale_copy(pool, eval_scale_, std::span<const float>(w_, nw), wm_.span());
  run_forward(x, pre_, {.mode = nn::Mode::kEval, .pool = &pool}, wm_.data(), /*activate=*/false);
  // v = k (x o x)(W o W)^T.
  x2_.resize(Shape{rows, in_});
  w2_.resize(Shape{out_, in_});
  for (std::size_t i = 0; i < x2_.numel(); ++i) x2_[i] = x[i] * x[i];
  for (std::size_t i = 0; i < nw; ++i) w2_[i] = k * w_[i] * w_[i];
  var_.resize(Shape{rows, out_});
  kernels::linear_forward(pool, rows, in_, out_, x2_.data(), w2_.data(), var_.data(),
                          [](std::int64_t, std::int64_t) {});
  y.resize(Shape{rows, out_});
  const auto z_count = static_cast<std::size_t>(samples_);
  parallel::parallel_for(
      pool, static_cast<std::size_t>(rows), 1, [&](std::size_t r0, std::size_t r1) {
        std::vector<float> z(z_count), u(z_count);
        for (std::size_t r = r0; r < r1; ++r) {
          for (std::int64_t j = 0; j < out_; ++j) {
            const std::size_t i = r * static_cast<std::size_t>(out_) + static_cast<std::size_t>(j);
            const std::uint64_t unit = (ctx.row_offset + r) * static_cast<std::uint64_t>(out_) +
                                       static_cast<std::uint64_t>(j);
            // One stream per unit (its index in step): samples <= 100000 stay far inside a
            // stream's 2^36 draws, however many units and rows there are.
            kernels::active_kernels().fill_normal({0, stream_id_, unit}, 0, z.data(), z_count);
            const float mu = pre_[i], sd = std::sqrt(std::max(var_[i], 0.0f));
            for (std::size_t t = 0; t < z_count; ++t) u[t] = mu + sd * z[t];
            nn::activation_forward(f_, u.data(), u.data(), z_count);
            double sum = 0;
            for (float v : u) sum += v;
            y[i] = static_cast<float>(sum / static_cast<double>(z_count));
          }
        }
      });
}

nn::LayerKind DropConnect::registration() {
  return {
      .kind = kKind,
      .summary = "dense layer with dropped weights (Wan et al. 2013), one mask per step",
      .options = {nn::Linear::units_option(),
                  drop_prob_option(),
                  nn::activation_option(),
                  scaling_option(),
                  {.name = "inference",
                   .type = Option::Type::kString,
                   .default_value = "mean",
                   .help = "eval: mean (weights scaled) or gaussian (the paper's sampling rule)",
                   .choices = {"mean", "gaussian"}},
                  {.name = "samples",
                   .type = Option::Type::kInt,
                   .default_value = 100,
                   .help = "draws per unit of the gaussian rule",
                   .min = 1,
                   .max = 100000},
                  mask_bits_option()},
      .positional = {"units", "drop_prob", "activation"},
      .create = [](const nlohmann::json& c, const Shape& in,
                   std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<DropConnect>(
            static_cast<std::int64_t>(in.row_size()), c.at("units").get<std::int64_t>(),
            nn::parse_activation(c.at("activation").get<std::string>()),
            c.at("drop_prob").get<double>(), parse_scaling(c.at("scaling").get<std::string>()),
            c.at("inference") == "mean" ? DropConnectInference::kMean
                                        : DropConnectInference::kGaussian,
            c.at("samples").get<int>(), layer_stream(index), c.at("mask_bits").get<int>());
      },
  };
}

}  // namespace dropkit::dropout
