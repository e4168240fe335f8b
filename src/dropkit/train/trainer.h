// The training loop: a TrainConfig in, one epoch at a time, metrics per epoch, checkpoints that
// resume bit for bit.
//
// Reproducibility: every random choice is a pure function of (seed, stream, step, index) --
// initialisation (step 0 of each layer's init stream), the permutation of epoch e (step e of the
// shuffle stream), the masks of step t (step t of each dropout layer's stream) -- and all
// reductions run in a fixed order. So the same config gives the same bits for any --threads,
// and a run resumed from the checkpoint of epoch k continues exactly as if never stopped:
// the checkpoint holds the model, the optimizer state and (epoch, step) (train/checkpoint.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <vector>

#include "dropkit/data/batcher.h"
#include "dropkit/data/idx.h"
#include "dropkit/model/model.h"
#include "dropkit/train/checkpoint.h"
#include "dropkit/train/config.h"
#include "dropkit/train/distributed.h"
#include "dropkit/train/loss.h"
#include "dropkit/train/optimizer.h"
#include "dropkit/train/step.h"

namespace dropkit::train {

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
  std::size_t count = 0;
};

// Loss and accuracy of `model` in eval mode on the examples `rows` of `d`, in chunks of 1000;
// x and labels are the caller's buffers, reused (a fresh tensor per call would page-fault anew).
// With `dp`, the processes share the chunks (chunk i on process i mod P) and every process
// returns the same result, bit for bit the one process's.
EvalResult evaluate(model::Model& model, const data::Dataset& d,
                    std::span<const std::uint32_t> rows, parallel::ThreadPool& pool, Tensor& x,
                    std::vector<std::uint8_t>& labels, const DataParallel* dp = nullptr);

// Throws std::invalid_argument unless `model` takes examples of d's image size and has an
// output per class for every label of d (`what` names the split in the message).
void check_model_fits(const model::Model& model, const data::Dataset& d, const char* what);
// The image size alone, from the files' headers (data::peek_*), before any payload is read.
void check_model_fits_shape(const model::Model& model, const data::DatasetShape& shape,
                            const char* what);

class Trainer {
 public:
  // A new run: the model of config.layers() for data's images, the input normalisation from
  // the training split, parameters from the seed. data.train holds training and validation
  // examples (split by config.val). Everything is checked before anything runs:
  // std::invalid_argument naming the problem.
  // With a group of more than one process, each process of the group constructs its Trainer
  // with the same arguments and they train one model data-parallel (train/distributed.h): the
  // same bits as one process, every process holding the same model after every step.
  Trainer(TrainConfig config, const data::TrainTest& data, parallel::ThreadPool& pool,
          parallel::ProcessGroup* group = nullptr);
  // The run saved in `ck`, continued (ck.config.epochs is the new total).
  Trainer(Checkpoint ck, const data::TrainTest& data, parallel::ThreadPool& pool,
          parallel::ProcessGroup* group = nullptr);

  // Called after every step with (steps done in this epoch, steps in the epoch, running loss).
  using Progress = std::function<void(std::size_t, std::size_t, double)>;
  EpochRecord run_epoch(const Progress& progress = {});

  EvalResult evaluate(const data::Dataset& d, std::span<const std::uint32_t> rows);
  EvalResult evaluate_test();

  int epochs_done() const { return state_.epoch; }
  // Examples in the training and validation splits and in the test set, classes excluded.
  std::size_t train_examples() const { return split_.train.size(); }
  std::size_t val_examples() const { return split_.val.size(); }
  std::size_t test_examples() const { return test_rows_.size(); }
  std::uint64_t steps_done() const { return state_.step; }
  const std::vector<EpochRecord>& history() const { return state_.history; }
  const TrainConfig& config() const { return config_; }
  model::Model& model() { return *model_; }
  const model::Model& model() const { return *model_; }

  // The model, optimizer state, config and training state, written atomically.
  void save_checkpoint(const std::filesystem::path& file) const;

  // The data-parallel share of this process, or nullptr when it trains alone.
  const DataParallel* data_parallel() const { return dp_.get(); }

 private:
  void prepare(parallel::ProcessGroup* group);  // the checks and buffers both constructors share
  void select_rows();  // split_ and test_rows_, without config_.exclude_classes

  TrainConfig config_;
  const data::TrainTest& data_;
  parallel::ThreadPool& pool_;
  data::Split split_;
  std::vector<std::uint32_t> test_rows_;  // the test examples of the classes trained on
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  TrainState state_;
  std::unique_ptr<DataParallel> dp_;
  Tensor x_, dlogits_;
  std::vector<std::uint8_t> labels_;
};

}  // namespace dropkit::train
