// dropkit.metrics: the set-level numbers of `dropkit predict` (predict/uncertainty.h) on
// probabilities a caller already has. The library accumulates them (AggregateAccumulator,
// auroc); this file only turns arrays into its inputs, so the definitions exist once.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common.h"
#include "dropkit/predict/uncertainty.h"

namespace dropkit::python {
namespace {

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// `x` as a C-contiguous array of T, converted once; TypeError naming `what` for a non-real
// dtype (complex, object, string).
template <typename T>
py::array_t<T, py::array::c_style | py::array::forcecast> real_array(const py::handle& x,
                                                                     const char* what) {
  const auto a = py::array::ensure(x);
  if (!a) throw py::type_error(fmt::format("{} is not an array", what));
  const char k = a.dtype().kind();
  if (k != 'f' && k != 'i' && k != 'u' && k != 'b') {
    throw py::type_error(fmt::format("{} has dtype {}: a real dtype is needed", what,
                                     py::str(a.dtype()).cast<std::string>()));
  }
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}
DoubleArray as_float64(const py::handle& x, const char* what) {
  return real_array<double>(x, what);
}

// Accuracy, NLL, Brier and ECE of mean probabilities `probs` [N, C] against `labels` [N], as
// `dropkit predict` aggregates them: the prediction is the first class of highest probability,
// its confidence that probability, and log p[label] is `log_prob_label` when given (predict's
// log-sum-exp value) or log probs[label].
py::dict aggregate_fn(const py::handle& probs_in, const py::handle& labels_in,
                      const py::object& log_prob_in) {
  const DoubleArray probs = as_float64(probs_in, "probs");
  if (probs.ndim() != 2) {
    throw std::invalid_argument(
        fmt::format("probs has {} axes: it must be [examples, classes]", probs.ndim()));
  }
  const auto n = static_cast<std::size_t>(probs.shape(0));
  const auto classes = static_cast<std::size_t>(probs.shape(1));
  const auto labels = real_array<std::int64_t>(labels_in, "labels");
  if (labels.ndim() != 1 || static_cast<std::size_t>(labels.shape(0)) != n) {
    throw std::invalid_argument(fmt::format("labels has shape {}, probs {}: one label per row",
                                            py::str(labels.attr("shape")).cast<std::string>(),
                                            py::str(probs.attr("shape")).cast<std::string>()));
  }
  if (classes == 0 && n > 0) throw std::invalid_argument("probs has no classes");
  const bool given = !log_prob_in.is_none();
  DoubleArray log_prob;
  if (given) {
    log_prob = as_float64(log_prob_in, "log_prob_label");
    if (log_prob.ndim() != 1 || static_cast<std::size_t>(log_prob.shape(0)) != n) {
      throw std::invalid_argument("log_prob_label needs one value per row of probs");
    }
  }
  predict::AggregateAccumulator agg;
  for (std::size_t i = 0; i < n; ++i) {
    const std::span<const double> p(probs.data() + i * classes, classes);
    const std::int64_t label = labels.data()[i];
    if (label < 0 || static_cast<std::size_t>(label) >= classes) {
      throw std::invalid_argument(
          fmt::format("labels[{}] = {} is outside [0, {}]", i, label, classes - 1));
    }
    predict::ExampleStats s;
    s.predicted = static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
    s.confidence = p[static_cast<std::size_t>(s.predicted)];
    s.log_prob_label = given ? log_prob.data()[i] : std::log(p[static_cast<std::size_t>(label)]);
    agg.add(s, p, static_cast<int>(label));
  }
  return aggregate_to_python(agg.result());
}

double auroc_fn(const py::handle& scores_in, const py::handle& positive_in) {
  const DoubleArray scores = as_float64(scores_in, "scores");
  const DoubleArray positive = as_float64(positive_in, "positive");
  if (scores.ndim() != 1 || positive.ndim() != 1) {
    throw std::invalid_argument("auroc: scores and positive must be one-dimensional");
  }
  std::vector<std::uint8_t> pos(static_cast<std::size_t>(positive.size()));
  for (std::size_t i = 0; i < pos.size(); ++i) pos[i] = positive.data()[i] != 0;
  return predict::auroc({scores.data(), static_cast<std::size_t>(scores.size())}, pos);
}

}  // namespace

py::dict aggregate_to_python(const predict::Aggregate& a) {
  py::dict d;
  d["examples"] = a.count;
  d["accuracy"] = a.accuracy;
  d["nll"] = a.nll;
  d["brier"] = a.brier;
  d["ece"] = a.ece;
  return d;
}

void bind_metrics(py::module_& m) {
  using namespace pybind11::literals;
  m.def("aggregate", &aggregate_fn, "probs"_a, "labels"_a, py::kw_only(),
        "log_prob_label"_a = py::none());
  m.def("auroc", &auroc_fn, "scores"_a, "positive"_a);
  m.attr("calibration_bins") = predict::kCalibrationBins;
}

}  // namespace dropkit::python
