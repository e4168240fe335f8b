// Matrix products: oneDNN's sgemm, called single-threaded from inside our thread pool.
//
// Why oneDNN: measured on this machine (bench/gemm_bench.cpp, docs/design.md) it runs the
// training shapes at 130-165 GFLOP/s per core against OpenBLAS 0.3.21's 32.
// Why single-threaded calls: oneDNN's OpenMP team and our pool would spin against each other
// on two cores. Each pool thread takes a static range of the big matrix (W or dW).
//
// Same bits for any thread count: sgemm's summation order may depend on the shape it is given
// (oneDNN picks kernels and blockings by shape), so no call's shape may depend on how many
// threads share the work. Every product is cut on one fixed grid of kBlock columns (rows of W
// or dW) that depends only on the problem; a thread runs one sgemm per grid block of its range.
// Same bits for any split of the batch between processes: the rows are cut on the leaves of
// kernels/leaves.h, one call per leaf, and sums over rows go up the leaf tree.
//
// Precision::kBf16 (opt-in, `train --precision bf16`): the same products with both operands
// rounded to bfloat16 (round to nearest even) and fp32 accumulation and output, through
// oneDNN's matmul (AVX512-BF16 or AMX where the machine has them). Weights, gradients and the
// optimizer state stay fp32; only the products' inputs are rounded, once per product call on
// the calling thread, and the grid is the same, so the bits still do not depend on the thread
// count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dropkit/kernels/leaves.h"
#include "dropkit/kernels/precision.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::kernels {

// x rounded to the nearest bfloat16, ties to even; NaN stays a (quiet) NaN, infinities stay.
inline Bf16 to_bf16(float x) {
  std::uint32_t u;
  __builtin_memcpy(&u, &x, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<Bf16>((u >> 16) | 0x40);  // NaN
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<Bf16>(u >> 16);
}
inline float from_bf16(Bf16 b) {
  const std::uint32_t u = std::uint32_t{b} << 16;
  float x;
  __builtin_memcpy(&x, &u, 4);
  return x;
}

// Whether oneDNN offers bf16 products on this machine at all: every implementation it has, the
// reference one included, needs AVX-512 (an AVX2-only CPU has none). Precision::kBf16 is
// refused where it is false (check_precision_available).
bool bf16_products_available();
// Whether oneDNN runs bf16 products on this machine with native bf16 instructions (otherwise
// its reference implementation, correct but many times slower than fp32, or none), and its
// name for the implementation it picked for a training-sized product ("none" where
// unavailable).
bool bf16_products_native();
std::string bf16_products_implementation();
// std::invalid_argument naming the precision and the reason unless this machine can run
// products in it.
void check_precision_available(Precision precision);

// C[m,n] = op(A) op(B) (+ C when accumulate), row-major bf16 operands, fp32 C, on the calling
// thread only. A is [m, k] with leading dimension lda; B is [k, n] (ldb), or with trans_b
// [n, k] (ldb) used transposed.
void gemm_bf16(bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, const Bf16* a,
               std::int64_t lda, const Bf16* b, std::int64_t ldb, bool accumulate, float* c,
               std::int64_t ldc);

// y[i] = to_bf16(x[i]) for n elements, split over the pool; or on the calling thread only.
void round_to_bf16(parallel::ThreadPool& pool, const float* x, Bf16* y, std::size_t n);
void round_to_bf16(const float* x, Bf16* y, std::size_t n);
// x (n elements) rounded into `out`, resized to n, split over the pool; returns out.data(). For
// a layer that keeps its weights' rounding for a second product.
const Bf16* round_into(parallel::ThreadPool& pool, const float* x, std::size_t n,
                       std::vector<Bf16>& out);

// The calling thread's bf16 buffers, reused from call to call (slot 0 or 1), each at least
// `elements` long: a product's two rounded operands.
Bf16* bf16_scratch(int slot, std::size_t elements);

// Makes oneDNN calls from this thread run on this thread only (a thread-local OpenMP setting);
// every oneDNN call of the library goes through it. Cheap after a thread's first call.
void use_one_onednn_thread();

// C[m,n] = alpha * op(A) op(B) + beta * C, row-major, on the calling thread only.
void sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
           const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
           std::int64_t ldc);

