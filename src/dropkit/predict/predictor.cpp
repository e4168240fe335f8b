#include "dropkit/predict/predictor.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/data/batcher.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::predict {

std::vector<std::uint64_t> report_counts(const PredictOptions& options) {
  const std::uint64_t total = std::max<std::uint64_t>(options.samples, 1);
  std::vector<std::uint64_t> counts = options.report_at;
  for (std::uint64_t k : counts) {
    if (k == 0 || k > total) {
      throw std::invalid_argument(
          fmt::format("a report at {} samples is outside [1, {}] (the samples drawn)", k, total));
    }
  }
  counts.push_back(total);
  std::sort(counts.begin(), counts.end());
  counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
  return counts;
}

void check_predict_fits(const model::Model& model, const PredictOptions& options) {
  // A stacked pass holds at most max_rows rows (group * chunk <= max(max_rows, samples)), and
  // the deterministic layers before it one chunk of examples.
  const std::uint64_t rows = std::max<std::uint64_t>(std::max<std::size_t>(options.max_rows, 1), 1);
  model.check_fits(rows, 0, fmt::format("predicting {} rows per stacked pass", rows));
}

std::size_t first_stochastic_layer(const model::Model& model) {
  for (std::size_t i = 0; i < model.size(); ++i) {
    if (model.layer(i).stochastic()) return i;
  }
  return model.size();
}

namespace {

// y = log-softmax(z) over `classes` values (max-shifted, the sum in double).
void log_softmax(const float* z, std::size_t classes, float* y) {
  const float m = *std::max_element(z, z + classes);
  double sum = 0;
  for (std::size_t c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(z[c] - m));
  const auto lse = static_cast<float>(std::log(sum));
  for (std::size_t c = 0; c < classes; ++c) y[c] = z[c] - m - lse;
}

// The number of classes, after the checks predict() makes on its arguments: the examples are in
// the data, of the model's input size, and every label has an output.
std::size_t checked_classes(const model::Model& model, const data::Dataset& d, std::size_t begin,
                            std::size_t end) {
  if (begin > end || end > d.count) {
    throw std::invalid_argument(fmt::format(
        "predict: examples [{}, {}) are outside the {} in the data", begin, end, d.count));
  }
  if (model.input_shape().numel() != d.features()) {
    throw std::invalid_argument(
        fmt::format("the model takes examples of shape {} ({} values) but the images are {}x{}",
                    model.input_shape().str(), model.input_shape().numel(), d.rows, d.cols));
  }
  const Shape& out = model.output_shape();
  if (out.rank() != 1) {
    throw std::invalid_argument("predict: the model's output per example is " + out.str() +
                                ", not one score per class");
  }
  const auto classes = static_cast<std::size_t>(out[0]);
  for (std::size_t i = begin; i < end && !d.labels.empty(); ++i) {
    if (d.labels[i] >= classes) {
      throw std::invalid_argument(fmt::format(
          "predict: example {} has label {}, but the model has outputs for classes 0..{}", i,
          d.labels[i], classes - 1));
    }
  }
  return classes;
}

// The logits of samples [s0, s0 + g) of the chunk whose first example is row c0, from the
// output of its deterministic prefix (layers [0, k)): g stacked blocks, or the prefix's output
// itself when no layer is stochastic (k is the model's size).
const Tensor& sample_logits(model::Model& model, const Tensor& prefix, std::size_t k,
                            std::uint64_t s0, std::size_t g, std::size_t c0,
                            const PredictOptions& options, parallel::ThreadPool& pool) {
  if (k == model.size()) return prefix;
  // The first stochastic layer reads the prefix's rows for every sample (no copies); the rest
  // runs on the g stacked blocks it writes.
  nn::Context sample{.mode = nn::Mode::kSample,
                     .seed = options.seed,
                     .step = s0,
                     .row_offset = c0,
                     .samples = g,
                     .shared_input = true,
                     .pool = &pool};
  const Tensor& first = model.net().forward(prefix, sample, k, k + 1);
  sample.shared_input = false;
  return model.net().forward(first, sample, k + 1, model.size());
}

// Reports the n examples of the chunk whose first example is row c0, after `done` samples.
void report_chunk(const SampleAccumulator& acc, std::size_t c0, std::size_t n,
                  const std::vector<std::uint8_t>& labels, bool labelled, std::uint64_t done,
                  const std::function<void(const ExampleResult&)>& on_result) {
  for (std::size_t i = 0; i < n; ++i) {
    ExampleResult r;
    r.index = c0 + i;
    r.label = labelled ? labels[i] : -1;
    r.samples = done;
    r.stats = acc.stats(i, r.label);
    r.probs = acc.mean_probs(i);
    on_result(r);
  }
}

}  // namespace

