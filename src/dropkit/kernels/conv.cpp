// Conv2d and MaxPool2d (kernels/conv.h): the primitives each makes per grid block size and
// precision, and the forward and backward passes that run them block by block. How a primitive
// is run, and moved between layouts, is kernels/onednn.h.
#include "dropkit/kernels/conv.h"

#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/leaves.h"
#include "dropkit/kernels/onednn.h"

namespace dropkit::kernels {
namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;
constexpr auto kBf16 = memory::data_type::bf16;
// Whether convolutions run in the layouts oneDNN chooses (true) or on our plain NCHW / OIHW.
constexpr bool kOwnLayouts = true;

}  // namespace

void for_example_blocks(parallel::ThreadPool& pool, std::int64_t n,
                        const std::function<void(std::int64_t, std::int64_t)>& fn) {
  parallel::parallel_for(pool, static_cast<std::size_t>(n), kExampleBlock,
                         [&](std::size_t b, std::size_t e) {
                           for (auto n0 = static_cast<std::int64_t>(b);
                                n0 < static_cast<std::int64_t>(e); n0 += kExampleBlock) {
                             fn(n0, std::min(n0 + kExampleBlock, static_cast<std::int64_t>(e)));
                           }
                         });
}

// ---------------------------------------------------------------------------------------------
// Convolution

struct Conv2d::Impl {
  ConvGeometry g;
  bool relu;

  // The primitives for one block size and precision; backward ones made on first use. The
  // operands (src, weights, and diff_dst in backward) are in the product format, everything
  // oneDNN writes (dst, diff_src, diff_weights, diff_bias) and the bias are fp32. The descs
  // below are the plain layouts our tensors have (NCHW, OIHW); the primitives choose their own
  // (format "any", kOwnLayouts) and each operand is moved between the two by a Relayout: bits
  // unchanged, only the order of the elements.
  struct Prims {
    memory::desc src, weights, bias, dst, diff_src, diff_weights, diff_dst;
    dnnl::convolution_forward::primitive_desc fwd_pd;
    dnnl::convolution_forward fwd;
    Relayout fwd_src, fwd_weights, fwd_dst;
    dnnl::convolution_backward_data::primitive_desc data_pd;
    dnnl::convolution_backward_data data;
    Relayout data_diff_dst, data_weights, data_diff_src;
    dnnl::convolution_backward_weights::primitive_desc weights_pd;
    dnnl::convolution_backward_weights weights_prim;
    Relayout wgt_src, wgt_diff_dst, wgt_diff_weights;
    bool backward_made = false;
  };
  std::map<std::pair<std::int64_t, Precision>, Prims> by_size;
  std::vector<float> partials;  // backward: one weight + bias gradient per grid block
  std::map<std::int64_t, std::vector<std::byte>> w_moved;  // per block size, its layout
  std::vector<Bf16> w_rounded_here;  // bf16 weights when the caller gave no rounding

  Dims strides() const { return {g.window.stride, g.window.stride}; }
  Dims padding() const { return {g.window.padding, g.window.padding}; }

  // The desc a primitive is asked for: "any" (it chooses the layout), or the plain one.
  static memory::desc chosen(const memory::desc& plain) {
    return kOwnLayouts ? memory::desc(plain.dims(), plain.data_type(), Tag::any) : plain;
  }

  dnnl::convolution_forward::desc forward_desc(const Prims& p) const {
    return {dnnl::prop_kind::forward_training,
            dnnl::algorithm::convolution_direct,
            chosen(p.src),
            chosen(p.weights),
            p.bias,
            chosen(p.dst),
            strides(),
            padding(),
            padding()};
  }

