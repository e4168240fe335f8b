// The training loop: a TrainConfig in, one epoch at a time, metrics per epoch, checkpoints that
// resume bit for bit.
//
// Reproducibility: every random choice is a pure function of (seed, stream, step, index) --
// initialisation (step 0 of each layer's init stream), the permutation of epoch e (step e of the
// shuffle stream), the masks of step t (step t of each dropout layer's stream) -- and all
// reductions run in a fixed order. So the same config gives the same bits for any --threads,
// and a run resumed from the checkpoint of epoch k continues exactly as if never stopped:
// the checkpoint holds the parameters, the optimizer state and (epoch, step).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/data/batcher.h"
#include "dropkit/data/idx.h"
#include "dropkit/dropout/dropout.h"
#include "dropkit/model/mlp.h"
#include "dropkit/train/loss.h"
#include "dropkit/train/optimizer.h"

namespace dropkit::train {

struct TrainConfig {
  std::string arch = "784-1024-1024-10";
  std::string activation = "relu";
  double dropout = 0.5;              // hidden drop rate
  double input_dropout = 0.2;        // input drop rate
  std::string scaling = "inverted";  // or "inference"
  OptimizerConfig optimizer;
  int batch = 128;
  int epochs = 150;
  std::size_t val = 5000;
  std::uint64_t seed = 1;
  // Examples of the training split evaluated (eval mode) each epoch for train_accuracy.
  std::size_t train_eval = 10000;

  void validate() const;  // throws std::invalid_argument naming the field and the valid range
  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& j);
  model::MlpOptions mlp_options() const;
};

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
  std::size_t count = 0;
};

struct EpochRecord {
  int epoch = 0;              // 1-based
  std::uint64_t step = 0;     // optimizer steps taken so far
  double train_loss = 0;      // running mean over the epoch, in training mode (with dropout)
  double train_accuracy = 0;  // eval mode, on the first train_eval training examples
  double train_eval_loss = 0;
  double val_loss = 0, val_accuracy = 0;
  double test_loss = 0, test_accuracy = 0;
  double seconds = 0;  // training time of the epoch (without the evaluations)
  double lr = 0, momentum = 0;
  nlohmann::json to_json() const;
  static EpochRecord from_json(const nlohmann::json& j);
};

// Thrown when the loss becomes NaN or infinite; the model is left as it was before that step's
// update, and no checkpoint is written for the epoch.
class TrainingDiverged : public std::runtime_error {
 public:
  TrainingDiverged(std::uint64_t step, double loss);
  std::uint64_t step() const { return step_; }

 private:
  std::uint64_t step_;
};

// One optimisation step: forward in Train mode, loss, backward, update (and max-norm).
// Throws TrainingDiverged, before any update, if the loss is not finite.
LossResult train_step(model::Sequential& model, Optimizer& optimizer, int epoch, const Tensor& x,
                      std::span<const std::uint8_t> labels, const nn::Context& ctx,
                      Tensor& dlogits);

class Trainer {
 public:
  // data.train holds training and validation examples (split by config.val).
  Trainer(TrainConfig config, const data::TrainTest& data, parallel::ThreadPool& pool);

  // Called after every step with (steps done in this epoch, steps in the epoch, running loss).
  using Progress = std::function<void(std::size_t, std::size_t, double)>;
  EpochRecord run_epoch(const Progress& progress = {});

  EvalResult evaluate(const data::Dataset& d, std::span<const std::uint32_t> rows);
  EvalResult evaluate_test();

  int epochs_done() const { return epoch_; }
  std::uint64_t steps_done() const { return step_; }
  const std::vector<EpochRecord>& history() const { return history_; }
  const TrainConfig& config() const { return config_; }
  model::Sequential& model() { return *model_; }
  const data::Normalization& normalization() const { return norm_; }

  // checkpoint.safetensors: parameters and optimizer state as tensors, config, normalization,
  // (epoch, step) and the metric history as metadata. Written atomically.
  void save_checkpoint(const std::filesystem::path& file) const;
  // Restores a checkpoint written by save_checkpoint for the same config (epochs may differ);
  // throws std::runtime_error naming the file and the mismatch otherwise, changing nothing.
  void load_checkpoint(const std::filesystem::path& file);
  // The config stored in a checkpoint.
  static TrainConfig read_checkpoint_config(const std::filesystem::path& file);

 private:
  TrainConfig config_;
  const data::TrainTest& data_;
  parallel::ThreadPool& pool_;
  data::Split split_;
  std::vector<std::uint32_t> test_rows_;  // 0 .. test count - 1
  data::Normalization norm_;
  std::unique_ptr<model::Sequential> model_;
  std::unique_ptr<Optimizer> optimizer_;
  int epoch_ = 0;
  std::uint64_t step_ = 0;
  std::vector<EpochRecord> history_;
  Tensor x_, dlogits_;
  std::vector<std::uint8_t> labels_;
};

}  // namespace dropkit::train
