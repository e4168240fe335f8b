// `dropkit bench train`: one training step of a network (the default one, or --net) against its
// own matrix products and convolutions, all measured in one run, interleaved round by round so that
// drift in the machine's speed hits every variant alike. Reported: medians of the times, and the
// two ratios of the step's cost (step with dropout / products alone, step with dropout / step
// without dropout) as medians of per-round ratios.
#include "bench_train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dropkit/dropout/dropconnect.h"
#include "dropkit/dropout/dropout.h"
#include "dropkit/kernels/conv.h"
#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/table.h"
#include "dropkit/model/model.h"
#include "dropkit/model/spec.h"
#include "dropkit/nn/conv.h"
#include "dropkit/nn/linear.h"
#include "dropkit/train/trainer.h"
#include "flags.h"
#include "measure.h"
#include "progress.h"

namespace dropkit::cli {

void add_bench_train_options(CLI::App& app, BenchTrainOptions& o) {
  using train::TrainConfig;
  add_option_flag(app, TrainConfig::field("arch").option, o.arch);
  add_option_flag(app, TrainConfig::field("net").option, o.net);
  add_option_flag(app, TrainConfig::field("batch").option, o.batch);
  add_option_flag(app, TrainConfig::field("precision").option, o.precision);
  add_number_flag(app, "steps", o.steps, "timed rounds", 3, 100000);
}

namespace {

// One network to time a step of: the model, its optimizer, its logits' gradient.
struct Variant {
  std::unique_ptr<model::Model> net;
  std::unique_ptr<train::Optimizer> opt;
  Tensor dlogits;
};

Variant make_variant(const nlohmann::json& layers, const Shape& input) {
  Variant v{std::make_unique<model::Model>(layers, input), nullptr, {}};
  v.net->init_params(1);
  train::OptimizerConfig oc;
  oc.lr = 0.01;  // small: the weights must stay sane over the timed steps
  oc.max_norm = 3.0;
  v.opt = std::make_unique<train::Optimizer>(oc, v.net->params().size());
  return v;
}

// The layer list without noise: stochastic layers left out, and a DropConnect layer replaced by
// the dense layer it masks.
nlohmann::json without_noise(const model::Model& net) {
  nlohmann::json deterministic = nlohmann::json::array();
  for (std::size_t i = 0; i < net.size(); ++i) {
    const auto& value = net.layers()[i];
    if (value["kind"] == dropout::DropConnect::kKind) {
      deterministic.push_back({{"kind", nn::Linear::kKind},
                               {"units", value["units"]},
                               {"activation", value["activation"]}});
    } else if (!net.layer(i).stochastic()) {
      deterministic.push_back(value);
    }
  }
  return deterministic;
}

// The products of one step alone, on buffers of the same shapes: forward y = x W^T per dense
// layer, backward dW = dy^T x per layer and dx = dy W for every layer but the first; and each
// conv2d layer's oneDNN primitives (ReLU fused where the layer fuses it): forward, weight
// gradient, and the input gradient for every convolution but the first layer. dW is computed two
// ways, and the faster one is the reference (a slow reference would flatter the ratio): into a
// full buffer, as a plain training loop would store it, and block by block into an L2-resident
// scratch, as the fused update does (kernels::linear_weight_grads).
class ProductsAlone {
 public:
  ProductsAlone(const model::Model& net, std::int64_t batch, kernels::Precision precision,
                parallel::ThreadPool& pool)
      : b_(batch), precision_(precision), pool_(pool) {
    for (std::size_t i = 0; i < net.size(); ++i) {
      const nn::Layer& layer = net.layer(i);
      if (const auto* conv = dynamic_cast<const nn::Conv2d*>(&layer)) add_conv(*conv);
      if (dynamic_cast<const nn::Linear*>(&layer) == nullptr) continue;  // dense, dropconnect
      // The first layer with parameters needs no input gradient (Sequential::build spares it).
      if (dense_.empty()) dense_first_ = !layer.needs_input_grad();
      const Shape in = net.layer_input_shape(i, b_);
      add_dense(static_cast<std::int64_t>(in.row_size()), layer.output_shape(in)[1]);
    }
    first_dx_ = Tensor(Shape{b_, dense_.empty() ? 1 : dense_.front().in});
  }