// The grid every product is cut on: blocks of 128 columns (or rows of W / dW), the last one
// shorter. Measured on the default network (2 threads, bench train): 128 runs the products as
// fast as one call per thread did (194-195 GFLOP/s), 64 cost 20 % (oneDNN packs x once per
// call). The price: a 1024-wide layer has 8 blocks, so at most 8 threads share one product.
inline constexpr std::int64_t kBlock = 128;

// x (n elements) rounded into the calling thread's scratch slot.
inline const Bf16* round_operand(parallel::ThreadPool& pool, int slot, const float* x,
                                 std::int64_t n) {
  Bf16* out = bf16_scratch(slot, static_cast<std::size_t>(n));
  round_to_bf16(pool, x, out, static_cast<std::size_t>(n));
  return out;
}

// A weight gradient's operands rounded once per product call with Precision::kBf16: dy
// transposed, [out, rows], and x, [rows, in]; with kF32, nothing (both null).
struct Bf16GradOperands {
  const Bf16* dy_t = nullptr;
  const Bf16* x = nullptr;
};
Bf16GradOperands round_grad_operands(parallel::ThreadPool& pool, Precision precision,
                                     std::int64_t rows, std::int64_t in, std::int64_t out,
                                     const float* x, const float* dy);

// Calls fn(j0, j1) for the grid blocks [j0, j1) of [b, e) (b a multiple of kBlock).
template <class Fn>
void for_grid_blocks(std::size_t b, std::size_t e, Fn&& fn) {
  for (auto j0 = static_cast<std::int64_t>(b); j0 < static_cast<std::int64_t>(e); j0 += kBlock) {
    fn(j0, std::min(j0 + kBlock, static_cast<std::int64_t>(e)));
  }
}

// Calls fn(r0, r1) for the row ranges [r0, r1) of `rows` rows, one range per call.
template <class Fn>
void for_row_calls(std::int64_t rows, RowCalls calls, Fn&& fn) {
  if (calls == RowCalls::kWhole) {
    fn(std::int64_t{0}, rows);
    return;
  }
  for (std::int64_t r0 = 0; r0 < rows; r0 += kLeafRows) fn(r0, std::min(rows, r0 + kLeafRows));
}

// Shapes: x [rows, in], w [out, in], y [rows, out].
// `calls`: RowCalls::kLeaves in training (see RowCalls).
// With Precision::kBf16, w_rounded (if given) is w already rounded (round_to_bf16), so a layer
// that needs it for the input gradient too rounds it once per step.
// y = x w^T, threads split the columns of y (the rows of w) on the grid; then
// epilogue(col_begin, col_end) runs on the same thread while its block is in cache.
template <class Epilogue>
void linear_forward(parallel::ThreadPool& pool, std::int64_t rows, std::int64_t in,
                    std::int64_t out, const float* x, const float* w, float* y, Epilogue&& epilogue,
                    Precision precision = Precision::kF32, const Bf16* w_rounded = nullptr,
                    RowCalls calls = RowCalls::kWhole) {
  const Bf16 *xb = nullptr, *wb = nullptr;
  if (precision == Precision::kBf16) {
    xb = round_operand(pool, 0, x, rows * in);
    wb = w_rounded ? w_rounded : round_operand(pool, 1, w, out * in);
  }
  parallel::parallel_for(pool, static_cast<std::size_t>(out), kBlock,
                         [&](std::size_t b, std::size_t e) {
                           for_grid_blocks(b, e, [&](std::int64_t j0, std::int64_t j1) {
                             for_row_calls(rows, calls, [&](std::int64_t r0, std::int64_t r1) {
                               if (xb) {
                                 gemm_bf16(true, r1 - r0, j1 - j0, in, xb + r0 * in, in,
                                           wb + j0 * in, in, false, y + r0 * out + j0, out);
                               } else {
                                 sgemm(false, true, r1 - r0, j1 - j0, in, 1.0f, x + r0 * in, in,
                                       w + j0 * in, in, 0.0f, y + r0 * out + j0, out);
                               }
                             });
                           });
                           epilogue(static_cast<std::int64_t>(b), static_cast<std::int64_t>(e));
                         });
}

