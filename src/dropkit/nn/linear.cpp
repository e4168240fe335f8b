#include "dropkit/nn/linear.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/kernels/gemm.h"

namespace dropkit::nn {

Linear::Linear(std::int64_t in, std::int64_t out, Activation f) : in_(in), out_(out), f_(f) {
  if (in <= 0 || out <= 0) {
    throw std::invalid_argument(
        fmt::format("Linear: sizes must be positive, got in = {}, out = {}", in, out));
  }
}

nlohmann::json Linear::config() const {
  return {{"units", out_}, {"activation", activation_name(f_)}};
}

Shape Linear::output_shape(const Shape& in) const {
  if (in.rank() < 2 || in.row_size() != static_cast<std::size_t>(in_)) {
    throw std::invalid_argument(fmt::format(
        "{}: input shape {} does not have {} features per example", name(), in.str(), in_));
  }
  return Shape{in[0], out_};
}

std::vector<ParamSpec> Linear::param_specs() const {
  return {{"weight", Shape{out_, in_}, ParamRole::kTrainable, kWeightDecay | kMaxNormRows},
          {"bias", Shape{out_}, ParamRole::kTrainable, kNoFlags}};
}

void Linear::bind_params(std::vector<float*> values, std::vector<float*> grads) {
  w_ = values.at(0);
  b_ = values.at(1);
  dw_ = grads.at(0);
  db_ = grads.at(1);
}

void Linear::init_params(std::uint64_t seed, std::uint32_t stream) {
  init_weights(f_, in_, out_, {seed, stream, 0}, w_, static_cast<std::size_t>(in_ * out_));
  std::fill(b_, b_ + out_, 0.0f);
}

void Linear::forward(const Tensor& x, Tensor& y, const Context& ctx) {
  run_forward(x, y, ctx, w_);
}

void Linear::run_forward(const Tensor& x, Tensor& y, const Context& ctx, const float* w,
                         bool activate) {
  if (&x == &y) throw std::invalid_argument(name() + ": cannot run in place");
  y.resize(output_shape(x.shape()));
  auto& pool = ctx.threads();
  const bool train = ctx.mode == Mode::kTrain;
  const kernels::Bf16* w_rounded = nullptr;
  if (ctx.precision == kernels::Precision::kBf16 && train && needs_input_grad_) {
    w_rounded = kernels::round_into(pool, w, static_cast<std::size_t>(in_ * out_), w_rounded_);
  }
  product(pool, x.shape()[0], x.data(), w, y.data(), activate, ctx.precision, w_rounded,
          train ? kernels::RowCalls::kLeaves : kernels::RowCalls::kWhole);
  x_ = train ? &x : nullptr;
  y_ = train ? &y : nullptr;
  pool_ = &pool;
  precision_ = ctx.precision;
  w_rounded_fresh_ = w_rounded != nullptr;
}

void Linear::product(parallel::ThreadPool& pool, std::int64_t rows, const float* x, const float* w,
                     float* y, bool activate, kernels::Precision precision,
                     const kernels::Bf16* w_rounded, kernels::RowCalls calls) const {
  kernels::linear_forward(
      pool, rows, in_, out_, x, w, y,
      [&](std::int64_t j0, std::int64_t j1) {
        for (std::int64_t r = 0; r < rows; ++r) {
          float* row = y + r * out_;
          for (std::int64_t j = j0; j < j1; ++j) row[j] += b_[j];
          if (activate)
            activation_forward(f_, row + j0, row + j0, static_cast<std::size_t>(j1 - j0));
        }
      },
      precision, w_rounded, calls);
}

const float* Linear::output_grad(const Tensor& dy, const Tensor& dx) {
  check_backward(*this, y_ ? &y_->shape() : nullptr, dy.shape());
  if (&dx == &dy) throw std::invalid_argument(name() + ": cannot run backward in place");
  return activation_grad(*pool_, f_, *y_, dy, dz_);
}

void Linear::input_grad(const float* dz, Tensor& dx, const float* w) const {
  if (!needs_input_grad_) return;
  dx.resize(x_->shape());
  // w is the forward's (W changes only after backward), so its rounding is reused.
  kernels::linear_backward_input(*pool_, x_->shape()[0], in_, out_, dz, w, dx.data(), precision_,
                                 w_rounded_fresh_ ? w_rounded_.data() : nullptr);
}

void Linear::backward(const Tensor& dy, Tensor& dx) {
  const float* dz = output_grad(dy, dx);
  kernels::linear_backward_weights(*pool_, x_->shape()[0], in_, out_, x_->data(), dz, dw_, db_,
                                   true, precision_);
  input_grad(dz, dx, w_);
}

void Linear::backward_to(const Tensor& dy, Tensor& dx, GradientSink& sink) {
  const float* dz = output_grad(dy, dx);
  input_grad(dz, dx, w_);  // first: it reads W, which the sink may change
  kernels::linear_weight_grads(
      *pool_, x_->shape()[0], in_, out_, x_->data(), dz, true,
      [&](std::int64_t j0, std::int64_t j1, const float* dw, const float* db) {
        sink.consume(w_, static_cast<std::size_t>(j0), static_cast<std::size_t>(j1), dw);
        sink.consume(b_, static_cast<std::size_t>(j0), static_cast<std::size_t>(j1), db);
      },
      precision_);
}

Option Linear::units_option() {
  return {.name = "units",
          .type = Option::Type::kInt,
          .default_value = nullptr,  // required: no default
          .help = "output units",
          .min = 1,
          .max = 1 << 20};
}

LayerKind Linear::registration() {
  return {
      .kind = kKind,
      .summary = "fully connected: y = f(x W^T + b); reads any input as [examples, features]",
      .options = {units_option(), activation_option()},
      .positional = {"units", "activation"},
      .create = [](const nlohmann::json& c, const Shape& in,
                   std::size_t) -> std::unique_ptr<Layer> {
        return std::make_unique<Linear>(static_cast<std::int64_t>(in.row_size()),
                                        c.at("units").get<std::int64_t>(),
                                        parse_activation(c.at("activation").get<std::string>()));
      },
  };
}

}  // namespace dropkit::nn
