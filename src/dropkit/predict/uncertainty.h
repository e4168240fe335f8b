// What T stochastic passes say about an example, and how good a set of predictions is.
//
// Per example, from sample probabilities p_1 .. p_T over C classes (Gal & Ghahramani 2016;
// Houlsby et al. 2011), all in double, natural logarithms (nats):
//   p_bar              the mean of the p_t (the predictive distribution)
//   predicted          argmax p_bar (the lowest class on a tie); confidence = p_bar[predicted]
//   entropy            H[p_bar] = -sum_c p_bar_c log p_bar_c (0 log 0 = 0): total uncertainty
//   expected_entropy   mean_t H[p_t]: the noise each single pass sees
//   mutual_information H[p_bar] - mean_t H[p_t] (BALD): the model-uncertainty part. It is >= 0
//                      mathematically (Jensen); rounding can make it -1e-16, so it is clamped
//                      at 0.
//   variance           (1/T) sum_t (p_t[predicted] - p_bar[predicted])^2 (the population
//                      variance; 0 for T = 1)
//   log_prob_label     log p_bar[label], from the samples' log-probabilities by log-sum-exp, so
//                      it stays finite where p_bar[label] underflows a double.
// A deterministic prediction is T = 1: mutual information and variance are 0.
//
// Over a set of examples with labels:
//   accuracy  the fraction with predicted == label
//   nll       mean of -log p_bar[label]
//   brier     mean of sum_c (p_bar_c - [c == label])^2 (the multi-class form, in [0, 2])
//   ece       expected calibration error with 15 equal-width confidence bins (Guo et al. 2017;
//             torchmetrics and uncertainty-baselines use the same): bin b holds the examples
//             with confidence in (b/15, (b+1)/15] (bin 0 also takes confidence 0), and
//             ECE = sum_b (n_b / N) |accuracy_b - mean confidence_b|.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace dropkit::predict {

struct ExampleStats {
  int predicted = 0;
  double confidence = 0;
  double entropy = 0;
  double expected_entropy = 0;
  double mutual_information = 0;
  double variance = 0;
  double log_prob_label = 0;  // 0 when there is no label
};

// Accumulates samples for a set of examples, one sample's log-probabilities (a log-softmax row)
// at a time: memory per example is a few numbers per class, whatever T is. add() for different
// examples may run concurrently.
class SampleAccumulator {
 public:
  SampleAccumulator(std::size_t examples, std::size_t classes);
  // Forgets every sample (for the next set of examples).
  void clear();
  void add(std::size_t example, std::span<const float> log_probs);
  std::uint64_t samples(std::size_t example) const { return state_[example].samples; }
  // p_bar of the example (C values); needs at least one sample.
  std::span<const double> mean_probs(std::size_t example) const;
  // label < 0: no label (log_prob_label stays 0).
  ExampleStats stats(std::size_t example, int label) const;

 private:
  struct Example {
    std::uint64_t samples = 0;
    double entropy_sum = 0;
  };
  std::size_t classes_;
  std::vector<Example> state_;
  // Per example and class: sum_t p_t, sum_t p_t^2 and log-sum-exp state (running max, sum).
  std::vector<double> sum_, sum_sq_, lse_max_, lse_sum_;
  mutable std::vector<double> mean_;
};

inline constexpr int kCalibrationBins = 15;

// The set-level numbers, accumulated example by example (labelled examples only).
struct CalibrationBin {
  std::uint64_t count = 0;
  double confidence_sum = 0;
  std::uint64_t correct = 0;
};
struct Aggregate {
  std::uint64_t count = 0;
  double accuracy = 0, nll = 0, brier = 0, ece = 0;
  std::array<CalibrationBin, kCalibrationBins> bins{};
};
class AggregateAccumulator {
 public:
  void add(const ExampleStats& s, std::span<const double> mean_probs, int label);
  Aggregate result() const;

 private:
  Aggregate sums_;  // count, sums of correct / -log p / Brier terms, bins
};

// The bin of a confidence in [0, 1] (see the file comment).
int calibration_bin(double confidence);

// Area under the ROC curve of `scores` for telling positives from negatives: the probability
// that a random positive scores higher than a random negative, ties counting one half
// (Mann-Whitney U / (n_pos n_neg)), computed exactly by sorting. NaN when either class is empty;
// std::invalid_argument for a NaN score.
double auroc(std::span<const double> scores, std::span<const std::uint8_t> positive);

}  // namespace dropkit::predict
