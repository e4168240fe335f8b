// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3",
// SC 2011) and the element layout that makes every random draw in dropkit a pure function of
// (seed, stream, step, element index).
//
// This header is the scalar reference: plain, constexpr, one element at a time. The SIMD kernels
// (kernels/generic.h) compute the same bits sixteen blocks at once and are tested against it.
//
// Layout. A stream is (seed, stream id, step). Philox's key is the 64-bit seed; its 128-bit
// counter is (block, stream id, step low word, step high word). Elements come in groups of 64:
// element i lies in group g = i / 64 at r = i % 64 and takes word r / 16 of block 16 g + r % 16.
// So one group is sixteen consecutive Philox blocks, and word w of those sixteen blocks is
// elements 64 g + 16 w ... 64 g + 16 w + 15: an AVX-512 register (or two AVX2 registers) holds
// sixteen blocks in its lanes and its four output words are four consecutive runs of sixteen
// elements, with no transpose. The layout is a definition, not an artefact of the vector width:
// the scalar, AVX2 and AVX-512 paths give identical bits for every element.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace dropkit::rng {

using PhiloxCounter = std::array<std::uint32_t, 4>;
using PhiloxKey = std::array<std::uint32_t, 2>;

inline constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;  // multipliers
inline constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;  // Weyl key increments
inline constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;
inline constexpr int kPhiloxRounds = 10;

// The bijection itself: ten rounds of two 32x32->64 multiplies, the key bumped between rounds.
constexpr PhiloxCounter philox4x32_10(PhiloxCounter c, PhiloxKey k) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    const std::uint64_t p0 = std::uint64_t{kPhiloxM0} * c[0];
    const std::uint64_t p1 = std::uint64_t{kPhiloxM1} * c[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k = {k[0] + kPhiloxW0, k[1] + kPhiloxW1};
  }
  return c;
}

// Identifies one stream of random numbers: the run's seed, the consumer (a layer's stream id) and
// the training step (or Monte-Carlo sample index).
struct StreamKey {
  std::uint64_t seed = 0;
  std::uint32_t stream = 0;
  std::uint64_t step = 0;
};

inline constexpr std::uint64_t kGroupElements = 64;  // elements per group of 16 blocks
inline constexpr std::uint64_t kGroupBlocks = 16;
// The block index is one 32-bit counter word, so one stream holds 2^36 elements.
inline constexpr std::uint64_t kMaxStreamElements = std::uint64_t{1} << 36;

constexpr PhiloxKey key_of(const StreamKey& s) {
  return {static_cast<std::uint32_t>(s.seed), static_cast<std::uint32_t>(s.seed >> 32)};
}
constexpr PhiloxCounter counter_of(const StreamKey& s, std::uint64_t block) {
  return {static_cast<std::uint32_t>(block), s.stream, static_cast<std::uint32_t>(s.step),
          static_cast<std::uint32_t>(s.step >> 32)};
}

// The 32-bit word for element i of stream s.
constexpr std::uint32_t bits_at(const StreamKey& s, std::uint64_t i) {
  const std::uint64_t g = i / kGroupElements, r = i % kGroupElements;
  return philox4x32_10(counter_of(s, g * kGroupBlocks + r % kGroupBlocks), key_of(s))[r / 16];
}

// Uniform in [0, 1): the top 24 bits, so every value is exact in float32.
constexpr float uniform_from_bits(std::uint32_t u) {
  return static_cast<float>(u >> 8) * 0x1p-24f;
}
constexpr float uniform_at(const StreamKey& s, std::uint64_t i) {
  return uniform_from_bits(bits_at(s, i));
}

// The keep field of element i for keep words of `width` bits (docs/spec.md section 2): with width
// 32 the element's own word bits_at(s, i); with 16 or 8 the field i % (32 / width) (low field
// first) of word i / (32 / width), so one Philox block serves 4, 8 or 16 elements.
constexpr std::uint32_t keep_field_at(const StreamKey& s, std::uint64_t i, int width) {
  if (width == 32) return bits_at(s, i);
  const auto per = static_cast<std::uint64_t>(32 / width);
  return (bits_at(s, i / per) >> (width * static_cast<int>(i % per))) & ((1u << width) - 1);
}

// The keep test of docs/spec.md section 2 on b-bit fields (b = width: 32, 16 or 8): keep when
// u >= round(drop_prob * 2^b). A threshold of 2^b (drop_prob = 1, or so close to 1 that it
// rounds there) drops everything; 0 keeps everything. With b < 32 the drop rate the mask
// realises is effective_drop_prob() = round(p 2^b) / 2^b, and the layers scale by it, so the
// expectation stays exact (0.2 at 8 bits is 51/256 = 0.19921875). With b = 32 the difference
// is below 2^-33 and the layers keep using drop_prob itself (the results of the 32-bit masks are
// unchanged by the narrower ones' arrival).
class KeepThreshold {
 public:
  explicit KeepThreshold(double drop_prob, int width = 32) : width_(width), drop_prob_(drop_prob) {
    if (!(drop_prob >= 0.0 && drop_prob <= 1.0)) {  // also rejects NaN
      throw std::invalid_argument("drop_prob must be in [0, 1]");
    }
    if (width != 32 && width != 16 && width != 8) {  // the layers' message: their mask_bits
      throw std::invalid_argument("mask_bits = " + std::to_string(width) +
                                  " is not one of 32, 16, 8 (bits per keep decision)");
    }
    value_ = static_cast<std::uint64_t>(std::llround(std::ldexp(drop_prob, width)));
  }
  int width() const { return width_; }
  bool drops_all() const { return value_ >= (std::uint64_t{1} << width_); }
  bool keeps_all() const { return value_ == 0; }
  // The threshold as a word; only meaningful when !drops_all().
  std::uint32_t word() const { return static_cast<std::uint32_t>(value_); }
  // u: a keep field of width() bits.
  bool keep(std::uint32_t u) const { return std::uint64_t{u} >= value_; }
  double effective_drop_prob() const {
    return width_ == 32 ? drop_prob_ : std::ldexp(static_cast<double>(value_), -width_);
  }

 private:
  int width_ = 32;
  double drop_prob_ = 0;
  std::uint64_t value_ = 0;
};

// Standard normal for element i: Box-Muller on the pair of words (0, 1) or (2, 3) of the
// element's block; words 0 and 2 give r cos(theta), words 1 and 3 give r sin(theta). Computed by
// rng/box_muller.h's normal_pair, the single definition of the transform (a template over the
// lane type, so the SIMD kernels share it); |z| <= sqrt(-2 ln 2^-24) ~= 5.77 because u1 has 24
// bits.
float normal_at(const StreamKey& s, std::uint64_t i);

}  // namespace dropkit::rng
