// LayerKind: what the registry (model/registry.h) knows of one kind of layer. Each layer class
// defines its own, next to its code: `static constexpr const char* kKind` (the name kind()
// returns) and `static LayerKind registration()` (its options, text form and factory).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/core/options.h"
#include "dropkit/core/tensor.h"

namespace dropkit::nn {

class Layer;

struct LayerKind {
  std::string kind;
  std::string summary;  // one line, for --help and the README
  OptionList options;
  // Options the text form takes by position, in order: "dense:1024:relu" sets units, activation.
  std::vector<std::string> positional;
  // Builds the layer from a complete, checked config for inputs of shape `input` (leading axis:
  // examples). `index` is the layer's position in its model: its random streams derive from it.
  std::function<std::unique_ptr<Layer>(const nlohmann::json& config, const Shape& input,
                                       std::size_t index)>
      create;
};

}  // namespace dropkit::nn
