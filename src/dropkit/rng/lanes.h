// One-lane arithmetic: the small set of exact IEEE and integer operations that the random-number
// definitions are written in (rng/box_muller.h), as static functions of a struct so that one
// template serves every width. kernels/simd.h's Scalar extends it with loads, stores and masks,
// and its AVX2 and AVX-512 structs provide the same operations over eight or sixteen lanes.
// U is a uint32 lane, F a float lane, M a per-lane mask.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace dropkit::rng {

struct ScalarLanes {
  using U = std::uint32_t;
  using F = float;
  using M = bool;
  static U set1(std::uint32_t v) { return v; }
  static U add(U a, U b) { return a + b; }
  static U and_(U a, U b) { return a & b; }
  static U xor_(U a, U b) { return a ^ b; }
  static U or_(U a, U b) { return a | b; }
  template <int N>
  static U srli(U a) {
    return a >> N;
  }
  template <int N>
  static U slli(U a) {
    return a << N;
  }
  static F set1f(float v) { return v; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F fma(F a, F b, F c) { return std::fma(a, b, c); }
  static F sqrt(F a) { return std::sqrt(a); }
  static F cvt(U a) { return static_cast<float>(static_cast<std::int32_t>(a)); }  // |a| < 2^24
  static F as_f(U a) {
    F f;
    std::memcpy(&f, &a, 4);
    return f;
  }
  static U as_u(F a) {
    U u;
    std::memcpy(&u, &a, 4);
    return u;
  }
  static M lt_f(F a, F b) { return a < b; }
  static M nonzero(U a) { return a != 0; }
  static F select(M m, F a, F b) { return m ? a : b; }
};

}  // namespace dropkit::rng
