#include "dropkit/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "dropkit/core/atomic_file.h"
#include "dropkit/model/safetensors.h"
#include "dropkit/train/loss.h"

namespace dropkit::train {
namespace {

constexpr const char* kFormat = "dropkit-checkpoint-1";
constexpr std::size_t kEvalChunk = 1000;

void check_range(bool ok, const char* field, const std::string& value, const char* range) {
  if (!ok) throw std::invalid_argument(fmt::format("{} = {} is outside {}", field, value, range));
}

}  // namespace

void TrainConfig::validate() const {
  model::parse_arch(arch);
  nn::parse_activation(activation);
  dropout::checked_drop_prob(dropout, "dropout (hidden drop rate)");
  dropout::checked_drop_prob(input_dropout, "input-dropout (input drop rate)");
  if (scaling != "inverted" && scaling != "inference") {
    throw std::invalid_argument(
        fmt::format("scaling '{}' is not one of inverted, inference", scaling));
  }
  optimizer.validate();
  check_range(batch >= 1 && batch <= 65536, "batch", std::to_string(batch), "[1, 65536]");
  check_range(epochs >= 1 && epochs <= 100000, "epochs", std::to_string(epochs), "[1, 100000]");
}

nlohmann::json TrainConfig::to_json() const {
  const auto& o = optimizer;
  return {{"arch", arch},
          {"activation", activation},
          {"dropout", dropout},
          {"input_dropout", input_dropout},
          {"scaling", scaling},
          {"optimizer", o.kind},
          {"lr", o.lr},
          {"lr_decay", o.lr_decay},
          {"momentum", o.momentum},
          {"momentum_start", o.momentum_start},
          {"momentum_ramp_epochs", o.momentum_ramp_epochs},
          {"nesterov", o.nesterov},
          {"weight_decay", o.weight_decay},
          {"max_norm", o.max_norm},
          {"adam_beta1", o.adam_beta1},
          {"adam_beta2", o.adam_beta2},
          {"adam_eps", o.adam_eps},
          {"batch", batch},
          {"epochs", epochs},
          {"val", val},
          {"seed", seed},
          {"train_eval", train_eval}};
}

TrainConfig TrainConfig::from_json(const nlohmann::json& j) {
  TrainConfig c;
  auto& o = c.optimizer;
  j.at("arch").get_to(c.arch);
  j.at("activation").get_to(c.activation);
  j.at("dropout").get_to(c.dropout);
  j.at("input_dropout").get_to(c.input_dropout);
  j.at("scaling").get_to(c.scaling);
  j.at("optimizer").get_to(o.kind);
  j.at("lr").get_to(o.lr);
  j.at("lr_decay").get_to(o.lr_decay);
  j.at("momentum").get_to(o.momentum);
  j.at("momentum_start").get_to(o.momentum_start);
  j.at("momentum_ramp_epochs").get_to(o.momentum_ramp_epochs);
  j.at("nesterov").get_to(o.nesterov);
  j.at("weight_decay").get_to(o.weight_decay);
  j.at("max_norm").get_to(o.max_norm);
  j.at("adam_beta1").get_to(o.adam_beta1);
  j.at("adam_beta2").get_to(o.adam_beta2);
  j.at("adam_eps").get_to(o.adam_eps);
  j.at("batch").get_to(c.batch);
  j.at("epochs").get_to(c.epochs);
  j.at("val").get_to(c.val);
  j.at("seed").get_to(c.seed);
  j.at("train_eval").get_to(c.train_eval);
  c.validate();
  return c;
}

model::MlpOptions TrainConfig::mlp_options() const {
  model::MlpOptions m;
  m.sizes = model::parse_arch(arch);
  m.activation = nn::parse_activation(activation);
  m.input_drop_prob = input_dropout;
  m.hidden_drop_prob = dropout;
  m.scaling = scaling == "inference" ? dropout::Scaling::kInference : dropout::Scaling::kInverted;
  return m;
}

nlohmann::json EpochRecord::to_json() const {
  return {{"epoch", epoch},
          {"step", step},
          {"train_loss", train_loss},
          {"train_accuracy", train_accuracy},
          {"train_eval_loss", train_eval_loss},
          {"val_loss", val_loss},
          {"val_accuracy", val_accuracy},
          {"test_loss", test_loss},
          {"test_accuracy", test_accuracy},
          {"epoch_seconds", seconds},
          {"lr", lr},
          {"momentum", momentum}};
}

EpochRecord EpochRecord::from_json(const nlohmann::json& j) {
  EpochRecord r;
  j.at("epoch").get_to(r.epoch);
  j.at("step").get_to(r.step);
  j.at("train_loss").get_to(r.train_loss);
  j.at("train_accuracy").get_to(r.train_accuracy);
  j.at("train_eval_loss").get_to(r.train_eval_loss);
  j.at("val_loss").get_to(r.val_loss);
  j.at("val_accuracy").get_to(r.val_accuracy);
  j.at("test_loss").get_to(r.test_loss);
  j.at("test_accuracy").get_to(r.test_accuracy);
  j.at("epoch_seconds").get_to(r.seconds);
  j.at("lr").get_to(r.lr);
  j.at("momentum").get_to(r.momentum);
  return r;
}

TrainingDiverged::TrainingDiverged(std::uint64_t step, double loss)
    : std::runtime_error(fmt::format(
          "training diverged: the loss became {} at step {}; the last checkpoint is intact "
          "(try a lower --lr or a --max-norm)",
          loss, step)),
      step_(step) {}

LossResult train_step(model::Sequential& model, Optimizer& optimizer, int epoch, const Tensor& x,
                      std::span<const std::uint8_t> labels, const nn::Context& ctx,
                      Tensor& dlogits) {
  const Tensor& logits = model.forward(x, ctx);
  const LossResult r = softmax_cross_entropy(logits, labels, &dlogits);
  if (!std::isfinite(r.loss)) throw TrainingDiverged(ctx.step, r.loss);
  // The update runs inside backward, block by block (train/optimizer.h).
  optimizer.begin_step(model.params(), epoch);
  model.backward(dlogits, &optimizer);
  optimizer.finish_step(ctx.threads());
  return r;
}

Trainer::Trainer(TrainConfig config, const data::TrainTest& data, parallel::ThreadPool& pool)
    : config_(std::move(config)), data_(data), pool_(pool) {
  config_.validate();
  const auto sizes = model::parse_arch(config_.arch);
  if (static_cast<std::size_t>(sizes.front()) != data.train.features()) {
    throw std::invalid_argument(fmt::format("--arch starts with {} inputs but the images have {}",
                                            sizes.front(), data.train.features()));
  }
  int max_label = 0;
  for (auto l : data.train.labels) max_label = std::max<int>(max_label, l);
  if (sizes.back() <= max_label) {
    throw std::invalid_argument(
        fmt::format("--arch ends with {} outputs but labels go up to {}", sizes.back(), max_label));
  }
  split_ = data::split_train_val(data.train.count, config_.val);
  test_rows_.resize(data.test.count);
  std::iota(test_rows_.begin(), test_rows_.end(), 0u);
  norm_ = data::compute_normalization(data.train, split_.train);
  model_ = model::make_mlp(config_.mlp_options());
  model_->init_params(config_.seed);
  optimizer_ = std::make_unique<Optimizer>(config_.optimizer, model_->params().size());
}

EpochRecord Trainer::run_epoch(const Progress& progress) {
  parallel::ScopedFlushDenormals flush;
  const auto t0 = std::chrono::steady_clock::now();
  const auto order = data::epoch_permutation(split_.train, config_.seed, epoch_);
  const std::size_t batch = static_cast<std::size_t>(config_.batch);
  const std::size_t steps = (order.size() + batch - 1) / batch;
  double loss_sum = 0;
  std::size_t seen = 0;
  for (std::size_t s = 0; s < steps; ++s) {
    const std::size_t b = s * batch, e = std::min(order.size(), b + batch);
    data::make_batch(data_.train, std::span(order).subspan(b, e - b), norm_, x_, labels_);
    const nn::Context ctx{
        .mode = nn::Mode::kTrain, .seed = config_.seed, .step = step_, .pool = &pool_};
    const LossResult r = train_step(*model_, *optimizer_, epoch_, x_, labels_, ctx, dlogits_);
    ++step_;
    loss_sum += r.loss * static_cast<double>(e - b);
    seen += e - b;
    if (progress) progress(s + 1, steps, loss_sum / static_cast<double>(seen));
  }
  EpochRecord rec;
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rec.epoch = epoch_ + 1;
  rec.step = step_;
  rec.train_loss = seen ? loss_sum / static_cast<double>(seen) : 0.0;
  rec.lr = optimizer_->lr_at(epoch_);
  rec.momentum = optimizer_->momentum_at(epoch_);
  const auto train_rows =
      std::span(split_.train).first(std::min(config_.train_eval, split_.train.size()));
  const EvalResult tr = evaluate(data_.train, train_rows);
  rec.train_accuracy = tr.accuracy;
  rec.train_eval_loss = tr.loss;
  if (!split_.val.empty()) {
    const EvalResult v = evaluate(data_.train, split_.val);
    rec.val_loss = v.loss;
    rec.val_accuracy = v.accuracy;
  }
  const EvalResult t = evaluate_test();
  rec.test_loss = t.loss;
  rec.test_accuracy = t.accuracy;
  ++epoch_;
  history_.push_back(rec);
  return rec;
}

EvalResult Trainer::evaluate(const data::Dataset& d, std::span<const std::uint32_t> rows) {
  parallel::ScopedFlushDenormals flush;
  EvalResult out;
  double loss = 0;
  std::size_t correct = 0;
  // The training batch buffers, reused: a fresh 3 MB tensor per call would page-fault anew.
  for (std::size_t b = 0; b < rows.size(); b += kEvalChunk) {
    const auto chunk = rows.subspan(b, std::min(kEvalChunk, rows.size() - b));
    data::make_batch(d, chunk, norm_, x_, labels_);
    const Tensor& logits = model_->forward(x_, {.mode = nn::Mode::kEval, .pool = &pool_});
    const LossResult r = softmax_cross_entropy(logits, labels_, nullptr);
    loss += r.loss * static_cast<double>(chunk.size());
    correct += r.correct;
  }
  out.count = rows.size();
  if (out.count) {
    out.loss = loss / static_cast<double>(out.count);
    out.accuracy = static_cast<double>(correct) / static_cast<double>(out.count);
  }
  return out;
}

EvalResult Trainer::evaluate_test() {
  return evaluate(data_.test, test_rows_);
}

void Trainer::save_checkpoint(const std::filesystem::path& file) const {
  auto& arena = model_->params();
  std::vector<model::TensorView> views;
  for (const auto& e : arena.entries()) {
    views.push_back({"model." + e.name, e.spec.shape.dims(),
                     std::span<const float>(arena.values().data() + e.offset, e.numel())});
    for (int s = 0; s < optimizer_->num_slots(); ++s) {
      views.push_back({fmt::format("optimizer.slot{}.{}", s, e.name), e.spec.shape.dims(),
                       std::span<const float>(optimizer_->slot(s).data() + e.offset, e.numel())});
    }
  }
  nlohmann::json history = nlohmann::json::array();
  for (const auto& r : history_) history.push_back(r.to_json());
  const nlohmann::json state{
      {"epoch", epoch_},         {"step", step_},         {"adam_steps", optimizer_->adam_steps()},
      {"norm_mean", norm_.mean}, {"norm_std", norm_.std}, {"history", history}};
  const std::map<std::string, std::string> meta{
      {"format", kFormat}, {"config", config_.to_json().dump()}, {"state", state.dump()}};
  write_file_atomic(file, model::encode_safetensors(views, meta));
}

namespace {
model::Safetensors read_checkpoint(const std::filesystem::path& file) {
  auto st = model::decode_safetensors(read_file(file), file.string());
  const auto f = st.metadata.find("format");
  if (f == st.metadata.end() || f->second != kFormat || !st.metadata.contains("config") ||
      !st.metadata.contains("state")) {
    throw std::runtime_error(file.string() + ": not a dropkit checkpoint (format " + kFormat + ")");
  }
  return st;
}
}  // namespace

TrainConfig Trainer::read_checkpoint_config(const std::filesystem::path& file) {
  const auto st = read_checkpoint(file);
  try {
    return TrainConfig::from_json(nlohmann::json::parse(st.metadata.at("config")));
  } catch (const std::exception& e) {
    throw std::runtime_error(file.string() + ": bad config in checkpoint: " + e.what());
  }
}

void Trainer::load_checkpoint(const std::filesystem::path& file) {
  auto st = read_checkpoint(file);
  nlohmann::json config;
  std::vector<EpochRecord> history;
  int epoch = 0;
  std::uint64_t step = 0, adam_steps = 0;
  data::Normalization norm;
  try {  // parse everything first: a bad field must not leave a half-loaded model
    config = nlohmann::json::parse(st.metadata.at("config"));
    const auto state = nlohmann::json::parse(st.metadata.at("state"));
    for (const auto& r : state.at("history")) history.push_back(EpochRecord::from_json(r));
    epoch = state.at("epoch").get<int>();
    step = state.at("step").get<std::uint64_t>();
    adam_steps = state.at("adam_steps").get<std::uint64_t>();
    norm = {state.at("norm_mean").get<float>(), state.at("norm_std").get<float>()};
  } catch (const std::exception& e) {
    throw std::runtime_error(file.string() + ": bad metadata in checkpoint: " + e.what());
  }
  // Everything but the epoch budget must match: a different model or optimizer would not
  // continue the same run.
  nlohmann::json mine = config_.to_json(), theirs = config;
  mine.erase("epochs");
  theirs.erase("epochs");
  if (mine != theirs) {
    std::string diff;
    for (auto& [k, v] : mine.items()) {
      if (!theirs.contains(k) || theirs[k] != v) {
        diff += fmt::format("{}{} (checkpoint {}, now {})", diff.empty() ? "" : ", ", k,
                            theirs.contains(k) ? theirs[k].dump() : "missing", v.dump());
      }
    }
    throw std::runtime_error(file.string() + ": checkpoint does not match the config: " + diff);
  }
  auto& arena = model_->params();
  // Check every tensor before touching anything.
  auto find = [&](const std::string& name, const Shape& shape) -> const Tensor& {
    const auto it = st.tensors.find(name);
    if (it == st.tensors.end())
      throw std::runtime_error(file.string() + ": missing tensor " + name);
    if (it->second.shape() != shape) {
      throw std::runtime_error(fmt::format("{}: tensor {} has shape {}, the model needs {}",
                                           file.string(), name, it->second.shape().str(),
                                           shape.str()));
    }
    return it->second;
  };
  for (const auto& e : arena.entries()) {
    find("model." + e.name, e.spec.shape);
    for (int s = 0; s < optimizer_->num_slots(); ++s) {
      find(fmt::format("optimizer.slot{}.{}", s, e.name), e.spec.shape);
    }
  }
  for (const auto& e : arena.entries()) {
    const Tensor& w = find("model." + e.name, e.spec.shape);
    std::memcpy(arena.values().data() + e.offset, w.data(), e.numel() * sizeof(float));
    for (int s = 0; s < optimizer_->num_slots(); ++s) {
      const Tensor& t = find(fmt::format("optimizer.slot{}.{}", s, e.name), e.spec.shape);
      std::memcpy(optimizer_->slot(s).data() + e.offset, t.data(), e.numel() * sizeof(float));
    }
  }
  epoch_ = epoch;
  step_ = step;
  optimizer_->set_adam_steps(adam_steps);
  norm_ = norm;
  history_ = std::move(history);
}

}  // namespace dropkit::train