  // Made on the calling thread before any parallel region: the map is only read inside one.
  Prims& prims(std::int64_t n, Precision precision, bool backward) {
    // oneDNN fixes a primitive's thread count when it is made: one, like every call of ours.
    use_one_onednn_thread();
    auto it = by_size.find({n, precision});
    if (it == by_size.end()) {
      Prims p;  // inserted only once complete: a failure leaves no half-made entry
      const memory::data_type op = precision == Precision::kBf16 ? kBf16 : kF32;
      const Dims x_dims{n, g.channels, g.height, g.width},
          w_dims{g.out_channels, g.channels, g.window.size, g.window.size},
          y_dims{n, g.out_channels, g.out_height(), g.out_width()};
      p.src = memory::desc(x_dims, op, Tag::nchw);
      p.diff_src = memory::desc(x_dims, kF32, Tag::nchw);
      p.weights = memory::desc(w_dims, op, Tag::oihw);
      p.diff_weights = memory::desc(w_dims, kF32, Tag::oihw);
      p.bias = memory::desc({g.out_channels}, kF32, Tag::x);
      p.dst = memory::desc(y_dims, kF32, Tag::nchw);
      p.diff_dst = memory::desc(y_dims, op, Tag::nchw);
      dnnl::post_ops ops;
      if (relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      p.fwd_pd = dnnl::convolution_forward::primitive_desc(forward_desc(p), attr_with(ops), cpu());
      p.fwd = dnnl::convolution_forward(p.fwd_pd);
      p.fwd_src = Relayout(p.src, p.fwd_pd.src_desc());
      p.fwd_weights = Relayout(p.weights, p.fwd_pd.weights_desc());
      p.fwd_dst = Relayout(p.fwd_pd.dst_desc(), p.dst);
      it = by_size.emplace(std::pair{n, precision}, std::move(p)).first;
    }
    Prims& p = it->second;
    if (backward && !p.backward_made) {
      // The hint is the forward without post-ops: the ReLU's gradient is the layer's business.
      const dnnl::convolution_forward::primitive_desc hint(forward_desc(p), attr_with(), cpu());
      auto data_pd = dnnl::convolution_backward_data::primitive_desc(
          {dnnl::algorithm::convolution_direct, chosen(p.diff_src), chosen(p.weights),
           chosen(p.diff_dst), strides(), padding(), padding()},
          attr_with(), cpu(), hint);
      auto weights_pd = dnnl::convolution_backward_weights::primitive_desc(
          {dnnl::algorithm::convolution_direct, chosen(p.src), chosen(p.diff_weights), p.bias,
           chosen(p.diff_dst), strides(), padding(), padding()},
          attr_with(), cpu(), hint);
      dnnl::convolution_backward_data data(data_pd);
      dnnl::convolution_backward_weights weights_prim(weights_pd);
      Relayout data_diff_dst(p.diff_dst, data_pd.diff_dst_desc()),
          data_weights(p.weights, data_pd.weights_desc()),
          data_diff_src(data_pd.diff_src_desc(), p.diff_src), wgt_src(p.src, weights_pd.src_desc()),
          wgt_diff_dst(p.diff_dst, weights_pd.diff_dst_desc()),
          wgt_diff_weights(weights_pd.diff_weights_desc(), p.diff_weights);
      p.data_pd = std::move(data_pd);
      p.data = std::move(data);
      p.weights_pd = std::move(weights_pd);
      p.weights_prim = std::move(weights_prim);
      p.data_diff_dst = std::move(data_diff_dst);
      p.data_weights = std::move(data_weights);
      p.data_diff_src = std::move(data_diff_src);
      p.wgt_src = std::move(wgt_src);
      p.wgt_diff_dst = std::move(wgt_diff_dst);
      p.wgt_diff_weights = std::move(wgt_diff_weights);
      p.backward_made = true;
    }
    return p;
  }

  void prepare(std::int64_t n, Precision precision, bool backward) {
    for (std::int64_t size : block_sizes(n)) prims(size, precision, backward);
  }
  const Prims& made(std::int64_t size, Precision precision) const {
    return by_size.at({size, precision});
  }

  // The weights in the product format, as each block size's primitive reads them (`which`: its
  // Relayout from the plain weights): w itself, or w rounded (w_rounded, or rounded here into
  // w_rounded_here: not into a thread's bf16 slot, which the blocks use for their operands) and
  // moved into that primitive's layout. On the calling thread, before the blocks run.
  std::map<std::int64_t, const void*> weights_operands(parallel::ThreadPool& pool,
                                                       Precision precision, const float* w,
                                                       const Bf16* w_rounded, std::int64_t n,
                                                       Relayout Prims::*which) {
    const void* plain = w;
    if (precision == Precision::kBf16) {
      if (w_rounded == nullptr) {
        w_rounded = round_into(pool, w, static_cast<std::size_t>(g.weight_size()), w_rounded_here);
      }
      plain = w_rounded;
    }
    std::map<std::int64_t, const void*> operands;
    for (std::int64_t size : block_sizes(n)) {
      const Relayout& relayout = made(size, precision).*which;
      if (!relayout.needed) {
        operands[size] = plain;
        continue;
      }
      use_one_onednn_thread();
      auto& moved = w_moved[size];
      moved.resize(relayout.pd.dst_desc().get_size());
      relayout.run(plain, moved.data());
      operands[size] = moved.data();
    }
    return operands;
  }
};

namespace {

// n floats from x in the product format: x itself, or rounded into the calling thread's scratch
// slot (one grid block's operand, rounded by the thread that runs the block).
const void* block_operand(Precision precision, int slot, const float* x, std::int64_t n) {
  if (precision == Precision::kF32) return x;
  Bf16* out = bf16_scratch(slot, static_cast<std::size_t>(n));
  round_to_bf16(x, out, static_cast<std::size_t>(n));
  return out;
}

}  // namespace

Conv2d::Conv2d(ConvGeometry g, bool relu) : impl_(std::make_unique<Impl>()) {
  if (g.channels < 1 || g.height < 1 || g.width < 1 || g.out_channels < 1 || g.window.size < 1 ||
      g.window.stride < 1 || g.window.padding < 0 || g.out_height() < 1 || g.out_width() < 1) {
    throw std::invalid_argument(fmt::format(
        "conv2d: no output for input [{}, {}, {}] with kernel {}, stride {}, padding {}",
        g.channels, g.height, g.width, g.window.size, g.window.stride, g.window.padding));
  }
  impl_->g = g;
  impl_->relu = relu;
}

Conv2d::~Conv2d() = default;

void Conv2d::forward(parallel::ThreadPool& pool, std::int64_t n, const float* x, const float* w,
                     const float* b, float* y,
                     const std::function<void(std::int64_t, std::int64_t)>& epilogue,
                     Precision precision, const Bf16* w_rounded) {
  Impl& m = *impl_;
  m.prepare(n, precision, false);
  const ConvGeometry& g = m.g;
  const auto wo = m.weights_operands(pool, precision, w, w_rounded, n, &Impl::Prims::fwd_weights);
  for_example_blocks(pool, n, [&](std::int64_t n0, std::int64_t n1) {
    const Impl::Prims& p = m.made(n1 - n0, precision);
    const void* xo =
        p.fwd_src.in(block_operand(precision, 0, x + n0 * g.in_size(), (n1 - n0) * g.in_size()), 1);
    float* home = y + n0 * g.out_size();
    void* yo = p.fwd_dst.target(home, 2);
    execute(p.fwd, p.fwd_pd,
            {{DNNL_ARG_SRC, wrap(p.fwd_pd.src_desc(), xo)},
             {DNNL_ARG_WEIGHTS, wrap(p.fwd_pd.weights_desc(), wo.at(n1 - n0))},
             {DNNL_ARG_BIAS, wrap(p.bias, b)},
             {DNNL_ARG_DST, wrap(p.fwd_pd.dst_desc(), yo)}});
    p.fwd_dst.out(yo, home);
    if (epilogue) epilogue(n0, n1);
  });
}

void Conv2d::backward(parallel::ThreadPool& pool, std::int64_t n, const float* x, const float* dy,
                      const float* w, float* dx, float* dw, float* db, Precision precision,
                      const Bf16* w_rounded) {
  if (n == 0) return;
  Impl& m = *impl_;
  m.prepare(n, precision, true);
  const ConvGeometry& g = m.g;
  std::map<std::int64_t, const void*> wo;
  if (dx != nullptr) {
    wo = m.weights_operands(pool, precision, w, w_rounded, n, &Impl::Prims::data_weights);
  }
  const auto per_block = static_cast<std::size_t>(g.weight_size() + g.out_channels);
  const auto blocks = static_cast<std::size_t>((n + kExampleBlock - 1) / kExampleBlock);
  m.partials.resize(blocks * per_block);
  float* partials = m.partials.data();
  for_example_blocks(pool, n, [&](std::int64_t n0, std::int64_t n1) {
    const Impl::Prims& p = m.made(n1 - n0, precision);
    // Thread buffers: slot 1 x, then (if its layout differs) dy for the input gradient; slot 2
    // dy for the weight gradient; slot 3 the weight gradient, then the input gradient.
    const void* dy_plain =
        block_operand(precision, 1, dy + n0 * g.out_size(), (n1 - n0) * g.out_size());
    const void* dyo = p.wgt_diff_dst.in(dy_plain, 2);
    float* mine = partials + static_cast<std::size_t>(n0 / kExampleBlock) * per_block;
    const void* xo =
        p.wgt_src.in(block_operand(precision, 0, x + n0 * g.in_size(), (n1 - n0) * g.in_size()), 1);
    void* dwo = p.wgt_diff_weights.target(mine, 3);
    execute(p.weights_prim, p.weights_pd,
            {{DNNL_ARG_SRC, wrap(p.weights_pd.src_desc(), xo)},
             {DNNL_ARG_DIFF_DST, wrap(p.weights_pd.diff_dst_desc(), dyo)},
             {DNNL_ARG_DIFF_WEIGHTS, wrap(p.weights_pd.diff_weights_desc(), dwo)},
             {DNNL_ARG_DIFF_BIAS, wrap(p.bias, mine + g.weight_size())}});
    p.wgt_diff_weights.out(dwo, mine);
    if (dx == nullptr) return;
    // The two primitives want dy in the same layout (nChw16c here): then it is moved once.
    const void* dyo_data = p.data_pd.diff_dst_desc() == p.weights_pd.diff_dst_desc()
                               ? dyo
                               : p.data_diff_dst.in(dy_plain, 1);
    float* home = dx + n0 * g.in_size();
    void* dxo = p.data_diff_src.target(home, 3);
    execute(p.data, p.data_pd,
            {{DNNL_ARG_DIFF_DST, wrap(p.data_pd.diff_dst_desc(), dyo_data)},
             {DNNL_ARG_WEIGHTS, wrap(p.data_pd.weights_desc(), wo.at(n1 - n0))},
             {DNNL_ARG_DIFF_SRC, wrap(p.data_pd.diff_src_desc(), dxo)}});
    p.data_diff_src.out(dxo, home);
  });
  // The blocks' sums added in block order within each leaf, and the leaves up the leaf tree
  // (kernels/leaves.h): the same bits for any split of the blocks between threads, or of the
  // batch between processes.
  static_assert(kLeafRows % kExampleBlock == 0);
  const auto wsize = static_cast<std::size_t>(g.weight_size());
  const auto block = static_cast<std::size_t>(kExampleBlock);
  parallel::parallel_for(pool, per_block, 256, [&](std::size_t e0, std::size_t e1) {
    thread_local std::vector<float> sums;
    sums.resize(e1 - e0);
    sum_leaves<float>(static_cast<std::size_t>(n), e1 - e0, sums.data(),
                      [&](std::size_t r0, std::size_t r1, float* into) {
                        const std::size_t b0 = r0 / block, b1 = (r1 + block - 1) / block;
                        for (std::size_t e = e0; e < e1; ++e) {
                          float sum = partials[b0 * per_block + e];
                          for (std::size_t blk = b0 + 1; blk < b1; ++blk) {
                            sum += partials[blk * per_block + e];
                          }
                          into[e - e0] = sum;
                        }
                      });
    for (std::size_t e = e0; e < e1; ++e) {
      if (e < wsize) {
        dw[e] += sums[e - e0];
      } else {
        db[e - wsize] += sums[e - e0];
      }
    }
  });
}

std::string Conv2d::implementations(Precision precision) {
  const Impl::Prims& p = impl_->prims(kExampleBlock, precision, true);
  return fmt::format("forward {}, backward data {}, backward weights {}", p.fwd_pd.impl_info_str(),
                     p.data_pd.impl_info_str(), p.weights_pd.impl_info_str());
}

// ---------------------------------------------------------------------------------------------
// Max pooling

struct MaxPool2d::Impl {
  std::int64_t c, h, w;
  Window win;
  struct Prims {
    memory::desc src, dst;
    dnnl::pooling_forward::primitive_desc fwd_pd;
    dnnl::pooling_forward fwd;
    dnnl::pooling_backward::primitive_desc bwd_pd;
    dnnl::pooling_backward bwd;
    std::size_t workspace_bytes = 0;
  };
  std::map<std::int64_t, Prims> by_size;
  std::vector<std::byte> workspace;  // the winners of the last forward, per grid block
  std::size_t workspace_stride = 0;  // bytes per grid block

