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

int run_bench_train(const BenchTrainOptions& o, int threads_flag, bool json) {
  const int threads = resolve_threads(threads_flag);
  parallel::ThreadPool pool(threads);
  parallel::ScopedFlushDenormals flush;
  const std::int64_t b = o.batch;
  const kernels::Precision precision = kernels::parse_precision(o.precision);
  kernels::check_precision_available(precision);
  // The net with its stochastic layers, and the same net without them. --arch gives the input
  // size; a --net is measured on Fashion-MNIST-shaped examples (1x28x28).
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
  struct Variant {
    std::unique_ptr<model::Model> net;
    std::unique_ptr<train::Optimizer> opt;
    Tensor dlogits;
  };
  auto make = [&](const nlohmann::json& list) {
    Variant v{std::make_unique<model::Model>(list, input), nullptr, {}};
    v.net->init_params(1);
    train::OptimizerConfig oc;
    oc.lr = 0.01;  // small: the weights must stay sane over the timed steps
    oc.max_norm = 3.0;
    v.opt = std::make_unique<train::Optimizer>(oc, v.net->params().size());
    return v;
  };
  Variant with = make(layers);
  // Without noise: stochastic layers left out, and a DropConnect layer replaced by the dense layer
  // it masks.
  nlohmann::json deterministic = nlohmann::json::array();
  for (std::size_t i = 0; i < with.net->size(); ++i) {
    const auto& value = with.net->layers()[i];
    if (value["kind"] == "dropconnect") {
      deterministic.push_back(
          {{"kind", "dense"}, {"units", value["units"]}, {"activation", value["activation"]}});
    } else if (!with.net->layer(i).stochastic()) {
      deterministic.push_back(value);
    }
  }
  Variant without = make(deterministic);
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
    const nn::Context ctx{
        .mode = nn::Mode::kTrain, .seed = 1, .step = step++, .precision = precision, .pool = &pool};
    train::train_step(v.net->net(), *v.opt, 0, x, labels, ctx, v.dlogits);
  };

  // The dense layers' sizes, (in, out) each, from the model's own shapes.
  std::vector<std::pair<std::int64_t, std::int64_t>> dense;
  // True when the first dense layer is the model's first layer with parameters, whose input
  // gradient Sequential::build spares.
  bool dense_first = true;
  for (std::size_t i = 0; i < with.net->size(); ++i) {
    const std::string kind = with.net->layer(i).kind();
    if (dense.empty() && (kind == "dense" || kind == "dropconnect")) {
      dense_first = !with.net->layer(i).needs_input_grad();
    }
    if (kind != "dense" && kind != "dropconnect") continue;
    const Shape in = with.net->layer_input_shape(i, b);
    dense.emplace_back(static_cast<std::int64_t>(in.row_size()),
                       with.net->layer(i).output_shape(in)[1]);
  }

  // The products of one step alone, on buffers of the same shapes: forward y = x W^T per dense
  // layer, backward dW = dy^T x per layer and dx = dy W for every layer but the first. dW is
  // computed two ways, and the faster one is the reference (a slow reference would flatter the
  // ratio): into a full buffer, as a plain training loop would store it, and block by block into
  // an L2-resident scratch, as the fused update does (kernels::linear_weight_grads).
  std::vector<Tensor> acts, weights, grads, dacts;
  for (const auto& [in, out] : dense) {
    acts.emplace_back(Shape{b, in});
    kernels::active_kernels().fill_normal({3, 3, 3}, 0, acts.back().data(), acts.back().numel());
    dacts.emplace_back(Shape{b, out});
    weights.emplace_back(Shape{out, in});
    grads.emplace_back(Shape{out, in});
  }
  std::vector<Tensor> outs;
  for (const auto& [in, out] : dense) outs.emplace_back(Shape{b, out});
  Tensor first_dx(Shape{b, dense.empty() ? 1 : dense.front().first});

  // The convolutions of one step, the same way: each conv2d layer's oneDNN primitives (ReLU fused
  // where the layer fuses it) on buffers of its shapes: forward, weight gradient, and the input
  // gradient for every convolution but the first layer.
  struct ConvProducts {
    std::unique_ptr<kernels::Conv2d> conv;
    kernels::ConvGeometry g;
    bool first;
    Tensor x, y, dy, dx, w, bias, dw, db;
  };
  std::vector<ConvProducts> convs;
  for (std::size_t i = 0; i < with.net->size(); ++i) {
    const auto* layer = dynamic_cast<const nn::Conv2d*>(&with.net->layer(i));
    if (layer == nullptr) continue;
    const kernels::ConvGeometry& g = layer->geometry();
    ConvProducts c{std::make_unique<kernels::Conv2d>(g, layer->config()["activation"] == "relu"),
                   g,
                   !layer->needs_input_grad(),
                   Tensor(Shape{b, g.in_size()}),
                   Tensor(Shape{b, g.out_size()}),
                   Tensor(Shape{b, g.out_size()}),
                   Tensor(Shape{b, g.in_size()}),
                   Tensor(Shape{g.weight_size()}),
                   Tensor(Shape{g.out_channels}),
                   Tensor(Shape{g.weight_size()}),
                   Tensor(Shape{g.out_channels})};
    kernels::active_kernels().fill_normal({4, 4, 4}, 0, c.x.data(), c.x.numel());
    kernels::active_kernels().fill_normal({5, 5, 5}, 0, c.dy.data(), c.dy.numel());
    kernels::active_kernels().fill_normal({6, 6, 6}, 0, c.w.data(), c.w.numel());
    convs.push_back(std::move(c));
  }
  auto conv_products = [&] {
    for (auto& c : convs) {
      c.conv->forward(
          pool, b, c.x.data(), c.w.data(), c.bias.data(), c.y.data(),
          [](std::int64_t, std::int64_t) {}, precision);
    }
    for (std::size_t l = convs.size(); l-- > 0;) {
      auto& c = convs[l];
      c.conv->backward(pool, b, c.x.data(), c.dy.data(), c.w.data(),
                       c.first ? nullptr : c.dx.data(), c.dw.data(), c.db.data(), precision);
    }
  };
  auto products = [&](bool blocked) {
    conv_products();
    for (std::size_t l = 0; l < dense.size(); ++l)
      kernels::linear_forward(
          pool, b, dense[l].first, dense[l].second, acts[l].data(), weights[l].data(),
          outs[l].data(), [](std::int64_t, std::int64_t) {}, precision);
    for (std::size_t l = dense.size(); l-- > 0;) {
      const auto [in, out] = dense[l];
      if (l > 0 || !dense_first)  // [b, in] is the dy of the layer before
        kernels::linear_backward_input(pool, b, in, out, dacts[l].data(), weights[l].data(),
                                       l > 0 ? dacts[l - 1].data() : first_dx.data(), precision);
      if (blocked) {
        kernels::linear_weight_grads(
            pool, b, in, out, acts[l].data(), dacts[l].data(), false,
            [](std::int64_t, std::int64_t, const float*, const float*) {}, precision);
      } else {
        kernels::linear_backward_weights(pool, b, in, out, acts[l].data(), dacts[l].data(),
                                         grads[l].data(), nullptr, false, precision);
      }
    }
  };

  // Two costs that a step pays outside its products however it is arranged, each measured on
  // its own, to show how much of the step's excess over its products they explain. The update: the
  // optimizer's SGD kernel over every weight and velocity with a zero gradient that stays in L1, so
  // what it measures is the weights and velocities read and written once, with the kernel's
  // software prefetch (a bare loop without it measured slower than the real update). The masks: the
  // dropout forward of the step's inputs and hidden units, Philox4x32-10 and a 32-bit compare per
  // element as SPEC 2 demands.
  std::vector<Tensor> velocities;
  for (const auto& w : weights) velocities.emplace_back(w.shape());
  constexpr std::size_t kChunk = 1024;
  const std::vector<float> zero_grad(kChunk, 0.0f);
  auto update_alone = [&] {
    const auto& k = kernels::active_kernels();
    for (std::size_t l = 0; l < weights.size(); ++l) {
      float* w = weights[l].data();
      float* v = velocities[l].data();
      const std::size_t n = weights[l].numel();
      parallel::parallel_for(pool, n, kChunk, [&](std::size_t i0, std::size_t i1) {
        for (std::size_t i = i0; i < i1; i += kChunk) {
          k.sgd_update(w + i, zero_grad.data(), v + i, std::min(kChunk, i1 - i),
                       {0.5f, 0.01f, 0.0f, false});
        }
      });
    }
  };
  // The masks are timed on the stochastic layers of the step itself, on inputs of their shapes,
  // so they store bits exactly where the step does (not before the first parameter).
  struct MaskLayer {
    nn::Layer* layer;
    Tensor in, out;
  };
  std::vector<MaskLayer> mask_layers;
  for (std::size_t i = 0; i < with.net->size(); ++i) {
    nn::Layer& layer = with.net->layer(i);
    if (!layer.stochastic()) continue;
    mask_layers.push_back({&layer, Tensor(with.net->layer_input_shape(i, b)), Tensor()});
    kernels::active_kernels().fill_normal({2, 2, 2}, 0, mask_layers.back().in.data(),
                                          mask_layers.back().in.numel());
  }
  auto masks = [&] {
    const nn::Context ctx{.mode = nn::Mode::kTrain, .seed = 1, .step = step, .pool = &pool};
    for (auto& m : mask_layers) m.layer->forward(m.in, m.out, ctx);
  };

  for (int w = 0; w < 5; ++w) {  // warm-up: buffers faulted in, oneDNN kernels generated
    products(false);
    products(true);
    run_step(with);
    run_step(without);
    update_alone();
    masks();
  }
  std::vector<double> tf, tb, tw, tn, to, tm;
  ProgressBar bar(stderr, "bench train, rounds", json);
  for (int r = 0; r < o.steps; ++r) {
    bar(static_cast<std::size_t>(r), static_cast<std::size_t>(o.steps));
    tf.push_back(seconds_of([&] { products(false); }));
    tb.push_back(seconds_of([&] { products(true); }));
    tw.push_back(seconds_of([&] { run_step(with); }));
    tn.push_back(seconds_of([&] { run_step(without); }));
    to.push_back(seconds_of(update_alone));
    tm.push_back(seconds_of(masks));
  }
  bar.finish();
  const double pf = median(tf), pb = median(tb), p = std::min(pf, pb);
  const double sw = median(tw), sn = median(tn);
  // The ratios are medians of per-round ratios: each round's variants ran back to back, so a
  // round's ratio is immune to the machine's speed drifting between rounds (docs/design.md: on
  // the 2-core VMs the medians of whole runs move by +-4 %, the paired ratios by about 1 %).
  std::vector<double> over_products, over_plain;
  for (std::size_t r = 0; r < tw.size(); ++r) {
    over_products.push_back(tw[r] / (pf < pb ? tf[r] : tb[r]));
    over_plain.push_back(tw[r] / tn[r]);
  }
  const double rp = median(over_products), rn = median(over_plain);
  const double update = median(to), mask_time = median(tm), parts = (p + update + mask_time) / p;
  double flops = 0;
  for (std::size_t l = 0; l < dense.size(); ++l)
    flops += 2.0 * b * dense[l].first * dense[l].second * (l > 0 || !dense_first ? 3 : 2);
  for (const auto& c : convs) {
    flops += 2.0 * static_cast<double>(b * c.g.out_height() * c.g.out_width() * c.g.weight_size()) *
             (c.first ? 2 : 3);
  }
  const std::string net = with.net->spec();
  const double steps_per_epoch = std::ceil(55000.0 / static_cast<double>(b));
  if (json) {
    nlohmann::json j = machine_json();
    j.update(nlohmann::json{{"net", net},
                            {"batch", b},
                            {"threads", threads},
                            {"precision", o.precision},
                            {"dense_layers", dense.size()},
                            {"conv_layers", convs.size()},
                            {"products_seconds", p},
                            {"products_full_dw_seconds", pf},
                            {"products_blocked_dw_seconds", pb},
                            {"products_gflops", flops / p / 1e9},
                            {"step_dropout_seconds", sw},
                            {"step_no_dropout_seconds", sn},
                            {"dropout_over_products", rp},
                            {"dropout_over_no_dropout", rn},
                            {"update_alone_seconds", update},
                            {"masks_seconds", mask_time},
                            {"products_update_masks_over_products", parts},
                            {"epoch_seconds_estimate", steps_per_epoch * sw}});
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("bench train: {} batch {}, {} threads, {} kernels, {} products, median of {} rounds\n",
             net, b, threads, kernels::active_kernels().name, o.precision, o.steps);
  if (precision == kernels::Precision::kBf16 && !kernels::bf16_products_native()) {
    fmt::print("  (oneDNN has no native bf16 products on this CPU: {})\n",
               kernels::bf16_products_implementation());
  }
  fmt::print(
      "  products alone             {:8.3f} ms  ({:.0f} GFLOP/s; dW stored {:.3f} ms, "
      "dW blocked {:.3f} ms)\n",
      p * 1e3, flops / p / 1e9, pf * 1e3, pb * 1e3);
  fmt::print("  step without dropout       {:8.3f} ms\n", sn * 1e3);
  fmt::print("  step with dropout          {:8.3f} ms\n", sw * 1e3);
  fmt::print("  step with dropout / products      {:.3f}  (median of per-round ratios)\n", rp);
  fmt::print("  step with dropout / no dropout    {:.3f}\n", rn);
  fmt::print(
      "  update alone, zero gradient {:7.3f} ms  (weights and velocities read, written once)\n",
      update * 1e3);
  fmt::print("  dropout masks alone        {:8.3f} ms  (Philox4x32-10, 32 bits per element)\n",
             mask_time * 1e3);
  fmt::print("  (products + those two) / products {:.3f}  (the step if nothing else cost)\n",
             parts);
  fmt::print("  epoch of 55000 (estimate)  {:8.2f} s\n", steps_per_epoch * sw);
  return 0;
}

}  // namespace dropkit::cli
