#include "dropkit/kernels/gemm.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

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

void weight_grad_block(std::int64_t rows, std::int64_t in, std::int64_t out, const float* x,
                       const float* dy, std::int64_t j0, std::int64_t j1, float* dw, float* db,
                       bool accumulate) {
  sgemm(true, false, j1 - j0, in, rows, 1.0f, dy + j0, out, x, in, accumulate ? 1.0f : 0.0f, dw,
        in);
  if (db == nullptr) return;
  if (!accumulate) std::fill(db, db + (j1 - j0), 0.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = dy + r * out + j0;
    for (std::int64_t j = 0; j < j1 - j0; ++j) db[j] += row[j];
  }
}

void linear_backward_weights(parallel::ThreadPool& pool, std::int64_t rows, std::int64_t in,
                             std::int64_t out, const float* x, const float* dy, float* dw,
                             float* db, bool accumulate) {
  parallel::parallel_for(pool, static_cast<std::size_t>(out), kBlock,
                         [&](std::size_t b, std::size_t e) {
                           for_grid_blocks(b, e, [&](std::int64_t j0, std::int64_t j1) {
                             weight_grad_block(rows, in, out, x, dy, j0, j1, dw + j0 * in,
                                               db ? db + j0 : nullptr, accumulate);
                           });
                         });
}

float* thread_scratch(std::size_t floats) {
  thread_local Tensor scratch;
  if (scratch.numel() < floats) scratch.resize(Shape{static_cast<std::int64_t>(floats)});
  return scratch.data();
}

void linear_backward_input(parallel::ThreadPool& pool, std::int64_t rows, std::int64_t in,
                           std::int64_t out, const float* dy, const float* w, float* dx) {
  parallel::parallel_for(
      pool, static_cast<std::size_t>(in), kBlock, [&](std::size_t b, std::size_t e) {
        for_grid_blocks(b, e, [&](std::int64_t i0, std::int64_t i1) {
          sgemm(false, false, rows, i1 - i0, out, 1.0f, dy, out, w + i0, in, 0.0f, dx + i0, in);
        });
      });
}

}  // namespace dropkit::kernels
