#include "dropkit/model/registry.h"

#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/core/json_text.h"
#include "dropkit/dropout/alpha_dropout.h"
#include "dropkit/dropout/dropconnect.h"
#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/gaussian_dropout.h"
#include "dropkit/dropout/gaussian_noise.h"
#include "dropkit/dropout/noise_shape.h"
#include "dropkit/nn/activation.h"
#include "dropkit/nn/batchnorm.h"
#include "dropkit/nn/conv.h"
#include "dropkit/nn/flatten.h"
#include "dropkit/nn/linear.h"
#include "dropkit/rng/streams.h"

namespace dropkit::model {
namespace {

using json = nlohmann::json;
using Type = Option::Type;

// The options every member of the dropout family takes.
Option drop_prob_option() {
  return {.name = "drop_prob",
          .type = Type::kReal,
          .default_value = 0.5,
          .help = "probability to drop a unit",
          .min = 0,
          .max = 1};
}
Option shared_axes_option() {
  return {.name = "shared_axes",
          .type = Type::kString,
          .default_value = "",
          .help =
              "axes after the examples that share one noise value, joined by '+' (2+3 on "
              "[N, C, H, W]: per channel; 1 on [N, T, D]: per sequence)"};
}
Option mask_bits_option() {
  return {.name = "mask_bits",
          .type = Type::kInt,
          .default_value = dropout::kDefaultMaskBits,
          .help =
              "bits per keep decision: 32, or 16 / 8 (faster; the layer then uses the drop "
              "rate round(p 2^b) / 2^b, e.g. 0.2 -> 51/256 at 8 bits)",
          .min = 8,
          .max = 32};
}
std::uint32_t stream_of(std::size_t index) {
  return rng::kDropoutStreamBase + static_cast<std::uint32_t>(index);
}
std::vector<int> shared_axes_of(const json& c) {
  return dropout::parse_shared_axes(c.at("shared_axes").get<std::string>());
}

Option units_option() {
  return {.name = "units",
          .type = Type::kInt,
          .default_value = nullptr,  // required: no default
          .help = "output units",
          .min = 1,
          .max = 1 << 20};
}
Option activation_option() {
  return {.name = "activation",
          .type = Type::kString,
          .default_value = "identity",
          .help = "activation fused into the layer",
          .choices = nn::activation_names()};
}
Option scaling_option() {
  return {.name = "scaling",
          .type = Type::kString,
          .default_value = dropout::scaling_name(dropout::Dropout::kDefaultScaling),
          .help = "inverted: kept units * 1/(1-p) in training; inference: eval * (1-p)",
          .choices = {"inverted", "inference"}};
}

std::vector<LayerKind> make_kinds() {
  std::vector<LayerKind> k;
  k.push_back({
      .kind = "dense",
      .summary = "fully connected: y = f(x W^T + b); reads any input as [examples, features]",
      .options = {units_option(), activation_option()},
      .positional = {"units", "activation"},
      .create = [](const json& c, const Shape& in, std::size_t) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<nn::Linear>(
            static_cast<std::int64_t>(in.row_size()), c.at("units").get<std::int64_t>(),
            nn::parse_activation(c.at("activation").get<std::string>()));
      },
  });
  k.push_back({
      .kind = "dropout",
      .summary = "Bernoulli dropout (Srivastava et al. 2014); drop_prob is the probability to DROP",
      .options = {drop_prob_option(),
                  scaling_option(),
                  {.name = "mask_storage",
                   .type = Type::kString,
                   .default_value = dropout::storage_name(dropout::Dropout::kDefaultStorage),
                   .help = "what backward reads: 1 bit per element, or the mask recomputed",
                   .choices = {"bits", "recompute"}},
                  shared_axes_option(),
                  mask_bits_option()},
      .positional = {"drop_prob", "scaling"},
      .create = [](const json& c, const Shape&, std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<dropout::Dropout>(
            c.at("drop_prob").get<double>(),
            dropout::parse_scaling(c.at("scaling").get<std::string>()),
            dropout::parse_storage(c.at("mask_storage").get<std::string>()), stream_of(index),
            shared_axes_of(c), c.at("mask_bits").get<int>());
      },
  });
  k.push_back({
      .kind = "gaussian_dropout",
      .summary = "multiplicative N(1, p/(1-p)) noise: Bernoulli dropout's variance at drop rate p",
      .options = {drop_prob_option(), shared_axes_option()},
      .positional = {"drop_prob"},
      .create = [](const json& c, const Shape&, std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<dropout::GaussianDropout>(c.at("drop_prob").get<double>(),
                                                          stream_of(index), shared_axes_of(c));
      },
  });
  k.push_back({
      .kind = "gaussian_noise",
      .summary = "additive N(0, sigma^2) noise (Bishop 1995)",
      .options = {{.name = "sigma",
                   .type = Type::kReal,
                   .default_value = nullptr,
                   .help = "standard deviation of the noise",
                   .min = 0,
                   .max = dropout::GaussianNoise::kMaxSigma}},
      .positional = {"sigma"},
      .create = [](const json& c, const Shape&, std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<dropout::GaussianNoise>(c.at("sigma").get<double>(),
                                                        stream_of(index));
      },
  });
  k.push_back({
      .kind = "alpha_dropout",
      .summary = "alpha dropout for SELU nets (Klambauer et al. 2017): keeps mean 0, variance 1",
      .options = {drop_prob_option(), shared_axes_option(), mask_bits_option()},
      .positional = {"drop_prob"},
      .create = [](const json& c, const Shape&, std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<dropout::AlphaDropout>(c.at("drop_prob").get<double>(),
                                                       stream_of(index), shared_axes_of(c),
                                                       c.at("mask_bits").get<int>());
      },
  });
  k.push_back({
      .kind = "dropconnect",
      .summary = "dense layer with dropped weights (Wan et al. 2013), one mask per step",
      .options = {units_option(),
                  drop_prob_option(),
                  activation_option(),
                  scaling_option(),
                  {.name = "inference",
                   .type = Type::kString,
                   .default_value = "mean",
                   .help = "eval: mean (weights scaled) or gaussian (the paper's sampling rule)",
                   .choices = {"mean", "gaussian"}},
                  {.name = "samples",
                   .type = Type::kInt,
                   .default_value = 100,
                   .help = "draws per unit of the gaussian rule",
                   .min = 1,
                   .max = 100000},
                  mask_bits_option()},
      .positional = {"units", "drop_prob", "activation"},
      .create = [](const json& c, const Shape& in,
                   std::size_t index) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<dropout::DropConnect>(
            static_cast<std::int64_t>(in.row_size()), c.at("units").get<std::int64_t>(),
            nn::parse_activation(c.at("activation").get<std::string>()),
            c.at("drop_prob").get<double>(),
            dropout::parse_scaling(c.at("scaling").get<std::string>()),
            c.at("inference") == "mean" ? dropout::DropConnectInference::kMean
                                        : dropout::DropConnectInference::kGaussian,
            c.at("samples").get<int>(), stream_of(index), c.at("mask_bits").get<int>());
      },
  });
  k.push_back({
      .kind = "activation",
      .summary = "element-wise activation; the text form is the function's name (relu, tanh, ...)",
      .options = {{.name = "function",
                   .type = Type::kString,
                   .default_value = nullptr,
                   .help = "the function",
                   .choices = nn::activation_names()}},
      .positional = {"function"},
      .create = [](const json& c, const Shape&, std::size_t) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<nn::ActivationLayer>(
            nn::parse_activation(c.at("function").get<std::string>()));
      },
  });
  k.push_back({
      .kind = "batchnorm",
      .summary = "batch normalization per channel (axis 1); eval and Monte-Carlo sampling use the "
                 "running statistics",
      .options = {{.name = "momentum",
                   .type = Type::kReal,
                   .default_value = nn::BatchNorm::kDefaultMomentum,
                   .help = "weight of a new batch in the running statistics (PyTorch's)",
                   .min = 0,
                   .max = 1},
                  {.name = "eps",
                   .type = Type::kReal,
                   .default_value = nn::BatchNorm::kDefaultEps,
                   .help = "added to the variance",
                   .min = 0,
                   .max = 1,
                   .min_open = true}},
      .positional = {"momentum", "eps"},
      .create = [](const json& c, const Shape& in, std::size_t) -> std::unique_ptr<nn::Layer> {
        if (in.rank() < 2) {
          throw std::invalid_argument("batchnorm: input " + in.str() +
                                      " has no channel axis (axis 1)");
        }
        return std::make_unique<nn::BatchNorm>(in[1], c.at("momentum").get<double>(),
                                               c.at("eps").get<double>());
      },
  });
  k.push_back({
      .kind = "conv2d",
      .summary = "2-D convolution on [examples, channels, height, width] (oneDNN); ReLU fused",
      .options = {{.name = "filters",
                   .type = Type::kInt,
                   .default_value = nullptr,
                   .help = "output channels",
                   .min = 1,
                   .max = 1 << 16},
                  {.name = "kernel",
                   .type = Type::kInt,
                   .default_value = 3,
                   .help = "window size k (k x k)",
                   .min = 1,
                   .max = 64},
                  {.name = "stride",
                   .type = Type::kInt,
                   .default_value = 1,
                   .help = "step between windows",
                   .min = 1,
                   .max = 64},
                  {.name = "padding",
                   .type = Type::kInt,
                   .default_value = 0,
                   .help = "zeros added on every side (1 keeps a 3 x 3 convolution's size)",
                   .min = 0,
                   .max = 64},
                  activation_option()},
      .positional = {"filters", "kernel", "activation"},
      .create = [](const json& c, const Shape& in, std::size_t) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<nn::Conv2d>(
            in.example(), c.at("filters").get<std::int64_t>(),
            kernels::Window{.size = c.at("kernel").get<std::int64_t>(),
                            .stride = c.at("stride").get<std::int64_t>(),
                            .padding = c.at("padding").get<std::int64_t>()},
            nn::parse_activation(c.at("activation").get<std::string>()));
      },
  });
  k.push_back({
      .kind = "max_pool2d",
      .summary = "maximum over size x size windows of [examples, channels, height, width]",
      .options = {{.name = "size",
                   .type = Type::kInt,
                   .default_value = 2,
                   .help = "window size",
                   .min = 1,
                   .max = 64},
                  {.name = "stride",
                   .type = Type::kInt,
                   .default_value = 0,
                   .help = "step between windows; 0: the window size",
                   .min = 0,
                   .max = 64},
                  {.name = "padding",
                   .type = Type::kInt,
                   .default_value = 0,
                   .help = "padding on every side, below the size; it never wins",
                   .min = 0,
                   .max = 63}},
      .positional = {"size", "stride"},
      .create = [](const json& c, const Shape& in, std::size_t) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<nn::MaxPool2d>(in.example(), c.at("size").get<std::int64_t>(),
                                               c.at("stride").get<std::int64_t>(),
                                               c.at("padding").get<std::int64_t>());
      },
  });
  k.push_back({
      .kind = "flatten",
      .summary = "[examples, d1, d2, ...] -> [examples, d1*d2*...]",
      .options = {},
      .positional = {},
      .create = [](const json&, const Shape&, std::size_t) -> std::unique_ptr<nn::Layer> {
        return std::make_unique<nn::Flatten>();
      },
  });
  return k;
}

}  // namespace

