#include "dropkit/model/spec.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/core/atomic_file.h"
#include "dropkit/core/json_text.h"
#include "dropkit/core/text.h"
#include "dropkit/model/registry.h"
#include "dropkit/nn/activation.h"

namespace dropkit::model {
namespace {

using json = nlohmann::json;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

// A layer with a fused activation option (dense, dropconnect): a following activation folds in.
bool takes_activation(const json& layer) {
  const std::string kind = layer["kind"].get<std::string>();
  if (kind == "activation") return false;
  return find_option(find_layer_kind(kind).options, "activation") != nullptr;
}

bool is_activation_name(const std::string& word) {
  const auto& names = nn::activation_names();
  return std::find(names.begin(), names.end(), word) != names.end();
}

// One item of the text form, e.g. "dense:1024:activation=relu", to a layer value (unchecked).
json parse_item(const std::string& item, const std::string& owner) {
  const auto parts = split(item, ':');
  const std::string kind(trim(parts[0]));
  if (kind.empty()) throw std::invalid_argument(owner + "empty layer");
  if (is_activation_name(kind)) {
    if (parts.size() > 1) {
      throw std::invalid_argument(owner + "an activation takes no arguments");
    }
    return {{"kind", "activation"}, {"function", kind}};
  }
  const LayerKind* k = nullptr;
  for (const auto& candidate : layer_kinds())
    if (candidate.kind == kind) k = &candidate;
  if (k == nullptr) {
    std::vector<std::string> kinds;
    for (const auto& candidate : layer_kinds()) kinds.push_back(candidate.kind);
    throw std::invalid_argument(
        fmt::format("{}unknown layer kind '{}' (valid: {}, or an activation's name: {})", owner,
                    kind, join(kinds), join(nn::activation_names())));
  }
  json layer{{"kind", kind}};
  std::size_t next_positional = 0;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const std::string arg(trim(parts[i]));
    const auto eq = arg.find('=');
    std::string name, text;
    if (eq == std::string::npos) {
      if (next_positional >= k->positional.size()) {
        throw std::invalid_argument(fmt::format(
            "{}too many arguments: '{}' takes {} by position ({}); give others as name=value",
            owner, kind, k->positional.size(), join(k->positional)));
      }
      name = k->positional[next_positional++];
      text = arg;
    } else {
      name = trim(arg.substr(0, eq));
      text = trim(arg.substr(eq + 1));
    }
    const Option* o = find_option(k->options, name);
    if (o == nullptr) {
      std::vector<std::string> names;
      for (const auto& opt : k->options) names.push_back(opt.name);
      throw std::invalid_argument(fmt::format("{}unknown option '{}' (valid: {})", owner, name,
                                              names.empty() ? "none" : join(names)));
    }
    if (layer.contains(name)) {
      throw std::invalid_argument(fmt::format("{}{} given twice", owner, name));
    }
    layer[name] = parse_option_text(*o, text, owner);
  }
  return layer;
}

}  // namespace

json parse_net_text(const std::string& text) {
  // The text form is printable ASCII; anything else (a stray byte, invalid UTF-8 that JSON could
  // not even print in a message) is refused where it is.
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c > 0x7E) {
      throw std::invalid_argument(fmt::format(
          "`net` text holds byte 0x{:02X} at position {}; a layer list is printable ASCII "
          "(e.g. dropout:0.2,dense:1024,relu,dense:10)",
          c, i));
    }
  }
  json layers = json::array();
  const auto items = split(text, ',');
  bool previous_takes_activation = false;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string item(trim(items[i]));
    const std::string owner = fmt::format("`net` item {} '{}': ", i + 1, item);
    json layer = parse_item(item, owner);
    if (layer["kind"] == "activation" && previous_takes_activation) {
      layers.back()["activation"] = layer["function"];
      previous_takes_activation = false;
      continue;
    }
    previous_takes_activation = takes_activation(layer) && !layer.contains("activation");
    layers.push_back(complete_layer_config(layer, owner));
  }
  return layers;
}

json parse_net_json(std::string_view text, const std::string& source) {
  json j = parse_json(text, source);
  if (j.is_object()) {
    static const std::vector<std::string> kTopKeys = {"layers"};
    check_known_keys(j, kTopKeys, source + ": ");
    if (!j.contains("layers")) {
      throw std::invalid_argument(source + ": expected {\"layers\": [...]}, found no \"layers\"");
    }
    j = std::move(j["layers"]);
  }
  if (!j.is_array() || j.empty()) {
    throw std::invalid_argument(
        fmt::format("{}: expected a non-empty array of layers or {{\"layers\": [...]}}, found {}",
                    source, j.is_array() ? "an empty array" : json_type_name(j)));
  }
  json layers = json::array();
  for (std::size_t i = 0; i < j.size(); ++i) {
    layers.push_back(complete_layer_config(j[i], fmt::format("{}: layer {}: ", source, i + 1)));
  }
  return layers;
}

