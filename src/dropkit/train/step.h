// One optimisation step of a network: forward in Train mode, loss, backward and the update,
// fused block by block in one process (train/optimizer.h), or with the gradients added across
// processes first (train/distributed.h). The loop around it is train/trainer.h.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>

#include "dropkit/model/sequential.h"
#include "dropkit/nn/layer.h"
#include "dropkit/train/distributed.h"
#include "dropkit/train/loss.h"
#include "dropkit/train/optimizer.h"

namespace dropkit::train {

// Thrown when the loss becomes NaN or infinite (the model is then left as it was before that
// step's update), or when an epoch ends with weights or evaluated losses that are not finite
// (its last update diverged; the epoch is not recorded). Either way no checkpoint is written for
// the epoch, and save_checkpoint refuses non-finite weights.
class TrainingDiverged : public std::runtime_error {
 public:
  TrainingDiverged(std::uint64_t step, double loss);
  std::uint64_t step() const { return step_; }

 private:
  std::uint64_t step_;
};

// One optimisation step of a network (Model::net()): forward in Train mode, loss, backward,
// update (and max-norm). With `dp` (whose begin_step gave this process's rows), x holds this
// process's rows of the batch and the step is data-parallel: the loss is the whole batch's, and
// the gradients are added across processes before the update, the same on every process.
// ctx.peers must be `dp` (null without it): std::invalid_argument otherwise, before anything runs.
// The loss terms on parameters alone (nn::Layer::penalty) need ctx.train_examples.
// Throws TrainingDiverged, before any update, if the loss is not finite.
LossResult train_step(model::Sequential& net, Optimizer& optimizer, int epoch, const Tensor& x,
                      std::span<const std::uint8_t> labels, const nn::Context& ctx, Tensor& dlogits,
                      DataParallel* dp = nullptr);

}  // namespace dropkit::train
