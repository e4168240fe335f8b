// Data-parallel training over a ProcessGroup (an MPI job, parallel/process_group.h), with the
// bits of one process (docs/spec.md section 2).
//
// Each step's batch is cut into leaves of kernels::kLeafRows examples (kernels/leaves.h);
// process r of P holds the k = leaves / P leaves [r k, r k + k) of a full batch (the last batch
// of an epoch may leave later processes fewer or none). Everything a step computes per example
// -- products, activations, masks (keyed by the example's place in the whole batch,
// nn::Context::row_offset) -- is the same as in one process; everything summed over the batch
// is each process's node of the leaf tree, added across processes up the same tree:
//   - the gradients, once per step (exchange): with P a power of two from 4 on by recursive
//     halving -- process r adds its half with that of partner r XOR 2^j at level j, exactly the
//     tree's level-j nodes -- then a gather of the sums; otherwise every process gathers every
//     node and adds them up the tree itself. Either way every process applies the same update;
//   - batch norm's statistics and the loss, through nn::BatchPeers (sum()).
// Never MPI's own floating-point reduction: its order is MPI's to choose. Valid process counts
// are those for which k is a power of two (leaf_split_valid): 1, 2 and 4 for a batch of 512.
// Evaluation is shared by chunks (evaluate in train/trainer.h), each chunk evaluated whole by
// one process as one process would.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dropkit/nn/layer.h"
#include "dropkit/nn/params.h"
#include "dropkit/parallel/process_group.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::train {

class DataParallel final : public nn::BatchPeers {
 public:
  // Throws std::invalid_argument, naming the valid process counts for this batch, unless the
  // group's processes can share batches of `batch` examples on leaf boundaries.
  DataParallel(parallel::ProcessGroup& group, std::size_t batch);

  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  parallel::ProcessGroup& group() const { return group_; }

  // This process's rows [begin, end) of a batch of `rows` examples (at most the configured
  // batch), and the start of that step: batch_rows() and sum() refer to it from now on.
  struct Share {
    std::size_t begin = 0, end = 0;
  };
  Share begin_step(std::size_t rows);

  std::size_t batch_rows() const override { return rows_; }
  void sum(std::span<double> sums) const override;

  // The gradients, added across processes in three parts, so that the sum of each block of
  // rows can go straight to the optimizer (train_step, train/step.h):
  //   gradient_slot(n)    where this process puts its node of the leaf tree for each of n
  //                       gradient values (the arena's layout);
  //   exchange()          the nodes added up the leaf tree across processes. P a power of
  //                       two, 4 or more: recursive halving (each process adds 1 / P of the values)
  //                       and a gather of the sums, about 2 n 4 (P - 1) / P bytes received per
  //                       process; otherwise every slot gathered, (P - 1) n 4 bytes;
  //   fold(offset, count, out)  the whole batch's sum of values [offset, offset + count),
  //                       the same bits in every process, and those of one process.
  float* gradient_slot(std::size_t n);
  void exchange();
  void fold(std::size_t offset, std::size_t count, float* out) const;

  // Throws std::runtime_error, naming `what` and the processes that differ, unless every
  // process holds the same bytes (compared by a 64-bit hash).
  void check_same(std::span<const float> values, const char* what) const;

  // Every process's values gathered, in rank order (size() * values.size()).
  std::vector<double> gather(std::span<const double> values) const;

  // Bytes this process has received from the others so far (every collective counted:
  // evaluation's and the weight checks' too), and the steps begun so far.
  std::uint64_t bytes_received() const { return bytes_received_; }
  std::uint64_t steps() const { return steps_; }

  // The smallest and largest figure over the processes (memory per process, say).
  struct Range {
    double min = 0, max = 0;
  };
  Range range(double value) const;

 private:
  parallel::ProcessGroup& group_;
  std::size_t leaves_per_rank_;
  std::size_t rows_ = 0;   // this step's batch
  std::size_t nodes_ = 0;  // processes holding rows this step (the first nodes_)
  mutable std::vector<double> gathered_;
  std::vector<float> all_grads_;  // gather: every process's gradient node, in rank order
  std::size_t grad_count_ = 0;
  bool halving_ = false;  // P is a power of two, 4 or more: recursive halving
  // Halving: this process's node, then (exchange) the whole batch's sums; a partner's half.
  std::vector<float> work_, received_, segments_;
  void halve();
  mutable std::uint64_t bytes_received_ = 0;
  std::uint64_t steps_ = 0;
  // all_gather through the group, counting what arrives from the others.
  void gather_bytes(const void* mine, std::size_t bytes, void* all) const;
};

// The valid process counts for batches of `batch` examples, for messages: "1, 2, 4".
std::string valid_process_counts(std::size_t batch);

}  // namespace dropkit::train
