// Optimizers over the parameter arena, and the max-norm constraint (SPEC section 3).
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

#include <cstdint>
#include <string>
#include <vector>

#include "dropkit/nn/params.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::train {

// The defaults are the paper's MNIST recipe (momentum ramped from 0.5 to 0.99, max-norm,
// decaying learning rate) with the rate and schedule measured on Fashion-MNIST (README):
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

  void validate() const;  // throws std::invalid_argument naming the field and its range
};

class Optimizer {
 public:
  Optimizer(OptimizerConfig config, std::size_t size);

  double lr_at(int epoch) const;
  double momentum_at(int epoch) const;
  // Applies one update from arena.grads() (epoch is 0-based), then max-norm. Consumes the
  // gradients: each is zeroed in the same pass that reads it (one sweep over the arena instead
  // of a separate memset), ready for the next backward to accumulate into.
  // Multi-threaded over static ranges; element-wise, so the same bits for any thread count.
  void step(nn::ParamArena& arena, int epoch, parallel::ThreadPool& pool);

  // State for checkpoints: the slots (velocity, or Adam's m and v) and Adam's step count.
  std::vector<float>& slot(int i) { return slots_[i]; }
  std::uint64_t adam_steps() const { return adam_t_; }
  void set_adam_steps(std::uint64_t t) { adam_t_ = t; }
  int num_slots() const { return config_.kind == "adam" ? 2 : 1; }
  const OptimizerConfig& config() const { return config_; }

 private:
  OptimizerConfig config_;
  std::vector<float> slots_[2];
  std::uint64_t adam_t_ = 0;
};

// Scales every row of each max_norm_rows parameter to norm <= c. Returns how many rows it
// scaled.
std::size_t apply_max_norm(nn::ParamArena& arena, double c, parallel::ThreadPool& pool);

}  // namespace dropkit::train
