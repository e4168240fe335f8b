// The options the dropout family shares (core/options.h), defined once for every layer that
// takes them, and the random stream of a model's layer i.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/core/options.h"

namespace dropkit::dropout {

Option drop_prob_option();    // drop_prob in [0, 1]
Option shared_axes_option();  // "2+3": axes sharing one noise value (noise_shape.h)
Option mask_bits_option();    // 32, 16 or 8 bits per keep decision (mask.h)
Option scaling_option();      // inverted or inference (dropout.h)

// The stream a model's layer `index` draws from (rng/streams.h, kDropoutStreamBase + index).
std::uint32_t layer_stream(std::size_t index);
// parse_shared_axes of a complete config's "shared_axes".
std::vector<int> shared_axes_of(const nlohmann::json& config);

}  // namespace dropkit::dropout
