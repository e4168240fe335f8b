// NoiseLayer: what every member of the dropout family shares -- its random stream, an optional
// noise shape (dropout/noise_shape.h), and what a Train forward leaves for backward: the key of
// its draw, never the draw itself (backward recomputes it from the counters), except the small
// noise tensor of a shared noise shape.
//
// Modes (nn/layer.h): Train draws from (ctx.seed, stream_id, ctx.step), Sample from the
// sampling domain (ctx.seed, rng::sample_stream(stream_id), sample index), one sample per stacked
// block of rows; Eval draws nothing. Only Train allows backward.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dropkit/dropout/noise_shape.h"
#include "dropkit/nn/layer.h"
#include "dropkit/rng/philox.h"

namespace dropkit::dropout {

class NoiseLayer : public nn::Layer {
 public:
  bool stochastic() const override { return true; }
  Shape output_shape(const Shape& in) const override;  // checks the shared axes against `in`
  std::uint32_t stream_id() const { return stream_id_; }
  const std::vector<int>& shared_axes() const { return shared_axes_; }

 protected:
  NoiseLayer(std::uint32_t stream_id, std::vector<int> shared_axes)
      : stream_id_(stream_id), shared_axes_(std::move(shared_axes)) {}

  // Where a Train or Sample forward on x draws: its stream key (Context::noise_key: the sampling
  // domain in Mode::kSample), the stream index of its first draw (row_offset times the
  // per-example count of draws), and the shape drawn over (x's, or the noise shape when axes are
  // shared). In Mode::kSample the rows may be Context::samples stacked blocks, each its own
  // sample: each_block hands out their keys. Records it for backward in Mode::kTrain, forgets
  // any earlier one otherwise.
  struct Draw {
    rng::StreamKey key;  // block 0's
    std::uint64_t first = 0;
    Shape shape;          // the input's shape
    Shape noise;          // the shape drawn over (== shape unless axes are shared)
    bool shared = false;  // noise != shape
    std::uint64_t blocks = 1;
    bool shared_input = false;  // x is one block, read by every block of the output
    parallel::ThreadPool* pool = nullptr;
  };
  // The elements of x that output elements [begin, begin + count) (row-major in d.shape, inside
  // one block) are computed from: the same range, or its place in x's only block.
  static std::span<const float> input_of(const Draw& d, const Tensor& x, std::size_t begin,
                                         std::size_t count) {
    return x.span().subspan(d.shared_input ? begin % x.numel() : begin, count);
  }
  // y sized for the draw (d.shape); std::invalid_argument for a shared input in place.
  void resize_output(const Draw& d, const Tensor& x, Tensor& y) const;
  // y = op(x, noise) over the draw with the noise broadcast over shared axes (dropout/
  // noise_shape.h), one block at a time when the input is shared.
  template <class Op, class Run>
  static void broadcast(const Draw& d, const Tensor& x, const float* noise, float* y, Op op,
                        Run run) {
    if (!d.shared_input) {
      broadcast_noise(*d.pool, d.shape, d.noise, x.data(), noise, y, op, run);
      return;
    }
    const Shape block_noise = d.noise.example().with_batch(x.shape()[0]);
    for (std::uint64_t b = 0; b < d.blocks; ++b) {
      broadcast_noise(*d.pool, x.shape(), block_noise, x.data(), noise + b * block_noise.numel(),
                      y + b * x.numel(), op, run);
    }
  }
  // y = x, block by block (a layer whose noise changes nothing).
  static void copy_blocks(const Draw& d, const Tensor& x, Tensor& y);
  // Calls gen(pool, key, first, begin, count) once per block: the noise elements
  // [begin, begin + count) (row-major in d.noise) are draws first, first + 1, ... of stream
  // `key`, and gen runs its kernel on `pool`. One call in Train, on the draw's pool; stacked
  // samples run in parallel, one block per thread at a time on a serial pool (a block is often
  // below the kernels' threading cutoff). The bits do not depend on it.
  template <class Gen>
  static void each_block(const Draw& d, Gen&& gen) {
    const std::size_t per = d.noise.numel() / d.blocks;
    const auto one = [&](parallel::ThreadPool& pool, std::uint64_t b) {
      rng::StreamKey key = d.key;
      key.step += b;
      gen(pool, key, d.first, static_cast<std::size_t>(b) * per, per);
    };
    if (d.blocks == 1) {
      one(*d.pool, 0);
      return;
    }
    parallel::parallel_for(*d.pool, d.blocks, 1, [&](std::size_t b0, std::size_t b1) {
      for (std::size_t b = b0; b < b1; ++b) one(parallel::serial_pool(), b);
    });
  }
  const Draw& begin_draw(const Tensor& x, const nn::Context& ctx);
  void forget_draw() { has_draw_ = false; }
  // The recorded draw after checking dy against it (nn::check_backward).
  const Draw& saved_draw(const Tensor& dy) const;

  // The noise tensor of a shared draw, kept for backward (noise-shape elements only).
  Tensor noise_;

 private:
  std::uint32_t stream_id_;
  std::vector<int> shared_axes_;
  Draw draw_;
  bool has_draw_ = false;
};

}  // namespace dropkit::dropout
