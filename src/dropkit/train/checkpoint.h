// Checkpoints: a training run as one safetensors file (model/safetensors.h) that holds the model,
// the optimizer state and the training state, and resumes bit for bit.
//
// Format version 2 (the one written):
//   metadata  "format": "dropkit-checkpoint", "format_version": "2",
//             "model":  Model::to_json() (input shape, normalisation, layer list),
//             "config": TrainConfig::to_json(),
//             "state":  {"epoch", "step", "adam_steps", "history": [per-epoch metrics]}
//   tensors   every parameter and buffer under its model name ("layers.1.dense.weight"), and
//             each optimizer slot as "optimizer.<slot>.<name>" (slot: velocity, or adam_m and
//             adam_v).
// Nothing in it depends on the clock: identical runs write byte-identical files, and a resumed
// run ends with the same bytes as one never stopped (epoch times go to metrics.jsonl only).
//
// Versioning rule: a reader accepts every version up to its own and refuses a newer one with a
// message naming both. Within a version a missing metadata field takes its default (a field
// added later never breaks an older file), and a released default never changes meaning
// without a version bump. Version 1 (dropkit-checkpoint-1, before models were values: an MLP
// given by --arch, tensors named by layer index) is read and converted: its layer list is the
// --arch net, its tensors are renamed, its epoch times are dropped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/model/model.h"
#include "dropkit/train/config.h"
#include "dropkit/train/history.h"
#include "dropkit/train/optimizer.h"

namespace dropkit::train {

inline constexpr int kCheckpointVersion = 2;

// Checked on load: `step` equals the last history entry's step (0 without history), the
// entries count epochs from 1 with steps that grow, adam_steps equals step for adam and is 0
// for sgd; a resumed Trainer also checks the steps against the epochs' length on its data.
struct TrainState {
  int epoch = 0;           // epochs done
  std::uint64_t step = 0;  // optimizer steps done
  std::uint64_t adam_steps = 0;
  std::vector<EpochRecord> history;
  // data::fingerprint of the training and the test split ("" in checkpoints written before it
  // was kept: such a run resumes on any data, unchecked).
  std::string train_data, test_data;
};

// Thrown for every problem with a checkpoint file: "<file>: <problem>".
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void save_checkpoint(const std::filesystem::path& file, const model::Model& model,
                     const Optimizer& optimizer, const TrainConfig& config,
                     const TrainState& state);

// A checkpoint read and checked: the format, the config and state, a model that the layer list
// builds, and tensors of exactly the names and shapes that model and its optimizer need.
struct Checkpoint {
  int version = 0;
  TrainConfig config;
  TrainState state;
  std::unique_ptr<model::Model> model;            // with the saved parameters and buffers
  std::map<std::string, Tensor> optimizer_slots;  // "<slot>.<parameter name>"
};
Checkpoint read_checkpoint(const std::filesystem::path& file);
// The same from the file's bytes; `source` names them in messages (the fuzzer's entry point).
Checkpoint read_checkpoint_bytes(std::string_view bytes, const std::string& source);

// The optimizer's slot names: {"velocity"} for sgd, {"adam_m", "adam_v"} for adam.
std::vector<std::string> optimizer_slot_names(const OptimizerConfig& c);

// Puts the checkpoint's optimizer state into `optimizer`, built for `arena` (the arena of the
// checkpoint's model, which may have been moved out of ck).
void restore_optimizer(const Checkpoint& ck, const nn::ParamArena& arena, Optimizer& optimizer);

}  // namespace dropkit::train
