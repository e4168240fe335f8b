// A float's bit pattern and back: for tests that compare results bit for bit or build
// special values (ties, NaN payloads) from their bits.
#pragma once

#include <bit>
#include <cstdint>

namespace dropkit::test {

inline std::uint32_t bits_of(float f) {
  return std::bit_cast<std::uint32_t>(f);
}
inline float float_of(std::uint32_t u) {
  return std::bit_cast<float>(u);
}

}  // namespace dropkit::test
