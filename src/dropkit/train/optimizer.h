// Optimizers over the parameter arena, and the max-norm constraint (docs/spec.md section 3).
//
// SGD with momentum, in the paper's form (Srivastava et al. 2014, appendix A.1), which keeps the
// step size independent of the momentum while the momentum ramps up:
//   v <- m v - (1 - m) lr g          w <- w + v
//   Nesterov: w <- w + m v_new - (1 - m) lr g    (the look-ahead form)
// with m ramped linearly from momentum_start to momentum over momentum_ramp_epochs epochs and
// lr = lr0 * lr_decay^epoch. Adam (Kingma & Ba 2015) with bias correction and the same decay.
// L2 weight decay adds weight_decay * w to the gradient of weights (not biases).
// Max-norm: after every update each hidden unit's incoming weight vector (a row of a hidden
// layer's W) is scaled down to ||w||_2 <= max_norm when longer (0 disables it).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dropkit/kernels/table.h"
#include "dropkit/nn/params.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::train {

// The defaults are the paper's MNIST recipe (momentum ramped from 0.5 to 0.99, max-norm,
// decaying learning rate) with the rate and schedule measured on Fashion-MNIST (docs/results.md):
// 150 epochs reach 90.2 % test accuracy with dropout.
struct OptimizerConfig {
  std::string kind = "sgd";  // "sgd" or "adam"
  double lr = 0.1;
  double lr_decay = 0.99;  // per epoch, in (0, 1]
  double momentum = 0.99;
  double momentum_start = 0.5;
  int momentum_ramp_epochs = 30;
  bool nesterov = false;
  double weight_decay = 0.0;
  double max_norm = 3.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;

  // Throws std::invalid_argument naming the field and its range. The ranges are defined once,
  // with the other options, in train/config.cpp.
  void validate() const;
};

// An update runs in three parts, so that most of it can happen inside backward: a layer's
// backward_to (nn/layer.h) hands each block of its gradient to consume() while the block is in
// cache, and the gradient never travels to memory. That is what keeps a training step near the
// cost of its matrix products (measured in docs/design.md).
//   begin_step   fixes the step's learning rate, momentum and Adam step count;
//   consume      updates the rows it is given, then applies max-norm to them;
//   finish_step  updates every parameter that consume() did not cover from the arena's
//                gradients, and zeroes those, ready for the next backward to accumulate into.
// step() is begin_step + finish_step: the whole update from the arena's gradients. Both paths
// give the same bits, for any thread count (the update is element-wise, max-norm row-wise).
class Optimizer final : public nn::GradientSink {
 public:
  Optimizer(OptimizerConfig config, std::size_t size);

  double lr_at(int epoch) const;
  double momentum_at(int epoch) const;

  // epoch is 0-based. A begin_step during an unfinished step abandons that step.
  void begin_step(nn::ParamArena& arena, int epoch);
  // Adds the gradients of the loss's terms on parameters alone (nn::PenaltyGradient, from
  // Sequential::penalty) to this step's: each parameter's update uses g + decay w + shift, where
  // g is the gradient consume() or the arena gives it. Call after begin_step, before the first
  // consume() (std::logic_error otherwise). std::invalid_argument for a pointer that starts no
  // parameter.
  void add_penalties(std::span<const nn::PenaltyGradient> penalties);
  // Thread-safe for disjoint rows. Throws std::invalid_argument if `param` does not start a
  // parameter of the arena or the rows are out of its range, std::logic_error outside a step.
  void consume(float* param, std::size_t row_begin, std::size_t row_end,
               const float* grad) override;
  // Throws std::logic_error if consume() covered only some rows of a parameter (a layer that
  // broke the GradientSink contract), or outside a step.
  void finish_step(parallel::ThreadPool& pool);
  void step(nn::ParamArena& arena, int epoch, parallel::ThreadPool& pool);

  // State for checkpoints: the slots (velocity, or Adam's m and v) and Adam's step count.
  std::vector<float>& slot(int i) { return slots_[i]; }
  const std::vector<float>& slot(int i) const { return slots_[i]; }
  std::uint64_t adam_steps() const { return adam_t_; }
  void set_adam_steps(std::uint64_t t) { adam_t_ = t; }
  int num_slots() const { return adam_ ? 2 : 1; }
  const OptimizerConfig& config() const { return config_; }

 private:
  // Rows [r0, r1) of arena entry `entry` from their gradient g (plus the penalties), then
  // max-norm on them.
  void update_rows(std::size_t entry, std::size_t r0, std::size_t r1, const float* g);

  OptimizerConfig config_;
  bool adam_;  // config_.kind == "adam", decided once
  std::vector<float> slots_[2];
  std::uint64_t adam_t_ = 0;
  // The step in progress (arena_ == nullptr between steps).
  nn::ParamArena* arena_ = nullptr;
  kernels::SgdUpdate sgd_{};
  kernels::AdamUpdate adam_params_{};
  std::vector<std::atomic<std::size_t>> covered_;  // rows consumed, per arena entry
  // This step's penalty gradients, per arena entry (add_penalties).
  std::vector<float> penalty_decay_, penalty_shift_;
};

// Scales every row of each max_norm_rows parameter to norm <= c. Returns how many rows it
// scaled.
std::size_t apply_max_norm(nn::ParamArena& arena, double c, parallel::ThreadPool& pool);

}  // namespace dropkit::train
