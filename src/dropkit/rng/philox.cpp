#include "dropkit/rng/philox.h"

#include "dropkit/rng/box_muller.h"
#include "dropkit/rng/lanes.h"

namespace dropkit::rng {

float normal_at(const StreamKey& s, std::uint64_t i) {
  const std::uint64_t g = i / kGroupElements, r = i % kGroupElements;
  const auto w = philox4x32_10(counter_of(s, g * kGroupBlocks + r % kGroupBlocks), key_of(s));
  const std::size_t pair = r / 32;  // words (0, 1) or (2, 3)
  float z_cos, z_sin;
  normal_pair<ScalarLanes>(w[2 * pair], w[2 * pair + 1], z_cos, z_sin);
  return (r / 16) % 2 == 0 ? z_cos : z_sin;
}

}  // namespace dropkit::rng
