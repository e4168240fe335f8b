#include "dropkit/train/distributed.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "dropkit/core/options.h"
#include "dropkit/kernels/leaves.h"

namespace dropkit::train {
namespace {

// 64-bit hash of the values' bytes, 8 at a time (a mix of multiply and xor-shift).
std::uint64_t hash_of(std::span<const float> values) {
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ values.size();
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  const std::size_t n = values.size_bytes();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes + i, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  for (; i < n; ++i) h = (h ^ bytes[i]) * 0x100000001B3ull;
  return h;
}

}  // namespace

std::string valid_process_counts(std::size_t batch) {
  std::string out;
  for (std::size_t p = 1; p <= kernels::leaf_count(batch); ++p) {
    if (kernels::leaf_split_valid(batch, p)) out += (out.empty() ? "" : ", ") + std::to_string(p);
  }
  return out;
}

DataParallel::DataParallel(parallel::ProcessGroup& group, std::size_t batch) : group_(group) {
  const auto p = static_cast<std::size_t>(group.size());
  if (!kernels::leaf_split_valid(batch, p)) {
    throw std::invalid_argument(fmt::format(
        "{} processes cannot share batches of {} examples: a batch is cut into leaves of {} "
        "examples ({} here), and every process must hold the same power-of-two number of them. "
        "Valid process counts for {} {}: {}; {} processes need {} {}, {}, {}, ...",
        p, batch, kernels::kLeafRows, kernels::leaf_count(batch), option_ref("batch"), batch,
        valid_process_counts(batch), p, option_ref("batch"), p * kernels::kLeafRows,
        2 * p * kernels::kLeafRows, 4 * p * kernels::kLeafRows));
  }
  leaves_per_rank_ = kernels::leaf_count(batch) / p;
  // Two processes receive the same bytes either way, and the gather is one exchange and no
  // copies (2 processes x 1 thread over 1 x 2 threads, batch 256, Zen 5: gather 1.08-1.16,
  // halving 1.19-1.21); from 4 on, halving receives 2 (P - 1) / P of the gradient, not P - 1.
  halving_ = p >= 4 && std::has_single_bit(p);
}

void DataParallel::gather_bytes(const void* mine, std::size_t bytes, void* all) const {
  group_.all_gather(mine, bytes, all);
  bytes_received_ += static_cast<std::uint64_t>(size() - 1) * bytes;
}

DataParallel::Share DataParallel::begin_step(std::size_t rows) {
  const std::size_t per_rank = leaves_per_rank_ * static_cast<std::size_t>(kernels::kLeafRows);
  ++steps_;
  rows_ = rows;
  nodes_ = (rows + per_rank - 1) / per_rank;
  const std::size_t r = static_cast<std::size_t>(rank());
  return {std::min(rows, r * per_rank), std::min(rows, (r + 1) * per_rank)};
}

void DataParallel::sum(std::span<double> sums) const {
  const std::size_t n = sums.size();
  gathered_.resize(n * static_cast<std::size_t>(size()));
  gather_bytes(sums.data(), n * sizeof(double), gathered_.data());
  kernels::fold_nodes(gathered_.data(), nodes_, n, n, sums.data());
}

namespace {

// The values [lo, hi) of n that process r holds the sums of after `levels` levels of recursive
// halving: at level j the half its bit j names (0 the lower).
std::pair<std::size_t, std::size_t> halving_segment(std::size_t r, std::size_t levels,
                                                    std::size_t n) {
  std::size_t lo = 0, hi = n;
  for (std::size_t j = 0; j < levels; ++j) {
    const std::size_t mid = lo + (hi - lo) / 2;
    ((r >> j) & 1 ? lo : hi) = mid;
  }
  return {lo, hi};
}

}  // namespace

float* DataParallel::gradient_slot(std::size_t n) {
  grad_count_ = n;
  if (halving_) {
    work_.resize(n);
    return work_.data();
  }
  all_grads_.resize(n * static_cast<std::size_t>(size()));
  return all_grads_.data() + static_cast<std::size_t>(rank()) * n;
}

void DataParallel::exchange() {
  const std::size_t n = grad_count_;
  if (halving_) {
    halve();
    return;
  }
  gather_bytes(all_grads_.data() + static_cast<std::size_t>(rank()) * n, n * sizeof(float),
               all_grads_.data());
}

void DataParallel::halve() {
  const std::size_t n = grad_count_, p = static_cast<std::size_t>(size());
  const auto r = static_cast<std::size_t>(rank());
  const auto levels = static_cast<std::size_t>(std::countr_zero(p));
  std::size_t lo = 0, hi = n;
  for (std::size_t j = 0; j < levels; ++j) {
    // The partner holds the same [lo, hi) and keeps the other half; my sums so far are the
    // node of the 2^j processes that share my bits from j up, the partner's of its 2^j: the
    // tree's level-j pair (a + b = b + a, so both add it with the same bits).
    const std::size_t bit = std::size_t{1} << j, partner = r ^ bit;
    const std::size_t mid = lo + (hi - lo) / 2;
    const bool upper = (r & bit) != 0;
    const std::size_t keep_lo = upper ? mid : lo, keep_hi = upper ? hi : mid;
    const std::size_t send_lo = upper ? lo : mid, send_hi = upper ? mid : hi;
    received_.resize(keep_hi - keep_lo);
    group_.send_recv(static_cast<int>(partner), work_.data() + send_lo,
                     (send_hi - send_lo) * sizeof(float), received_.data(),
                     received_.size() * sizeof(float));
    bytes_received_ += received_.size() * sizeof(float);
    // A block of processes that hold no rows this step (the last batch) is "nothing".
    const bool mine = ((r >> j) << j) < nodes_, theirs = ((partner >> j) << j) < nodes_;
    float* keep = work_.data() + keep_lo;
    if (mine && theirs) {
      for (std::size_t i = 0; i < received_.size(); ++i) keep[i] += received_[i];
    } else if (theirs) {
      std::copy(received_.begin(), received_.end(), keep);
    }
    lo = keep_lo;
    hi = keep_hi;
  }
  // Every process's sums, gathered in place (slots of the largest segment's size), then moved
  // to where they belong (this process's are there already).
  const std::size_t slot = (n + p - 1) / p;
  segments_.resize(slot * p);
  float* mine = segments_.data() + r * slot;
  std::copy(work_.begin() + static_cast<std::ptrdiff_t>(lo),
            work_.begin() + static_cast<std::ptrdiff_t>(hi), mine);
  gather_bytes(mine, slot * sizeof(float), segments_.data());
  for (std::size_t q = 0; q < p; ++q) {
    if (q == r) continue;
    const auto [qlo, qhi] = halving_segment(q, levels, n);
    const float* theirs = segments_.data() + q * slot;
    std::copy(theirs, theirs + (qhi - qlo), work_.begin() + static_cast<std::ptrdiff_t>(qlo));
  }
}

void DataParallel::fold(std::size_t offset, std::size_t count, float* out) const {
  if (halving_) {  // the sums are there already
    std::copy(work_.begin() + static_cast<std::ptrdiff_t>(offset),
              work_.begin() + static_cast<std::ptrdiff_t>(offset + count), out);
    return;
  }
  kernels::fold_nodes(all_grads_.data() + offset, nodes_, grad_count_, count, out);
}

void DataParallel::check_same(std::span<const float> values, const char* what) const {
  const std::uint64_t mine = hash_of(values);
  std::vector<std::uint64_t> all(static_cast<std::size_t>(size()));
  gather_bytes(&mine, sizeof mine, all.data());
  std::string differ;
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (all[r] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  }
  if (!differ.empty()) {
    throw std::runtime_error(fmt::format(
        "the processes' {} differ (processes {} against process 0): the data-parallel run is no "
        "longer one model; it stops here, the last checkpoint intact",
        what, differ));
  }
}

std::vector<double> DataParallel::gather(std::span<const double> values) const {
  std::vector<double> all(values.size() * static_cast<std::size_t>(size()));
  gather_bytes(values.data(), values.size_bytes(), all.data());
  return all;
}

DataParallel::Range DataParallel::range(double value) const {
  const std::vector<double> all = gather(std::span(&value, 1));
  const auto [lo, hi] = std::minmax_element(all.begin(), all.end());
  return {*lo, *hi};
}

}  // namespace dropkit::train
