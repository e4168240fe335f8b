#include "dropkit/train/optimizer.h"

#include "dropkit/kernels/table.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <stdexcept>

#include <fmt/format.h>

namespace dropkit::train {

Optimizer::Optimizer(OptimizerConfig config, std::size_t size)
    : config_(std::move(config)), adam_(config_.kind == "adam") {
  config_.validate();
  for (int i = 0; i < num_slots(); ++i) slots_[i].assign(size, 0.0f);
}

double Optimizer::lr_at(int epoch) const {
  return config_.lr * std::pow(config_.lr_decay, epoch);
}

double Optimizer::momentum_at(int epoch) const {
  if (config_.momentum_ramp_epochs == 0 || epoch >= config_.momentum_ramp_epochs) {
    return config_.momentum;
  }
  const double t = static_cast<double>(epoch) / config_.momentum_ramp_epochs;
  return config_.momentum_start + t * (config_.momentum - config_.momentum_start);
}

namespace {

constexpr std::size_t kChunk = 4096;  // elements per unit of the static split

// Scales w[0, n), whose squared norm is `squared`, to norm c if it is longer. Returns whether it
// did.
bool project_row(float* w, std::size_t n, double squared, double c) {
  const double norm = std::sqrt(squared);
  if (norm <= c) return false;
  const auto f = static_cast<float>(c / norm);
  for (std::size_t i = 0; i < n; ++i) w[i] *= f;
  return true;
}

}  // namespace

void Optimizer::begin_step(nn::ParamArena& arena, int epoch) {
  if (arena.size() != slots_[0].size()) {
    throw std::invalid_argument(fmt::format("optimizer: built for {} parameters, the model has {}",
                                            slots_[0].size(), arena.size()));
  }
  const auto lr = static_cast<float>(lr_at(epoch));
  const auto m = static_cast<float>(momentum_at(epoch));
  sgd_ = {m, (1.0f - m) * lr, 0.0f, config_.nesterov};
  if (adam_) {
    ++adam_t_;
    adam_params_ = {lr,
                    static_cast<float>(config_.adam_beta1),
                    static_cast<float>(config_.adam_beta2),
                    static_cast<float>(config_.adam_eps),
                    static_cast<float>(1.0 - std::pow(config_.adam_beta1, adam_t_)),
                    static_cast<float>(1.0 - std::pow(config_.adam_beta2, adam_t_)),
                    0.0f};
  }
  if (covered_.size() != arena.entries().size()) {
    covered_ = std::vector<std::atomic<std::size_t>>(arena.entries().size());
  }
  for (auto& c : covered_) c.store(0, std::memory_order_relaxed);
  penalty_decay_.assign(arena.entries().size(), 0.0f);
  penalty_shift_.assign(arena.entries().size(), 0.0f);
  arena_ = &arena;
}

void Optimizer::add_penalties(std::span<const nn::PenaltyGradient> penalties) {
  if (arena_ == nullptr) throw std::logic_error("optimizer: add_penalties() outside a step");
  for (const auto& c : covered_) {
    if (c.load(std::memory_order_relaxed) != 0) {
      throw std::logic_error("optimizer: add_penalties() after consume() (rows already updated)");
    }
  }
  for (const auto& p : penalties) {
    const std::size_t i = arena_->entry_at(p.param);
    penalty_decay_[i] += p.decay;
    penalty_shift_[i] += p.shift;
  }
}

void Optimizer::update_rows(std::size_t entry, std::size_t r0, std::size_t r1, const float* g) {
  const nn::ParamArena::Entry& e = arena_->entries()[entry];
  const std::size_t cols = e.numel() / e.rows();
  const std::size_t off = e.offset + r0 * cols, n = (r1 - r0) * cols;
  float* w = arena_->values().data() + off;
  float* s0 = slots_[0].data() + off;
  const float decay =
      (e.spec.has(nn::kWeightDecay) ? static_cast<float>(config_.weight_decay) : 0.0f) +
      penalty_decay_[entry];
  if (penalty_shift_[entry] != 0.0f) {  // g + shift, into a copy (g is only read)
    thread_local std::vector<float> shifted;
    shifted.resize(n);
    for (std::size_t i = 0; i < n; ++i) shifted[i] = g[i] + penalty_shift_[entry];
    g = shifted.data();
  }
  const auto& k = kernels::active_kernels();
  // Returns the squared norm of the updated w[b, b + len).
  auto update = [&](std::size_t b, std::size_t len) {
    if (adam_) {
      kernels::AdamUpdate p = adam_params_;
      p.decay = decay;
      return k.adam_update(w + b, g + b, s0 + b, slots_[1].data() + off + b, len, p);
    }
    kernels::SgdUpdate p = sgd_;
    p.decay = decay;
    return k.sgd_update(w + b, g + b, s0 + b, len, p);
  };
  if (config_.max_norm > 0 && e.spec.has(nn::kMaxNormRows)) {
    // Update a row, then project it while it is still in L1 (the update returns its norm):
    // one sweep over the weights instead of two. Rows are independent, so this equals
    // update-all-then-project.
    for (std::size_t r = 0; r < r1 - r0; ++r) {
      project_row(w + r * cols, cols, update(r * cols, cols), config_.max_norm);
    }
  } else {
    update(0, n);
  }
}

void Optimizer::consume(float* param, std::size_t row_begin, std::size_t row_end,
                        const float* grad) {
  if (arena_ == nullptr) throw std::logic_error("optimizer: consume() outside a step");
  const std::size_t i = arena_->entry_at(param);
  const auto& e = arena_->entries()[i];
  if (row_begin >= row_end || row_end > e.rows()) {
    throw std::invalid_argument(fmt::format("optimizer: rows [{}, {}) of {} are outside [0, {})",
                                            row_begin, row_end, e.name, e.rows()));
  }
  update_rows(i, row_begin, row_end, grad);
  covered_[i].fetch_add(row_end - row_begin, std::memory_order_relaxed);
}

void Optimizer::finish_step(parallel::ThreadPool& pool) {
  if (arena_ == nullptr) throw std::logic_error("optimizer: finish_step() outside a step");
  const auto& entries = arena_->entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const std::size_t rows = e.rows(), covered = covered_[i].load();
    if (covered == rows) continue;
    if (covered != 0) {
      arena_ = nullptr;
      throw std::logic_error(fmt::format(
          "optimizer: parameter {} got the gradient of {} of its {} rows", e.name, covered, rows));
    }
    const std::size_t cols = e.numel() / rows;
    float* g = arena_->grads().data() + e.offset;
    parallel::parallel_for(pool, rows, std::max<std::size_t>(1, kChunk / cols),
                           [&](std::size_t r0, std::size_t r1) {
                             update_rows(i, r0, r1, g + r0 * cols);
                             std::fill(g + r0 * cols, g + r1 * cols, 0.0f);
                           });
  }
  arena_ = nullptr;
}

void Optimizer::step(nn::ParamArena& arena, int epoch, parallel::ThreadPool& pool) {
  begin_step(arena, epoch);
  finish_step(pool);
}

std::size_t apply_max_norm(nn::ParamArena& arena, double c, parallel::ThreadPool& pool) {
  std::atomic<std::size_t> scaled{0};
  for (const auto& e : arena.entries()) {
    if (!e.spec.has(nn::kMaxNormRows)) continue;
    const std::size_t rows = e.rows();
    const std::size_t cols = e.numel() / rows;
    float* values = arena.values().data() + e.offset;
    parallel::parallel_for(pool, rows, 8, [&](std::size_t r0, std::size_t r1) {
      std::size_t mine = 0;
      for (std::size_t r = r0; r < r1; ++r) {
        float* row = values + r * cols;
        mine += project_row(row, cols, kernels::active_kernels().squared_norm(row, cols), c);
      }
      scaled += mine;
    });
  }
  return scaled.load();
}

}  // namespace dropkit::train
