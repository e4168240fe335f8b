#include "dropkit/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <tuple>

#include <fmt/format.h>

#include "dropkit/core/options.h"
#include "dropkit/kernels/gemm.h"
#include "dropkit/model/spec.h"
#include "dropkit/rng/streams.h"
#include "dropkit/train/loss.h"

namespace dropkit::train {
namespace {

constexpr std::size_t kEvalChunk = 1000;

bool finite(std::span<const float> values) {
  return std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
}

}  // namespace

EvalResult evaluate(model::Model& model, const data::Dataset& d,
                    std::span<const std::uint32_t> rows, parallel::ThreadPool& pool, Tensor& x,
                    std::vector<std::uint8_t>& labels, const DataParallel* dp) {
  parallel::ScopedFlushDenormals flush;
  const std::size_t chunks = (rows.size() + kEvalChunk - 1) / kEvalChunk;
  const std::size_t ranks = dp ? static_cast<std::size_t>(dp->size()) : 1;
  const std::size_t rank = dp ? static_cast<std::size_t>(dp->rank()) : 0;
  // Per chunk: the loss summed over its rows and the rows right (this process's chunks only).
  std::vector<double> sums(2 * chunks, 0.0);
  for (std::size_t c = rank; c < chunks; c += ranks) {
    const auto chunk =
        rows.subspan(c * kEvalChunk, std::min(kEvalChunk, rows.size() - c * kEvalChunk));
    data::make_batch(d, chunk, model.normalization(), x, labels);
    const Tensor& logits = model.forward(x, {.mode = nn::Mode::kEval, .pool = &pool});
    const LossResult r =
        softmax_cross_entropy(logits, labels, nullptr, 0, kernels::RowCalls::kWhole);
    sums[2 * c] = r.loss * static_cast<double>(chunk.size());
    sums[2 * c + 1] = static_cast<double>(r.correct);
  }
  if (dp) {  // each chunk's figures from the process that evaluated it
    const std::vector<double> all = dp->gather(sums);
    for (std::size_t c = 0; c < chunks; ++c) {
      for (std::size_t k = 0; k < 2; ++k)
        sums[2 * c + k] = all[(c % ranks) * 2 * chunks + 2 * c + k];
    }
  }
  EvalResult out;
  double loss = 0;
  std::size_t correct = 0;
  for (std::size_t c = 0; c < chunks; ++c) {  // in chunk order, whoever evaluated them
    loss += sums[2 * c];
    correct += static_cast<std::size_t>(sums[2 * c + 1]);
  }
  out.count = rows.size();
  if (out.count) {
    out.loss = loss / static_cast<double>(out.count);
    out.accuracy = static_cast<double>(correct) / static_cast<double>(out.count);
  }
  return out;
}

void check_model_fits_shape(const model::Model& model, const data::DatasetShape& shape,
                            const char* what) {
  if (model.input_shape().numel() != shape.rows * shape.cols) {
    throw std::invalid_argument(fmt::format(
        "the model takes examples of shape {} ({} values) but the {} images in {} are {}x{} ({}), "
        "as its header says",
        model.input_shape().str(), model.input_shape().numel(), what, shape.images_file, shape.rows,
        shape.cols, shape.rows * shape.cols));
  }
}

void check_model_fits(const model::Model& model, const data::Dataset& d, const char* what) {
  if (model.input_shape().numel() != d.features()) {
    throw std::invalid_argument(fmt::format(
        "the model takes examples of shape {} ({} values) but the {} images are {}x{} ({})",
        model.input_shape().str(), model.input_shape().numel(), what, d.rows, d.cols,
        d.features()));
  }
  // A model trained on byte images standardizes its inputs (compute_normalization: a mean
  // above 0 unless every pixel was 0); one trained on float features takes them as given (mean
  // 0, std 1). Float features given to a byte model would be read on the wrong scale without a
  // word, so they are refused. (Bytes given to a mean-0 model pass: an all-black training set
  // leaves the same normalization as float features.)
  const data::Normalization n = model.normalization();
  if (d.count > 0 && d.floats && !(n.mean == 0.0f && n.std == 1.0f)) {
    throw std::invalid_argument(
        fmt::format("the model was trained on uint8 images (0-255), but the {} examples are float "
                    "features; give uint8 images as in training",
                    what));
  }
  int max_label = -1;
  for (auto l : d.labels) max_label = std::max<int>(max_label, l);
  const Shape& out = model.output_shape();
  if (out.rank() != 1 || out[0] <= max_label) {
    throw std::invalid_argument(fmt::format(
        "the model's output per example is {}, but the {} labels{} need [{}] or more (labels "
        "go up to {})",
        out.str(), what, d.labels_file.empty() ? "" : " in " + d.labels_file, max_label + 1,
        max_label));
  }
}

Trainer::Trainer(TrainConfig config, const data::TrainTest& data, parallel::ThreadPool& pool,
                 parallel::ProcessGroup* group)
    : config_(std::move(config)), data_(data), pool_(pool) {
  config_.validate();
  if (config_.net.empty()) {
    const auto inputs = model::parse_arch(config_.arch).front();
    if (static_cast<std::size_t>(inputs) != data.train.features()) {
      throw std::invalid_argument(fmt::format("`arch` starts with {} inputs but the images have {}",
                                              inputs, data.train.features()));
    }
  }
  select_rows();
  // One example is [1, rows, cols]: a channel axis, so convolutions can follow; dense layers
  // read it as rows * cols features.
  model_ = std::make_unique<model::Model>(config_.layers(),
                                          Shape{1, static_cast<std::int64_t>(data.train.rows),
                                                static_cast<std::int64_t>(data.train.cols)},
                                          data::compute_normalization(data.train, split_.train));
  prepare(group);
  model_->init_params(config_.seed);
  state_.train_data = data::fingerprint(data.train);
  state_.test_data = data::fingerprint(data.test);
}

Trainer::Trainer(Checkpoint ck, const data::TrainTest& data, parallel::ThreadPool& pool,
                 parallel::ProcessGroup* group)
    : config_(std::move(ck.config)), data_(data), pool_(pool), state_(std::move(ck.state)) {
  config_.validate(/*resolve_net=*/false);  // the model comes from the checkpoint
  if (config_.epochs < state_.epoch) {
    throw std::invalid_argument(
        fmt::format("`epochs` {} is fewer than the {} epochs the run has done already",
                    config_.epochs, state_.epoch));
  }
  // The data must be the run's own: the same examples in the same order (the checkpoint keeps
  // their fingerprints; one written before that resumes unchecked).
  for (const auto& [kept, split, name] : {std::tuple{&state_.train_data, &data.train, "training"},
                                          std::tuple{&state_.test_data, &data.test, "test"}}) {
    if (kept->empty()) continue;
    const std::string now = data::fingerprint(*split);
    if (now != *kept) {
      throw std::invalid_argument(fmt::format(
          "the {} data given are not those this run was trained on (run: {}; given: {}); "
          "resume with the run's `data`",
          name, *kept, now));
    }
  }
  select_rows();
  // Every epoch takes the same number of steps on these data: the history must say so (a
  // checkpoint whose steps were edited, or one without fingerprints resumed on other data,
  // would otherwise continue at a step no run reaches).
  const std::uint64_t per_epoch =
      (split_.train.size() + static_cast<std::size_t>(config_.batch) - 1) /
      static_cast<std::size_t>(config_.batch);
  for (const auto& r : state_.history) {
    if (r.step != per_epoch * static_cast<std::uint64_t>(r.epoch)) {
      throw std::invalid_argument(fmt::format(
          "the run's history records {} steps after epoch {}, but an epoch is {} steps of {} "
          "examples on these data ({} after epoch {})",
          r.step, r.epoch, per_epoch, config_.batch, per_epoch * r.epoch, r.epoch));
    }
  }
  model_ = std::move(ck.model);
  prepare(group);
  restore_optimizer(ck, model_->params(), *optimizer_);
}

void Trainer::select_rows() {
  const auto excluded = data::parse_class_list(config_.exclude_classes, 256);
  if (config_.val >= data_.train.count) {  // the option's name, for every front end
    throw std::invalid_argument(
        fmt::format("{} = {} must be below the {} training examples (0 for no validation split)",
                    option_ref("val"), config_.val, data_.train.count));
  }
  split_ = data::split_train_val(data_.train.count, config_.val);
  split_.train = data::rows_without(data_.train, split_.train, excluded);
  split_.val = data::rows_without(data_.train, split_.val, excluded);
  std::vector<std::uint32_t> test(data_.test.count);
  std::iota(test.begin(), test.end(), 0u);
  test_rows_ = data::rows_without(data_.test, test, excluded);
  if (split_.train.empty() || test_rows_.empty()) {
    throw std::invalid_argument(fmt::format(
        "`exclude_classes` {} leaves no training or no test examples", config_.exclude_classes));
  }
  if (config_.train_size > 0) {
    if (config_.train_size > split_.train.size()) {
      throw std::invalid_argument(
          fmt::format("`train_size` {} is more than the {} training examples there are (after "
                      "`val` and `exclude_classes`); it must be in [1, {}], or 0 for all",
                      config_.train_size, split_.train.size(), split_.train.size()));
    }
    split_.train.resize(config_.train_size);
  }
}

void Trainer::prepare(parallel::ProcessGroup* group) {
  check_model_fits(*model_, data_.train, "training");
  check_model_fits(*model_, data_.test, "test");
  // Before any buffer is allocated: a step keeps every layer's output and gradient for the
  // batch; evaluation keeps the outputs for chunks of kEvalChunk (the same buffers, grown).
  const auto batch_rows = static_cast<std::uint64_t>(config_.batch);
  model_->check_fits(std::max<std::uint64_t>(batch_rows, kEvalChunk), batch_rows,
                     fmt::format("training in batches of {}", config_.batch));
  // The classes against the model's outputs (check_model_fits made them rank 1).
  data::parse_class_list(config_.exclude_classes, static_cast<int>(model_->output_shape()[0]));
  // A batch of one example has no statistics of its own for a batchnorm over [N, D]
  // (nn/batchnorm.h): refuse a split whose last batch would be one, before any epoch runs.
  const auto batch = static_cast<std::size_t>(config_.batch);
  if (split_.train.size() % batch == 1) {
    for (std::size_t i = 0; i < model_->size(); ++i) {
      const Shape in = model_->layer_input_shape(i, 1);
      const nn::Layer& layer = model_->layer(i);
      if (layer.min_train_batch(in) > 1) {
        throw std::invalid_argument(fmt::format(
            "{} training examples in batches of {} leave a last batch of 1 example, which layer "
            "{} ({}) cannot normalise by its own statistics: change `batch` or `val`",
            split_.train.size(), batch, i + 1, layer.kind()));
      }
    }
  }
  kernels::check_precision_available(kernels::parse_precision(config_.precision));
  if (group != nullptr && group->size() > 1) {
    dp_ = std::make_unique<DataParallel>(*group, batch);
  }
  optimizer_ = std::make_unique<Optimizer>(config_.optimizer, model_->params().size());
}

EpochRecord Trainer::run_epoch(const Progress& progress) {
  parallel::ScopedFlushDenormals flush;
  const auto t0 = std::chrono::steady_clock::now();
  const auto order = data::epoch_permutation(split_.train, config_.seed, state_.epoch);
  const std::size_t batch = static_cast<std::size_t>(config_.batch);
  const std::size_t steps = (order.size() + batch - 1) / batch;
  double loss_sum = 0, step_sum = 0, step_sq = 0;
  std::size_t seen = 0;
  const data::Augmentation augmentation{config_.augment_flip, config_.augment_shift};
  const data::Normalization norm = model_->normalization();
  const float background = (0.0f - norm.mean) / norm.std;  // a zero pixel, as make_batch makes it
  const kernels::Precision precision = kernels::parse_precision(config_.precision);
  for (std::size_t s = 0; s < steps; ++s) {
    const std::size_t b = s * batch, e = std::min(order.size(), b + batch);
    auto rows = std::span(order).subspan(b, e - b);
    std::uint64_t row_offset = 0;
    if (dp_) {  // this process's leaves of the batch
      const DataParallel::Share share = dp_->begin_step(e - b);
      rows = rows.subspan(share.begin, share.end - share.begin);
      row_offset = share.begin;
    }
    data::make_batch(data_.train, rows, model_->normalization(), x_, labels_);
    if (augmentation.any()) {
      data::augment_batch(
          x_, rows, augmentation,
          {config_.seed, rng::kAugmentStream, static_cast<std::uint64_t>(state_.epoch)},
          background);
    }
    const nn::Context ctx{.mode = nn::Mode::kTrain,
                          .seed = config_.seed,
                          .step = state_.step,
                          .row_offset = row_offset,
                          .precision = precision,
                          .pool = &pool_,
                          .peers = dp_.get(),
                          .train_examples = split_.train.size()};
    const LossResult r = train_step(model_->net(), *optimizer_, state_.epoch,
                                    model_->shaped_input(x_), labels_, ctx, dlogits_, dp_.get());
    ++state_.step;
    loss_sum += r.loss * static_cast<double>(e - b);
    step_sum += r.loss;
    step_sq += r.loss * r.loss;
    seen += e - b;
    if (progress) progress(s + 1, steps, loss_sum / static_cast<double>(seen));
  }
  EpochRecord rec;
  rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rec.epoch = state_.epoch + 1;
  rec.step = state_.step;
  rec.train_loss = seen ? loss_sum / static_cast<double>(seen) : 0.0;
  if (steps > 1) {  // the sample standard deviation of the steps' losses
    const auto k = static_cast<double>(steps);
    const double mean = step_sum / k;
    rec.step_loss_std = std::sqrt(std::max(0.0, (step_sq - k * mean * mean) / (k - 1)));
  }
  rec.lr = optimizer_->lr_at(state_.epoch);
  rec.momentum = optimizer_->momentum_at(state_.epoch);
  rec.drop_rates = model_->learned_drop_probs();
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
  // The last step's update can diverge after its loss was checked: then the weights, and the
  // losses evaluated with them, are not finite. Such an epoch is not recorded, so no checkpoint
  // can hold it.
  for (double loss : {rec.train_eval_loss, rec.val_loss, rec.test_loss}) {
    if (!std::isfinite(loss)) throw TrainingDiverged(state_.step, loss);
  }
  if (!finite(model_->params().values())) {
    throw TrainingDiverged(state_.step, std::numeric_limits<double>::quiet_NaN());
  }
  // Every process applied the same updates, so they hold the same model; a cheap check that
  // nothing (a fault, a bug) made them part.
  if (dp_) {
    dp_->check_same(model_->params().values(), "weights");
    dp_->check_same(model_->params().buffers(), "buffers (batch norm's running statistics)");
  }
  ++state_.epoch;
  state_.history.push_back(rec);
  return rec;
}

EvalResult Trainer::evaluate(const data::Dataset& d, std::span<const std::uint32_t> rows) {
  return train::evaluate(*model_, d, rows, pool_, x_, labels_, dp_.get());
}

EvalResult Trainer::evaluate_test() {
  return evaluate(data_.test, test_rows_);
}

void Trainer::save_checkpoint(const std::filesystem::path& file) const {
  // Only finite weights and metrics are ever saved: anything else could not be loaded.
  if (!finite(model_->params().values())) {
    throw std::logic_error("save_checkpoint: the weights are not finite");
  }
  TrainState state = state_;
  state.adam_steps = optimizer_->adam_steps();
  train::save_checkpoint(file, *model_, *optimizer_, config_, state);
}

}  // namespace dropkit::train
