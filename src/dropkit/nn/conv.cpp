#include "dropkit/nn/conv.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/kernels/gemm.h"

namespace dropkit::nn {
namespace {

// [C, H, W] of one example; std::invalid_argument naming `who` otherwise.
struct Chw {
  std::int64_t c, h, w;
};
Chw chw_of(const Shape& example, const std::string& who) {
  if (example.rank() != 3) {
    throw std::invalid_argument(fmt::format(
        "{}: input {} is not one example of [channels, height, width]", who, example.str()));
  }
  return {example[0], example[1], example[2]};
}

// The input must be [N, C, H, W] with this layer's C, H and W.
void check_input(const std::string& who, const Shape& in, std::int64_t c, std::int64_t h,
                 std::int64_t w) {
  if (in.rank() != 4 || in[1] != c || in[2] != h || in[3] != w) {
    throw std::invalid_argument(
        fmt::format("{}: input {} is not [examples, {}, {}, {}]", who, in.str(), c, h, w));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Conv2d

Conv2d::Conv2d(const Shape& input, std::int64_t filters, kernels::Window window, Activation f)
    : f_(f) {
  const Chw in = chw_of(input, "conv2d");
  if (filters < 1) throw std::invalid_argument("conv2d: filters must be at least 1");
  g_ = {.channels = in.c, .height = in.h, .width = in.w, .out_channels = filters, .window = window};
  conv_ = std::make_unique<kernels::Conv2d>(g_, f == Activation::kReLU);
}

nlohmann::json Conv2d::config() const {
  return {{"filters", g_.out_channels},
          {"kernel", g_.window.size},
          {"stride", g_.window.stride},
          {"padding", g_.window.padding},
          {"activation", activation_name(f_)}};
}

Shape Conv2d::output_shape(const Shape& in) const {
  check_input(name(), in, g_.channels, g_.height, g_.width);
  return Shape{in[0], g_.out_channels, g_.out_height(), g_.out_width()};
}

std::vector<ParamSpec> Conv2d::param_specs() const {
  const std::int64_t k = g_.window.size;
  return {{"weight", Shape{g_.out_channels, g_.channels, k, k}, ParamRole::kTrainable,
           kWeightDecay | kMaxNormRows},
          {"bias", Shape{g_.out_channels}, ParamRole::kTrainable, kNoFlags}};
}

std::span<const float> Conv2d::weight() const {
  const std::int64_t k = g_.window.size;
  return {w_, w_ ? static_cast<std::size_t>(g_.out_channels * g_.channels * k * k) : 0};
}

void Conv2d::bind_params(std::vector<float*> values, std::vector<float*> grads) {
  w_ = values.at(0);
  b_ = values.at(1);
  dw_ = grads.at(0);
  db_ = grads.at(1);
}

void Conv2d::init_params(std::uint64_t seed, std::uint32_t stream) {
  const std::int64_t kk = g_.window.size * g_.window.size;
  init_weights(f_, g_.channels * kk, g_.out_channels * kk, {seed, stream, 0}, w_,
               static_cast<std::size_t>(g_.weight_size()));
  std::fill(b_, b_ + g_.out_channels, 0.0f);
}

void Conv2d::forward(const Tensor& x, Tensor& y, const Context& ctx) {
  if (&x == &y) throw std::invalid_argument(name() + ": cannot run in place");
  y.resize(output_shape(x.shape()));
  auto& pool = ctx.threads();
  const auto per_example = static_cast<std::size_t>(g_.out_size());
  const bool separate = f_ != Activation::kIdentity && f_ != Activation::kReLU;
  // With bf16 the weights are rounded once here; backward's input gradient reuses them (W
  // changes only after backward).
  precision_ = ctx.precision;
  const kernels::Bf16* w_rounded = nullptr;
  if (precision_ == kernels::Precision::kBf16) {
    w_rounded =
        kernels::round_into(pool, w_, static_cast<std::size_t>(g_.weight_size()), w_rounded_);
  }
  conv_->forward(
      pool, x.shape()[0], x.data(), w_, b_, y.data(),
      [&](std::int64_t n0, std::int64_t n1) {
        if (!separate) return;
        float* block = y.data() + static_cast<std::size_t>(n0) * per_example;
        activation_forward(f_, block, block, static_cast<std::size_t>(n1 - n0) * per_example);
      },
      precision_, w_rounded);
  const bool train = ctx.mode == Mode::kTrain;
  x_ = train ? &x : nullptr;
  y_ = train ? &y : nullptr;
  pool_ = &pool;
}

void Conv2d::backward(const Tensor& dy, Tensor& dx) {
  check_backward(*this, y_ ? &y_->shape() : nullptr, dy.shape());
  if (&dx == &dy) throw std::invalid_argument(name() + ": cannot run backward in place");
  const float* dz = activation_grad(*pool_, f_, *y_, dy, dz_);
  const std::int64_t n = x_->shape()[0];
  if (needs_input_grad_) dx.resize(x_->shape());
  conv_->backward(*pool_, n, x_->data(), dz, w_, needs_input_grad_ ? dx.data() : nullptr, dw_, db_,
                  precision_,
                  precision_ == kernels::Precision::kBf16 ? w_rounded_.data() : nullptr);
}

// ---------------------------------------------------------------------------------------------
// MaxPool2d

MaxPool2d::MaxPool2d(const Shape& input, std::int64_t size, std::int64_t stride,
                     std::int64_t padding)
    : stride_option_(stride) {
  const Chw in = chw_of(input, "max_pool2d");
  c_ = in.c;
  h_ = in.h;
  w_ = in.w;
  if (size < 1 || stride < 0) {
    throw std::invalid_argument(
        fmt::format("max_pool2d: size = {} must be >= 1 and stride = {} >= 0", size, stride));
  }
  window_ = {.size = size, .stride = stride == 0 ? size : stride, .padding = padding};
  pool2d_ = std::make_unique<kernels::MaxPool2d>(c_, h_, w_, window_);
}

nlohmann::json MaxPool2d::config() const {
  return {{"size", window_.size}, {"stride", stride_option_}, {"padding", window_.padding}};
}

Shape MaxPool2d::output_shape(const Shape& in) const {
  check_input(name(), in, c_, h_, w_);
  return Shape{in[0], c_, window_.out(h_), window_.out(w_)};
}

void MaxPool2d::forward(const Tensor& x, Tensor& y, const Context& ctx) {
  if (&x == &y) throw std::invalid_argument(name() + ": cannot run in place");
  y.resize(output_shape(x.shape()));
  auto& pool = ctx.threads();
  pool2d_->forward(pool, x.shape()[0], x.data(), y.data());
  has_train_forward_ = ctx.mode == Mode::kTrain;
  in_shape_ = x.shape();
  out_shape_ = y.shape();
  rows_ = x.shape()[0];
  pool_ = &pool;
}

void MaxPool2d::backward(const Tensor& dy, Tensor& dx) {
  check_backward(*this, has_train_forward_ ? &out_shape_ : nullptr, dy.shape());
  if (&dx == &dy) throw std::invalid_argument(name() + ": cannot run backward in place");
  if (!needs_input_grad_) return;
  dx.resize(in_shape_);
  pool2d_->backward(*pool_, rows_, dy.data(), dx.data());
}

LayerKind Conv2d::registration() {
  return {
      .kind = kKind,
      .summary = "2-D convolution on [examples, channels, height, width] (oneDNN); ReLU fused",
      .options = {{.name = "filters",
                   .type = Option::Type::kInt,
                   .default_value = nullptr,
                   .help = "output channels",
                   .min = 1,
                   .max = 1 << 16},
                  {.name = "kernel",
                   .type = Option::Type::kInt,
                   .default_value = 3,
                   .help = "window size k (k x k)",
                   .min = 1,
                   .max = 64},
                  {.name = "stride",
                   .type = Option::Type::kInt,
                   .default_value = 1,
                   .help = "step between windows",
                   .min = 1,
                   .max = 64},
                  {.name = "padding",
                   .type = Option::Type::kInt,
                   .default_value = 0,
                   .help = "zeros added on every side (1 keeps a 3 x 3 convolution's size)",
                   .min = 0,
                   .max = 64},
                  activation_option()},
      .positional = {"filters", "kernel", "activation"},
      .create = [](const nlohmann::json& c, const Shape& in,
                   std::size_t) -> std::unique_ptr<Layer> {
        return std::make_unique<Conv2d>(
            in.example(), c.at("filters").get<std::int64_t>(),
            kernels::Window{.size = c.at("kernel").get<std::int64_t>(),
                            .stride = c.at("stride").get<std::int64_t>(),
                            .padding = c.at("padding").get<std::int64_t>()},
            parse_activation(c.at("activation").get<std::string>()));
      },
  };
}

LayerKind MaxPool2d::registration() {
  return {
      .kind = kKind,
      .summary = "maximum over size x size windows of [examples, channels, height, width]",
      .options = {{.name = "size",
                   .type = Option::Type::kInt,
                   .default_value = 2,
                   .help = "window size",
                   .min = 1,
                   .max = 64},
                  {.name = "stride",
                   .type = Option::Type::kInt,
                   .default_value = 0,
                   .help = "step between windows; 0: the window size",
                   .min = 0,
                   .max = 64},
                  {.name = "padding",
                   .type = Option::Type::kInt,
                   .default_value = 0,
                   .help = "padding on every side, below the size; it never wins",
                   .min = 0,
                   .max = 63}},
      .positional = {"size", "stride"},
      .create = [](const nlohmann::json& c, const Shape& in,
                   std::size_t) -> std::unique_ptr<Layer> {
        return std::make_unique<MaxPool2d>(in.example(), c.at("size").get<std::int64_t>(),
                                           c.at("stride").get<std::int64_t>(),
                                           c.at("padding").get<std::int64_t>());
      },
  };
}

}  // namespace dropkit::nn
