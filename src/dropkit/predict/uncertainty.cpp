#include "dropkit/predict/uncertainty.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace dropkit::predict {

SampleAccumulator::SampleAccumulator(std::size_t examples, std::size_t classes)
    : classes_(classes),
      state_(examples),
      sum_(examples * classes),
      sum_sq_(examples * classes),
      lse_max_(examples * classes),
      lse_sum_(examples * classes),
      mean_(classes) {
  if (classes == 0) throw std::invalid_argument("SampleAccumulator: no classes");
  clear();
}

void SampleAccumulator::clear() {
  std::fill(state_.begin(), state_.end(), Example{});
  std::fill(sum_.begin(), sum_.end(), 0.0);
  std::fill(sum_sq_.begin(), sum_sq_.end(), 0.0);
  std::fill(lse_max_.begin(), lse_max_.end(), -std::numeric_limits<double>::infinity());
  std::fill(lse_sum_.begin(), lse_sum_.end(), 0.0);
}

void SampleAccumulator::add(std::size_t example, std::span<const float> log_probs) {
  if (log_probs.size() != classes_ || example >= state_.size()) {
    throw std::invalid_argument("SampleAccumulator: a sample of the wrong size or example");
  }
  const std::size_t o = example * classes_;
  double h = 0;
  for (std::size_t c = 0; c < classes_; ++c) {
    const double lp = log_probs[c];
    const double p = std::exp(lp);
    // log(p), not lp: the same terms as H[p_bar] for T = 1, so that its MI is exactly 0.
    if (p > 0) h -= p * std::log(p);
    sum_[o + c] += p;
    sum_sq_[o + c] += p * p;
    if (lp == -std::numeric_limits<double>::infinity()) continue;  // p = 0: adds nothing
    // Log-sum-exp, rescaled when the maximum grows.
    double& m = lse_max_[o + c];
    double& s = lse_sum_[o + c];
    if (lp > m) {
      s = s * std::exp(m - lp) + 1.0;
      m = lp;
    } else {
      s += std::exp(lp - m);
    }
  }
  state_.at(example).entropy_sum += h;
  ++state_[example].samples;
}

std::span<const double> SampleAccumulator::mean_probs(std::size_t example) const {
  const double t = static_cast<double>(state_.at(example).samples);
  if (t == 0) throw std::logic_error("SampleAccumulator: an example without samples");
  for (std::size_t c = 0; c < classes_; ++c) mean_[c] = sum_[example * classes_ + c] / t;
  return mean_;
}

ExampleStats SampleAccumulator::stats(std::size_t example, int label) const {
  const auto p = mean_probs(example);
  const double t = static_cast<double>(state_[example].samples);
  const std::size_t o = example * classes_;
  ExampleStats s;
  s.predicted = static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
  s.confidence = p[s.predicted];
  for (double v : p) {
    if (v > 0) s.entropy -= v * std::log(v);
  }
  s.expected_entropy = state_[example].entropy_sum / t;
  s.mutual_information = std::max(0.0, s.entropy - s.expected_entropy);
  const auto k = o + static_cast<std::size_t>(s.predicted);
  s.variance = std::max(0.0, sum_sq_[k] / t - s.confidence * s.confidence);
  if (label >= 0) {
    if (static_cast<std::size_t>(label) >= classes_) {
      throw std::invalid_argument("SampleAccumulator: a label outside the classes");
    }
    const auto l = o + static_cast<std::size_t>(label);
    s.log_prob_label = lse_max_[l] + std::log(lse_sum_[l]) - std::log(t);
  }
  return s;
}

int calibration_bin(double confidence) {
  // (b/15, (b+1)/15]: ceil(15 c) - 1, with 0 in bin 0.
  const int b = static_cast<int>(std::ceil(confidence * kCalibrationBins)) - 1;
  return std::clamp(b, 0, kCalibrationBins - 1);
}

void AggregateAccumulator::add(const ExampleStats& s, std::span<const double> mean_probs,
                               int label) {
  if (label < 0 || static_cast<std::size_t>(label) >= mean_probs.size()) {
    throw std::invalid_argument("AggregateAccumulator: a label outside the classes");
  }
  const bool correct = s.predicted == label;
  ++sums_.count;
  sums_.accuracy += correct;
  sums_.nll -= s.log_prob_label;
  for (std::size_t c = 0; c < mean_probs.size(); ++c) {
    const double d = mean_probs[c] - (static_cast<int>(c) == label ? 1.0 : 0.0);
    sums_.brier += d * d;
  }
  CalibrationBin& bin = sums_.bins[static_cast<std::size_t>(calibration_bin(s.confidence))];
  ++bin.count;
  bin.confidence_sum += s.confidence;
  bin.correct += correct;
}

Aggregate AggregateAccumulator::result() const {
  Aggregate a = sums_;
  if (a.count == 0) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    a.accuracy = a.nll = a.brier = a.ece = nan;
    return a;
  }
  const double n = static_cast<double>(a.count);
  a.accuracy /= n;
  a.nll /= n;
  a.brier /= n;
  a.ece = 0;
  for (const auto& b : a.bins) {
    if (b.count == 0) continue;
    const double nb = static_cast<double>(b.count);
    a.ece += nb / n * std::fabs(static_cast<double>(b.correct) / nb - b.confidence_sum / nb);
  }
  return a;
}

double auroc(std::span<const double> scores, std::span<const std::uint8_t> positive) {
  if (scores.size() != positive.size()) {
    throw std::invalid_argument("auroc: scores and labels differ in length");
  }
  if (std::any_of(scores.begin(), scores.end(), [](double v) { return std::isnan(v); })) {
    throw std::invalid_argument("auroc: a score is NaN");
  }
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  // Sum of the positives' ranks (1-based, ties sharing their mean rank).
  double rank_sum = 0;
  std::uint64_t pos = 0;
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
    const double mean_rank = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1 .. j
    for (std::size_t k = i; k < j; ++k) {
      if (positive[order[k]]) {
        rank_sum += mean_rank;
        ++pos;
      }
    }
    i = j;
  }
  const std::uint64_t neg = scores.size() - pos;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  const double p = static_cast<double>(pos), q = static_cast<double>(neg);
  return (rank_sum - p * (p + 1) / 2) / (p * q);
}

}  // namespace dropkit::predict
