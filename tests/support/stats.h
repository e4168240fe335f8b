// Helpers for k-sigma statistical checks of random number streams.
//
// Why k-sigma. A statistical test of a random generator cannot be exact: the statistic it
// computes is itself random. What it can do is compare the statistic with its expected value in
// units of its standard deviation under the hypothesis "the generator is correct" and fail when
// the distance exceeds k such units. The bound is what makes the test meaningful: with n in the
// millions, sigma is small (1/sqrt(n) ~ 5e-4), so a bias or correlation of a few parts in a
// thousand is many sigma away and fails, while k = 6 (the tests' default) is wide enough that a
// correct generator lands outside only with probability ~2e-9 per check (k = 5: ~6e-7).
//
// Determinism. Every test uses fixed seeds, so it is reproducible: the same build gives the same
// numbers and the same verdict on every run, and a failure is never a fluke of the run. The fixed
// seed alone would say nothing, though (any seed "passes" a test whose bound was tuned to it);
// the k-sigma bound is what guarantees that a correct generator essentially never fails for any
// other seed either, so the seeds are arbitrary and the bounds were not tuned to them.
//
// All sums are accumulated in double.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <span>
#include <stdexcept>
#include <vector>

namespace dropkit::test {

// Sample moments of a sequence: mean, unbiased variance, skewness g1 = m3 / m2^1.5 and excess
// kurtosis g2 = m4 / m2^2 - 3 (m_k the central moments with divisor n). Two passes, the second
// on deviations from the mean with the usual correction term (sum of deviations)^2 / n, which is
// the numerically stable way (no catastrophic cancellation of E[x^2] - E[x]^2).
struct Moments {
  double mean = 0;
  double var = 0;
  double skewness = 0;
  double excess_kurtosis = 0;
};

inline Moments moments(std::span<const float> x) {
  const std::size_t n = x.size();
  if (n < 2) throw std::invalid_argument("moments: need at least two values");
  double sum = 0;
  for (float v : x) sum += v;
  const double mean = sum / static_cast<double>(n);
  double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (float v : x) {
    const double d = v - mean;
    const double d2 = d * d;
    s1 += d;
    s2 += d2;
    s3 += d2 * d;
    s4 += d2 * d2;
  }
  const double dn = static_cast<double>(n);
  const double m2 = (s2 - s1 * s1 / dn) / dn;  // corrected two-pass
  Moments m;
  m.mean = mean + s1 / dn;
  m.var = m2 * dn / (dn - 1);
  m.skewness = (s3 / dn) / std::pow(m2, 1.5);
  m.excess_kurtosis = (s4 / dn) / (m2 * m2) - 3.0;
  return m;
}

// Standard deviation of the fraction of successes in n independent Bernoulli(p) trials.
inline double binomial_sigma(double n, double p) {
  return std::sqrt(p * (1 - p) / n);
}

// Pearson correlation of a[i] and b[i] over the common length (two passes, in double). For two
// independent sequences its standard deviation is ~1 / sqrt(n).
inline double pearson(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size() || a.size() < 2) {
    throw std::invalid_argument("pearson: need two sequences of equal length >= 2");
  }
  const double n = static_cast<double>(a.size());
  double sa = 0, sb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sa += a[i];
    sb += b[i];
  }
  const double ma = sa / n, mb = sb / n;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double da = a[i] - ma, db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return sab / std::sqrt(saa * sbb);
}

// Pearson's statistic sum (O - E)^2 / E. Under the hypothesis it is chi-square distributed with
// (number of cells - 1 - number of fitted parameters) degrees of freedom.
inline double chi_square(std::span<const std::uint64_t> observed,
                         std::span<const double> expected) {
  if (observed.size() != expected.size() || observed.empty()) {
    throw std::invalid_argument("chi_square: observed and expected differ in size");
  }
  double chi2 = 0;
  for (std::size_t i = 0; i < observed.size(); ++i) {
    const double d = static_cast<double>(observed[i]) - expected[i];
    chi2 += d * d / expected[i];
  }
  return chi2;
}

// The chi-square distribution with `dof` degrees of freedom has mean dof and standard deviation
// sqrt(2 dof), but it is skewed to the right: for few degrees of freedom "mean + 6 sd" is a weak
// bound (for dof 3, P(chi2 > 3 + 6 sqrt(6)) ~ 5e-4) and "mean - 6 sd" is negative, so no bound at
// all. The Wilson-Hilferty transform z = ((chi2 / dof)^(1/3) - (1 - 2 / (9 dof))) / sqrt(2 / (9
// dof)) is close to a standard normal already for dof = 3, so |z| <= k gives the intended tail
// probabilities on both sides: a too-good fit (a stratified, not random, sequence) fails too.
inline double chi_square_z(double chi2, double dof) {
  const double c = 2.0 / (9.0 * dof);
  return (std::cbrt(chi2 / dof) - (1.0 - c)) / std::sqrt(c);
}

// Passes when |value - expected| <= k * sigma; the failure message gives every number needed to
// judge the miss, including the z-score (value - expected) / sigma.
inline ::testing::AssertionResult within_k_sigma(double value, double expected, double sigma,
                                                 double k) {
  const double z = (value - expected) / sigma;
  if (std::isfinite(z) && std::abs(z) <= k) {
    return ::testing::AssertionSuccess() << "z = " << z;
  }
  return ::testing::AssertionFailure()
         << std::setprecision(10) << "value " << value << " is " << z << " sigma from expected "
         << expected << " (sigma " << sigma << ", allowed k = " << k << ")";
}

}  // namespace dropkit::test
