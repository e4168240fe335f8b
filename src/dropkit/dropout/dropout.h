// Dropout (Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, JMLR 15, 2014).
//
// What it represents: during training every element h of the input is kept with probability
// 1 - drop_prob and zeroed otherwise, independently; inference approximates the average of the
// thinned networks with one deterministic pass. Two scalings keep E[train output] = inference
// output (docs/spec.md section 1):
//
//   scaling     train, kept      train, dropped   eval (and the layer at inference)
//   kInverted   h * s, s=1/(1-p)      0           h                (PyTorch, Keras; default)
//   kInference  h                     0           h * (1 - p)      (the paper's weight scaling)
//
// with p = drop_prob and s computed once in double and rounded to float: y = x * s exactly.
// Mode::kSample (Monte-Carlo dropout, Gal & Ghahramani 2016) draws masks as in training, from
// the sampling domain (rng::sample_stream) keyed by the sample index in ctx.step, and allows no
// backward.
//
// Backward: dx = dy * m * s (s = 1 for kInference), the forward's mask. MaskStorage::kBits
// (default) keeps one bit per element; MaskStorage::kRecompute keeps nothing per element and
// regenerates the mask from its counters. Both give the same bits.
//
// The mask of element i is a pure function of (ctx.seed, stream_id, ctx.step,
// ctx.row_offset * row width + i): see rng/philox.h and dropout/mask.h.
//
// Kind "dropout"; config: drop_prob in [0, 1], scaling (inverted, inference), mask_storage
// (bits, recompute), shared_axes (dropout/noise_shape.h: "2+3" is spatial dropout, one mask
// value per example and channel of [N, C, H, W]; empty: every element its own). A layer that
// never runs backward (set_needs_backward(false): it comes before the model's first parameter)
// stores no bits whatever mask_storage says. With shared axes the mask lives on the noise shape
// (one float per noise element, kept for backward) and mask_storage does not apply.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/noise_layer.h"
#include "dropkit/nn/layer_kind.h"
#include "dropkit/rng/philox.h"

namespace dropkit::dropout {

enum class Scaling { kInverted, kInference };
enum class MaskStorage { kRecompute, kBits };

// "inverted", "inference" and "recompute", "bits": the names configs and flags use.
std::string_view scaling_name(Scaling s);
Scaling parse_scaling(std::string_view name);
std::string_view storage_name(MaskStorage s);
MaskStorage parse_storage(std::string_view name);

// Throws std::invalid_argument naming the value and the range [0, 1] unless 0 <= drop_prob <= 1.
double checked_drop_prob(double drop_prob, const char* what = "drop_prob");

// The factors of the table above, in double, rounded to float once: what multiplies a kept unit
// in training (1 / (1 - p) inverted, 1 inference; 0 for p = 1 inverted, where nothing is kept and
// 1/0 must not appear), and what multiplies every unit in eval (1 inverted, 1 - p inference).
// Every layer that keeps or drops (Dropout, DropConnect) scales with these.
float train_scale_of(double drop_prob, Scaling scaling);
float eval_scale_of(double drop_prob, Scaling scaling);

class Dropout : public NoiseLayer {
 public:
  // stream_id distinguishes this layer's masks from every other layer's; give each its own.
  // The defaults of the "dropout" layer kind too (model/registry.cpp reads them from here).
  static constexpr Scaling kDefaultScaling = Scaling::kInverted;
  static constexpr MaskStorage kDefaultStorage = MaskStorage::kBits;
  // Bits per keep decision (dropout/mask.h): with 16 or 8 the layer works with
  // effective_drop_prob() everywhere.
  static constexpr int kDefaultMaskBits = dropout::kDefaultMaskBits;

  explicit Dropout(double drop_prob, Scaling scaling = kDefaultScaling,
                   MaskStorage storage = kDefaultStorage, std::uint32_t stream_id = 0,
                   std::vector<int> shared_axes = {}, int mask_bits = kDefaultMaskBits);

  static constexpr const char* kKind = "dropout";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static nn::LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override;
  void forward(const Tensor& x, Tensor& y, const nn::Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;

  double drop_prob() const { return drop_prob_; }  // as configured
  // The rate the masks realise: drop_prob, or round(drop_prob 2^b) / 2^b with b = mask_bits < 32.
  double effective_drop_prob() const { return keep_.effective_drop_prob(); }
  double keep_prob() const { return 1.0 - effective_drop_prob(); }
  int mask_bits() const { return keep_.width(); }
  Scaling scaling() const { return scaling_; }
  MaskStorage storage() const { return storage_; }
  float train_scale() const { return train_scale_; }  // s applied to kept elements in training
  float eval_scale() const { return eval_scale_; }    // applied to every element in Mode::kEval
  // Bytes kept between forward and backward for n elements (0 for kRecompute).
  static std::size_t saved_bytes(MaskStorage storage, std::size_t n);

 private:
  double drop_prob_;
  Scaling scaling_;
  MaskStorage storage_;
  rng::KeepThreshold keep_;
  float train_scale_;
  float eval_scale_;
  std::vector<std::uint64_t> bits_;  // the last Train forward's keep bits (kBits)
};

}  // namespace dropkit::dropout
