// The dropout family as functions on arrays.
//
// dropout / dropout_backward / dropout_mask run the keep-mask kernels (dropout/mask.h) on the
// arrays' own memory: a C-contiguous float32 input is read in place, and `out` (which may be the
// input) is written in place. The layer's constants (scales, the keep threshold, the checks and
// their messages) come from a dropout::Dropout built for the call, so they are the layer's.
// noise() runs any layer of the family, built by the registry as layer `layer` of a model, on
// copies (Tensor owns its memory): the whole family, noise shapes included, with one binding.
#include <algorithm>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "common.h"
#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/options.h"
#include "dropkit/model/registry.h"
#include "dropkit/rng/streams.h"

namespace dropkit::python {
namespace {

nn::Mode parse_mode(const std::string& mode) {
  if (mode == "train") return nn::Mode::kTrain;
  if (mode == "eval") return nn::Mode::kEval;
  if (mode == "sample") return nn::Mode::kSample;
  throw std::invalid_argument(fmt::format("mode '{}' is not one of train, eval, sample", mode));
}

// Layer indices whose streams stay below the next stream domain (rng/streams.h).
std::size_t checked_layer(std::int64_t layer) {
  constexpr std::int64_t kLayers = rng::kInitStreamBase - rng::kDropoutStreamBase;
  if (layer < 0 || layer >= kLayers) {
    throw std::invalid_argument(fmt::format(
        "layer = {} is outside [0, {}] (the index of a layer in its model)", layer, kLayers - 1));
  }
  return static_cast<std::size_t>(layer);
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return {a.shape(), a.shape() + a.ndim()};
}

// The array written: `out` when given (float32, C-contiguous, writeable, x's shape; it may be x
// itself but must not overlap it otherwise), else a new one.
py::array_t<float> output_for(const FloatArray& x, const py::object& out) {
  if (out.is_none()) return py::array_t<float>(shape_of(x));
  if (!py::isinstance<py::array>(out)) throw py::type_error("out is not an array");
  auto o = py::reinterpret_borrow<py::array>(out);
  if (!o.dtype().is(py::dtype::of<float>()) || !(o.flags() & py::array::c_style) ||
      !o.writeable()) {
    throw py::type_error(
        fmt::format("out has dtype {}{}: it must be a writeable C-contiguous float32 array",
                    py::str(o.dtype()).cast<std::string>(),
                    (o.flags() & py::array::c_style) ? "" : " and is not C-contiguous"));
  }
  if (shape_of(o) != shape_of(x)) {
    throw std::invalid_argument(fmt::format("out has shape {}, the input {}",
                                            py::str(o.attr("shape")).cast<std::string>(),
                                            py::str(x.attr("shape")).cast<std::string>()));
  }
  const auto* xb = reinterpret_cast<const char*>(x.data());
  const auto* ob = static_cast<const char*>(o.data());
  const auto bytes = static_cast<std::size_t>(x.nbytes());
  if (xb != ob && xb < ob + bytes && ob < xb + bytes) {
    throw std::invalid_argument("out overlaps the input without being it");
  }
  return py::reinterpret_borrow<py::array_t<float>>(o);
}

struct Call {
  double p;
  std::uint64_t seed;
  std::size_t layer;
  std::uint64_t step;
  nn::Mode mode;
  dropout::Scaling scaling;
  int mask_bits;
  int threads;
  // The index of x's first row in the whole batch (nn::Context::row_offset): element i of x is
  // element row_offset * row + i of the stream, row = the elements per index of x's first axis.
  std::uint64_t row_offset = 0;
};

// y = the forward of layer `layer`'s dropout at (seed, step) in c.mode; for a backward, the
// train-mode mask applied to dy (the same operation, MaskStorage::kRecompute).
void run_dropout(const Call& c, const float* x, float* y, std::size_t n, std::size_t row) {
  const dropout::Dropout layer(c.p, c.scaling, dropout::MaskStorage::kRecompute,
                               dropout::layer_stream(c.layer), {}, c.mask_bits);
  const rng::KeepThreshold keep(layer.effective_drop_prob(), c.mask_bits);
  py::gil_scoped_release release;
  PoolLease lease(c.threads);
  auto& pool = lease.pool();
  const std::span<const float> in(x, n);
  const std::span<float> outs(y, n);
  if (c.mode == nn::Mode::kEval) {  // as Dropout::forward in eval mode
    if (keep.drops_all() && c.scaling == dropout::Scaling::kInference) {
      std::fill(outs.begin(), outs.end(), 0.0f);
    } else {
      dropout::scale_copy(pool, layer.eval_scale(), in, outs);
    }
    return;
  }
  nn::Context ctx{.mode = c.mode, .seed = c.seed, .step = c.step};
  dropout::apply_keep_mask(pool, ctx.noise_key(layer.stream_id()), c.row_offset * row, keep,
                           layer.train_scale(), in, outs);
}

py::array_t<float> dropout_fn(const py::handle& x, const Call& c, const py::object& out,
                              const char* what) {
  const FloatArray in = as_float32(x, what);
  py::array_t<float> y = output_for(in, out);
  const auto n = static_cast<std::size_t>(in.size());
  const std::size_t row =
      in.ndim() > 0 && in.shape(0) > 0 ? n / static_cast<std::size_t>(in.shape(0)) : n;
  run_dropout(c, in.data(), y.mutable_data(), n, row);
  return y;
}

Call make_call(double p, std::uint64_t seed, std::int64_t layer, std::uint64_t step,
               const std::string& mode, const std::string& scaling, int mask_bits, int threads,
               std::uint64_t row_offset = 0) {
  return {.p = dropout::checked_drop_prob(p),
          .seed = seed,
          .layer = checked_layer(layer),
          .step = step,
          .mode = parse_mode(mode),
          .scaling = dropout::parse_scaling(scaling),
          .mask_bits = mask_bits,
          .threads = checked_threads(threads),
          .row_offset = row_offset};
}

// Any layer of the dropout family, as layer `layer` of a model: forward in `mode`, and with dy
// given the backward of a train-mode forward; row_offset as for dropout (the rows' index in the
// whole batch, or in the data set when sampling). Copies in and out.
py::array_t<float> noise_fn(const std::string& kind, const py::handle& x, const py::dict& options,
                            std::uint64_t seed, std::int64_t layer, std::uint64_t step,
                            const std::string& mode, int threads, const py::object& dy,
                            std::uint64_t row_offset) {
  nlohmann::json config = {{"kind", kind}};
  for (const auto& [name, value] : options) {
    const auto key = name.cast<std::string>();
    config[key] = option_value(key, value);
  }
  const FloatArray in = as_float32(x, "x");
  const nn::Mode m = parse_mode(mode);
  checked_threads(threads);
  std::vector<std::int64_t> dims(in.shape(), in.shape() + in.ndim());
  if (dims.empty()) throw std::invalid_argument("x is a scalar: it needs an axis of examples");
  const Shape shape(dims);
  auto made = model::create_layer(config, shape, checked_layer(layer));
  if (!made->stochastic()) {
    throw std::invalid_argument(
        fmt::format("'{}' is not a layer of the dropout family", made->kind()));
  }
  FloatArray grad;
  const bool backward = !dy.is_none();
  if (backward) {
    if (m != nn::Mode::kTrain) throw std::invalid_argument("a backward needs mode 'train'");
    grad = as_float32(dy, "dy");
    if (shape_of(grad) != shape_of(in)) {
      throw std::invalid_argument("dy and x have different shapes");
    }
  }
  py::array_t<float> result(shape_of(in));
  {
    py::gil_scoped_release release;
    PoolLease lease(threads);
    Tensor tx(shape, std::span<const float>(in.data(), static_cast<std::size_t>(in.size())));
    Tensor ty;
    const nn::Context ctx{
        .mode = m, .seed = seed, .step = step, .row_offset = row_offset, .pool = &lease.pool()};
    made->forward(tx, ty, ctx);
    const Tensor* r = &ty;
    Tensor tdy, tdx;
    if (backward) {
      tdy =
          Tensor(shape, std::span<const float>(grad.data(), static_cast<std::size_t>(grad.size())));
      made->backward(tdy, tdx);
      r = &tdx;
    }
    std::memcpy(result.mutable_data(), r->data(), r->numel() * sizeof(float));
  }
  return result;
}

}  // namespace

void bind_dropout(py::module_& m) {
  using namespace pybind11::literals;
  m.def(
      "dropout",
      [](const py::handle& x, double p, std::uint64_t seed, std::int64_t layer, std::uint64_t step,
         const std::string& mode, const std::string& scaling, int mask_bits, int threads,
         const py::object& out, std::uint64_t row_offset) {
        return dropout_fn(
            x, make_call(p, seed, layer, step, mode, scaling, mask_bits, threads, row_offset), out,
            "x");
      },
      "x"_a, "p"_a, py::kw_only(), "seed"_a, "layer"_a = 0, "step"_a = 0, "mode"_a = "train",
      "scaling"_a = "inverted", "mask_bits"_a = 32, "threads"_a = 0, "out"_a = py::none(),
      "row_offset"_a = 0);
  m.def(
      "dropout_backward",
      [](const py::handle& dy, double p, std::uint64_t seed, std::int64_t layer, std::uint64_t step,
         const std::string& scaling, int mask_bits, int threads, const py::object& out,
         std::uint64_t row_offset) {
        return dropout_fn(
            dy, make_call(p, seed, layer, step, "train", scaling, mask_bits, threads, row_offset),
            out, "dy");
      },
      "dy"_a, "p"_a, py::kw_only(), "seed"_a, "layer"_a = 0, "step"_a = 0, "scaling"_a = "inverted",
      "mask_bits"_a = 32, "threads"_a = 0, "out"_a = py::none(), "row_offset"_a = 0);
  m.def(
      "dropout_mask",
      [](const std::vector<py::ssize_t>& shape, double p, std::uint64_t seed, std::int64_t layer,
         std::uint64_t step, const std::string& mode, int mask_bits, int threads) {
        Call c = make_call(p, seed, layer, step, mode, "inference", mask_bits, threads);
        if (c.mode == nn::Mode::kEval) throw std::invalid_argument("eval mode draws no mask");
        for (auto d : shape)
          if (d < 0) throw std::invalid_argument("a shape has no negative extents");
        py::array_t<float> ones(shape);
        std::fill(ones.mutable_data(), ones.mutable_data() + ones.size(), 1.0f);
        const auto n = static_cast<std::size_t>(ones.size());
        run_dropout(c, ones.data(), ones.mutable_data(), n, n);
        return py::array(ones.attr("astype")("bool"));
      },
      "shape"_a, "p"_a, py::kw_only(), "seed"_a, "layer"_a = 0, "step"_a = 0, "mode"_a = "train",
      "mask_bits"_a = 32, "threads"_a = 0);
  m.def("noise", &noise_fn, "kind"_a, "x"_a, "options"_a, py::kw_only(), "seed"_a, "layer"_a = 0,
        "step"_a = 0, "mode"_a = "train", "threads"_a = 0, "dy"_a = py::none(), "row_offset"_a = 0);
}

}  // namespace dropkit::python
