// Network specs: the layer list a person writes, as text or as a JSON file, and the --arch
// shorthand that expands to one.
//
// Text form: layers separated by ',', each `kind[:arg]...`, where an arg is a value for the kind's
// next positional option or `name=value` for any option (model/registry.h lists them):
//
//   dropout:0.2,dense:1024,relu,dropout:0.5,dense:1024,relu,dropout:0.5,dense:10
//   dense:512:tanh,dropout:0.5:inference,dense:10
//   dropout:drop_prob=0.3:mask_storage=recompute,dense:units=64:activation=selu,dense:10
//
// An activation's name stands for {"kind": "activation", "function": name}; directly after a
// layer with an activation option (dense, dropconnect) that sets none, it is fused into that
// layer (`dense:1024,relu` is
// `dense:1024:relu`: one layer, and one pass fewer over its output). Spaces around items are
// ignored.
//
// JSON form: an array of layer objects, or an object {"layers": [...]}:
//   [{"kind": "dropout", "drop_prob": 0.2}, {"kind": "dense", "units": 1024, "activation": "relu"},
//    ...]
//
// Parsing checks the syntax, the kinds and each value's type and range; shapes are checked when
// a Model is built from the list (model/model.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace dropkit::model {

// The text form to a JSON array of complete layer values. std::invalid_argument naming the
// item, its position (1-based) and the problem.
nlohmann::json parse_net_text(const std::string& text);

// The JSON form (`text`, read from `source`, which names it in messages) to a JSON array of
// complete layer values: parsed strictly (core/json_text.h: nesting depth, no key twice), an
// object must hold "layers" and nothing else, each layer's unknown keys are refused.
// std::invalid_argument naming the source, the layer and the problem.
nlohmann::json parse_net_json(std::string_view text, const std::string& source);

// A --net argument: a file (read as JSON) if anything exists at that path or if it holds '/' or
// ends in ".json" (so a missing file is reported as missing), else the text form.
nlohmann::json resolve_net(const std::string& net);

// "784-1024-1024-10" -> {784, 1024, 1024, 10}. At least input and output, every size in
// [1, 1 << 20]; anything else throws std::invalid_argument quoting the string.
std::vector<std::int64_t> parse_arch(const std::string& arch);

// The paper's fully connected net as a layer list: dropout on the input (if input_drop_prob >
// 0), then per hidden size a dense layer with `activation` and dropout (if hidden_drop_prob > 0),
// then a dense output layer without activation or dropout (docs/spec.md section 4). The first size
// is the input's and makes no layer.
nlohmann::json mlp_layers(const std::vector<std::int64_t>& sizes, const std::string& activation,
                          double input_drop_prob, double hidden_drop_prob,
                          const std::string& scaling);

// The shortest text form of a layer list: positional values while they are given, defaults
// left out. parse_net_text(net_to_text(layers)) == layers for complete layer values.
std::string net_to_text(const nlohmann::json& layers);
std::string layer_to_text(const nlohmann::json& layer);

}  // namespace dropkit::model