  void run(bool blocked_dw) {
    run_convs();
    for (auto& d : dense_) {
      kernels::linear_forward(
          pool_, b_, d.in, d.out, d.act.data(), d.w.data(), d.y.data(),
          [](std::int64_t, std::int64_t) {}, precision_, nullptr, kernels::RowCalls::kLeaves);
    }
    for (std::size_t l = dense_.size(); l-- > 0;) {
      auto& d = dense_[l];
      if (l > 0 || !dense_first_)  // [b, in] is the dy of the layer before
        kernels::linear_backward_input(pool_, b_, d.in, d.out, d.dact.data(), d.w.data(),
                                       l > 0 ? dense_[l - 1].dact.data() : first_dx_.data(),
                                       precision_);
      if (blocked_dw) {
        kernels::linear_weight_grads(
            pool_, b_, d.in, d.out, d.act.data(), d.dact.data(), false,
            [](std::int64_t, std::int64_t, const float*, const float*) {}, precision_);
      } else {
        kernels::linear_backward_weights(pool_, b_, d.in, d.out, d.act.data(), d.dact.data(),
                                         d.dw.data(), nullptr, false, precision_);
      }
    }
  }

  double flops() const {
    double f = 0;
    for (std::size_t l = 0; l < dense_.size(); ++l) {
      f += 2.0 * static_cast<double>(b_ * dense_[l].in * dense_[l].out) *
           (l > 0 || !dense_first_ ? 3 : 2);
    }
    for (const auto& c : convs_) {
      f += 2.0 * static_cast<double>(b_ * c.g.out_height() * c.g.out_width() * c.g.weight_size()) *
           (c.first ? 2 : 3);
    }
    return f;
  }
  std::size_t dense_layers() const { return dense_.size(); }
  std::size_t conv_layers() const { return convs_.size(); }
  // The weights' shapes, for the update measured alone.
  std::vector<Shape> weight_shapes() const {
    std::vector<Shape> shapes;
    for (const auto& d : dense_) shapes.push_back(d.w.shape());
    return shapes;
  }

 private:
  struct Dense {
    std::int64_t in, out;
    Tensor act, dact, w, dw, y;
  };
  struct Conv {
    std::unique_ptr<kernels::Conv2d> conv;
    kernels::ConvGeometry g;
    bool first;
    Tensor x, y, dy, dx, w, bias, dw, db;
  };

  void add_dense(std::int64_t in, std::int64_t out) {
    Dense d{in,
            out,
            Tensor(Shape{b_, in}),
            Tensor(Shape{b_, out}),
            Tensor(Shape{out, in}),
            Tensor(Shape{out, in}),
            Tensor(Shape{b_, out})};
    kernels::active_kernels().fill_normal({3, 3, 3}, 0, d.act.data(), d.act.numel());
    dense_.push_back(std::move(d));
  }
  void add_conv(const nn::Conv2d& layer) {
    const kernels::ConvGeometry& g = layer.geometry();
    Conv c{std::make_unique<kernels::Conv2d>(g, layer.config()["activation"] == "relu"),
           g,
           !layer.needs_input_grad(),
           Tensor(Shape{b_, g.in_size()}),
           Tensor(Shape{b_, g.out_size()}),
           Tensor(Shape{b_, g.out_size()}),
           Tensor(Shape{b_, g.in_size()}),
           Tensor(Shape{g.weight_size()}),
           Tensor(Shape{g.out_channels}),
           Tensor(Shape{g.weight_size()}),
           Tensor(Shape{g.out_channels})};
    kernels::active_kernels().fill_normal({4, 4, 4}, 0, c.x.data(), c.x.numel());
    kernels::active_kernels().fill_normal({5, 5, 5}, 0, c.dy.data(), c.dy.numel());
    kernels::active_kernels().fill_normal({6, 6, 6}, 0, c.w.data(), c.w.numel());
    convs_.push_back(std::move(c));
  }
  void run_convs() {
    for (auto& c : convs_) {
      c.conv->forward(
          pool_, b_, c.x.data(), c.w.data(), c.bias.data(), c.y.data(),
          [](std::int64_t, std::int64_t) {}, precision_);
    }
    for (std::size_t l = convs_.size(); l-- > 0;) {
      auto& c = convs_[l];
      c.conv->backward(pool_, b_, c.x.data(), c.dy.data(), c.w.data(),
                       c.first ? nullptr : c.dx.data(), c.dw.data(), c.db.data(), precision_);
    }
  }

