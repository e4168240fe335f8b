// Training-time augmentation (data::augment_batch): each example is its image, mirrored or not,
// moved by at most `shift` pixels per axis with the background filling in; flips happen half the
// time and offsets are uniform (k-sigma bounds); an example's augmentation depends only on
// (seed, epoch, its row), not on the batch it came in.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <vector>

#include "dropkit/data/batcher.h"
#include "dropkit/rng/streams.h"

namespace dropkit::data {
namespace {

constexpr std::int64_t kH = 7, kW = 6;
constexpr float kFill = -0.25f;

// Example i of a batch holds distinct pixel values 1000 i + p (p the pixel index), so where each
// output pixel came from can be read off it.
Tensor batch_of(std::size_t n) {
  Tensor x(Shape{static_cast<std::int64_t>(n), 1, kH, kW});
  for (std::size_t i = 0; i < n; ++i)
    for (std::int64_t p = 0; p < kH * kW; ++p)
      x[i * kH * kW + static_cast<std::size_t>(p)] = static_cast<float>(1000 * i + p);
  return x;
}

struct Move {
  bool flip;
  int dy, dx;
};

// The (flip, dy, dx) that turns example i of the original batch into `got`, if any.
std::optional<Move> find_move(const Tensor& got, std::size_t i, int shift) {
  for (bool flip : {false, true}) {
    for (int dy = -shift; dy <= shift; ++dy) {
      for (int dx = -shift; dx <= shift; ++dx) {
        bool same = true;
        for (std::int64_t r = 0; r < kH && same; ++r) {
          for (std::int64_t c = 0; c < kW && same; ++c) {
            const std::int64_t sr = r - dy, sc0 = c - dx, sc = flip ? kW - 1 - sc0 : sc0;
            const float want = (sr >= 0 && sr < kH && sc0 >= 0 && sc0 < kW)
                                   ? static_cast<float>(1000 * i + sr * kW + sc)
                                   : kFill;
            same = got[i * kH * kW + r * kW + c] == want;
          }
        }
        if (same) return Move{flip, dy, dx};
      }
    }
  }
  return std::nullopt;
}

std::vector<std::uint32_t> rows_of(std::size_t n, std::uint32_t first = 0) {
  std::vector<std::uint32_t> rows(n);
  std::iota(rows.begin(), rows.end(), first);
  return rows;
}

const rng::StreamKey kKey{7, rng::kAugmentStream, 3};

TEST(Augment, NothingAskedChangesNothing) {
  Tensor x = batch_of(5);
  const Tensor before = x.clone();
  augment_batch(x, rows_of(5), {}, kKey, kFill);
  for (std::size_t i = 0; i < x.numel(); ++i) ASSERT_EQ(x[i], before[i]);
}

TEST(Augment, EveryExampleIsAFlipAndShiftOfItselfWithUniformDraws) {
  for (const Augmentation a :
       {Augmentation{true, 0}, Augmentation{false, 2}, Augmentation{true, 3}}) {
    SCOPED_TRACE(std::to_string(a.flip) + " shift " + std::to_string(a.shift));
    const std::size_t n = 6000;
    Tensor x = batch_of(n);
    augment_batch(x, rows_of(n), a, kKey, kFill);
    std::size_t flips = 0;
    std::map<int, std::size_t> dys, dxs;
    for (std::size_t i = 0; i < n; ++i) {
      const auto m = find_move(x, i, a.shift);
      ASSERT_TRUE(m.has_value()) << "example " << i << " is no flip and shift of its image";
      ASSERT_TRUE(a.flip || !m->flip);
      flips += m->flip;
      ++dys[m->dy];
      ++dxs[m->dx];
    }
    // Binomial counts within 6 standard deviations of their means.
    auto within = [&](std::size_t count, double p) {
      const double mean = static_cast<double>(n) * p, sd = std::sqrt(mean * (1 - p));
      return std::fabs(static_cast<double>(count) - mean) <= 6 * sd;
    };
    if (a.flip) {
      EXPECT_TRUE(within(flips, 0.5)) << flips << " flips of " << n;
    }
    const double p = 1.0 / (2 * a.shift + 1);
    for (int v = -a.shift; v <= a.shift; ++v) {
      EXPECT_TRUE(within(dys[v], p)) << "dy " << v << ": " << dys[v];
      EXPECT_TRUE(within(dxs[v], p)) << "dx " << v << ": " << dxs[v];
    }
    EXPECT_EQ(dys.size(), static_cast<std::size_t>(2 * a.shift + 1));
  }
}

// The same example gets the same augmentation alone or in any batch; another epoch (or seed)
// gets another.
TEST(Augment, AnExamplesAugmentationDependsOnlyOnSeedEpochAndRow) {
  const Augmentation a{true, 2};
  const std::vector<std::uint32_t> rows = {41, 7, 300, 12, 9999};
  Tensor together = batch_of(rows.size());
  augment_batch(together, rows, a, kKey, kFill);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    Tensor alone(Shape{1, 1, kH, kW});
    for (std::int64_t p = 0; p < kH * kW; ++p)
      alone[static_cast<std::size_t>(p)] = static_cast<float>(1000 * i + p);
    augment_batch(alone, std::span(rows).subspan(i, 1), a, kKey, kFill);
    for (std::int64_t p = 0; p < kH * kW; ++p)
      ASSERT_EQ(alone[static_cast<std::size_t>(p)], together[i * kH * kW + p]) << i;
  }
  std::size_t differ = 0;
  const std::size_t n = 200;
  Tensor e3 = batch_of(n), e4 = batch_of(n);
  augment_batch(e3, rows_of(n), a, kKey, kFill);
  augment_batch(e4, rows_of(n), a, {kKey.seed, kKey.stream, kKey.step + 1}, kFill);
  for (std::size_t i = 0; i < n; ++i)
    differ += !std::equal(e3.data() + i * kH * kW, e3.data() + (i + 1) * kH * kW,
                          e4.data() + i * kH * kW);
  EXPECT_GT(differ, n / 2);
}

}  // namespace
}  // namespace dropkit::data