void predict(model::Model& model, const data::Dataset& d, std::size_t begin, std::size_t end,
             const PredictOptions& options, parallel::ThreadPool& pool,
             const std::function<void(const ExampleResult&)>& on_result) {
  const std::size_t classes = checked_classes(model, d, begin, end);
  const auto counts = report_counts(options);
  check_predict_fits(model, options);
  const bool mc = options.samples > 0;
  const std::uint64_t total = mc ? options.samples : 1;
  const std::size_t max_rows = std::max<std::size_t>(options.max_rows, 1);
  // Samples per stacked pass, and examples per chunk.
  const auto group = static_cast<std::size_t>(std::min<std::uint64_t>(total, max_rows));
  const std::size_t chunk = std::max<std::size_t>(1, max_rows / group);
  const std::size_t k = mc ? first_stochastic_layer(model) : model.size();
  const bool labelled = !d.labels.empty();

  parallel::ScopedFlushDenormals flush;
  SampleAccumulator acc(chunk, classes);
  std::vector<std::uint32_t> rows;
  std::vector<std::uint8_t> labels;
  Tensor x;
  for (std::size_t c0 = begin; c0 < end; c0 += chunk) {
    const std::size_t n = std::min(chunk, end - c0);
    rows.resize(n);
    std::iota(rows.begin(), rows.end(), static_cast<std::uint32_t>(c0));
    data::make_batch(d, rows, model.normalization(), x, labels);
    // The deterministic prefix, once per example.
    const nn::Context eval{.mode = nn::Mode::kEval, .row_offset = c0, .pool = &pool};
    const Tensor& prefix = model.net().forward(model.shaped_input(x), eval, 0, k);
    acc.clear();
    std::size_t next_report = 0;
    for (std::uint64_t s0 = 0; s0 < total; s0 += group) {
      const std::size_t g = static_cast<std::size_t>(std::min<std::uint64_t>(group, total - s0));
      const Tensor& logits = sample_logits(model, prefix, k, s0, g, c0, options, pool);
      // Without a stochastic layer every sample is the prefix's output: one block, reused.
      const std::size_t blocks = k < model.size() ? g : 1;
      for (std::size_t s = 0; s < g;) {
        // Samples [s, stop): up to the next reported count, or the group's end.
        std::size_t stop = g;
        if (next_report < counts.size() && counts[next_report] <= s0 + g) {
          stop = static_cast<std::size_t>(counts[next_report] - s0);
        }
        // Examples in parallel, each one's samples in order: the same sums at any thread count.
        parallel::parallel_for(pool, n, 1, [&](std::size_t i0, std::size_t i1) {
          std::vector<float> lp(classes);
          for (std::size_t i = i0; i < i1; ++i) {
            for (std::size_t t = s; t < stop; ++t) {
              const std::size_t row = (blocks == 1 ? 0 : t) * n + i;
              log_softmax(logits.data() + row * classes, classes, lp.data());
              acc.add(i, lp);
            }
          }
        });
        s = stop;
        const std::uint64_t done = s0 + s;
        if (next_report < counts.size() && counts[next_report] == done) {
          report_chunk(acc, c0, n, labels, labelled, done, on_result);
          ++next_report;
        }
      }
    }
  }
}

}  // namespace dropkit::predict
