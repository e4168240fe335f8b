// The Bernoulli keep mask: the one module that turns (stream, element) into "keep or drop" and
// applies it. Every dropout variant that keeps or drops (standard, spatial, variational,
// DropConnect, alpha) goes through these functions; nothing else draws a mask.
//
// Scalar meaning, for i in [0, n):
//   keep_i = bits_at(s, first + i) >= round(drop_prob * 2^32)          (rng/philox.h)
//   y[i]   = keep_i ? x[i] * scale : 0
// with the edge cases decided here, once: keep_threshold.keeps_all() (drop_prob = 0) copies
// x * scale (a bitwise copy when scale is 1) and draws nothing; drops_all() (drop_prob = 1)
// writes zeros and never multiplies, so no Inf or NaN can appear.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "dropkit/parallel/thread_pool.h"
#include "dropkit/rng/philox.h"

namespace dropkit::dropout {

// Bits per keep decision (rng::KeepThreshold) when a layer's mask_bits is not given: 32, the
// full word. 16 and 8 draw fewer Philox blocks per element (faster; docs/benchmarks.md) and the
// layer then works with the rate they realise, effective_drop_prob(). Every layer that keeps or
// drops (dropout, alpha_dropout, dropconnect) takes mask_bits with this default. Why 32 stays
// the default: it is what every existing command line and checkpoint computed (docs/design.md).
inline constexpr int kDefaultMaskBits = 32;

// Words of a bit mask covering n elements whose first stream index is `first`
// (bit (first + i) % 64 of word (first + i) / 64 - first / 64 belongs to element i).
std::size_t mask_words(std::uint64_t first, std::size_t n);

// y = mask * scale * x; x and y may be the same span. If `bits` is not empty (it must then hold
// mask_words(first, n) words) the keep bits are stored there too.
// Multi-threaded over static ranges aligned to 64-element groups: bitwise identical results
// for every thread count.
void apply_keep_mask(parallel::ThreadPool& pool, const rng::StreamKey& s, std::uint64_t first,
                     const rng::KeepThreshold& keep, float scale, std::span<const float> x,
                     std::span<float> y, std::span<std::uint64_t> bits = {});

// Alpha dropout's affine keep mask: y[i] = keep_i ? a * x[i] + b : c (x and y may alias), bits
// stored as apply_keep_mask does. keeps_all() computes a * x + b for every element, drops_all()
// writes c; neither draws anything.
void apply_keep_affine(parallel::ThreadPool& pool, const rng::StreamKey& s, std::uint64_t first,
                       const rng::KeepThreshold& keep, float a, float b, float c,
                       std::span<const float> x, std::span<float> y,
                       std::span<std::uint64_t> bits = {});

// Gaussian noise keyed like the masks: with z_i = normal_at(s, first + i),
//   multiplicative: y[i] = x[i] * (1 + sigma z_i)     (Gaussian dropout)
//   additive:       y[i] = x[i] + sigma z_i           (Gaussian noise)
// sigma = 0 copies x bitwise and draws nothing. x and y may alias.
enum class NoiseKind { kMultiplicative, kAdditive };
void apply_gaussian(parallel::ThreadPool& pool, const rng::StreamKey& s, std::uint64_t first,
                    NoiseKind kind, float sigma, std::span<const float> x, std::span<float> y);

// y = bits * scale * x, with bits as stored by apply_keep_mask.
void apply_stored_mask(parallel::ThreadPool& pool, std::span<const std::uint64_t> bits,
                       std::uint64_t first, float scale, std::span<const float> x,
                       std::span<float> y);

// y = x * scale (x and y may alias); a bitwise copy when scale is 1.
void scale_copy(parallel::ThreadPool& pool, float scale, std::span<const float> x,
                std::span<float> y);

}  // namespace dropkit::dropout
