// The only place with intrinsics: three "vector ISAs" with the same small set of operations, so
// that each algorithm in generic.h is written once and instantiated for each. Every operation
// is exact IEEE arithmetic (add, mul, fma, sqrt, conversions of integers below 2^24) and the
// build uses -ffp-contract=off, so the scalar, AVX2 and AVX-512 instantiations give identical
// bits by construction; tests/kernels checks it.
//
// Names: U is a vector of uint32 lanes, F of float lanes, M a per-lane mask.
// This header is included only by the isa_*.cpp files (each compiled with its own -m flags) and
// by scalar code; everything in it is internal-linkage-free inline code inside an ISA-specific
// struct, so nothing compiled for AVX-512 can be picked up by the linker for another ISA.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "dropkit/rng/lanes.h"

namespace dropkit::kernels::simd {

// One lane: rng::ScalarLanes' arithmetic plus the kernels' loads, stores and masks.
struct Scalar : rng::ScalarLanes {
  static constexpr int kLanes = 1;
  static constexpr const char* kName = "scalar";

  static U iota() { return 0; }
  static U xor3(U a, U b, U c) { return a ^ b ^ c; }
  static void mulhilo(U a, std::uint32_t m, U& hi, U& lo) {
    const std::uint64_t p = std::uint64_t{a} * m;
    hi = static_cast<U>(p >> 32);
    lo = static_cast<U>(p);
  }
  static void storeu(std::uint32_t* p, U v) { *p = v; }

  // "Wide" vectors: 32-bit values in the low halves of 64-bit lanes, kLanes/2 per vector (for
  // Scalar, one per uint64). mul32 multiplies the low halves to a full 64-bit product, so Philox
  // gets lo and hi without any shuffling; upper halves may hold garbage, which mul32 ignores.
  // wide_hi(p) puts the high half of p in the low half (what lands above it is don't-care).
  // pack_lo(a, b) gathers the low halves of a then b into one U.
  static constexpr int kWideLanes = 1;
  // Groups of 16 Philox blocks drawn at once (generic::GroupDraws): enough independent chains
  // to keep the multipliers busy, no more than the registers hold.
  static constexpr int kGroupsPerDraw = 1;
  using W = std::uint64_t;
  static W wide_set1(std::uint32_t v) { return v; }
  static W wide_iota() { return 0; }
  static W wide_add(W a, W b) { return a + b; }
  static W wide_mul32(W a, W m) { return (a & 0xFFFFFFFFu) * m; }
  static W wide_hi(W p) { return p >> 32; }
  static W wide_xor3(W a, W b, W c) { return a ^ b ^ c; }
  static U pack_lo(W a) { return static_cast<U>(a); }

  static F loadu(const float* p) { return *p; }
  static void storeu(float* p, F v) { *p = v; }
  static void stream(float* p, F v) { *p = v; }
  static void fence() {}

  static M ge_u(U a, U b) { return a >= b; }
  static F maskz_mul(M m, F a, F b) { return m ? a * b : 0.0f; }
  static std::uint64_t bits_of(M m) { return m ? 1 : 0; }
  static M mask_of(std::uint64_t bits) { return (bits & 1) != 0; }
  // Narrow keep words (rng/philox.h, keep_field_at): each lane's B-bit fields, low field first,
  // tested u >= t; field f of lane l is element l * (32 / B) + f, and bit l * (32 / B) + f of the
  // result. kLanes * 32 / B bits.
  template <int B>
  static std::uint64_t keep_narrow(U w, std::uint32_t t) {
    std::uint64_t r = 0;
    for (int f = 0; f < 32 / B; ++f) {
      r |= std::uint64_t{((w >> (B * f)) & ((1u << B) - 1)) >= t} << f;
    }
    return r;
  }
};

#if defined(__AVX2__)
struct Avx2 {
  static constexpr int kLanes = 8;
  static constexpr const char* kName = "avx2";
  using U = __m256i;
  using F = __m256;
  using M = __m256i;  // all-ones lanes are true

