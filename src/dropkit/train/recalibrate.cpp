#include "dropkit/train/recalibrate.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "dropkit/data/batcher.h"
#include "dropkit/nn/batchnorm.h"

namespace dropkit::train {

std::size_t recalibrate_batchnorm(model::Model& model, const data::Dataset& d,
                                  std::span<const std::uint32_t> rows, std::size_t batch,
                                  parallel::ThreadPool& pool) {
  if (batch < 2 || rows.size() < 2) {
    throw std::invalid_argument(
        fmt::format("recalibration needs batches of 2 or more examples (batch {}, {} examples)",
                    batch, rows.size()));
  }
  std::size_t layers = 0;
  for (std::size_t i = 0; i < model.size(); ++i) {
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(&model.layer(i))) {
      bn->reset_running_statistics();
      ++layers;
    }
  }
  if (layers == 0) return 0;
  parallel::ScopedFlushDenormals flush;
  Tensor x;
  std::vector<std::uint8_t> labels;
  for (std::size_t b = 0; b + 2 <= rows.size(); b += batch) {
    const auto part = rows.subspan(b, std::min(batch, rows.size() - b));
    data::make_batch(d, part, model.normalization(), x, labels);
    model.forward(x, {.mode = nn::Mode::kEval, .recalibrate = true, .pool = &pool});
  }
  return layers;
}

}  // namespace dropkit::train
