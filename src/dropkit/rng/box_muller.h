// Box-Muller, written once over a lane type (rng/lanes.h's ScalarLanes, or kernels/simd.h's
// vector ISAs with the same operations): rng::normal_at instantiates it with one lane, the
// Gaussian kernels with eight or sixteen. Every operation is exact IEEE arithmetic with explicit
// fma, so every instantiation gives the same bits (docs/design.md, "Bit-exact normals").
#pragma once

namespace dropkit::rng {

// Natural logarithm of x in (0, 1] (no zero, no denormal, no NaN reaches it): Cephes logf,
// about 1 ulp. Written with explicit fma so that every ISA rounds identically.
template <class S>
inline typename S::F log_unit(typename S::F x) {
  using F = typename S::F;
  const auto bits = S::as_u(x);
  // x = m * 2^e with m in [0.5, 1).
  F e = S::sub(S::cvt(S::template srli<23>(bits)), S::set1f(126.0f));
  const F m = S::as_f(S::or_(S::and_(bits, S::set1(0x007FFFFFu)), S::set1(0x3F000000u)));
  const auto small = S::lt_f(m, S::set1f(0.707106781186547524f));
  e = S::select(small, S::sub(e, S::set1f(1.0f)), e);
  const F f = S::select(small, S::sub(S::add(m, m), S::set1f(1.0f)), S::sub(m, S::set1f(1.0f)));
  const F z = S::mul(f, f);
  F p = S::set1f(7.0376836292e-2f);
  p = S::fma(p, f, S::set1f(-1.1514610310e-1f));
  p = S::fma(p, f, S::set1f(1.1676998740e-1f));
  p = S::fma(p, f, S::set1f(-1.2420140846e-1f));
  p = S::fma(p, f, S::set1f(1.4249322787e-1f));
  p = S::fma(p, f, S::set1f(-1.6668057665e-1f));
  p = S::fma(p, f, S::set1f(2.0000714765e-1f));
  p = S::fma(p, f, S::set1f(-2.4999993993e-1f));
  p = S::fma(p, f, S::set1f(3.3333331174e-1f));
  F y = S::mul(S::mul(f, z), p);
  y = S::fma(e, S::set1f(-2.12194440e-4f), y);
  y = S::fma(z, S::set1f(-0.5f), y);
  return S::fma(e, S::set1f(0.693359375f), S::add(f, y));
}

// Box-Muller on two words: z_cos = r cos(2 pi u2), z_sin = r sin(2 pi u2), r = sqrt(-2 ln u1),
// u1 = (a >> 8) + 1 over 2^24, in (0, 1], and u2 = (b >> 8) / 2^24, in [0, 1).
// The angle is reduced exactly in integers: n = round(4 u2) picks the quadrant and the rest,
// |t| <= 1/8 of a turn, goes through Cephes' sinf/cosf polynomials on [-pi/4, pi/4].
template <class S>
inline void normal_pair(typename S::U a, typename S::U b, typename S::F& z_cos,
                        typename S::F& z_sin) {
  using F = typename S::F;
  using U = typename S::U;
  const F u1 = S::mul(S::cvt(S::add(S::template srli<8>(a), S::set1(1))), S::set1f(0x1p-24f));
  const F r = S::sqrt(S::mul(S::set1f(-2.0f), log_unit<S>(u1)));

  const U k = S::add(S::template srli<8>(b), S::set1(1u << 21));
  const U n = S::and_(S::template srli<22>(k), S::set1(3));
  const F turns = S::mul(S::sub(S::cvt(S::and_(k, S::set1((1u << 22) - 1))), S::set1f(0x1p21f)),
                         S::set1f(0x1p-24f));
  const F x = S::mul(turns, S::set1f(6.28318530717958647692f));
  const F zz = S::mul(x, x);
  F ps = S::fma(S::set1f(-1.9515295891e-4f), zz, S::set1f(8.3321608736e-3f));
  ps = S::fma(ps, zz, S::set1f(-1.6666654611e-1f));
  const F sin_x = S::fma(S::mul(ps, zz), x, x);
  F pc = S::fma(S::set1f(2.443315711809948e-5f), zz, S::set1f(-1.388731625493765e-3f));
  pc = S::fma(pc, zz, S::set1f(4.166664568298827e-2f));
  const F cos_x = S::fma(S::mul(pc, zz), zz, S::fma(zz, S::set1f(-0.5f), S::set1f(1.0f)));

  // theta = x + n pi/2: odd n swaps sin and cos; flipping the sign bit (x may be negative, so
  // XOR, not OR) negates sin for n in {2, 3} and cos for n in {1, 2}.
  const auto odd = S::nonzero(S::and_(n, S::set1(1)));
  const F sin_mag = S::select(odd, cos_x, sin_x);
  const F cos_mag = S::select(odd, sin_x, cos_x);
  const U sin_sign = S::template slli<30>(S::and_(n, S::set1(2)));
  const U cos_sign = S::template slli<30>(S::and_(S::add(n, S::set1(1)), S::set1(2)));
  z_sin = S::mul(r, S::as_f(S::xor_(S::as_u(sin_mag), sin_sign)));
  z_cos = S::mul(r, S::as_f(S::xor_(S::as_u(cos_mag), cos_sign)));
}

}  // namespace dropkit::rng
