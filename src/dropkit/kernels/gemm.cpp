#include "dropkit/kernels/gemm.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "dropkit/core/tensor.h"

namespace dropkit::kernels {

void use_one_onednn_thread() {
  // A thread-local ICV: oneDNN sees one thread and opens no OpenMP team from this thread.
  thread_local const bool single = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)single;
}

std::string_view precision_name(Precision p) {
  return p == Precision::kBf16 ? "bf16" : "f32";
}

Precision parse_precision(std::string_view s) {
  if (s == "f32") return Precision::kF32;
  if (s == "bf16") return Precision::kBf16;
  throw std::invalid_argument("precision '" + std::string(s) + "' is not one of f32, bf16");
}

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One matmul primitive per shape, leading dimensions and accumulate flag, per thread (a
// primitive is built once, in about a millisecond, and then reused every step).
struct Bf16Matmul {
  dnnl::matmul prim;
  dnnl::memory::desc a, b, c;
  std::string impl;
};

const Bf16Matmul& bf16_matmul(bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k,
                              std::int64_t lda, std::int64_t ldb, bool accumulate,
                              std::int64_t ldc) {
  using Key = std::tuple<bool, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                         bool, std::int64_t>;
  thread_local std::map<Key, Bf16Matmul> cache;
  const Key key{trans_b, m, n, k, lda, ldb, accumulate, ldc};
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  using dt = dnnl::memory::data_type;
  const dnnl::memory::desc a({m, k}, dt::bf16, dnnl::memory::dims{lda, 1});
  const dnnl::memory::desc b({k, n}, dt::bf16,
                             trans_b ? dnnl::memory::dims{1, ldb} : dnnl::memory::dims{ldb, 1});
  const dnnl::memory::desc c({m, n}, dt::f32, dnnl::memory::dims{ldc, 1});
  dnnl::primitive_attr attr;
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, cpu_engine());
  return cache.emplace(key, Bf16Matmul{dnnl::matmul(pd), a, b, c, pd.impl_info_str()})
      .first->second;
}

}  // namespace

std::string bf16_products_implementation() {
  use_one_onednn_thread();
  try {
    return bf16_matmul(true, 128, kBlock, 1024, 1024, 1024, false, kBlock).impl;
  } catch (const dnnl::error&) {
    return "none";  // no implementation for bf16 on this CPU
  }
}

bool bf16_products_available() {
  static const bool available = bf16_products_implementation() != "none";
  return available;
}

bool bf16_products_native() {
  const std::string impl = bf16_products_implementation();
  return impl != "none" && impl.find("ref") == std::string::npos;
}

void check_precision_available(Precision precision) {
  if (precision == Precision::kBf16 && !bf16_products_available()) {
    throw std::invalid_argument(
        "precision = bf16: oneDNN has no bf16 products on this CPU (they need AVX-512); use "
        "f32");
  }
}

void gemm_bf16(bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, const Bf16* a,
               std::int64_t lda, const Bf16* b, std::int64_t ldb, bool accumulate, float* c,
               std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum
    if (!accumulate) {
      for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    }
    return;
  }
  use_one_onednn_thread();
  if (ldc != n) {
    // oneDNN 2.6.3 leaves its brgemm kernel (181-213 GFLOP/s on one core here) for gemm:jit
    // (146-171) when the output is strided, as a grid block of a wider product is: run the
    // block into a dense scratch and copy (or add) its rows out, m * n floats that stay in L2.
    thread_local std::vector<float> dense;
    dense.resize(static_cast<std::size_t>(m * n));
    gemm_bf16(trans_b, m, n, k, a, lda, b, ldb, false, dense.data(), n);
    for (std::int64_t i = 0; i < m; ++i) {
      const float* src = dense.data() + i * n;
      float* dst = c + i * ldc;
      if (accumulate) {
        for (std::int64_t j = 0; j < n; ++j) dst[j] += src[j];
      } else {
        std::copy(src, src + n, dst);
      }
    }
    return;
  }
  const Bf16Matmul& mm = bf16_matmul(trans_b, m, n, k, lda, ldb, accumulate, ldc);
  thread_local dnnl::stream stream(cpu_engine());
  // oneDNN takes non-const handles; it only reads a and b.
  dnnl::memory am(mm.a, cpu_engine(), const_cast<Bf16*>(a));
  dnnl::memory bm(mm.b, cpu_engine(), const_cast<Bf16*>(b));
  dnnl::memory cm(mm.c, cpu_engine(), c);
  mm.prim.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  stream.wait();
}

namespace {

// Integer-only, so every clone gives the same bits; the CPU picks the widest (GCC function
// multi-versioning). The baseline SSE2 loop took 0.35-0.67 ms per million floats.
__attribute__((target_clones("avx512f", "avx2", "default"))) void round_range(const float* x,
                                                                              Bf16* y,
                                                                              std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) y[i] = to_bf16(x[i]);
}

}  // namespace

void round_to_bf16(parallel::ThreadPool& pool, const float* x, Bf16* y, std::size_t n) {
  parallel::parallel_for(pool, n, 64,
                         [&](std::size_t b, std::size_t e) { round_range(x + b, y + b, e - b); });
}