  static U set1(std::uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
  static U iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static U add(U a, U b) { return _mm256_add_epi32(a, b); }
  static U xor3(U a, U b, U c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
  static U and_(U a, U b) { return _mm256_and_si256(a, b); }
  static U xor_(U a, U b) { return _mm256_xor_si256(a, b); }
  static U or_(U a, U b) { return _mm256_or_si256(a, b); }
  template <int N>
  static U srli(U a) {
    return _mm256_srli_epi32(a, N);
  }
  template <int N>
  static U slli(U a) {
    return _mm256_slli_epi32(a, N);
  }
  // 32x32->64 products of the even lanes and (shifted down) of the odd lanes, then regrouped.
  static void mulhilo(U a, std::uint32_t m, U& hi, U& lo) {
    const __m256i mv = _mm256_set1_epi32(static_cast<int>(m));
    const __m256i pe = _mm256_mul_epu32(a, mv);
    const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), mv);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  }
  static void storeu(std::uint32_t* p, U v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
  }

  static constexpr int kWideLanes = 4;
  // Two groups at a time, although one group's state already fills the 16 registers: GCC
  // spills some of it, and the two groups' independent chains still win. In cache, one core of
  // an AVX2-only Zen 3 (2026-12-06, thread CPU time, best of 7, five alternating runs): words
  // 0.86 -> 0.77 ns, the 32-bit forward 0.91 -> 0.80 ns per element, alpha 0.92 -> 0.80,
  // Gaussian 1.90 -> 1.71; 16-bit fields (drawn one group at a time) unchanged. (Zen 4 measured
  // 8 % for words alone; AVX2 runs only where AVX-512 is missing, or when DROPKIT_ISA asks.)
  static constexpr int kGroupsPerDraw = 2;
  using W = __m256i;
  static W wide_set1(std::uint32_t v) { return _mm256_set1_epi64x(v); }
  static W wide_iota() { return _mm256_setr_epi64x(0, 1, 2, 3); }
  static W wide_add(W a, W b) { return _mm256_add_epi64(a, b); }
  static W wide_mul32(W a, W m) { return _mm256_mul_epu32(a, m); }
  static W wide_hi(W p) { return _mm256_shuffle_epi32(p, 0xB1); }
  static W wide_xor3(W a, W b, W c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); }
  static U pack_lo(W a, W b) {
    const __m256 ab = _mm256_shuffle_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), 0x88);
    return _mm256_permute4x64_epi64(_mm256_castps_si256(ab), 0xD8);  // a0 a1 a2 a3 b0 b1 b2 b3
  }

  static F set1f(float v) { return _mm256_set1_ps(v); }
  static F loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void stream(float* p, F v) { _mm256_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F sqrt(F a) { return _mm256_sqrt_ps(a); }
  static F cvt(U a) { return _mm256_cvtepi32_ps(a); }
  static F as_f(U a) { return _mm256_castsi256_ps(a); }
  static U as_u(F a) { return _mm256_castps_si256(a); }

  static M ge_u(U a, U b) { return _mm256_cmpeq_epi32(_mm256_max_epu32(a, b), a); }
  static M lt_f(F a, F b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
  static M nonzero(U a) {
    return _mm256_xor_si256(_mm256_cmpeq_epi32(a, _mm256_setzero_si256()), _mm256_set1_epi32(-1));
  }
  static F select(M m, F a, F b) { return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m)); }
  static F maskz_mul(M m, F a, F b) {
    return _mm256_and_ps(_mm256_castsi256_ps(m), _mm256_mul_ps(a, b));
  }
  static std::uint64_t bits_of(M m) {
    return static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(m)));
  }
  static M mask_of(std::uint64_t bits) {
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i b = _mm256_set1_epi32(static_cast<int>(bits & 0xFF));
    return _mm256_cmpeq_epi32(_mm256_and_si256(b, lane_bit), lane_bit);
  }
  // Unsigned a >= t per 8- or 16-bit field (max(a, t) == a), one bit per field in memory order.
  template <int B>
  static std::uint64_t keep_narrow(U w, std::uint32_t t) {
    if constexpr (B == 8) {
      const __m256i tv = _mm256_set1_epi8(static_cast<char>(t));
      return static_cast<std::uint32_t>(
          _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(w, tv), w)));
    } else {
      const __m256i tv = _mm256_set1_epi16(static_cast<short>(t));
      // Two equal bits per 16-bit field: keep the even ones, packed.
      std::uint32_t x = static_cast<std::uint32_t>(
                            _mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_max_epu16(w, tv), w))) &
                        0x55555555u;
      x = (x | (x >> 1)) & 0x33333333u;
      x = (x | (x >> 2)) & 0x0F0F0F0Fu;
      x = (x | (x >> 4)) & 0x00FF00FFu;
      x = (x | (x >> 8)) & 0x0000FFFFu;
      return x;
    }
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
struct Avx512 {
  static constexpr int kLanes = 16;
  static constexpr const char* kName = "avx512";
  using U = __m512i;
  using F = __m512;
  using M = __mmask16;