  std::int64_t b_;
  kernels::Precision precision_;
  parallel::ThreadPool& pool_;
  std::vector<Dense> dense_;
  bool dense_first_ = true;  // the first dense layer is the first layer with parameters
  Tensor first_dx_;
  std::vector<Conv> convs_;
};

// The update alone: the optimizer's SGD kernel over every weight and velocity with a zero
// gradient that stays in L1, so what it measures is the weights and velocities read and written
// once, with the kernel's software prefetch (a bare loop without it measured slower than the
// real update). A cost the step pays outside its products however it is arranged.
class UpdateAlone {
 public:
  UpdateAlone(const std::vector<Shape>& weight_shapes, parallel::ThreadPool& pool)
      : pool_(pool), zero_grad_(kChunk, 0.0f) {
    for (const auto& s : weight_shapes) {
      weights_.emplace_back(s);
      velocities_.emplace_back(s);
    }
  }
  void run() {
    const auto& k = kernels::active_kernels();
    for (std::size_t l = 0; l < weights_.size(); ++l) {
      float* w = weights_[l].data();
      float* v = velocities_[l].data();
      parallel::parallel_for(pool_, weights_[l].numel(), kChunk,
                             [&](std::size_t i0, std::size_t i1) {
                               for (std::size_t i = i0; i < i1; i += kChunk) {
                                 k.sgd_update(w + i, zero_grad_.data(), v + i,
                                              std::min(kChunk, i1 - i), {0.5f, 0.01f, 0.0f, false});
                               }
                             });
    }
  }

 private:
  static constexpr std::size_t kChunk = 1024;
  parallel::ThreadPool& pool_;
  std::vector<Tensor> weights_, velocities_;
  std::vector<float> zero_grad_;
};

// The masks alone: the stochastic layers of the step itself, forward on inputs of their shapes
// (so they store bits exactly where the step does), Philox4x32-10 and a compare per element.
class MasksAlone {
 public:
  MasksAlone(model::Model& net, std::int64_t batch, parallel::ThreadPool& pool) : pool_(pool) {
    for (std::size_t i = 0; i < net.size(); ++i) {
      nn::Layer& layer = net.layer(i);
      if (!layer.stochastic()) continue;
      layers_.push_back({&layer, Tensor(net.layer_input_shape(i, batch)), Tensor()});
      kernels::active_kernels().fill_normal({2, 2, 2}, 0, layers_.back().in.data(),
                                            layers_.back().in.numel());
    }
  }
  void run(std::uint64_t step) {
    const nn::Context ctx{.mode = nn::Mode::kTrain, .seed = 1, .step = step, .pool = &pool_};
    for (auto& m : layers_) m.layer->forward(m.in, m.out, ctx);
  }

