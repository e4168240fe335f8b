// Noise shapes: one noise value shared along some axes (Keras' `noise_shape`, TF's "only
// dimensions with noise_shape[i] == shape(x)[i] make independent decisions").
//
// `shared_axes` names axes of the input [N, d1, d2, ...] by index (1 = the first after the
// examples; axis 0 cannot be shared: examples never share noise). The noise shape is the input
// shape with those axes set to 1:
//   spatial / channel dropout (Tompson et al. 2015): input [N, C, H, W], shared_axes 2+3 ->
//     noise [N, C, 1, 1], one value per (example, channel);
//   locked / variational dropout over time (Gal & Ghahramani 2016): input [N, T, D],
//     shared_axes 1 -> noise [N, 1, D], one mask per sequence, the same at every step.
// The noise of element x[n, i1, i2, ...] is noise element [n, j1, j2, ...] with j_k = 0 on a
// shared axis and i_k otherwise; its random draw is keyed by that noise element's row-major index
// (plus row_offset times the noise's per-example size), so it stays a pure function of
// (seed, layer, step, index), the same at any thread count and batch split.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "dropkit/core/tensor.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::dropout {

// "2+3" -> {2, 3}; "" -> {} (no sharing). Axes are whole numbers >= 1, ascending, no repeats;
// std::invalid_argument quoting the text otherwise.
std::vector<int> parse_shared_axes(const std::string& text);
std::string shared_axes_text(const std::vector<int>& axes);  // {2, 3} -> "2+3"

// The input shape with the shared axes set to 1; std::invalid_argument if an axis is beyond the
// input's rank.
Shape noise_shape(const Shape& input, const std::vector<int>& shared_axes);

// y[i] = op(x[i], noise[j(i)]) for every element of x (shape `input`), noise of shape
// noise_shape(input, ...). x and y may alias. Threads take whole examples. Contiguous runs of
// elements that share one noise value go to run(x, y, f, runs, len, streaming) instead (run r
// covers x[r len, (r + 1) len) with the value f[r]), which must compute what op would on each
// element: the kernel table's run_scale and run_affine do, with streaming stores for outputs of
// 2^20 elements or more. Spatial dropout hands each thread's examples to one such call.
template <class Op, class Run>
void broadcast_noise(parallel::ThreadPool& pool, const Shape& input, const Shape& noise,
                     const float* x, const float* f, float* y, Op op, Run run);

}  // namespace dropkit::dropout

namespace dropkit::dropout::detail {

// The walk's plan: the axes after the examples, with neighbours that are both shared or both
// not merged into one (row-major makes them one contiguous run), so that spatial dropout's
// [N, C, H, W] walks as [N, C, H*W] with one value per run of H*W elements, not as runs of W.
struct Walk {
  std::vector<std::size_t> extent;  // per merged axis
  std::vector<bool> shared;         // one noise value along it
  std::vector<std::size_t> in_stride, noise_stride;
  std::size_t example_size = 0, noise_example_size = 0;
};
Walk plan_walk(const Shape& input, const Shape& noise);
void store_fence();  // the active ISA's (kernels/table.h)

template <class Op, class Run>
void walk_axis(const Walk& w, std::size_t axis, const float* x, const float* f, float* y, Op& op,
               Run& run, bool streaming) {
  const std::size_t extent = w.extent[axis];
  if (axis + 1 == w.extent.size()) {
    if (w.shared[axis]) {
      run(x, y, f, std::size_t{1}, extent, streaming);
    } else {
      for (std::size_t i = 0; i < extent; ++i) y[i] = op(x[i], f[i]);
    }
    return;
  }
  if (axis + 2 == w.extent.size() && !w.shared[axis] && w.shared[axis + 1]) {
    run(x, y, f, extent, w.extent[axis + 1], streaming);  // `extent` runs, one value each
    return;
  }
  for (std::size_t i = 0; i < extent; ++i) {
    walk_axis(w, axis + 1, x + i * w.in_stride[axis],
              f + (w.shared[axis] ? 0 : i * w.noise_stride[axis]), y + i * w.in_stride[axis], op,
              run, streaming);
  }
}

}  // namespace dropkit::dropout::detail

namespace dropkit::dropout {

template <class Op, class Run>
void broadcast_noise(parallel::ThreadPool& pool, const Shape& input, const Shape& noise,
                     const float* x, const float* f, float* y, Op op, Run run) {
  if (input.rank() < 2 || input.numel() == 0) {
    for (std::size_t i = 0; i < input.numel(); ++i) y[i] = op(x[i], f[i]);
    return;
  }
  const detail::Walk w = detail::plan_walk(input, noise);
  const auto examples = static_cast<std::size_t>(input[0]);
  // Streaming stores where a regular store would read each output line first for nothing: big
  // outputs that are not the input.
  const bool streaming = input.numel() >= (std::size_t{1} << 20) && x != y;
  parallel::parallel_for(pool, examples, 1, [&](std::size_t n0, std::size_t n1) {
    Op local = op;
    Run local_run = run;
    if (w.extent.size() == 2 && !w.shared[0] && w.shared[1]) {
      // [examples, R, L] with runs of L: the examples' runs are contiguous, one call for all.
      local_run(x + n0 * w.example_size, y + n0 * w.example_size, f + n0 * w.noise_example_size,
                (n1 - n0) * w.extent[0], w.extent[1], streaming);
      if (streaming) detail::store_fence();
      return;
    }
    for (std::size_t n = n0; n < n1; ++n) {
      detail::walk_axis(w, 0, x + n * w.example_size, f + n * w.noise_example_size,
                        y + n * w.example_size, local, local_run, streaming);
    }
    if (streaming) detail::store_fence();  // per thread: a fence orders this thread's stores
  });
}

}  // namespace dropkit::dropout
