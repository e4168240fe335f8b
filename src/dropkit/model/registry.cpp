#include "dropkit/model/registry.h"

#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/core/json_text.h"
#include "dropkit/dropout/alpha_dropout.h"
#include "dropkit/dropout/concrete_dropout.h"
#include "dropkit/dropout/dropconnect.h"
#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/gaussian_dropout.h"
#include "dropkit/dropout/gaussian_noise.h"
#include "dropkit/nn/activation.h"
#include "dropkit/nn/batchnorm.h"
#include "dropkit/nn/conv.h"
#include "dropkit/nn/flatten.h"
#include "dropkit/nn/linear.h"

namespace dropkit::model {
namespace {

using json = nlohmann::json;

// Every kind, in the order --help lists them. Each layer's own files hold its kind name and
// its entry (registration()); this list is the one place that names them all.
std::vector<LayerKind> make_kinds() {
  return {nn::Linear::registration(),
          dropout::Dropout::registration(),
          dropout::GaussianDropout::registration(),
          dropout::GaussianNoise::registration(),
          dropout::AlphaDropout::registration(),
          dropout::DropConnect::registration(),
          dropout::ConcreteDropout::registration(),
          nn::ActivationLayer::registration(),
          nn::BatchNorm::registration(),
          nn::Conv2d::registration(),
          nn::MaxPool2d::registration(),
          nn::Flatten::registration()};
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
