#include "dropkit/train/checkpoint.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <regex>

#include <fmt/format.h>

#include "dropkit/core/atomic_file.h"
#include "dropkit/model/safetensors.h"
#include "dropkit/model/spec.h"

namespace dropkit::train {
namespace {

using json = nlohmann::json;

constexpr const char* kFormat = "dropkit-checkpoint";
constexpr const char* kFormatV1 = "dropkit-checkpoint-1";

json state_to_json(const TrainState& s) {
  json history = json::array();
  for (const auto& r : s.history) history.push_back(r.to_json(/*with_seconds=*/false));
  json j{{"epoch", s.epoch}, {"step", s.step}, {"adam_steps", s.adam_steps}, {"history", history}};
  if (!s.train_data.empty()) j["data"] = {{"train", s.train_data}, {"test", s.test_data}};
  return j;
}

// A count in the state: a JSON integer in [0, max] (1.5, -1 or "3" are refused, not rounded).
std::uint64_t count_at(const json& j, const char* key, std::uint64_t max) {
  const json& v = j.at(key);
  const bool whole =
      v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
  if (!whole || v.get<std::uint64_t>() > max) {
    throw std::invalid_argument(
        fmt::format("{} = {} is not a whole number in [0, {}]", key, v.dump(), max));
  }
  return v.get<std::uint64_t>();
}

TrainState state_from_json(const json& j) {
  TrainState s;
  s.epoch = static_cast<int>(count_at(j, "epoch", 100000));
  s.step = count_at(j, "step", std::numeric_limits<std::uint64_t>::max());
  s.adam_steps = j.contains("adam_steps") ? count_at(j, "adam_steps", s.step) : 0;
  for (const auto& r : j.value("history", json::array()))
    s.history.push_back(EpochRecord::from_json(r));
  if (static_cast<std::size_t>(s.epoch) != s.history.size()) {
    throw std::invalid_argument(
        fmt::format("epoch = {} but the history holds {} epochs", s.epoch, s.history.size()));
  }
  std::uint64_t previous = 0;
  for (std::size_t i = 0; i < s.history.size(); ++i) {
    const EpochRecord& r = s.history[i];
    if (r.epoch != static_cast<int>(i) + 1 || r.step < previous || r.step > s.step) {
      throw std::invalid_argument(fmt::format(
          "history entry {} (epoch {}, step {}) does not follow its predecessor (step {}) or "
          "exceeds the state's step {}",
          i, r.epoch, r.step, previous, s.step));
    }
    previous = r.step;
  }
  if (j.contains("data")) {
    s.train_data = j["data"].at("train").get<std::string>();
    s.test_data = j["data"].at("test").get<std::string>();
  }
  return s;
}

// Version 1 named tensors "model.<layer index>.<param>" and "optimizer.slot<k>.<index>.<param>".
std::map<std::string, Tensor> renamed_v1(std::map<std::string, Tensor> tensors, const json& layers,
                                         const std::vector<std::string>& slots) {
  static const std::regex model_name(R"(model\.(\d+)\.(\w+))");
  static const std::regex slot_name(R"(optimizer\.slot(\d)\.(\d+)\.(\w+))");
  std::map<std::string, Tensor> out;
  auto layer_prefix = [&](const std::string& index) {
    const std::size_t i = std::stoul(index);
    if (i >= layers.size())
      throw std::invalid_argument("tensor of layer " + index + " beyond the model");
    return fmt::format("layers.{}.{}", i, layers[i]["kind"].get<std::string>());
  };
  for (auto& [name, t] : tensors) {
    std::smatch m;
    if (std::regex_match(name, m, model_name)) {
      out.emplace(layer_prefix(m[1]) + "." + m[2].str(), std::move(t));
    } else if (std::regex_match(name, m, slot_name) && std::stoul(m[1]) < slots.size()) {
      out.emplace(fmt::format("optimizer.{}.{}.{}", slots[std::stoul(m[1])], layer_prefix(m[2]),
                              m[3].str()),
                  std::move(t));
    } else {
      throw std::invalid_argument("unexpected tensor " + name);
    }
  }
  return out;
}

}  // namespace

json EpochRecord::to_json(bool with_seconds) const {
  json j{{"epoch", epoch},
         {"step", step},
         {"train_loss", train_loss},
         {"step_loss_std", step_loss_std},
         {"train_accuracy", train_accuracy},
         {"train_eval_loss", train_eval_loss},
         {"val_loss", val_loss},
         {"val_accuracy", val_accuracy},
         {"test_loss", test_loss},
         {"test_accuracy", test_accuracy},
         {"lr", lr},
         {"momentum", momentum}};
  if (with_seconds) j["epoch_seconds"] = seconds;
  return j;
}

EpochRecord EpochRecord::from_json(const json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch").get<int>();
  r.step = j.value("step", std::uint64_t{0});
  r.train_loss = j.value("train_loss", 0.0);
  r.step_loss_std = j.value("step_loss_std", 0.0);
  r.train_accuracy = j.value("train_accuracy", 0.0);
  r.train_eval_loss = j.value("train_eval_loss", 0.0);
  r.val_loss = j.value("val_loss", 0.0);
  r.val_accuracy = j.value("val_accuracy", 0.0);
  r.test_loss = j.value("test_loss", 0.0);
  r.test_accuracy = j.value("test_accuracy", 0.0);
  r.seconds = j.value("epoch_seconds", 0.0);
  r.lr = j.value("lr", 0.0);
  r.momentum = j.value("momentum", 0.0);
  return r;
}

std::vector<std::string> optimizer_slot_names(const OptimizerConfig& c) {
  if (c.kind == "adam") return {"adam_m", "adam_v"};
  return {"velocity"};
}

void save_checkpoint(const std::filesystem::path& file, const model::Model& model,
                     const Optimizer& optimizer, const TrainConfig& config,
                     const TrainState& state) {
  const nn::ParamArena& arena = model.params();
  const auto slots = optimizer_slot_names(optimizer.config());
  std::vector<model::TensorView> views;
  for (const auto& e : arena.entries()) {
    views.push_back({e.name, e.spec.shape.dims(), arena.values_of(e)});
  }
  for (const auto& e : arena.buffer_entries()) {
    views.push_back({e.name, e.spec.shape.dims(), arena.values_of(e)});
  }
  for (std::size_t s = 0; s < slots.size(); ++s) {
    const auto& slot = optimizer.slot(static_cast<int>(s));
    for (const auto& e : arena.entries()) {
      views.push_back({fmt::format("optimizer.{}.{}", slots[s], e.name), e.spec.shape.dims(),
                       std::span<const float>(slot.data() + e.offset, e.numel())});
    }
  }
  const std::map<std::string, std::string> meta{
      {"format", kFormat},
      {"format_version", std::to_string(kCheckpointVersion)},
      {"model", model.to_json().dump()},
      {"config", config.to_json().dump()},
      {"state", state_to_json(state).dump()}};
  write_file_atomic(file, model::encode_safetensors(views, meta));
}

Checkpoint read_checkpoint(const std::filesystem::path& file) {
  return read_checkpoint_bytes(read_file(file), file.string());
}

Checkpoint read_checkpoint_bytes(std::string_view bytes, const std::string& source) {
  auto fail = [&](const std::string& why) { return CheckpointError(source + ": " + why); };
  model::Safetensors st;
  try {
    st = model::decode_safetensors(bytes, source);
  } catch (const model::FormatError& e) {
    throw CheckpointError(e.what());
  }
  const auto meta = [&](const char* key) -> const std::string* {
    const auto it = st.metadata.find(key);
    return it == st.metadata.end() ? nullptr : &it->second;
  };
  Checkpoint ck;
  const std::string* format = meta("format");
  if (format != nullptr && *format == kFormatV1) {
    ck.version = 1;
  } else if (format != nullptr && *format == kFormat && meta("format_version") != nullptr) {
    const std::string& v = *meta("format_version");
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), ck.version);
    if (ec != std::errc() || p != v.data() + v.size() || ck.version < 2) {
      throw fail(fmt::format("format_version '{}' is not a valid version", v));
    }
    if (ck.version > kCheckpointVersion) {
      throw fail(fmt::format(
          "written by a newer dropkit (checkpoint format version {}; this dropkit reads versions "
          "1 to {})",
          ck.version, kCheckpointVersion));
    }
  } else {
    throw fail(
        fmt::format("not a dropkit checkpoint (no \"format\": \"{}\" in its metadata)", kFormat));
  }
  if (meta("config") == nullptr || meta("state") == nullptr ||
      (ck.version >= 2 && meta("model") == nullptr)) {
    throw fail("checkpoint metadata lacks config, state or model");
  }

  std::map<std::string, Tensor> tensors = std::move(st.tensors);
  try {
    ck.config = TrainConfig::from_json(json::parse(*meta("config")), /*resolve_net=*/false);
    const json state = json::parse(*meta("state"));
    ck.state = state_from_json(state);
    if (ck.version == 1) {
      const data::Normalization norm{state.at("norm_mean").get<float>(),
                                     state.at("norm_std").get<float>()};
      const auto sizes = model::parse_arch(ck.config.arch);
      ck.model = std::make_unique<model::Model>(ck.config.layers(), Shape{sizes.front()}, norm);
      tensors = renamed_v1(std::move(tensors), ck.model->layers(),
                           optimizer_slot_names(ck.config.optimizer));
    } else {
      ck.model =
          std::make_unique<model::Model>(model::Model::from_json(json::parse(*meta("model"))));
    }
  } catch (const std::exception& e) {
    throw fail(std::string("bad metadata: ") + e.what());
  }

  // Exactly the tensors the model and its optimizer need, each finite and of the right shape;
  // everything is checked before anything is copied.
  auto take = [&](const std::string& name, const Shape& shape) -> Tensor {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw fail("missing tensor " + name);
    if (it->second.shape() != shape) {
      throw fail(fmt::format("tensor {} has shape {}, the model needs {}", name,
                             it->second.shape().str(), shape.str()));
    }
    for (std::size_t i = 0; i < it->second.numel(); ++i) {
      if (!std::isfinite(it->second[i]))
        throw fail(fmt::format("tensor {} holds {} at index {}", name, it->second[i], i));
    }
    Tensor t = std::move(it->second);
    tensors.erase(it);
    return t;
  };
  nn::ParamArena& arena = ck.model->params();
  std::vector<std::pair<const nn::ParamArena::Entry*, Tensor>> values;
  for (const auto& e : arena.entries()) values.emplace_back(&e, take(e.name, e.spec.shape));
  for (const auto& e : arena.buffer_entries()) values.emplace_back(&e, take(e.name, e.spec.shape));
  for (const auto& slot : optimizer_slot_names(ck.config.optimizer)) {
    for (const auto& e : arena.entries()) {
      const std::string name = fmt::format("optimizer.{}.{}", slot, e.name);
      ck.optimizer_slots.emplace(slot + "." + e.name, take(name, e.spec.shape));
    }
  }
  if (!tensors.empty()) throw fail("unexpected tensor " + tensors.begin()->first);
  for (auto& [e, t] : values) {
    std::copy(t.span().begin(), t.span().end(), arena.values_of(*e).begin());
  }
  return ck;
}

void restore_optimizer(const Checkpoint& ck, const nn::ParamArena& arena, Optimizer& optimizer) {
  const auto slots = optimizer_slot_names(optimizer.config());
  for (std::size_t s = 0; s < slots.size(); ++s) {
    auto& slot = optimizer.slot(static_cast<int>(s));
    if (slot.size() != arena.size()) {
      throw std::invalid_argument("restore_optimizer: the optimizer is not built for this model");
    }
    for (const auto& e : arena.entries()) {
      const auto it = ck.optimizer_slots.find(slots[s] + "." + e.name);
      if (it == ck.optimizer_slots.end()) {
        throw std::invalid_argument("restore_optimizer: no saved state for " + e.name);
      }
      const Tensor& t = it->second;
      std::copy(t.span().begin(), t.span().end(),
                slot.begin() + static_cast<std::ptrdiff_t>(e.offset));
    }
  }
  optimizer.set_adam_steps(ck.state.adam_steps);
}

}  // namespace dropkit::train
