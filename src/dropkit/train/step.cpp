#include "dropkit/train/step.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "dropkit/parallel/thread_pool.h"

namespace dropkit::train {

TrainingDiverged::TrainingDiverged(std::uint64_t step, double loss)
    : std::runtime_error(fmt::format(
          "training diverged: the loss became {} at step {} (try a lower learning rate or a "
          "max-norm)",
          loss, step)),
      step_(step) {}

namespace {

// A GradientSink that keeps what it is given, in `slot` (the arena's layout), and which
// parameters it covered: a data-parallel step adds the processes' gradients before any update.
class KeepGradients final : public nn::GradientSink {
 public:
  KeepGradients(const nn::ParamArena& arena, float* slot)
      : arena_(arena), slot_(slot), covered_(arena.entries().size()) {}
  void consume(float* param, std::size_t row_begin, std::size_t row_end,
               const float* grad) override {
    const std::size_t i = arena_.entry_at(param);
    const auto& e = arena_.entries()[i];
    const std::size_t per_row = e.numel() / e.rows();
    std::copy(grad, grad + (row_end - row_begin) * per_row, slot_ + e.offset + row_begin * per_row);
    covered_[i].store(true, std::memory_order_relaxed);
  }
  bool covered(std::size_t entry) const { return covered_[entry].load(std::memory_order_relaxed); }

 private:
  const nn::ParamArena& arena_;
  float* slot_;
  std::vector<std::atomic<bool>> covered_;  // per entry (its row blocks come from any thread)
};

// The data-parallel update: this process's gradients kept, every process's gathered, then each
// block of rows added up the leaf tree and handed to the optimizer as the fused path hands it
// (the sink's parameters through consume, the rest through the arena and finish_step).
void data_parallel_update(model::Sequential& net, Optimizer& optimizer, int epoch,
                          const Tensor& dlogits, std::span<const nn::PenaltyGradient> penalties,
                          DataParallel& dp, parallel::ThreadPool& pool) {
  nn::ParamArena& arena = net.params();
  const auto& entries = arena.entries();
  float* slot = dp.gradient_slot(arena.size());
  KeepGradients kept(arena, slot);
  net.backward(dlogits, &kept);
  for (std::size_t i = 0; i < entries.size(); ++i) {  // the arena's own (batch norm's, say)
    const auto& e = entries[i];
    if (kept.covered(i)) continue;
    const float* g = arena.grads().data() + e.offset;
    std::copy(g, g + e.numel(), slot + e.offset);
  }
  dp.exchange();
  optimizer.begin_step(arena, epoch);
  optimizer.add_penalties(penalties);
  constexpr std::size_t kBlockValues = 16384;  // 64 KiB of sums at a time, in cache
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (e.spec.has(nn::kSummedOverBatch)) continue;  // the arena holds the whole batch's
    const std::size_t per_row = e.numel() / e.rows();
    const std::size_t rows_per_block = std::max<std::size_t>(1, kBlockValues / per_row);
    float* arena_grad = arena.grads().data() + e.offset;
    parallel::parallel_for(pool, e.rows(), rows_per_block, [&](std::size_t r0, std::size_t r1) {
      thread_local std::vector<float> sum;
      for (std::size_t b = r0; b < r1; b += rows_per_block) {
        const std::size_t b1 = std::min(r1, b + rows_per_block);
        const std::size_t n = (b1 - b) * per_row;
        if (!kept.covered(i)) {
          dp.fold(e.offset + b * per_row, n, arena_grad + b * per_row);
          continue;
        }
        sum.resize(n);
        dp.fold(e.offset + b * per_row, n, sum.data());
        optimizer.consume(arena.values().data() + e.offset, b, b1, sum.data());
      }
    });
  }
  optimizer.finish_step(pool);
}

}  // namespace

LossResult train_step(model::Sequential& net, Optimizer& optimizer, int epoch, const Tensor& x,
                      std::span<const std::uint8_t> labels, const nn::Context& ctx, Tensor& dlogits,
                      DataParallel* dp) {
  if (ctx.peers != dp) {  // a loss summed over processes whose gradients are not, or vice versa
    throw std::invalid_argument(
        "train_step: ctx.peers must be the step's DataParallel (or both null)");
  }
  // The loss terms on parameters alone, read before anything changes them; their gradients
  // join the whole batch's just before the update.
  thread_local std::vector<nn::PenaltyGradient> penalties;
  net.penalty(ctx.train_examples, ctx.threads(), penalties);
  const Tensor& logits = net.forward(x, ctx);
  const std::size_t batch_rows = ctx.batch_rows(labels.size());
  LossResult r = softmax_cross_entropy(logits, labels, &dlogits, batch_rows);
  if (ctx.peers) {  // the whole batch's loss, the same on every process
    ctx.sum_over_batch(std::span(&r.total, 1));
    r.loss = r.total / static_cast<double>(batch_rows);
  }
  if (!std::isfinite(r.loss)) throw TrainingDiverged(ctx.step, r.loss);
  if (dp == nullptr) {
    // The update runs inside backward, block by block (train/optimizer.h).
    optimizer.begin_step(net.params(), epoch);
    optimizer.add_penalties(penalties);
    net.backward(dlogits, &optimizer);
    optimizer.finish_step(ctx.threads());
    return r;
  }
  data_parallel_update(net, optimizer, epoch, dlogits, penalties, *dp, ctx.threads());
  return r;
}

}  // namespace dropkit::train
