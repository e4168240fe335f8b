#include "dropkit/train/optimizer.h"

#include "dropkit/kernels/table.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace dropkit::train {

void OptimizerConfig::validate() const {
  auto check = [](bool ok, const char* field, double v, const char* range) {
    if (!ok) throw std::invalid_argument(fmt::format("{} = {} is outside {}", field, v, range));
  };
  if (kind != "sgd" && kind != "adam") {
    throw std::invalid_argument(fmt::format("optimizer '{}' is not one of sgd, adam", kind));
  }
  check(lr > 0 && std::isfinite(lr), "lr", lr, "(0, inf)");
  check(lr_decay > 0 && lr_decay <= 1, "lr_decay", lr_decay, "(0, 1]");
  check(momentum >= 0 && momentum < 1, "momentum", momentum, "[0, 1)");
  check(momentum_start >= 0 && momentum_start < 1, "momentum_start", momentum_start, "[0, 1)");
  check(momentum_ramp_epochs >= 0, "momentum_ramp_epochs", momentum_ramp_epochs, "[0, inf)");
  check(weight_decay >= 0 && std::isfinite(weight_decay), "weight_decay", weight_decay, "[0, inf)");
  check(max_norm >= 0 && std::isfinite(max_norm), "max_norm", max_norm, "[0, inf) (0 = off)");
  check(adam_beta1 >= 0 && adam_beta1 < 1, "adam_beta1", adam_beta1, "[0, 1)");
  check(adam_beta2 >= 0 && adam_beta2 < 1, "adam_beta2", adam_beta2, "[0, 1)");
  check(adam_eps > 0, "adam_eps", adam_eps, "(0, inf)");
}

Optimizer::Optimizer(OptimizerConfig config, std::size_t size) : config_(std::move(config)) {
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

// Scales w[0, n) to norm c if it is longer. Returns whether it did.
bool project_row(float* w, std::size_t n, double c) {
  const double norm = std::sqrt(kernels::active_kernels().squared_norm(w, n));
  if (norm <= c) return false;
  const auto f = static_cast<float>(c / norm);
  for (std::size_t i = 0; i < n; ++i) w[i] *= f;
  return true;
}

}  // namespace

void Optimizer::step(nn::ParamArena& arena, int epoch, parallel::ThreadPool& pool) {
  const auto lr = static_cast<float>(lr_at(epoch));
  const auto wd = static_cast<float>(config_.weight_decay);
  const bool adam = config_.kind == "adam";
  if (adam) ++adam_t_;
  const auto m = static_cast<float>(momentum_at(epoch));
  const double c = config_.max_norm;
  for (const auto& e : arena.entries()) {
    float* w = arena.values().data() + e.offset;
    float* g = arena.grads().data() + e.offset;
    float* s0 = slots_[0].data() + e.offset;
    float* s1 = adam ? slots_[1].data() + e.offset : nullptr;
    const float decay = e.spec.decay ? wd : 0.0f;
    const kernels::SgdUpdate sgd{m, (1.0f - m) * lr, decay, config_.nesterov};
    const kernels::AdamUpdate ap{lr,
                                 static_cast<float>(config_.adam_beta1),
                                 static_cast<float>(config_.adam_beta2),
                                 static_cast<float>(config_.adam_eps),
                                 static_cast<float>(1.0 - std::pow(config_.adam_beta1, adam_t_)),
                                 static_cast<float>(1.0 - std::pow(config_.adam_beta2, adam_t_)),
                                 decay};
    const auto& k = kernels::active_kernels();
    auto update = [=, &k](std::size_t b, std::size_t n) {
      if (adam) {
        k.adam_update(w + b, g + b, s0 + b, s1 + b, n, ap);
      } else {
        k.sgd_update(w + b, g + b, s0 + b, n, sgd);
      }
    };
    if (c > 0 && e.spec.max_norm_rows) {
      // Update a row, then project it while it is still in L1: one sweep over the weights
      // instead of two. Rows are independent, so this equals update-all-then-project.
      const auto rows = static_cast<std::size_t>(e.spec.shape[0]);
      const std::size_t cols = e.numel() / rows;
      parallel::parallel_for(pool, rows, 8, [=](std::size_t r0, std::size_t r1) {
        for (std::size_t r = r0; r < r1; ++r) {
          update(r * cols, cols);
          project_row(w + r * cols, cols, c);
        }
      });
    } else {
      parallel::parallel_for(pool, e.numel(), kChunk,
                             [=](std::size_t b, std::size_t end) { update(b, end - b); });
    }
  }
}

std::size_t apply_max_norm(nn::ParamArena& arena, double c, parallel::ThreadPool& pool) {
  std::atomic<std::size_t> scaled{0};
  for (const auto& e : arena.entries()) {
    if (!e.spec.max_norm_rows) continue;
    const auto rows = static_cast<std::size_t>(e.spec.shape[0]);
    const std::size_t cols = e.numel() / rows;
    float* values = arena.values().data() + e.offset;
    parallel::parallel_for(pool, rows, 8, [&](std::size_t r0, std::size_t r1) {
      std::size_t mine = 0;
      for (std::size_t r = r0; r < r1; ++r) mine += project_row(values + r * cols, cols, c);
      scaled += mine;
    });
  }
  return scaled.load();
}

}  // namespace dropkit::train