 private:
  struct Layer {
    nn::Layer* layer;
    Tensor in, out;
  };
  parallel::ThreadPool& pool_;
  std::vector<Layer> layers_;
};

// The training set the epoch estimate is for (Fashion-MNIST's, validation held out), which
// also scales the loss terms on parameters alone (concrete dropout's regularizer).
constexpr std::size_t kEpochExamples = 55000;

// What one run measured: every figure the report prints.
struct Result {
  std::string net;
  double products, products_full_dw, products_blocked_dw, flops;
  double step_dropout, step_no_dropout, over_products, over_no_dropout, update, masks;
  std::size_t dense_layers, conv_layers;
  double parts() const { return (products + update + masks) / products; }
  double epoch_estimate(std::int64_t batch) const {
    return std::ceil(static_cast<double>(kEpochExamples) / static_cast<double>(batch)) *
           step_dropout;
  }
};

void report(const Result& r, const BenchTrainOptions& o, int threads, bool json) {
  if (json) {
    nlohmann::json j = machine_json();
    j.update(nlohmann::json{{"net", r.net},
                            {"batch", o.batch},
                            {"threads", threads},
                            {"precision", o.precision},
                            {"dense_layers", r.dense_layers},
                            {"conv_layers", r.conv_layers},
                            {"products_seconds", r.products},
                            {"products_full_dw_seconds", r.products_full_dw},
                            {"products_blocked_dw_seconds", r.products_blocked_dw},
                            {"products_gflops", r.flops / r.products / 1e9},
                            {"step_dropout_seconds", r.step_dropout},
                            {"step_no_dropout_seconds", r.step_no_dropout},
                            {"dropout_over_products", r.over_products},
                            {"dropout_over_no_dropout", r.over_no_dropout},
                            {"update_alone_seconds", r.update},
                            {"masks_seconds", r.masks},
                            {"products_update_masks_over_products", r.parts()},
                            {"epoch_seconds_estimate", r.epoch_estimate(o.batch)}});
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("bench train: {} batch {}, {} threads, {} kernels, {} products, median of {} rounds\n",
             r.net, o.batch, threads, kernels::active_kernels().name, o.precision, o.steps);
  if (o.precision == "bf16" && !kernels::bf16_products_native()) {
    fmt::print("  (oneDNN has no native bf16 products on this CPU: {})\n",
               kernels::bf16_products_implementation());
  }
  fmt::print(
      "  products alone             {:8.3f} ms  ({:.0f} GFLOP/s; dW stored {:.3f} ms, "
      "dW blocked {:.3f} ms)\n",
      r.products * 1e3, r.flops / r.products / 1e9, r.products_full_dw * 1e3,
      r.products_blocked_dw * 1e3);
  fmt::print("  step without dropout       {:8.3f} ms\n", r.step_no_dropout * 1e3);
  fmt::print("  step with dropout          {:8.3f} ms\n", r.step_dropout * 1e3);
  fmt::print("  step with dropout / products      {:.3f}  (median of per-round ratios)\n",
             r.over_products);
  fmt::print("  step with dropout / no dropout    {:.3f}\n", r.over_no_dropout);
  fmt::print(
      "  update alone, zero gradient {:7.3f} ms  (weights and velocities read, written once)\n",
      r.update * 1e3);
  fmt::print("  dropout masks alone        {:8.3f} ms  (Philox4x32-10, 32 bits per element)\n",
             r.masks * 1e3);
  fmt::print("  (products + those two) / products {:.3f}  (the step if nothing else cost)\n",
             r.parts());
  fmt::print("  epoch of 55000 (estimate)  {:8.2f} s\n", r.epoch_estimate(o.batch));
}

}  // namespace

int run_bench_train(const BenchTrainOptions& o, int threads_flag, bool json) {
  const int threads = resolve_threads(threads_flag);
  parallel::ThreadPool pool(threads);
  parallel::ScopedFlushDenormals flush;
  const std::int64_t b = o.batch;
  const kernels::Precision precision = kernels::parse_precision(o.precision);
  kernels::check_precision_available(precision);
  // The net with its stochastic layers, and the same net without them. `arch` gives the input
  // size; a `net` is measured on Fashion-MNIST-shaped examples (1x28x28).
  nlohmann::json layers;
  Shape input;
  if (o.net.empty()) {
    train::TrainConfig arch_net = train::TrainConfig::defaults();  // its activation, drop rates
    arch_net.arch = o.arch;
    layers = arch_net.layers();
    input = Shape{model::parse_arch(o.arch).front()};
  } else {
    layers = model::resolve_net(o.net);
    input = Shape{1, 28, 28};
  }
  Variant with = make_variant(layers, input);
  Variant without = make_variant(without_noise(*with.net), input);
  if (with.net->output_shape().rank() != 1) {
    throw std::invalid_argument("bench train: the net must end in one output per class");
  }
  const auto classes = static_cast<std::size_t>(with.net->output_shape()[0]);

  // Random inputs and labels (the data do not change the cost of dense products).
  Tensor x(input.with_batch(b));
  kernels::active_kernels().fill_normal({1, 1, 1}, 0, x.data(), x.numel());
  std::vector<std::uint8_t> labels(static_cast<std::size_t>(b));
  for (std::size_t i = 0; i < labels.size(); ++i)
    labels[i] = static_cast<std::uint8_t>(i % std::min<std::size_t>(classes, 256));
  std::uint64_t step = 0;
  auto run_step = [&](Variant& v) {
    const nn::Context ctx{.mode = nn::Mode::kTrain,
                          .seed = 1,
                          .step = step++,
                          .precision = precision,
                          .pool = &pool,
                          .train_examples = kEpochExamples};
    train::train_step(v.net->net(), *v.opt, 0, x, labels, ctx, v.dlogits);
  };
  ProductsAlone products(*with.net, b, precision, pool);
  UpdateAlone update(products.weight_shapes(), pool);
  MasksAlone masks(*with.net, b, pool);

  for (int w = 0; w < 5; ++w) {  // warm-up: buffers faulted in, oneDNN kernels generated
    products.run(false);
    products.run(true);
    run_step(with);
    run_step(without);
    update.run();
    masks.run(step);
  }
  std::vector<double> tf, tb, tw, tn, to, tm;
  ProgressBar bar(stderr, "bench train, rounds", json);
  for (int r = 0; r < o.steps; ++r) {
    bar(static_cast<std::size_t>(r), static_cast<std::size_t>(o.steps));
    tf.push_back(seconds_of([&] { products.run(false); }));
    tb.push_back(seconds_of([&] { products.run(true); }));
    tw.push_back(seconds_of([&] { run_step(with); }));
    tn.push_back(seconds_of([&] { run_step(without); }));
    to.push_back(seconds_of([&] { update.run(); }));
    tm.push_back(seconds_of([&] { masks.run(step); }));
  }
  bar.finish();
  Result res{};
  res.net = with.net->spec();
  res.products_full_dw = median(tf);
  res.products_blocked_dw = median(tb);
  res.products = std::min(res.products_full_dw, res.products_blocked_dw);
  res.step_dropout = median(tw);
  res.step_no_dropout = median(tn);
  // The ratios are medians of per-round ratios: each round's variants ran back to back, so a
  // round's ratio is immune to the machine's speed drifting between rounds (docs/design.md: on
  // the 2-core VMs the medians of whole runs move by +-4 %, the paired ratios by about 1 %).
  std::vector<double> over_products, over_plain;
  const bool full_faster = res.products_full_dw < res.products_blocked_dw;
  for (std::size_t r = 0; r < tw.size(); ++r) {
    over_products.push_back(tw[r] / (full_faster ? tf[r] : tb[r]));
    over_plain.push_back(tw[r] / tn[r]);
  }
  res.over_products = median(over_products);
  res.over_no_dropout = median(over_plain);
  res.update = median(to);
  res.masks = median(tm);
  res.flops = products.flops();
  res.dense_layers = products.dense_layers();
  res.conv_layers = products.conv_layers();
  report(res, o, threads, json);
  return 0;
}

}  // namespace dropkit::cli
