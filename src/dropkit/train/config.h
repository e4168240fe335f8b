// TrainConfig: everything that defines a training run, each option defined once.
//
// fields() is the one list: per option its name, type, default, range and help (core/options.h),
// the TrainConfig member it sets, and whether a resumed run may change it. The CLI's flags,
// validate(), config.json, the checkpoint and the resume rule are all loops over that list, so a
// new option is one entry here (and its member), nothing else.
//
// The network is either `net` (a layer list, model/spec.h) or, when net is empty, the paper's
// fully connected net given by arch, activation, dropout, input_dropout and scaling
// (model::mlp_layers). layers() resolves it.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/core/options.h"
#include "dropkit/train/optimizer.h"

namespace dropkit::train {

struct TrainConfig {
  std::string net;  // a layer list (text or JSON file); empty: arch and the rest below
  std::string arch = "784-1024-1024-10";
  std::string activation = "relu";
  double dropout = 0.5;        // hidden drop rate
  double input_dropout = 0.2;  // input drop rate
  std::string scaling = "inverted";
  OptimizerConfig optimizer;
  int batch = 128;
  int epochs = 150;
  std::uint64_t val = 5000;
  // Training examples used: the first train_size of the training split (after the validation
  // hold-out and any excluded classes; 0 = all). For learning curves (the paper's figure 10).
  std::uint64_t train_size = 0;
  std::uint64_t seed = 1;
  // Examples of the training split evaluated (eval mode) each epoch for train_accuracy.
  std::uint64_t train_eval = 10000;
  // Classes left out of training, validation and test ("8,9"; data::parse_class_list): the
  // model never sees them, and `dropkit predict` treats them as out-of-distribution.
  std::string exclude_classes;
  // Data augmentation of training batches (data::augment_batch): a left-right flip with
  // probability 1/2, and a shift by up to augment_shift pixels along each axis (zeros fill in).
  bool augment_flip = false;
  int augment_shift = 0;
  // Matrix products of the dense layers in training (kernels/gemm.h): "f32" or "bf16".
  std::string precision = "f32";

  // A reference to the member an option sets.
  using Ref = std::variant<bool& (*)(TrainConfig&), int& (*)(TrainConfig&),
                           std::uint64_t& (*)(TrainConfig&), double& (*)(TrainConfig&),
                           std::string& (*)(TrainConfig&)>;
  struct Field {
    Option option;
    Ref ref;
    bool fixed_on_resume = true;  // a resumed run keeps the checkpoint's value
    bool optimizer = false;       // part of OptimizerConfig (checked by its validate())
    bool arch_only = false;       // describes the `arch` net only; a `net` replaces it
  };
  static const TrainConfig& defaults();  // every field at its default
  static const std::vector<Field>& fields();
  static const Field& field(const std::string& name);  // std::invalid_argument if unknown

  // The options a user gave (by name), checked against each other before they are set: `net`
  // not empty, and not together with an arch_only option (std::invalid_argument naming them).
  static void check_given(const std::vector<std::string>& names, const std::string& net);

  nlohmann::json get(const std::string& name) const;
  // Checks the value against the option's range first; std::invalid_argument naming it.
  void set(const std::string& name, const nlohmann::json& value);

  // Every field in its range, and (with resolve_net) the network resolvable: std::invalid_argument
  // naming the field and the valid range (or the layer and the problem). A checkpoint holds its
  // model, so reading one does not resolve `net` again: a --net file may be gone by then.
  void validate(bool resolve_net = true) const;
  // Every field, by name.
  nlohmann::json to_json() const;
  // The fields present take their values (checked); missing ones keep their defaults, so a
  // config written before a field existed still loads. An unknown key is an error.
  static TrainConfig from_json(const nlohmann::json& j, bool resolve_net = true);

  // The layer list this config trains: model::resolve_net(net), or the `arch` net.
  nlohmann::json layers() const;
};

}  // namespace dropkit::train