  static U set1(std::uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
  static U iota() {
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  static U add(U a, U b) { return _mm512_add_epi32(a, b); }
  static U xor3(U a, U b, U c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
  static U and_(U a, U b) { return _mm512_and_si512(a, b); }
  static U xor_(U a, U b) { return _mm512_xor_si512(a, b); }
  static U or_(U a, U b) { return _mm512_or_si512(a, b); }
  template <int N>
  static U srli(U a) {
    return _mm512_srli_epi32(a, N);
  }
  template <int N>
  static U slli(U a) {
    return _mm512_slli_epi32(a, N);
  }
  static void mulhilo(U a, std::uint32_t m, U& hi, U& lo) {
    const __m512i mv = _mm512_set1_epi32(static_cast<int>(m));
    const __m512i pe = _mm512_mul_epu32(a, mv);
    const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), mv);
    hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  }
  static void storeu(std::uint32_t* p, U v) { _mm512_storeu_si512(p, v); }

  static constexpr int kWideLanes = 8;
  static constexpr int kGroupsPerDraw = 2;  // 8 of the 32 registers per group
  using W = __m512i;
  static W wide_set1(std::uint32_t v) { return _mm512_set1_epi64(v); }
  static W wide_iota() { return _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7); }
  static W wide_add(W a, W b) { return _mm512_add_epi64(a, b); }
  static W wide_mul32(W a, W m) { return _mm512_mul_epu32(a, m); }
  // Swapping the halves (vpshufd, port 5) instead of shifting (port 0, shared with vpmuludq)
  // balances the two vector ports; the upper half it leaves is don't-care.
  static W wide_hi(W p) { return _mm512_shuffle_epi32(p, _MM_PERM_CDAB); }
  static W wide_xor3(W a, W b, W c) { return _mm512_ternarylogic_epi64(a, b, c, 0x96); }
  static U pack_lo(W a, W b) {
    const __m512i idx =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_epi32(a, idx, b);
  }

  static F set1f(float v) { return _mm512_set1_ps(v); }
  static F loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void stream(float* p, F v) { _mm512_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F sqrt(F a) { return _mm512_sqrt_ps(a); }
  static F cvt(U a) { return _mm512_cvtepi32_ps(a); }
  static F as_f(U a) { return _mm512_castsi512_ps(a); }
  static U as_u(F a) { return _mm512_castps_si512(a); }

  static M ge_u(U a, U b) { return _mm512_cmpge_epu32_mask(a, b); }
  static M lt_f(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M nonzero(U a) { return _mm512_test_epi32_mask(a, a); }
  static F select(M m, F a, F b) { return _mm512_mask_blend_ps(m, b, a); }
  // The empty asm keeps a in a register: GCC would fold its load into the multiply, and a
  // zero-masked multiply from memory (a masked load, with fault suppression) streams at half the
  // rate of one from a register on AMD Zen 5 (docs/design.md, "Masked memory operands").
  static F maskz_mul(M m, F a, F b) {
    asm("" : "+v"(a));
    return _mm512_maskz_mul_ps(m, a, b);
  }
  static std::uint64_t bits_of(M m) { return m; }
  static M mask_of(std::uint64_t bits) { return static_cast<M>(bits & 0xFFFF); }
  // The 64 keep bits of one vector of 8-bit fields or two of 16-bit fields (isa_masks.inc,
  // keep_word). The two 32-bit compare masks are joined in mask registers (kunpckdq): GCC 12
  // at -O1 widened a __mmask32 to 64 bits through a 32-bit store into an 8-byte stack slot,
  // leaving the upper half stale, so no __mmask32 is ever converted to an integer here.
  template <int B>
  static std::uint64_t keep_word(const U* w, std::uint32_t t) {
    if constexpr (B == 8) {
      return _cvtmask64_u64(_mm512_cmpge_epu8_mask(w[0], _mm512_set1_epi8(static_cast<char>(t))));
    } else {
      const __m512i tv = _mm512_set1_epi16(static_cast<short>(t));
      return _cvtmask64_u64(
          _mm512_kunpackd(_mm512_cmpge_epu16_mask(w[1], tv), _mm512_cmpge_epu16_mask(w[0], tv)));
    }
  }
};
#endif

}  // namespace dropkit::kernels::simd
