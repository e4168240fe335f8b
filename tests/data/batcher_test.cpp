// The batcher (data/batcher.h): class lists parsed strictly, the epoch permutation a pure
// function of (seed, epoch), batches standardized as the model's normalization says.
#include "dropkit/data/batcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "support/idx_files.h"

namespace dropkit::data {
namespace {

using ::testing::HasSubstr;

TEST(Batcher, ClassListsAreParsedStrictly) {
  EXPECT_EQ(parse_class_list(""), std::vector<int>{});
  EXPECT_EQ(parse_class_list("9,8"), (std::vector<int>{8, 9}));
  EXPECT_EQ(class_list_text({8, 9}), "8,9");
  for (const char* bad :
       {"10", "8,8", ",", "8,", "-1", "a", "0,1,2,3,4,5,6,7,8,9", "1 ,2", "0001"}) {
    SCOPED_TRACE(bad);
    try {
      parse_class_list(bad);
      ADD_FAILURE() << "accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr("[0, 9]"));
    }
  }
  const auto d = test::synthetic_dataset(12, 2, 4, 1);
  const std::vector<std::uint32_t> rows = {0, 1, 2, 3, 4, 5, 11};
  EXPECT_EQ(rows_without(d, rows, {1, 3}), (std::vector<std::uint32_t>{0, 2, 4}));
}

TEST(Batcher, PermutationIsAPermutationKeyedBySeedAndEpoch) {
  const auto split = split_train_val(1000, 100);
  EXPECT_EQ(split.train.size(), 900u);
  EXPECT_EQ(split.val.front(), 900u);
  const auto p0 = epoch_permutation(split.train, 1, 0);
  auto sorted = p0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, split.train);
  EXPECT_EQ(epoch_permutation(split.train, 1, 0), p0);
  EXPECT_NE(epoch_permutation(split.train, 1, 1), p0);
  EXPECT_NE(epoch_permutation(split.train, 2, 0), p0);
  EXPECT_THROW(split_train_val(10, 10), std::invalid_argument);
}

TEST(Batcher, BatchesAreStandardizedBytes) {
  const auto d = test::synthetic_dataset(50, 4, 2, 3);
  std::vector<std::uint32_t> rows(50);
  for (std::uint32_t i = 0; i < 50; ++i) rows[i] = i;
  const auto norm = compute_normalization(d, rows);
  Tensor x;
  std::vector<std::uint8_t> labels;
  make_batch(d, std::span(rows).subspan(10, 5), norm, x, labels);
  EXPECT_EQ(x.shape(), (Shape{5, 1, 4, 4}));  // NCHW, one channel
  EXPECT_EQ(labels[0], d.labels[10]);
  EXPECT_FLOAT_EQ(x[3], (d.images[10 * 16 + 3] / 255.0f - norm.mean) / norm.std);
  // Over the whole set: mean 0, variance 1.
  make_batch(d, rows, norm, x, labels);
  double s = 0, sq = 0;
  for (std::size_t i = 0; i < x.numel(); ++i) s += x[i], sq += x[i] * x[i];
  EXPECT_NEAR(s / x.numel(), 0.0, 1e-4);
  EXPECT_NEAR(sq / x.numel(), 1.0, 1e-3);
}

}  // namespace
}  // namespace dropkit::data