  Prims& prims(std::int64_t n) {
    use_one_onednn_thread();  // as for the convolution
    if (auto it = by_size.find(n); it != by_size.end()) return it->second;
    Prims p;  // inserted only once complete
    const Dims s{win.stride, win.stride}, k{win.size, win.size}, pad{win.padding, win.padding};
    p.src = memory::desc({n, c, h, w}, kF32, Tag::nchw);
    p.dst = memory::desc({n, c, win.out(h), win.out(w)}, kF32, Tag::nchw);
    p.fwd_pd = dnnl::pooling_forward::primitive_desc(
        {dnnl::prop_kind::forward_training, dnnl::algorithm::pooling_max, p.src, p.dst, s, k, pad,
         pad},
        attr_with(), cpu());
    p.fwd = dnnl::pooling_forward(p.fwd_pd);
    p.bwd_pd = dnnl::pooling_backward::primitive_desc(
        {dnnl::algorithm::pooling_max, p.src, p.dst, s, k, pad, pad}, attr_with(), cpu(), p.fwd_pd);
    p.bwd = dnnl::pooling_backward(p.bwd_pd);
    p.workspace_bytes = p.fwd_pd.workspace_desc().get_size();
    return by_size.emplace(n, std::move(p)).first->second;
  }
};

MaxPool2d::MaxPool2d(std::int64_t channels, std::int64_t height, std::int64_t width, Window window)
    : impl_(std::make_unique<Impl>()) {
  if (channels < 1 || height < 1 || width < 1 || window.size < 1 || window.stride < 1 ||
      window.padding < 0 || window.padding >= window.size || window.out(height) < 1 ||
      window.out(width) < 1) {
    throw std::invalid_argument(fmt::format(
        "max_pool2d: no output for input [{}, {}, {}] with size {}, stride {}, padding {} "
        "(padding must be below the size)",
        channels, height, width, window.size, window.stride, window.padding));
  }
  impl_->c = channels;
  impl_->h = height;
  impl_->w = width;
  impl_->win = window;
}

MaxPool2d::~MaxPool2d() = default;

void MaxPool2d::forward(parallel::ThreadPool& pool, std::int64_t n, const float* x, float* y) {
  Impl& m = *impl_;
  m.workspace_stride = 0;
  for (std::int64_t size : block_sizes(n))
    m.workspace_stride = std::max(m.workspace_stride, m.prims(size).workspace_bytes);
  const auto blocks = static_cast<std::size_t>((n + kExampleBlock - 1) / kExampleBlock);
  m.workspace.resize(blocks * m.workspace_stride);
  const std::int64_t in = m.c * m.h * m.w, out = m.c * m.win.out(m.h) * m.win.out(m.w);
  for_example_blocks(pool, n, [&](std::int64_t n0, std::int64_t n1) {
    const Impl::Prims& p = m.by_size.at(n1 - n0);
    std::byte* ws =
        m.workspace.data() + static_cast<std::size_t>(n0 / kExampleBlock) * m.workspace_stride;
    execute(p.fwd, p.fwd_pd,
            {{DNNL_ARG_SRC, wrap(p.src, x + n0 * in)},
             {DNNL_ARG_DST, wrap(p.dst, y + n0 * out)},
             {DNNL_ARG_WORKSPACE, wrap(p.fwd_pd.workspace_desc(), ws)}});
  });
}

void MaxPool2d::backward(parallel::ThreadPool& pool, std::int64_t n, const float* dy, float* dx) {
  Impl& m = *impl_;
  const std::int64_t in = m.c * m.h * m.w, out = m.c * m.win.out(m.h) * m.win.out(m.w);
  for_example_blocks(pool, n, [&](std::int64_t n0, std::int64_t n1) {
    const Impl::Prims& p = m.by_size.at(n1 - n0);
    const std::byte* ws =
        m.workspace.data() + static_cast<std::size_t>(n0 / kExampleBlock) * m.workspace_stride;
    execute(p.bwd, p.bwd_pd,
            {{DNNL_ARG_DIFF_DST, wrap(p.dst, dy + n0 * out)},
             {DNNL_ARG_DIFF_SRC, wrap(p.src, dx + n0 * in)},
             {DNNL_ARG_WORKSPACE, wrap(p.fwd_pd.workspace_desc(), ws)}});
  });
}

}  // namespace dropkit::kernels