const std::vector<LayerKind>& layer_kinds() {
  static const std::vector<LayerKind> kinds = make_kinds();
  return kinds;
}

const LayerKind& find_layer_kind(const std::string& kind) {
  std::string valid;
  for (const auto& k : layer_kinds()) {
    if (k.kind == kind) return k;
    valid += (valid.empty() ? "" : ", ") + k.kind;
  }
  throw std::invalid_argument(fmt::format("unknown layer kind '{}' (valid: {})", kind, valid));
}

json complete_layer_config(const json& layer, const std::string& owner) {
  if (!layer.is_object() || !layer.contains("kind") || !layer["kind"].is_string()) {
    throw std::invalid_argument(
        fmt::format("{}a layer must be a JSON object with a string \"kind\", got {}", owner,
                    layer.is_object() ? "an object without one" : json_type_name(layer)));
  }
  const LayerKind* k = nullptr;
  try {
    k = &find_layer_kind(layer["kind"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(owner + e.what());
  }
  static const std::string kKind[] = {"kind"};
  // A required option (default null) that is missing shows up as "units = null is not ...".
  for (const auto& o : k->options) {
    if (o.default_value.is_null() && !layer.contains(o.name)) {
      throw std::invalid_argument(
          fmt::format("{}{} is required ({})", owner, o.name, o.range_text()));
    }
  }
  return complete_options(k->options, layer, owner, kKind);
}

std::unique_ptr<nn::Layer> create_layer(const json& layer, const Shape& input, std::size_t index,
                                        const std::string& owner) {
  const json config = complete_layer_config(layer, owner);
  const LayerKind& k = find_layer_kind(config["kind"].get<std::string>());
  std::unique_ptr<nn::Layer> made;
  try {
    made = k.create(config, input, index);
    made->output_shape(input);  // throws if the layer does not accept this input
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(owner + e.what());
  }
  return made;
}

json layer_value(const nn::Layer& layer) {
  json v = layer.config();
  v["kind"] = layer.kind();
  return v;
}

}  // namespace dropkit::model
