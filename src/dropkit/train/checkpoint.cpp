#include "dropkit/train/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <regex>

#include <fmt/format.h>

#include "dropkit/core/atomic_file.h"
#include "dropkit/core/json_text.h"
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
  if (!j.contains(key)) throw std::invalid_argument(fmt::format("{} is missing", key));
  const json& v = j.at(key);
  const bool whole =
      v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
  if (!whole || v.get<std::uint64_t>() > max) {
    throw std::invalid_argument(
        fmt::format("{} = {} is not a whole number in [0, {}]", key, json_excerpt(v), max));
  }
  return v.get<std::uint64_t>();
}

std::string string_at(const json& j, const char* key, const std::string& owner) {
  if (!j.contains(key) || !j.at(key).is_string()) {
    throw std::invalid_argument(fmt::format("{}{} must be a string", owner, key));
  }
  return j.at(key).get<std::string>();
}

TrainState state_from_json(const json& j) {
  if (!j.is_object()) {
    throw std::invalid_argument(fmt::format("state is {}, not an object", json_type_name(j)));
  }
  static const std::vector<std::string> kKeys = {"epoch", "step",      "adam_steps", "history",
                                                 "data",  "norm_mean", "norm_std"};
  check_known_keys(j, kKeys, "state: ");
  TrainState s;
  s.epoch = static_cast<int>(count_at(j, "epoch", 100000));
  s.step = count_at(j, "step", std::numeric_limits<std::uint64_t>::max());
  s.adam_steps = j.contains("adam_steps") ? count_at(j, "adam_steps", s.step) : 0;
  const json history = j.value("history", json::array());
  if (!history.is_array()) throw std::invalid_argument("state: history is not an array");
  for (std::size_t i = 0; i < history.size(); ++i) {
    s.history.push_back(
        EpochRecord::from_json(history[i], fmt::format("history entry {}: ", i + 1)));
  }
  if (static_cast<std::size_t>(s.epoch) != s.history.size()) {
    throw std::invalid_argument(
        fmt::format("epoch = {} but the history holds {} epochs", s.epoch, s.history.size()));
  }
  std::uint64_t previous = 0;
  for (std::size_t i = 0; i < s.history.size(); ++i) {
    const EpochRecord& r = s.history[i];
    if (r.epoch != static_cast<int>(i) + 1 || r.step <= previous) {
      throw std::invalid_argument(fmt::format(
          "history entry {} (epoch {}, step {}) does not follow its predecessor (epoch {}, step "
          "{}): epochs count from 1 and every epoch takes at least one step",
          i + 1, r.epoch, r.step, i, previous));
    }
    previous = r.step;
  }
  // The steps done are those of the last recorded epoch: nothing else is ever saved.
  if (s.step != previous) {
    throw std::invalid_argument(
        fmt::format("step = {} but the history says {} steps were done (after epoch {})", s.step,
                    previous, s.epoch));
  }
  if (j.contains("data")) {
    const json& d = j["data"];
    if (!d.is_object()) throw std::invalid_argument("state: data is not an object");
    static const std::vector<std::string> kDataKeys = {"train", "test"};
    check_known_keys(d, kDataKeys, "state: data: ");
    s.train_data = string_at(d, "train", "state: data: ");
    s.test_data = string_at(d, "test", "state: data: ");
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

namespace {

using Metadata = std::map<std::string, std::string>;

CheckpointError error_in(const std::string& source, const std::string& why) {
  return CheckpointError(source + ": " + why);
}

const std::string* metadata_at(const Metadata& metadata, const char* key) {
  const auto it = metadata.find(key);
  return it == metadata.end() ? nullptr : &it->second;
}

// The format version the metadata declares: 1 for the first format, else its format_version,
// which this dropkit must be able to read; and the entries that version needs are there.
int format_version(const Metadata& metadata, const std::string& source) {
  const auto meta = [&](const char* key) { return metadata_at(metadata, key); };
  int version = 0;
  const std::string* format = meta("format");
  if (format != nullptr && *format == kFormatV1) {
    version = 1;
  } else if (format != nullptr && *format == kFormat && meta("format_version") != nullptr) {
    const std::string& v = *meta("format_version");
    const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
    if (ec != std::errc() || p != v.data() + v.size() || version < 2) {
      throw error_in(source, fmt::format("format_version '{}' is not a valid version", v));
    }
    if (version > kCheckpointVersion) {
      throw error_in(
          source,
          fmt::format("written by a newer dropkit (checkpoint format version {}; this dropkit "
                      "reads versions 1 to {})",
                      version, kCheckpointVersion));
    }
  } else {
    throw error_in(
        source,
        fmt::format("not a dropkit checkpoint (no \"format\": \"{}\" in its metadata)", kFormat));
  }
  if (meta("config") == nullptr || meta("state") == nullptr ||
      (version >= 2 && meta("model") == nullptr)) {
    throw error_in(source, "checkpoint metadata lacks config, state or model");
  }
  return version;
}

// ck's config, state and model from the metadata of a checkpoint of format ck.version. The
// first format names no model: it is built from the config, and `tensors` renamed from that
// format's names to the model's. Any problem here is "bad metadata".
void read_metadata(const Metadata& metadata, const std::string& source, Checkpoint& ck,
                   std::map<std::string, Tensor>& tensors) {
  const auto meta = [&](const char* key) { return metadata_at(metadata, key); };
  try {
    ck.config = TrainConfig::from_json(parse_json(*meta("config"), "config"),
                                       /*resolve_net=*/false);
    const json state = parse_json(*meta("state"), "state");
    ck.state = state_from_json(state);
    // Adam counts its own steps (for its bias correction): all of them, or none for sgd.
    const std::uint64_t adam_steps = ck.config.optimizer.kind == "adam" ? ck.state.step : 0;
    if (ck.state.adam_steps != adam_steps) {
      throw std::invalid_argument(
          fmt::format("adam_steps = {} but a run of {} steps with {} has {}", ck.state.adam_steps,
                      ck.state.step, ck.config.optimizer.kind, adam_steps));
    }
    if (ck.version == 1) {
      if (!state.value("norm_mean", json()).is_number() ||
          !state.value("norm_std", json()).is_number()) {
        throw std::invalid_argument("state: norm_mean and norm_std must be numbers");
      }
      const data::Normalization norm{state["norm_mean"].get<float>(),
                                     state["norm_std"].get<float>()};
      const auto sizes = model::parse_arch(ck.config.arch);
      ck.model = std::make_unique<model::Model>(ck.config.layers(), Shape{sizes.front()}, norm);
      tensors = renamed_v1(std::move(tensors), ck.model->layers(),
                           optimizer_slot_names(ck.config.optimizer));
    } else {
      ck.model = std::make_unique<model::Model>(
          model::Model::from_json(parse_json(*meta("model"), "model")));
    }
  } catch (const std::exception& e) {
    throw error_in(source, std::string("bad metadata: ") + e.what());
  }
}

// Exactly the tensors ck's model and its optimizer need, each finite and of the right shape,
// into the model's parameters and buffers and ck.optimizer_slots; everything is checked before
// anything is copied.
void take_tensors(std::map<std::string, Tensor> tensors, const std::string& source,
                  Checkpoint& ck) {
  auto take = [&](const std::string& name, const Shape& shape) -> Tensor {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw error_in(source, "missing tensor " + name);
    if (it->second.shape() != shape) {
      throw error_in(source, fmt::format("tensor {} has shape {}, the model needs {}", name,
                                         it->second.shape().str(), shape.str()));
    }
    for (std::size_t i = 0; i < it->second.numel(); ++i) {
      if (!std::isfinite(it->second[i])) {
        throw error_in(source,
                       fmt::format("tensor {} holds {} at index {}", name, it->second[i], i));
      }
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
  if (!tensors.empty()) throw error_in(source, "unexpected tensor " + tensors.begin()->first);
  for (auto& [e, t] : values) {
    std::copy(t.span().begin(), t.span().end(), arena.values_of(*e).begin());
  }
}

}  // namespace

Checkpoint read_checkpoint(const std::filesystem::path& file) {
  return read_checkpoint_bytes(read_file(file), file.string());
}

Checkpoint read_checkpoint_bytes(std::string_view bytes, const std::string& source) {
  model::Safetensors st;
  try {
    st = model::decode_safetensors(bytes, source);
  } catch (const model::FormatError& e) {
    throw CheckpointError(e.what());
  }
  Checkpoint ck;
  ck.version = format_version(st.metadata, source);
  std::map<std::string, Tensor> tensors = std::move(st.tensors);
  read_metadata(st.metadata, source, ck, tensors);
  take_tensors(std::move(tensors), source, ck);
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
