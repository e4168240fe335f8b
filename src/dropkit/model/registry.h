// The layer registry: from a layer's kind and config (JSON) to a layer, for every kind dropkit
// has. A network spec, a checkpoint and the per-layer test harness all go through it.
//
// A layer value is a JSON object {"kind": "dense", "units": 1024, "activation": "relu"}. Each
// kind defines its options once (core/options.h: name, type, default, range, help); create_layer
// completes a partial config with the defaults and checks every value before it builds anything.
// Adding a layer: its header and source (with its kKind and registration(), nn/layer_kind.h), one
// line in registry.cpp's list, and its examples in tests/model/layer_examples.h: the layer harness
// (tests/model/layer_harness_test.cpp) fails for a registered kind without them.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/core/options.h"
#include "dropkit/nn/layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::model {

using LayerKind = nn::LayerKind;  // nn/layer_kind.h

// Every registered kind, in the order --help lists them.
const std::vector<LayerKind>& layer_kinds();
// The kind named `kind`; std::invalid_argument listing the valid kinds otherwise.
const LayerKind& find_layer_kind(const std::string& kind);

// `layer` ({"kind": ..., options...}) with every option present and checked. `owner` prefixes
// error messages, e.g. "layer 3 (dense): ".
nlohmann::json complete_layer_config(const nlohmann::json& layer, const std::string& owner = "");

// Builds a layer from its value for inputs of shape `input` (with the example axis), checking
// that it accepts them: std::invalid_argument "<owner>..." naming what was expected otherwise.
std::unique_ptr<nn::Layer> create_layer(const nlohmann::json& layer, const Shape& input,
                                        std::size_t index, const std::string& owner = "");

// {"kind": layer.kind(), ...layer.config()}: what create_layer rebuilds an equal layer from.
nlohmann::json layer_value(const nn::Layer& layer);

}  // namespace dropkit::model
