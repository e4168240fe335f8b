// 2-D convolution and max pooling: oneDNN primitives (NCHW), called single-threaded from inside
// our thread pool, as the matrix products are (kernels/gemm.h says why).
//
// Same bits for any thread count: oneDNN picks its kernel and blocking by shape, so no
// primitive's shape may depend on the thread count. Examples are cut on one fixed grid of
// kExampleBlock examples (the last block shorter); a thread runs one primitive per grid block of
// its range. Forward, backward-data and pooling are per example, so that is all they need. The
// weight gradient is a sum over examples: each grid block computes its own partial sum, and the
// partials are added in block order within each leaf of kernels/leaves.h, the leaves up the
// leaf tree, whatever thread (or process) computed them.
//
// Precision::kBf16 (`train --precision bf16`, as for the matrix products): the convolution's
// operands -- x and w forward, dy and w for the input gradient, x and dy for the weight
// gradient -- are rounded to bfloat16 (kernels/gemm.h: to_bf16) and oneDNN accumulates in fp32;
// outputs, gradients and the bias stay fp32. Each thread rounds the operand blocks of its own
// grid blocks, so the bits do not depend on the thread count either.
//
// Layouts: the primitives run in layouts oneDNN chooses (blocked, nChw16c: its direct AVX-512,
// AVX512-BF16 and AMX kernels; on our plain NCHW it falls back to im2col plus a GEMM, 1.7 times
// slower in fp32 and 3 times in bf16, docs/design.md). Each grid block's operands are moved in
// and its results moved out by the thread that runs it; the weights once per call. Moving
// changes no bit; only the kernels' summation order differs from the plain ones'. Pooling has
// no products and no precision.
//
// oneDNN is hidden here: only this file's sources include its headers (kernels/conv.cpp, and
// kernels/onednn.{h,cpp}, which runs the primitives).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "dropkit/kernels/precision.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::kernels {

// Examples per primitive call. 16 gives 8 blocks in a batch of 128 (enough for 8 threads) and
// costs nothing measurable against whole-batch calls on the training shapes (docs/design.md).
inline constexpr std::int64_t kExampleBlock = 16;

// Calls fn(n0, n1) on the pool's threads for the grid blocks [n0, n1) of [0, n) examples.
void for_example_blocks(parallel::ThreadPool& pool, std::int64_t n,
                        const std::function<void(std::int64_t, std::int64_t)>& fn);

// Square windows, the same stride and zero padding on every side of both spatial axes.
struct Window {
  std::int64_t size = 1, stride = 1, padding = 0;
  // Output extent for an input extent (floor mode: a window must fit, padding included);
  // 0 or less when none fits.
  std::int64_t out(std::int64_t in) const {
    const std::int64_t room = in + 2 * padding - size;
    return room < 0 ? 0 : room / stride + 1;  // (C++ division rounds -1 / 2 up to 0)
  }
};

// One example's geometry: [channels, height, width] in, [out_channels, out_h, out_w] out.
struct ConvGeometry {
  std::int64_t channels = 0, height = 0, width = 0, out_channels = 0;
  Window window;
  std::int64_t out_height() const { return window.out(height); }
  std::int64_t out_width() const { return window.out(width); }
  std::int64_t in_size() const { return channels * height * width; }
  std::int64_t out_size() const { return out_channels * out_height() * out_width(); }
  std::int64_t weight_size() const { return out_channels * channels * window.size * window.size; }
};

// Convolution y = x * w + b (cross-correlation, as every framework), w [out_channels, channels,
// k, k] (oihw), b [out_channels]; with relu, max(., 0) fused as a oneDNN post-op.
class Conv2d {
 public:
  Conv2d(ConvGeometry g, bool relu);
  ~Conv2d();
  Conv2d(const Conv2d&) = delete;
  Conv2d& operator=(const Conv2d&) = delete;

  // y [n, out] = conv(x [n, in]); then epilogue(n0, n1) on the thread that wrote examples
  // [n0, n1), while they are in cache (an activation oneDNN does not fuse). With kBf16,
  // w_rounded (if given) is w already rounded (round_to_bf16), so a layer rounds its weights
  // once for the forward and the input gradient.
  void forward(parallel::ThreadPool& pool, std::int64_t n, const float* x, const float* w,
               const float* b, float* y,
               const std::function<void(std::int64_t, std::int64_t)>& epilogue = {},
               Precision precision = Precision::kF32, const Bf16* w_rounded = nullptr);
  // For output gradient dy: dw += sum over examples of x (x) dy and db += sum of dy (partial
  // sums per grid block, added as the file's comment says), and, unless dx is null, dx = the
  // gradient of the input (overwritten; with kBf16, w_rounded as in forward). Both gradients of a
  // block come from one copy of its dy in the primitives' layout (and one rounding in bf16).
  void backward(parallel::ThreadPool& pool, std::int64_t n, const float* x, const float* dy,
                const float* w, float* dx, float* dw, float* db,
                Precision precision = Precision::kF32, const Bf16* w_rounded = nullptr);
  // oneDNN's name for the implementations it chose for a block of kExampleBlock examples
  // (forward, backward data, backward weights): for benchmarks and the design doc.
  std::string implementations(Precision precision = Precision::kF32);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Max pooling over windows of [channels, height, width] examples; backward routes each output
// gradient to the position that won (oneDNN keeps the winners in a workspace).
class MaxPool2d {
 public:
  MaxPool2d(std::int64_t channels, std::int64_t height, std::int64_t width, Window window);
  ~MaxPool2d();
  MaxPool2d(const MaxPool2d&) = delete;
  MaxPool2d& operator=(const MaxPool2d&) = delete;

  // y = max over each window; keeps the winners of these n examples for backward.
  void forward(parallel::ThreadPool& pool, std::int64_t n, const float* x, float* y);
  // dx (overwritten) from dy, for the examples of the last forward.
  void backward(parallel::ThreadPool& pool, std::int64_t n, const float* dy, float* dx);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dropkit::kernels
