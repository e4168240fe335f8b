// Leaves: the one order in which a training batch's sums are taken, so that their bits do not
// depend on how the batch is shared -- between threads, or between the processes of a
// data-parallel run (train/distributed.h).
//
// A batch of n examples is cut into leaves of kLeafRows examples (the last one shorter). Every
// sum over the examples -- a weight or bias gradient, batch norm's statistics, the loss -- is
// taken leaf by leaf, each leaf exactly as a batch of that size alone would be, and the leaves'
// sums are added up the aligned binary tree over the leaves:
//
//   node(lo, 1)    = leaf lo (or nothing, past the last leaf)
//   node(lo, 2^j)  = node(lo, 2^(j-1)) + node(lo + 2^(j-1), 2^(j-1))   (x + nothing = x)
//   sum            = node(0, 2^J), the smallest 2^J >= the number of leaves.
//
// The tree depends on the batch alone. A process that holds leaves [r k, r k + k), k a power of
// two, computes node(r k, k) by itself; the nodes of all processes, added up the same tree's
// upper levels (fold_nodes), give the very sum one process computes: IEEE addition is
// commutative, so every node is the same two operands added once, wherever it is added. Every
// matrix product of training is likewise called on whole leaves of rows (kernels/gemm.h), so
// its shapes are the same in every process layout.
//
// A batch of at most kLeafRows examples is one leaf: its sums are taken as they were before
// leaves existed. 128 rows keep the products as fast as whole-batch calls (oneDNN's sgemm on
// the default network's shapes: 32-row leaves cost 1.7-2.6 times, 64-row leaves 1.2-1.5 times, for
// the weight gradient; docs/design.md).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace dropkit::kernels {

inline constexpr std::int64_t kLeafRows = 128;

// How a product's rows are cut into calls (kernels/gemm.h). Training cuts them on the leaves,
// so that no call's shape depends on how a batch is shared between processes; evaluation and
// prediction, which no process shares, make one call for all rows (on the default network's
// shapes a call of 1024 rows runs at 161-178 GFLOP/s, eight of 128 rows at 147).
enum class RowCalls { kWhole, kLeaves };

// Leaves in a batch of `rows` examples.
inline std::size_t leaf_count(std::size_t rows) {
  return (rows + static_cast<std::size_t>(kLeafRows) - 1) / static_cast<std::size_t>(kLeafRows);
}

// Adds arrays of `size` values up the aligned binary tree as they arrive, in order: push() the
// first, second, ... node of one level; result() is their tree sum. Each pushed array is
// written by the caller into next() first. Only O(log n) arrays are live at once.
template <class T>
class TreeSum {
 public:
  explicit TreeSum(std::size_t size = 0) : size_(size) {}
  // Empty again, for nodes of `size` values (the arrays are kept for reuse).
  void reset(std::size_t size) {
    size_ = size;
    depth_ = pushed_ = 0;
  }

  // Where the next node's values go (size() values, contents unspecified).
  T* next() {
    if (stack_.size() <= depth_) stack_.emplace_back();
    stack_[depth_].resize(size_);
    return stack_[depth_].data();
  }
  // The array next() returned now holds node `pushed` (0, 1, 2, ...): add completed pairs.
  void push() {
    ++depth_;
    for (std::size_t n = ++pushed_; (n & 1) == 0 && depth_ >= 2; n >>= 1) {
      add(stack_[depth_ - 2].data(), stack_[depth_ - 1].data());
      --depth_;
    }
  }
  // The sum of every node pushed (nodes after the last are "nothing"): the partial subtrees
  // still on the stack, added from the right. Empty if nothing was pushed.
  std::span<const T> result() {
    if (depth_ == 0) return {};
    for (std::size_t i = depth_ - 1; i > 0; --i) add(stack_[i - 1].data(), stack_[i].data());
    depth_ = 1;
    return {stack_[0].data(), size_};
  }

 private:
  void add(T* a, const T* b) const {
    for (std::size_t i = 0; i < size_; ++i) a[i] += b[i];
  }
  std::size_t size_;
  std::size_t depth_ = 0, pushed_ = 0;
  std::vector<std::vector<T>> stack_;
};

// The tree sum over the leaves of `rows` rows into out[0, size): fn(begin, end, into) writes
// the `size` values of the leaf of rows [begin, end) into `into`. A single leaf is written
// straight into out. fn may itself call sum_leaves (each nesting level has its own arrays).
template <class T, class Fn>
void sum_leaves(std::size_t rows, std::size_t size, T* out, Fn&& fn) {
  const std::size_t leaves = leaf_count(rows);
  const auto leaf = static_cast<std::size_t>(kLeafRows);
  if (leaves <= 1) {
    fn(std::size_t{0}, rows, out);
    return;
  }
  // Reused from call to call, one per nesting level (a deque: references stay valid).
  thread_local std::deque<TreeSum<T>> trees;
  thread_local std::size_t nesting = 0;
  if (trees.size() <= nesting) trees.emplace_back();
  TreeSum<T>& tree = trees[nesting];
  tree.reset(size);
  struct Nest {
    std::size_t& n;
    explicit Nest(std::size_t& m) : n(++m) {}
    ~Nest() { --n; }
  } nest(nesting);
  for (std::size_t l = 0; l < leaves; ++l) {
    fn(l * leaf, std::min(rows, (l + 1) * leaf), tree.next());
    tree.push();
  }
  const std::span<const T> sum = tree.result();
  for (std::size_t i = 0; i < size; ++i) out[i] = sum[i];
}

// The tree sum of `nodes` arrays of `size` values, node i at all + i * stride, that are the
// leaf tree's nodes of one level in order (every process's node(r k, k), in rank order), into
// out[0, size).
template <class T>
void fold_nodes(const T* all, std::size_t nodes, std::size_t stride, std::size_t size, T* out) {
  if (nodes == 2) {  // the common case, without copies
    for (std::size_t j = 0; j < size; ++j) out[j] = all[j] + all[stride + j];
    return;
  }
  thread_local TreeSum<T> tree;  // its arrays reused from call to call (a step calls it often)
  tree.reset(size);
  for (std::size_t i = 0; i < nodes; ++i) {
    std::copy(all + i * stride, all + i * stride + size, tree.next());
    tree.push();
  }
  const std::span<const T> sum = tree.result();
  std::copy(sum.begin(), sum.end(), out);
}

// Whether `ranks` processes can share batches of `batch_rows` examples on leaf boundaries: each
// holds the same power-of-two number of leaves of a full batch.
inline bool leaf_split_valid(std::size_t batch_rows, std::size_t ranks) {
  const std::size_t leaves = leaf_count(batch_rows);
  return ranks == 1 || (ranks > 1 && leaves % ranks == 0 && std::has_single_bit(leaves / ranks));
}

}  // namespace dropkit::kernels
