// Shape and Tensor: any rank, reshape without a copy, the per-example view of a batch shape.
#include "dropkit/core/tensor.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace dropkit {
namespace {

TEST(ShapeTest, RowSizeWithBatchAndExampleForEveryRank) {
  EXPECT_EQ(Shape{}.numel(), 1u);
  EXPECT_EQ(Shape{}.row_size(), 1u);
  EXPECT_EQ((Shape{7}).row_size(), 1u);
  EXPECT_EQ((Shape{4, 3}).row_size(), 3u);
  EXPECT_EQ((Shape{5, 1, 28, 28}).row_size(), 784u);
  // A batch of no examples still has examples of 784 values (a data-parallel process may hold
  // no rows of a last batch).
  EXPECT_EQ((Shape{0, 1, 28, 28}).row_size(), 784u);
  EXPECT_EQ((Shape{3, 0, 2}).row_size(), 0u);
  EXPECT_EQ((Shape{1, 28, 28}).with_batch(128), (Shape{128, 1, 28, 28}));
  EXPECT_EQ((Shape{128, 1, 28, 28}).example(), (Shape{1, 28, 28}));
  EXPECT_EQ((Shape{3}).example(), Shape{});
  EXPECT_THROW(Shape{}.example(), std::invalid_argument);
  EXPECT_THROW((Shape{2, -1}), std::invalid_argument);
}

TEST(TensorTest, ReshapeKeepsTheElementsAndRefusesAnotherCount) {
  Tensor t(Shape{2, 3, 2, 2});
  for (std::size_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(i);
  const float* before = t.data();
  t.reshape(Shape{2, 12});
  EXPECT_EQ(t.shape(), (Shape{2, 12}));
  EXPECT_EQ(t.data(), before);  // no copy
  EXPECT_EQ(t[13], 13.0f);
  t.reshape(Shape{24});
  try {
    t.reshape(Shape{5, 5});
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "Tensor: cannot reshape [24] (24 elements) to [5, 5] (25)");
  }
  EXPECT_EQ(t.shape(), (Shape{24}));  // unchanged by the failed reshape
}

TEST(TensorTest, ResizeReusesTheAllocationWhenItDoesNotGrow) {
  Tensor t(Shape{4, 1, 8, 8});
  const float* p = t.data();
  t.resize(Shape{2, 1, 8, 8});
  EXPECT_EQ(t.data(), p);
  t.resize(Shape{4, 64});
  EXPECT_EQ(t.data(), p);
  EXPECT_EQ(t.numel(), 256u);
}

}  // namespace
}  // namespace dropkit
