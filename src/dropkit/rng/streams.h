// Stream ids: who draws from which Philox stream. Every consumer of randomness has its own id,
// so no two ever share a counter (docs/spec.md section 2). All ids are listed here, in one place.
#pragma once

#include <cstdint>

namespace dropkit::rng {

// Dropout layer i of a model (its index in the Sequential) draws from kDropoutStreamBase + i.
inline constexpr std::uint32_t kDropoutStreamBase = 0x00010000u;
// Parameter initialisation of layer i, at step 0.
inline constexpr std::uint32_t kInitStreamBase = 0x00020000u;
// The training-set permutation of epoch e uses step e.
inline constexpr std::uint32_t kShuffleStream = 0x00030000u;
// Data augmentation of epoch e uses step e, one word per example at its row in the data set.
inline constexpr std::uint32_t kAugmentStream = 0x00040000u;

// Monte-Carlo sampling (nn::Mode::kSample) draws from its own domain: the training stream id
// with this bit set, and the sample index as the step. Sample t of a layer is then independent of
// its training step t, instead of replaying that step's masks (no base above uses bit 31).
inline constexpr std::uint32_t kSampleDomain = 0x80000000u;
constexpr std::uint32_t sample_stream(std::uint32_t stream) {
  return stream | kSampleDomain;
}

}  // namespace dropkit::rng
