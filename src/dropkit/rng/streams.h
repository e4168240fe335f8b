// Stream ids: who draws from which Philox stream. Every consumer of randomness has its own id,
// so no two ever share a counter (SPEC section 2). All ids are listed here, in one place.
#pragma once

#include <cstdint>

namespace dropkit::rng {

// Dropout layer i of a model (its index in the Sequential) draws from kDropoutStreamBase + i.
inline constexpr std::uint32_t kDropoutStreamBase = 0x00010000u;
// Parameter initialisation of layer i, at step 0.
inline constexpr std::uint32_t kInitStreamBase = 0x00020000u;
// The training-set permutation of epoch e uses step e.
inline constexpr std::uint32_t kShuffleStream = 0x00030000u;

}  // namespace dropkit::rng
