// The per-ISA kernel table and run-time dispatch. Each entry works on one contiguous range of
// stream element indices [first, first + n), single-threaded, allocating nothing; the pointers
// point at the element with index `first`. Multi-threading lives one level up (dropout/mask.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dropkit/rng/philox.h"

namespace dropkit::kernels {

// Parameters of the optimizer updates (train/optimizer.h says what they mean).
struct SgdUpdate {
  float momentum, step, decay;  // step = (1 - momentum) * lr
  bool nesterov;
};
struct AdamUpdate {
  float lr, beta1, beta2, eps, correction1, correction2, decay;
};

struct KernelTable {
  const char* name;
  // out[i] = bits_at(s, first + i)
  void (*fill_bits)(const rng::StreamKey& s, std::uint64_t first, std::uint32_t* out,
                    std::size_t n);
  // out[i] = uniform_at(s, first + i)
  void (*fill_uniform)(const rng::StreamKey& s, std::uint64_t first, float* out, std::size_t n);
  // out[i] = normal_at(s, first + i)
  void (*fill_normal)(const rng::StreamKey& s, std::uint64_t first, float* out, std::size_t n);
  // y[i] = keep_field_at(s, first + i, width) >= threshold ? x[i] * scale : 0 (rng/philox.h;
  // width 32, 16 or 8 bits); x may equal y.
  // If mask is not null, bit (first + i) % 64 of mask[(first + i) / 64 - first / 64] is set to
  // the keep bit; the other bits of a partially covered word are left unchanged.
  void (*mask_scale)(const rng::StreamKey& s, std::uint64_t first, std::uint32_t threshold,
                     int width, float scale, const float* x, float* y, std::size_t n,
                     std::uint64_t* mask);
  // y[i] = keep_field_at(s, first + i, width) >= threshold ? a * x[i] + b : c; x may equal y;
  // mask as above. (Alpha dropout: a dropped unit becomes c = a alpha' + b.)
  void (*mask_affine)(const rng::StreamKey& s, std::uint64_t first, std::uint32_t threshold,
                      int width, float a, float b, float c, const float* x, float* y, std::size_t n,
                      std::uint64_t* mask);
  // y[i] = x[i] * (1 + sigma * normal_at(s, first + i)); x may equal y (Gaussian dropout).
  void (*gauss_mul)(const rng::StreamKey& s, std::uint64_t first, float sigma, const float* x,
                    float* y, std::size_t n);
  // y[i] = x[i] + sigma * normal_at(s, first + i); x may equal y (Gaussian noise).
  void (*gauss_add)(const rng::StreamKey& s, std::uint64_t first, float sigma, const float* x,
                    float* y, std::size_t n);
  // y[i] = keep bit of element first + i (addressed as above) ? x[i] * scale : 0; x may equal y.
  void (*bits_scale)(const std::uint64_t* mask, std::uint64_t first, float scale, const float* x,
                     float* y, std::size_t n);
  // y = x with non-temporal (streaming) stores where the ISA has them: half of the bandwidth
  // reference (the other half is memcpy; the benchmark takes the faster).
  void (*copy_streaming)(const float* x, float* y, std::size_t n);
  // Runs of a broadcast noise value (dropout/noise_shape.h): `runs` contiguous runs of `len`
  // elements, run r taking the noise value f[r]; streaming stores when `streaming` (then the
  // caller calls store_fence once after all runs); x may equal y. For element i of run r:
  //   run_scale   a = f[r] * m;  y = a == 0 ? 0 : x * a     (a dropped run is zeros, never 0 * Inf)
  //   run_affine  y = f[r] != 0 ? a * x + b : c             (alpha dropout; a dropped run is c)
  void (*run_scale)(const float* x, float* y, const float* f, std::size_t runs, std::size_t len,
                    float m, bool streaming);
  void (*run_affine)(const float* x, float* y, const float* f, std::size_t runs, std::size_t len,
                     float a, float b, float c, bool streaming);
  void (*store_fence)();

  // Optimizer updates over one range (g is only read). Each returns squared_norm of the updated
  // w[0, n), bit for bit, for max-norm without a second pass:
  //   gi = g + decay w (g itself when decay = 0: they differ at most in the sign of a zero)
  //   v = momentum v - step gi;  w += nesterov ? momentum v - step gi : v
  double (*sgd_update)(float* w, const float* g, float* v, std::size_t n, const SgdUpdate& p);
  //   gi = g + decay w (as above);  m = b1 m + (1-b1) gi;  v = b2 v + (1-b2) gi^2;
  //   w -= lr (m / c1) / (sqrt(v / c2) + eps)
  double (*adam_update)(float* w, const float* g, float* m, float* v, std::size_t n,
                        const AdamUpdate& p);
  // sum of w[i]^2: fma into 32 float lanes (lane i % 32), then lanes 0..31 in order in double.
  double (*squared_norm)(const float* w, std::size_t n);
};

// The bits lo .. hi-1 of a 64-bit mask word (0 <= lo <= hi <= 64).
constexpr std::uint64_t bit_range(std::uint64_t lo, std::uint64_t hi) {
  const std::uint64_t below_hi = hi == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << hi) - 1;
  return below_hi & ~((std::uint64_t{1} << lo) - 1);
}

enum class Isa { kScalar, kAvx2, kAvx512 };

std::string_view isa_name(Isa isa);
bool isa_supported(Isa isa);  // by this CPU and OS
// The table for one ISA; throws std::invalid_argument if this CPU cannot run it.
const KernelTable& kernel_table(Isa isa);
// The table in use: the best supported ISA, unless DROPKIT_ISA (scalar, avx2, avx512) or
// set_active_isa chose another.
const KernelTable& active_kernels();
Isa active_isa();
void set_active_isa(Isa isa);

}  // namespace dropkit::kernels
