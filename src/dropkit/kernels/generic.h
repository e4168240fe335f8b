// The random-number and dropout algorithms, written once over a vector ISA S from simd.h and
// instantiated for Scalar, Avx2 and Avx512 (isa_*.cpp). A "group" is 64 elements = 16 Philox
// blocks (see rng/philox.h for the layout): one call of philox_group yields words[q][v], the
// q-th output word of blocks 16 g + v*kLanes ... + kLanes - 1, which are the elements
// 64 g + 16 q + v*kLanes ... of the group, in order.
//
// Everything here is included only from an isa_*.cpp file inside an ISA-specific namespace.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dropkit/kernels/simd.h"
#include "dropkit/rng/box_muller.h"
#include "dropkit/rng/philox.h"

namespace dropkit::kernels::generic {

template <class S>
inline constexpr int kVecs = 16 / S::kLanes;  // vectors per 16 blocks

template <class S>
struct GroupWords {
  typename S::U w[4][kVecs<S>];
};

// What stays the same for every group of a stream, built once per kernel call: the round keys
// and the constant counter words, as vectors (broadcasting them per group costs as much as a
// third of the rounds).
template <class S>
struct PhiloxStream {
  using W = typename S::W;
  W round_key0[rng::kPhiloxRounds], round_key1[rng::kPhiloxRounds];
  W stream, step_lo, step_hi, iota;

  explicit PhiloxStream(const rng::StreamKey& s) {
    std::uint32_t k0 = static_cast<std::uint32_t>(s.seed);
    std::uint32_t k1 = static_cast<std::uint32_t>(s.seed >> 32);
    for (int r = 0; r < rng::kPhiloxRounds; ++r) {
      round_key0[r] = S::wide_set1(k0);
      round_key1[r] = S::wide_set1(k1);
      k0 += rng::kPhiloxW0;
      k1 += rng::kPhiloxW1;
    }
    stream = S::wide_set1(s.stream);
    step_lo = S::wide_set1(static_cast<std::uint32_t>(s.step));
    step_hi = S::wide_set1(static_cast<std::uint32_t>(s.step >> 32));
    iota = S::wide_iota();
  }
};

// words[k] = Philox4x32-10 of the 16 blocks of group g + k, k < N.
// Scalar meaning: words[k].w[q][v] = rng::philox4x32_10(counter_of(s, 16 (g + k) + v),
// key_of(s))[q].
// The state lives in "wide" vectors (simd.h): one 32x32->64 multiply yields both halves of a
// product, which is why the rounds below need no mulhi/mullo pair and no blends. The N groups'
// chains run interleaved through the rounds: a round is a multiply, a shuffle and a ternary xor
// in a row, and one group's chains (two AVX-512 registers per word) leave the vector units
// waiting on that latency (S::kGroupsPerDraw). Words alone, one Zen 4 core, in registers:
// 0.39-0.40 ns per word one group at a time, 0.32 two at a time, 0.32-0.35 three or four.
template <class S, int N = 1>
inline void philox_groups(const PhiloxStream<S>& stream, std::uint64_t g, GroupWords<S>* out) {
  using W = typename S::W;
  // The round keys are read from memory in every call (as operands of the xors), never hoisted
  // into registers by the caller's loop: 20 registers of keys left too few for the state of two
  // groups, and GCC spilled the state instead (the empty asm hides that the address is the same
  // every time; it emits no instruction).
  const PhiloxStream<S>* keys = &stream;
  asm("" : "+r"(keys));
  const PhiloxStream<S>& ps = *keys;
  constexpr int kChains = 16 / S::kWideLanes;  // wide vectors per word of one group
  constexpr int V = N * kChains;
  W c0[V], c1[V], c2[V], c3[V];
  const auto base = static_cast<std::uint32_t>(g * rng::kGroupBlocks);
  for (int v = 0; v < V; ++v) {
    c0[v] =
        S::wide_add(S::wide_set1(base + static_cast<std::uint32_t>(v * S::kWideLanes)), ps.iota);
    c1[v] = ps.stream;
    c2[v] = ps.step_lo;
    c3[v] = ps.step_hi;
  }
  const W m0 = S::wide_set1(rng::kPhiloxM0), m1 = S::wide_set1(rng::kPhiloxM1);
  for (int round = 0; round < rng::kPhiloxRounds; ++round) {
    for (int v = 0; v < V; ++v) {
      const W p0 = S::wide_mul32(c0[v], m0);  // lo0 in the low half, hi0 above
      const W p1 = S::wide_mul32(c2[v], m1);
      c0[v] = S::wide_xor3(S::wide_hi(p1), c1[v], ps.round_key0[round]);
      c2[v] = S::wide_xor3(S::wide_hi(p0), c3[v], ps.round_key1[round]);
      c1[v] = p1;
      c3[v] = p0;
    }
  }
  for (int k = 0; k < N; ++k) {
    for (int v = 0; v < kVecs<S>; ++v) {
      const int i = k * kChains;  // the group's first chain
      if constexpr (S::kLanes == 1) {
        out[k].w[0][v] = S::pack_lo(c0[i + v]);
        out[k].w[1][v] = S::pack_lo(c1[i + v]);
        out[k].w[2][v] = S::pack_lo(c2[i + v]);
        out[k].w[3][v] = S::pack_lo(c3[i + v]);
      } else {
        out[k].w[0][v] = S::pack_lo(c0[i + 2 * v], c0[i + 2 * v + 1]);
        out[k].w[1][v] = S::pack_lo(c1[i + 2 * v], c1[i + 2 * v + 1]);
        out[k].w[2][v] = S::pack_lo(c2[i + 2 * v], c2[i + 2 * v + 1]);
        out[k].w[3][v] = S::pack_lo(c3[i + 2 * v], c3[i + 2 * v + 1]);
      }
    }
  }
}

template <class S>
inline void philox_group(const PhiloxStream<S>& ps, std::uint64_t g, GroupWords<S>& out) {
  philox_groups<S, 1>(ps, g, &out);
}

}  // namespace dropkit::kernels::generic
