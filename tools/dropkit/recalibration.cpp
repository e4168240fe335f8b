#include "recalibration.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/data/batcher.h"
#include "dropkit/data/idx.h"
#include "dropkit/train/recalibrate.h"

namespace dropkit::cli {

std::string recalibrate_from_flag(model::Model& model, const train::TrainConfig& config,
                                  const std::string& data_dir, std::uint64_t examples,
                                  parallel::ThreadPool& pool) {
  if (examples == 0) return "";
  const auto train_split = data::load_mnist_split(data_dir, data::MnistSplit::kTrain, 256);
  if (train_split.features() != model.input_shape().numel()) {
    throw std::invalid_argument(
        fmt::format("--recalibrate-bn: the training images of {} are {}x{}, the model takes {}",
                    data_dir, train_split.rows, train_split.cols, model.input_shape().str()));
  }
  const auto split = data::split_train_val(train_split.count, config.val);
  auto rows = data::rows_without(train_split, split.train,
                                 data::parse_class_list(config.exclude_classes, 256));
  rows.resize(std::min<std::size_t>(rows.size(), examples));
  const auto batch = static_cast<std::size_t>(std::max(config.batch, 2));
  const std::size_t layers = train::recalibrate_batchnorm(model, train_split, rows, batch, pool);
  if (layers == 0) {
    throw std::invalid_argument("--recalibrate-bn: the model has no batchnorm layer");
  }
  return fmt::format("recalibrated {} batchnorm layer(s) on {} training examples, batches of {}",
                     layers, rows.size(), batch);
}

}  // namespace dropkit::cli