// One block of a linear layer's weight gradient, on the calling thread: rows [j0, j1) of
// dy^T x into dw (leading dimension in), and when db is not null the same columns' sums of dy
// (rows summed in order within a leaf) into db. accumulate: dw += ..., db += ...; otherwise dw =
// ..., db = .... Each element is one sgemm dot product over each leaf of the batch, the leaves
// added up the leaf tree (kernels/leaves.h), so the bits do not depend on [j0, j1). With bf16
// operands given (Precision::kBf16), the product runs on them; db stays an fp32 sum.
void weight_grad_block(std::int64_t rows, std::int64_t in, std::int64_t out, const float* x,
                       const float* dy, std::int64_t j0, std::int64_t j1, float* dw, float* db,
                       bool accumulate, const Bf16GradOperands& bf16 = {});

// dw [out, in] += dy^T x, threads split the rows of dw; db [out] += column sums of dy (summed
// as weight_grad_block does, so the result does not depend on the split either). With accumulate
// false, dw = ... and db = ... instead.
void linear_backward_weights(parallel::ThreadPool& pool, std::int64_t rows, std::int64_t in,
                             std::int64_t out, const float* x, const float* dy, float* dw,
                             float* db, bool accumulate = true,
                             Precision precision = Precision::kF32);

// Rows of the weight gradient per block of linear_weight_grads: 128 x 1024 floats is 512 KiB,
// which stays in a 2 MiB L2 between the product that writes it and the consumer that reads it.
inline constexpr std::int64_t kGradBlockRows = 128;

// This thread's scratch buffer of at least `floats` floats, reused from call to call.
float* thread_scratch(std::size_t floats);

// The weight gradient handed out instead of stored: threads split the rows of dW as
// linear_backward_weights does, and compute them kGradBlockRows at a time into a per-thread
// scratch; consume(j0, j1, dw, db) then gets rows [j0, j1) of dW = dy^T x (dw, [j1 - j0, in])
// and db = their column sums of dy (nullptr unless with_bias) while they are in cache.
// The same bits as linear_backward_weights into zeroed buffers, for any thread count.
template <class Consume>
void linear_weight_grads(parallel::ThreadPool& pool, std::int64_t rows, std::int64_t in,
                         std::int64_t out, const float* x, const float* dy, bool with_bias,
                         Consume&& consume, Precision precision = Precision::kF32) {
  static_assert(kGradBlockRows % kBlock == 0);
  const Bf16GradOperands bf16 = round_grad_operands(pool, precision, rows, in, out, x, dy);
  parallel::parallel_for(
      pool, static_cast<std::size_t>(out), kBlock, [&](std::size_t b, std::size_t e) {
        const std::int64_t block = std::min<std::int64_t>(kGradBlockRows, out);
        float* dw = thread_scratch(static_cast<std::size_t>(block * (in + 1)));
        float* db = with_bias ? dw + block * in : nullptr;
        for (auto j0 = static_cast<std::int64_t>(b); j0 < static_cast<std::int64_t>(e);
             j0 += block) {
          const std::int64_t j1 = std::min(j0 + block, static_cast<std::int64_t>(e));
          // One sgemm per grid block inside the scratch block: shapes fixed by the problem.
          for_grid_blocks(static_cast<std::size_t>(j0), static_cast<std::size_t>(j1),
                          [&](std::int64_t g0, std::int64_t g1) {
                            weight_grad_block(rows, in, out, x, dy, g0, g1, dw + (g0 - j0) * in,
                                              db ? db + (g0 - j0) : nullptr, false, bf16);
                          });
          consume(j0, j1, static_cast<const float*>(dw), static_cast<const float*>(db));
        }
      });
}

// dx [rows, in] = dy w, threads split the columns of dx (the columns of w); one call per leaf of
// rows (a backward is training: RowCalls::kLeaves).
void linear_backward_input(parallel::ThreadPool& pool, std::int64_t rows, std::int64_t in,
                           std::int64_t out, const float* dy, const float* w, float* dx,
                           Precision precision = Precision::kF32, const Bf16* w_rounded = nullptr);

}  // namespace dropkit::kernels
