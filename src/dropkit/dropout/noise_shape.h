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
// noise_shape(input, ...). x and y may alias. Threads take whole examples.
template <class Op>
void broadcast_noise(parallel::ThreadPool& pool, const Shape& input, const Shape& noise,
                     const float* x, const float* f, float* y, Op op);

}  // namespace dropkit::dropout

namespace dropkit::dropout::detail {

// Walks axis `axis` of one example: strides of the input (in) and the noise (nz) per axis.
template <class Op>
void broadcast_axis(const Shape& input, const Shape& noise, const std::vector<std::size_t>& in,
                    const std::vector<std::size_t>& nz, std::size_t axis, const float* x,
                    const float* f, float* y, Op& op) {
  const auto extent = static_cast<std::size_t>(input[axis]);
  const bool shared = noise[axis] == 1 && input[axis] != 1;
  if (axis + 1 == input.rank()) {
    if (shared) {
      const float v = *f;
      for (std::size_t i = 0; i < extent; ++i) y[i] = op(x[i], v);
    } else {
      for (std::size_t i = 0; i < extent; ++i) y[i] = op(x[i], f[i]);
    }
    return;
  }
  for (std::size_t i = 0; i < extent; ++i) {
    broadcast_axis(input, noise, in, nz, axis + 1, x + i * in[axis],
                   f + (shared ? 0 : i * nz[axis]), y + i * in[axis], op);
  }
}

std::vector<std::size_t> strides(const Shape& s);

}  // namespace dropkit::dropout::detail

namespace dropkit::dropout {

template <class Op>
void broadcast_noise(parallel::ThreadPool& pool, const Shape& input, const Shape& noise,
                     const float* x, const float* f, float* y, Op op) {
  if (input.rank() < 2 || input.numel() == 0) {
    for (std::size_t i = 0; i < input.numel(); ++i) y[i] = op(x[i], f[i]);
    return;
  }
  const auto in = detail::strides(input), nz = detail::strides(noise);
  const auto examples = static_cast<std::size_t>(input[0]);
  parallel::parallel_for(pool, examples, 1, [&](std::size_t n0, std::size_t n1) {
    Op local = op;
    for (std::size_t n = n0; n < n1; ++n) {
      detail::broadcast_axis(input, noise, in, nz, 1, x + n * in[0], f + n * nz[0], y + n * in[0],
                             local);
    }
  });
}

}  // namespace dropkit::dropout
