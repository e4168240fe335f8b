// Prediction over a data set: deterministic (eval mode: weight scaling) or Monte-Carlo dropout
// (Gal & Ghahramani 2016): T stochastic passes with every dropout-family layer sampling and every
// other layer in eval mode (nn::Mode::kSample; BatchNorm uses its running statistics).
//
// Reproducible samples. Sample t of example i (its index in the data set) draws its noise from
// (seed, layer, sampling domain, step t, element index of example i): a pure function of those,
// the same for any chunking, thread count or order of examples, and never a training step's
// masks (rng/streams.h). Masks are bit-identical whatever the chunking; the products' rounding
// may differ with the row count oneDNN is given (gemm.h), so probabilities then agree to about
// 1e-6, and bit for bit at any thread count for the same max_rows.
//
// Speed and memory. The layers before the first stochastic one run once per example, in eval
// mode; their output is repeated for the samples, which go through the rest of the network
// stacked (nn::Context::samples): one matrix product for up to max_rows rows, not T products
// of a few rows. Examples stream through in chunks, and the per-example statistics are
// accumulated one sample at a time (predict/uncertainty.h), so memory is bounded by max_rows
// whatever T and the data size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "dropkit/data/idx.h"
#include "dropkit/model/model.h"
#include "dropkit/parallel/thread_pool.h"
#include "dropkit/predict/uncertainty.h"

namespace dropkit::predict {

struct PredictOptions {
  // 0: the deterministic prediction (one eval-mode pass); T >= 1: Monte-Carlo with T samples.
  std::uint64_t samples = 0;
  std::uint64_t seed = 0;
  // Sample counts to report besides `samples` (each in [1, samples]): the statistics after the
  // first k samples, for the paper's figure 11 from one run (the first k samples of a T-sample
  // run have a k-sample run's masks; the products may round differently, about 1e-6).
  std::vector<std::uint64_t> report_at = {};
  // Rows per stacked forward: examples per chunk = max(1, max_rows / samples), samples per pass
  // = min(samples, max_rows).
  std::size_t max_rows = 2048;
};

struct ExampleResult {
  std::size_t index = 0;      // in the data set
  int label = -1;             // -1: unknown
  std::uint64_t samples = 0;  // the count these statistics are for (1 when deterministic)
  ExampleStats stats;
  std::span<const double> probs;  // p_bar, valid during the callback only
};

// Throws std::invalid_argument with the estimate (core/memory.h) unless predict() with these
// options fits in memory: the model's parameters and the activations of one stacked pass of
// min(samples, max_rows) rows per example chunk (Model::check_fits).
void check_predict_fits(const model::Model& model, const PredictOptions& options);

// The sorted, distinct counts predict() reports: report_at and samples (1 when deterministic).
// std::invalid_argument naming the count if one is 0 or above samples.
std::vector<std::uint64_t> report_counts(const PredictOptions& options);

// Predicts examples [begin, end) of `d` (labels are used when d.labels is not empty) and calls
// `on_result` for each example and each reported count, examples in order within a chunk and
// counts ascending. std::invalid_argument if the model does not take d's images, a label has no
// output, or the range is outside d.
void predict(model::Model& model, const data::Dataset& d, std::size_t begin, std::size_t end,
             const PredictOptions& options, parallel::ThreadPool& pool,
             const std::function<void(const ExampleResult&)>& on_result);

// The index of the first stochastic layer (model.size() when there is none).
std::size_t first_stochastic_layer(const model::Model& model);

}  // namespace dropkit::predict
