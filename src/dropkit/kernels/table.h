// The per-ISA kernel table and run-time dispatch. Each entry works on one contiguous range of
// stream element indices [first, first + n), single-threaded, allocating nothing; the pointers
// point at the element with index `first`. Multi-threading lives one level up (kernels/dropout.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dropkit/rng/philox.h"

namespace dropkit::kernels {

struct KernelTable {
  const char* name;
  // out[i] = bits_at(s, first + i)
  void (*fill_bits)(const rng::StreamKey& s, std::uint64_t first, std::uint32_t* out,
                    std::size_t n);
  // out[i] = uniform_at(s, first + i)
  void (*fill_uniform)(const rng::StreamKey& s, std::uint64_t first, float* out, std::size_t n);
  // out[i] = normal_at(s, first + i)
  void (*fill_normal)(const rng::StreamKey& s, std::uint64_t first, float* out, std::size_t n);
  // y[i] = bits_at(s, first + i) >= threshold ? x[i] * scale : 0; x may equal y.
  // If mask is not null, bit (first + i) % 64 of mask[(first + i) / 64 - first / 64] is set to
  // the keep bit; the other bits of a partially covered word are left unchanged.
  void (*mask_scale)(const rng::StreamKey& s, std::uint64_t first, std::uint32_t threshold,
                     float scale, const float* x, float* y, std::size_t n, std::uint64_t* mask);
  // y[i] = keep bit of element first + i (addressed as above) ? x[i] * scale : 0; x may equal y.
  void (*bits_scale)(const std::uint64_t* mask, std::uint64_t first, float scale, const float* x,
                     float* y, std::size_t n);
  // y = x with non-temporal (streaming) stores where the ISA has them: half of the bandwidth
  // reference (the other half is memcpy; the benchmark takes the faster).
  void (*copy_streaming)(const float* x, float* y, std::size_t n);
};

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