void round_to_bf16(const float* x, Bf16* y, std::size_t n) {
  round_range(x, y, n);
}

const Bf16* round_into(parallel::ThreadPool& pool, const float* x, std::size_t n,
                       std::vector<Bf16>& out) {
  out.resize(n);
  round_to_bf16(pool, x, out.data(), n);
  return out.data();
}

Bf16* bf16_scratch(int slot, std::size_t elements) {
  thread_local std::vector<Bf16> buffers[2];
  auto& v = buffers[slot];
  if (v.size() < elements) v.resize(elements);
  return v.data();
}

namespace {

// Eight floats rounded as to_bf16 does, in integer lanes (the same bits in every clone).
using V8u = std::uint32_t __attribute__((vector_size(32)));
using V8h = std::uint16_t __attribute__((vector_size(16)));
[[gnu::always_inline]] inline V8h round8(const float* x) {
  V8u u;
  std::memcpy(&u, x, sizeof u);
  const V8u nan = reinterpret_cast<V8u>((u & 0x7FFFFFFFu) > 0x7F800000u);  // all ones: NaN
  const V8u rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const V8u quiet = (u >> 16) | 0x40u;
  return __builtin_convertvector((rounded & ~nan) | (quiet & nan), V8h);
}

// dst[j ld_dst + r] = to_bf16(src[r ld_src + j]) for r < rows, j in [j0, j1): a rounded
// transpose, in tiles of 8 x 8 (eight rows rounded, transposed in registers by three rounds of
// interleaves, stored as eight runs of 8 along the output rows); the edges element by element.
// Element by element throughout, every value would go to another cache line (docs/benchmarks.md
// has what the tiles gained).
__attribute__((target_clones("avx512f", "avx2", "default"))) void round_transposed(
    const float* src, std::int64_t ld_src, std::int64_t rows, std::int64_t j0, std::int64_t j1,
    Bf16* dst, std::int64_t ld_dst) {
  std::int64_t j = j0;
  for (; j + 8 <= j1; j += 8) {
    std::int64_t r = 0;
    for (; r + 8 <= rows; r += 8) {
      V8h a[8], b[8], c[8];
      for (int i = 0; i < 8; ++i) a[i] = round8(src + (r + i) * ld_src + j);
      for (int i = 0; i < 8; i += 2) {  // rows i, i + 1 interleaved by element
        b[i] = __builtin_shufflevector(a[i], a[i + 1], 0, 8, 1, 9, 2, 10, 3, 11);
        b[i + 1] = __builtin_shufflevector(a[i], a[i + 1], 4, 12, 5, 13, 6, 14, 7, 15);
      }
      for (int i = 0; i < 8; i += 4) {  // then by pairs
        for (int h = 0; h < 2; ++h) {
          c[i + 2 * h] = __builtin_shufflevector(b[i + h], b[i + h + 2], 0, 1, 8, 9, 2, 3, 10, 11);
          c[i + 2 * h + 1] =
              __builtin_shufflevector(b[i + h], b[i + h + 2], 4, 5, 12, 13, 6, 7, 14, 15);
        }
      }
      for (int q = 0; q < 4; ++q) {  // then by quads: column 2q and 2q + 1
        const V8h lo = __builtin_shufflevector(c[q], c[q + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        const V8h hi = __builtin_shufflevector(c[q], c[q + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        std::memcpy(dst + (j + 2 * q) * ld_dst + r, &lo, sizeof lo);
        std::memcpy(dst + (j + 2 * q + 1) * ld_dst + r, &hi, sizeof hi);
      }
    }
    for (; r < rows; ++r) {
      for (std::int64_t q = j; q < j + 8; ++q) dst[q * ld_dst + r] = to_bf16(src[r * ld_src + q]);
    }
  }
  for (; j < j1; ++j) {
    for (std::int64_t r = 0; r < rows; ++r) dst[j * ld_dst + r] = to_bf16(src[r * ld_src + j]);
  }
}

}  // namespace

Bf16GradOperands round_grad_operands(parallel::ThreadPool& pool, Precision precision,
                                     std::int64_t rows, std::int64_t in, std::int64_t out,
                                     const float* x, const float* dy) {
  if (precision != Precision::kBf16) return {};
  Bf16* dy_t = bf16_scratch(0, static_cast<std::size_t>(rows * out));
  // dy [rows, out] transposed to [out, rows]: threads split the columns of dy.
  parallel::parallel_for(pool, static_cast<std::size_t>(out), 16,
                         [&](std::size_t b, std::size_t e) {
                           round_transposed(dy, out, rows, static_cast<std::int64_t>(b),
                                            static_cast<std::int64_t>(e), dy_t, rows);
                         });
  return {dy_t, round_operand(pool, 1, x, rows * in)};
}

void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  use_one_onednn_thread();
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                      lda, b, ldb, beta, c, ldc);
  if (st != dnnl_success) {
    throw std::runtime_error("dnnl_sgemm failed with status " + std::to_string(st));
  }
}

namespace {

// One leaf's (or a whole batch of at most kLeafRows rows') weight gradient block: rows [r0, r1)
// of the batch, whose dy transposed and rounded (with bf16) has leading dimension `rows`.
void weight_grad_leaf(std::int64_t rows, std::int64_t r0, std::int64_t r1, std::int64_t in,
                      std::int64_t out, const float* x, const float* dy, std::int64_t j0,
                      std::int64_t j1, float* dw, float* db, bool accumulate,
                      const Bf16GradOperands& bf16) {
  const std::int64_t k = r1 - r0;
  if (bf16.dy_t) {
    gemm_bf16(false, j1 - j0, in, k, bf16.dy_t + j0 * rows + r0, rows, bf16.x + r0 * in, in,
              accumulate, dw, in);
  } else {
    sgemm(true, false, j1 - j0, in, k, 1.0f, dy + r0 * out + j0, out, x + r0 * in, in,
          accumulate ? 1.0f : 0.0f, dw, in);
  }
  if (db == nullptr) return;
  if (!accumulate) std::fill(db, db + (j1 - j0), 0.0f);
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* row = dy + r * out + j0;
    for (std::int64_t j = 0; j < j1 - j0; ++j) db[j] += row[j];
  }
}

}  // namespace

void weight_grad_block(std::int64_t rows, std::int64_t in, std::int64_t out, const float* x,
                       const float* dy, std::int64_t j0, std::int64_t j1, float* dw, float* db,
                       bool accumulate, const Bf16GradOperands& bf16) {
  if (rows <= kLeafRows) {
    weight_grad_leaf(rows, 0, rows, in, out, x, dy, j0, j1, dw, db, accumulate, bf16);
    return;
  }
  // Leaf by leaf, added up the leaf tree (kernels/leaves.h), then into dw and db.
  const auto w = static_cast<std::size_t>((j1 - j0) * in);
  const std::size_t size = w + (db ? static_cast<std::size_t>(j1 - j0) : 0);
  thread_local std::vector<float> sum;
  sum.resize(size);
  sum_leaves<float>(static_cast<std::size_t>(rows), size, sum.data(),
                    [&](std::size_t r0, std::size_t r1, float* into) {
                      weight_grad_leaf(rows, static_cast<std::int64_t>(r0),
                                       static_cast<std::int64_t>(r1), in, out, x, dy, j0, j1, into,
                                       db ? into + w : nullptr, false, bf16);
                    });
  if (accumulate) {
    for (std::size_t i = 0; i < w; ++i) dw[i] += sum[i];
    if (db) {
      for (std::int64_t j = 0; j < j1 - j0; ++j) db[j] += sum[w + static_cast<std::size_t>(j)];
    }
  } else {
    std::copy(sum.begin(), sum.begin() + static_cast<std::ptrdiff_t>(w), dw);
    if (db) std::copy(sum.begin() + static_cast<std::ptrdiff_t>(w), sum.end(), db);
  }
}

void linear_backward_weights(parallel::ThreadPool& pool, std::int64_t rows, std::int64_t in,
                             std::int64_t out, const float* x, const float* dy, float* dw,
                             float* db, bool accumulate, Precision precision) {
  const Bf16GradOperands bf16 = round_grad_operands(pool, precision, rows, in, out, x, dy);
  parallel::parallel_for(pool, static_cast<std::size_t>(out), kBlock,
                         [&](std::size_t b, std::size_t e) {
                           for_grid_blocks(b, e, [&](std::int64_t j0, std::int64_t j1) {
                             weight_grad_block(rows, in, out, x, dy, j0, j1, dw + j0 * in,
                                               db ? db + j0 : nullptr, accumulate, bf16);
                           });
                         });
}

float* thread_scratch(std::size_t floats) {
  thread_local Tensor scratch;
  if (scratch.numel() < floats) scratch.resize(Shape{static_cast<std::int64_t>(floats)});
  return scratch.data();
}

void linear_backward_input(parallel::ThreadPool& pool, std::int64_t rows, std::int64_t in,
                           std::int64_t out, const float* dy, const float* w, float* dx,
                           Precision precision, const Bf16* w_rounded) {
  const Bf16 *dyb = nullptr, *wb = nullptr;
  if (precision == Precision::kBf16) {
    dyb = round_operand(pool, 0, dy, rows * out);
    wb = w_rounded ? w_rounded : round_operand(pool, 1, w, out * in);
  }
  parallel::parallel_for(
      pool, static_cast<std::size_t>(in), kBlock, [&](std::size_t b, std::size_t e) {
        for_grid_blocks(b, e, [&](std::int64_t i0, std::int64_t i1) {
          for_row_calls(rows, RowCalls::kLeaves, [&](std::int64_t r0, std::int64_t r1) {
            if (dyb) {
              gemm_bf16(false, r1 - r0, i1 - i0, out, dyb + r0 * out, out, wb + i0, in, false,
                        dx + r0 * in + i0, in);
              return;
            }
            sgemm(false, false, r1 - r0, i1 - i0, out, 1.0f, dy + r0 * out, out, w + i0, in, 0.0f,
                  dx + r0 * in + i0, in);
          });
        });
      });
}

}  // namespace dropkit::kernels