json resolve_net(const std::string& net) {
  if (trim(net).empty()) throw std::invalid_argument("`net` is empty");
  // A file if anything exists at that path (read_file refuses what is not a regular file) or if
  // it looks like one: the text form never holds '/' and never ends in ".json", so a missing
  // file is reported as missing, not as an unknown layer kind.
  std::error_code ec;
  const auto type = std::filesystem::symlink_status(net, ec).type();
  const bool exists = !ec && type != std::filesystem::file_type::not_found;
  if (!exists && net.find('/') == std::string::npos && !net.ends_with(".json")) {
    return parse_net_text(net);
  }
  return parse_net_json(read_file(net), net);
}

std::vector<std::int64_t> parse_arch(const std::string& arch) {
  std::vector<std::int64_t> sizes;
  auto fail = [&](const std::string& why) {
    return std::invalid_argument(fmt::format(
        "malformed `arch` '{}': {} (expected sizes joined by '-', e.g. 784-1024-1024-10)", arch,
        why));
  };
  for (const std::string& part : split(arch, '-')) {
    std::int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size()) {
      throw fail(fmt::format("'{}' is not a number", part));
    }
    if (v < 1 || v > (1 << 20)) throw fail(fmt::format("size {} is outside [1, 1048576]", v));
    sizes.push_back(v);
  }
  if (sizes.size() < 2) throw fail("need at least an input and an output size");
  return sizes;
}

json mlp_layers(const std::vector<std::int64_t>& sizes, const std::string& activation,
                double input_drop_prob, double hidden_drop_prob, const std::string& scaling) {
  if (sizes.size() < 2) throw std::invalid_argument("mlp_layers: need at least two sizes");
  json layers = json::array();
  auto add = [&](json layer, const char* what) {
    layers.push_back(complete_layer_config(layer, what));
  };
  // A drop rate of 0 adds no layer: it would be the identity.
  auto add_dropout = [&](double p, const char* what) {
    if (p != 0.0) add({{"kind", "dropout"}, {"drop_prob", p}, {"scaling", scaling}}, what);
  };
  add_dropout(input_drop_prob, "input dropout: ");
  for (std::size_t i = 1; i < sizes.size(); ++i) {
    const bool output = i + 1 == sizes.size();
    add({{"kind", "dense"},
         {"units", sizes[i]},
         {"activation", output ? std::string("identity") : activation}},
        "dense: ");
    if (!output) add_dropout(hidden_drop_prob, "hidden dropout: ");
  }
  return layers;
}

std::string layer_to_text(const json& layer) {
  const std::string kind = layer.at("kind").get<std::string>();
  if (kind == "activation") return layer.at("function").get<std::string>();
  const LayerKind& k = find_layer_kind(kind);
  auto is_default = [&](const Option& o) {
    return !layer.contains(o.name) || layer[o.name] == o.default_value;
  };
  // Positional values up to the last one that differs from its default (the first always:
  // "dropout:0.5"), then name=value for the other options that differ from their defaults.
  std::size_t positional = k.positional.empty() ? 0 : 1;
  for (std::size_t i = 0; i < k.positional.size(); ++i) {
    if (!is_default(*find_option(k.options, k.positional[i]))) positional = i + 1;
  }
  std::string text = kind;
  auto append = [&](const std::string& name, const json& v) {
    text += ':';  // (appended piecewise: GCC 12 warns falsely on ":" + std::string)
    if (!name.empty()) text.append(name).append("=");
    text += v.is_string() ? v.get<std::string>() : v.dump();
  };
  for (std::size_t i = 0; i < positional; ++i) append("", layer[k.positional[i]]);
  for (const auto& o : k.options) {
    const auto end = k.positional.begin() + static_cast<std::ptrdiff_t>(positional);
    if (std::find(k.positional.begin(), end, o.name) != end || is_default(o)) continue;
    append(o.name, layer[o.name]);
  }
  return text;
}

std::string net_to_text(const json& layers) {
  std::string text;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    std::string item = layer_to_text(layers[i]);
    // A dense layer without activation followed by an activation layer must say so, or the
    // parser would fuse the two.
    if (takes_activation(layers[i]) && layers[i].value("activation", "identity") == "identity" &&
        i + 1 < layers.size() && layers[i + 1]["kind"] == "activation") {
      item += ":activation=identity";
    }
    text += (text.empty() ? "" : ",") + item;
  }
  return text;
}

}  // namespace dropkit::model
