#include "dropkit/dropout/mask.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "dropkit/kernels/table.h"

namespace dropkit::dropout {
namespace {

constexpr std::uint64_t kG = rng::kGroupElements;
constexpr std::uint64_t kAlign = 4 * kG;  // elements per group of 8-bit keep fields
// Below this many elements one thread is faster than waking the others.
constexpr std::size_t kMinParallel = 1 << 15;

void check_sizes(std::size_t x, std::size_t y, const char* what) {
  if (x != y) {
    throw std::invalid_argument(fmt::format("{}: input has {} elements, output {}", what, x, y));
  }
}

// Calls fn(begin, end) over static ranges of [0, n) whose boundaries fall on multiples of 256 in
// stream index space (first + i): no two threads share a 64-bit mask word, nor a group of keep
// fields drawn together (256 elements from 16 Philox blocks with 8-bit fields).
template <class Fn>
void for_groups(parallel::ThreadPool& pool, std::uint64_t first, std::size_t n, Fn&& fn) {
  if (n < kMinParallel || pool.size() == 1) {
    if (n > 0) fn(std::size_t{0}, n);
    return;
  }
  const std::size_t head = first % kAlign;
  parallel::parallel_for(pool, n + head, kAlign, [&](std::size_t b, std::size_t e) {
    b = b < head ? 0 : b - head;
    e -= head;
    if (b < e) fn(b, e);
  });
}

// Sets the bits of elements [first, first + n) to `keep` (whole words, except the bits of a first
// or last word that belong to other elements); nothing if `bits` is empty.
void fill_bits(std::span<std::uint64_t> bits, std::uint64_t first, std::size_t n, bool keep) {
  if (bits.empty()) return;
  const std::uint64_t fill = keep ? ~std::uint64_t{0} : 0;
  for (std::size_t i = 0; i < n;) {
    const std::uint64_t idx = first + i, word = idx / kG - first / kG, lo = idx % kG;
    const std::uint64_t hi = std::min<std::uint64_t>(kG, lo + (n - i));
    const std::uint64_t range = kernels::bit_range(lo, hi);
    bits[word] = (bits[word] & ~range) | (fill & range);
    i += hi - lo;
  }
}

}  // namespace

std::size_t mask_words(std::uint64_t first, std::size_t n) {
  return n == 0 ? 0 : static_cast<std::size_t>((first + n - 1) / kG - first / kG + 1);
}

void apply_keep_mask(parallel::ThreadPool& pool, const rng::StreamKey& s, std::uint64_t first,
                     const rng::KeepThreshold& keep, float scale, std::span<const float> x,
                     std::span<float> y, std::span<std::uint64_t> bits) {
  check_sizes(x.size(), y.size(), "apply_keep_mask");
  const std::size_t n = x.size();
  if (!bits.empty() && bits.size() != mask_words(first, n)) {
    throw std::invalid_argument(fmt::format("apply_keep_mask: mask has {} words, {} needed",
                                            bits.size(), mask_words(first, n)));
  }
  if (first + n > rng::kMaxStreamElements) {
    throw std::invalid_argument(
        fmt::format("apply_keep_mask: elements up to {} exceed the stream's 2^36", first + n));
  }
  if (keep.drops_all() || keep.keeps_all()) {
    if (keep.drops_all()) {
      std::fill(y.begin(), y.end(), 0.0f);
    } else {
      scale_copy(pool, scale, x, y);
    }
    fill_bits(bits, first, n, keep.keeps_all());
    return;
  }
  const auto& k = kernels::active_kernels();
  for_groups(pool, first, n, [&](std::size_t b, std::size_t e) {
    std::uint64_t* word = bits.empty() ? nullptr : bits.data() + ((first + b) / kG - first / kG);
    k.mask_scale(s, first + b, keep.word(), keep.width(), scale, x.data() + b, y.data() + b, e - b,
                 word);
  });
}

namespace {

void check_range(const char* what, std::uint64_t first, std::size_t n) {
  if (first + n > rng::kMaxStreamElements) {
    throw std::invalid_argument(
        fmt::format("{}: elements up to {} exceed the stream's 2^36", what, first + n));
  }
}

}  // namespace

void apply_keep_affine(parallel::ThreadPool& pool, const rng::StreamKey& s, std::uint64_t first,
                       const rng::KeepThreshold& keep, float a, float b, float c,
                       std::span<const float> x, std::span<float> y,
                       std::span<std::uint64_t> bits) {
  check_sizes(x.size(), y.size(), "apply_keep_affine");
  const std::size_t n = x.size();
  if (!bits.empty() && bits.size() != mask_words(first, n)) {
    throw std::invalid_argument(fmt::format("apply_keep_affine: mask has {} words, {} needed",
                                            bits.size(), mask_words(first, n)));
  }
  check_range("apply_keep_affine", first, n);
  if (keep.drops_all() || keep.keeps_all()) {
    fill_bits(bits, first, n, keep.keeps_all());
    const bool all = keep.keeps_all();
    for_groups(pool, first, n, [&](std::size_t lo, std::size_t hi) {
      for (std::size_t i = lo; i < hi; ++i) y[i] = all ? a * x[i] + b : c;
    });
    return;
  }
  const auto& k = kernels::active_kernels();
  for_groups(pool, first, n, [&](std::size_t lo, std::size_t hi) {
    std::uint64_t* word = bits.empty() ? nullptr : bits.data() + ((first + lo) / kG - first / kG);
    k.mask_affine(s, first + lo, keep.word(), keep.width(), a, b, c, x.data() + lo, y.data() + lo,
                  hi - lo, word);
  });
}

void apply_gaussian(parallel::ThreadPool& pool, const rng::StreamKey& s, std::uint64_t first,
                    NoiseKind kind, float sigma, std::span<const float> x, std::span<float> y) {
  check_sizes(x.size(), y.size(), "apply_gaussian");
  check_range("apply_gaussian", first, x.size());
  if (sigma == 0.0f) {
    scale_copy(pool, 1.0f, x, y);
    return;
  }
  const auto& k = kernels::active_kernels();
  const auto fn = kind == NoiseKind::kMultiplicative ? k.gauss_mul : k.gauss_add;
  for_groups(pool, first, x.size(), [&](std::size_t lo, std::size_t hi) {
    fn(s, first + lo, sigma, x.data() + lo, y.data() + lo, hi - lo);
  });
}

void apply_stored_mask(parallel::ThreadPool& pool, std::span<const std::uint64_t> bits,
                       std::uint64_t first, float scale, std::span<const float> x,
                       std::span<float> y) {
  check_sizes(x.size(), y.size(), "apply_stored_mask");
  const std::size_t n = x.size();
  if (bits.size() != mask_words(first, n)) {
    throw std::invalid_argument(fmt::format("apply_stored_mask: mask has {} words, {} needed",
                                            bits.size(), mask_words(first, n)));
  }
  const auto& k = kernels::active_kernels();
  for_groups(pool, first, n, [&](std::size_t b, std::size_t e) {
    k.bits_scale(bits.data() + ((first + b) / kG - first / kG), first + b, scale, x.data() + b,
                 y.data() + b, e - b);
  });
}

void scale_copy(parallel::ThreadPool& pool, float scale, std::span<const float> x,
                std::span<float> y) {
  check_sizes(x.size(), y.size(), "scale_copy");
  if (scale == 1.0f) {
    if (x.data() != y.data() && !x.empty()) std::memmove(y.data(), x.data(), x.size_bytes());
    return;
  }
  for_groups(pool, 0, x.size(), [&](std::size_t b, std::size_t e) {
    const float* xs = x.data();
    float* ys = y.data();
    for (std::size_t i = b; i < e; ++i) ys[i] = xs[i] * scale;
  });
}

}  // namespace dropkit::dropout
