// Data-parallel training (train/distributed.h) ends with the bytes of one process: the same
// checkpoint for P = 1, 2, 3, 4, 8 "processes" (recursive halving for 4 and 8, the gather for
// 2 and 3; threads of this test, tests/support/thread_group.h, as processes;
// tests/cli/mpi_test.cpp runs real MPI processes), for nets with dropout, Gaussian dropout,
// batch norm, convolutions and DropConnect, for last batches that leave processes without rows,
// and for a run resumed from a distributed checkpoint.
#include "dropkit/train/distributed.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <random>

#include "dropkit/kernels/leaves.h"
#include "dropkit/train/trainer.h"
#include "support/bf16.h"
#include "support/idx_files.h"
#include "support/temp_dir.h"
#include "support/thread_group.h"

namespace dropkit::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string bytes_of(const fs::path& f) {
  std::ifstream in(f, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// 1250 examples, 50 for validation: 1200 = 2 x 512 + 176 (a last batch of two leaves, one
// short) = 3 x 384 + 48 (a last batch of one short leaf).
data::TrainTest data_1250() {
  return {test::synthetic_dataset(1250, 8, 4, 3), test::synthetic_dataset(300, 8, 4, 4)};
}

TrainConfig config_for(const std::string& net, int batch) {
  TrainConfig c;
  c.net = net;
  c.optimizer.lr = 0.05;
  c.optimizer.momentum_ramp_epochs = 2;
  c.batch = batch;
  c.epochs = 2;
  c.val = 50;
  c.train_eval = 600;
  c.seed = 21;
  c.augment_flip = true;  // augmentation keyed by the example, whoever holds it
  return c;
}

// The checkpoint after config.epochs epochs, trained by `processes` threads of a ThreadGroup
// (each with a pool of `threads`), or by this process alone when processes == 0; resumed after
// `stop_after` epochs when it is set.
std::string train_bytes(const TrainConfig& c, int processes, int threads, int stop_after = 0) {
  const auto data = data_1250();
  test::TempDir dir("dp");
  const fs::path file = dir.path() / "checkpoint.safetensors";
  auto run = [&](parallel::ProcessGroup* group) {
    parallel::ThreadPool pool(threads);
    const bool writer = group == nullptr || group->rank() == 0;
    int done = 0;
    if (stop_after > 0) {
      TrainConfig first = c;
      first.epochs = stop_after;
      Trainer t(first, data, pool, group);
      while (t.epochs_done() < stop_after) t.run_epoch();
      const fs::path mine = dir.path() / ("stop" + std::to_string(group ? group->rank() : 0));
      t.save_checkpoint(mine);  // every process saves its own copy: they must all be equal
      done = stop_after;
    }
    std::unique_ptr<Trainer> t;
    if (done > 0) {
      Checkpoint ck =
          read_checkpoint(dir.path() / ("stop" + std::to_string(group ? group->rank() : 0)));
      ck.config.epochs = c.epochs;
      t = std::make_unique<Trainer>(std::move(ck), data, pool, group);
    } else {
      t = std::make_unique<Trainer>(c, data, pool, group);
    }
    while (t->epochs_done() < c.epochs) t->run_epoch();
    if (writer) t->save_checkpoint(file);
  };
  if (processes == 0) {
    run(nullptr);
  } else {
    test::ThreadGroup(processes).run([&](parallel::ProcessGroup& g) { run(&g); });
  }
  if (stop_after > 0 && processes > 1) {
    for (int r = 1; r < processes; ++r) {
      EXPECT_EQ(bytes_of(dir.path() / "stop0"), bytes_of(dir.path() / ("stop" + std::to_string(r))))
          << "process " << r << " holds another model";
    }
  }
  return bytes_of(file);
}

struct NetCase {
  const char* name;
  const char* net;
};

class DataParallelNets : public ::testing::TestWithParam<NetCase> {};

TEST_P(DataParallelNets, EveryValidProcessCountEndsWithTheBytesOfOneProcess) {
  const TrainConfig c = config_for(GetParam().net, 512);
  const std::string one = train_bytes(c, 0, 2);
  ASSERT_GT(one.size(), 1000u);
  for (int p : {1, 2, 4}) {
    SCOPED_TRACE(p);
    EXPECT_TRUE(train_bytes(c, p, 1) == one) << p << " processes differ from one";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Nets, DataParallelNets,
    ::testing::Values(
        NetCase{"Dropout",
                "dropout:0.2,dense:160:relu,dropout:0.5,dense:160:relu,dropout:0.5,dense:4"},
        NetCase{"GaussianDropout",
                "gaussian_dropout:0.2,dense:96:relu,gaussian_dropout:0.5,dense:4"},
        NetCase{"BatchNorm", "dense:96,batchnorm,relu,dropout:0.3,dense:4"},
        NetCase{"ConvBatchNorm",
                "conv2d:4:3:padding=1,batchnorm,relu,max_pool2d:2,flatten,dropout:0.5,dense:4"},
        NetCase{"DropConnectAlpha", "alpha_dropout:0.1,dropconnect:64:0.5:relu,dense:4"},
        // Its regularizer's gradient joins once, after the processes' sums (a large length
        // scale, so that the weight term moves the weights).
        NetCase{"ConcreteDropout",
                "concrete_dropout:0.2,dense:96:relu,concrete_dropout:0.3:length_scale=30,dense:4"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DataParallel, AdamWithWeightDecayAndNesterovSgdEndWithTheBytesOfOneProcess) {
  TrainConfig adam = config_for("dense:96:relu,dropout:0.5,dense:96:relu,dense:4", 512);
  adam.optimizer.kind = "adam";
  adam.optimizer.lr = 0.002;
  adam.optimizer.weight_decay = 1e-3;
  EXPECT_TRUE(train_bytes(adam, 2, 1) == train_bytes(adam, 0, 2));
  TrainConfig nesterov = config_for("dense:96:relu,dropout:0.5,dense:4", 512);
  nesterov.optimizer.nesterov = true;
  nesterov.optimizer.max_norm = 0.5;  // acts: the rows are longer than that after a few steps
  EXPECT_TRUE(train_bytes(nesterov, 4, 1) == train_bytes(nesterov, 0, 2));
}

TEST(DataParallel, Bf16ProductsEndWithTheBytesOfOneProcess) {
  DROPKIT_REQUIRE_BF16();
  TrainConfig c = config_for("dense:96,batchnorm,relu,dropout:0.5,dense:4", 512);
  c.precision = "bf16";
  EXPECT_TRUE(train_bytes(c, 2, 1) == train_bytes(c, 0, 2));
}

TEST(DataParallel, EightProcessesHalveTheirGradientsEvenWithMostOfThemIdle) {
  // Batches of 1024 and 176: in the last, processes 2-7 hold nothing, so whole subtrees of the
  // halving are empty at every level.
  const TrainConfig c = config_for("dense:96,batchnorm,relu,dropout:0.5,dense:4", 1024);
  EXPECT_TRUE(train_bytes(c, 8, 1) == train_bytes(c, 0, 2));
}

TEST(DataParallel, ThreeProcessesShareBatchesOfThreeLeaves) {
  const TrainConfig c = config_for("dense:96:relu,dropout:0.5,dense:4", 384);
  EXPECT_TRUE(train_bytes(c, 3, 1) == train_bytes(c, 0, 1));
}

TEST(DataParallel, AResumedDistributedRunEndsWithTheBytesOfOneThatNeverStopped) {
  TrainConfig c = config_for("dense:96,batchnorm,relu,dropout:0.5,dense:4", 512);
  c.epochs = 3;
  const std::string one = train_bytes(c, 0, 2);
  EXPECT_TRUE(train_bytes(c, 2, 1, /*stop_after=*/1) == one);
  EXPECT_TRUE(train_bytes(c, 4, 1, /*stop_after=*/2) == one);
}

TEST(DataParallel, ProcessCountsThatCannotShareTheLeavesAreRefusedNamingTheValidOnes) {
  const auto data = data_1250();
  for (const auto& [processes, batch, valid] :
       {std::tuple{3, 512, "1, 2, 4"}, std::tuple{2, 128, "1;"}, std::tuple{2, 384, "1, 3"},
        std::tuple{8, 512, "1, 2, 4"}}) {
    SCOPED_TRACE(processes);
    const TrainConfig c = config_for("dense:8,dense:4", batch);
    test::ThreadGroup(processes).run([&](parallel::ProcessGroup& g) {
      parallel::ThreadPool pool(1);
      try {
        Trainer t(c, data, pool, &g);
        ADD_FAILURE() << "accepted";
      } catch (const std::invalid_argument& e) {
        EXPECT_THAT(e.what(), HasSubstr(std::to_string(processes) + " processes cannot share"));
        EXPECT_THAT(e.what(), HasSubstr(std::string("Valid process counts for `batch` ") +
                                        std::to_string(batch) + ": " + valid));
      }
    });
  }
}

TEST(DataParallel, ProcessesThatHoldOtherWeightsStopTheRun) {
  test::ThreadGroup(3).run([](parallel::ProcessGroup& g) {
    DataParallel dp(g, 384);
    std::vector<float> w(1000, 0.5f);
    EXPECT_NO_THROW(dp.check_same(w, "weights"));
    if (g.rank() == 2) w[999] = std::nextafter(0.5f, 1.0f);
    try {
      dp.check_same(w, "weights");
      ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_THAT(e.what(), HasSubstr("weights differ (processes 2 against process 0)"));
    }
  });
}

// The leaf tree itself: the processes' nodes, folded, are the whole batch's sum for every
// leaf count and every valid split, on values whose sums depend on the order of addition.
float node_sum(const std::vector<float>& leaves, std::size_t lo, std::size_t size) {
  if (lo >= leaves.size()) return 0.0f;  // "nothing" (only ever added to something)
  if (size == 1) return leaves[lo];
  if (lo + size / 2 >= leaves.size()) return node_sum(leaves, lo, size / 2);
  return node_sum(leaves, lo, size / 2) + node_sum(leaves, lo + size / 2, size / 2);
}

TEST(Leaves, TheProcessesNodesFoldToTheTreeSumOfAllLeaves) {
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> mag(-20.0f, 20.0f);
  int order_mattered = 0;
  for (std::size_t m = 1; m <= 37; ++m) {
    std::vector<float> leaves(m);
    for (auto& v : leaves) v = std::ldexp(mag(gen), static_cast<int>(mag(gen)));
    std::size_t top = std::bit_ceil(m);
    const float reference = node_sum(leaves, 0, top);
    kernels::TreeSum<float> all(1);
    float sequential = 0.0f;
    for (float v : leaves) {
      *all.next() = v;
      all.push();
      sequential += v;
    }
    EXPECT_EQ(all.result()[0], reference) << m << " leaves";
    order_mattered += sequential != reference;
    for (std::size_t k = 1; k <= 16; k *= 2) {  // leaves per process
      std::vector<float> nodes;
      for (std::size_t lo = 0; lo < m; lo += k) {
        kernels::TreeSum<float> mine(1);
        for (std::size_t l = lo; l < std::min(m, lo + k); ++l) {
          *mine.next() = leaves[l];
          mine.push();
        }
        nodes.push_back(mine.result()[0]);
      }
      float folded = 0;
      kernels::fold_nodes(nodes.data(), nodes.size(), 1, 1, &folded);
      EXPECT_EQ(folded, reference) << m << " leaves, " << k << " per process";
    }
  }
  EXPECT_GT(order_mattered, 10);  // the values are such that a sequential sum would differ
}

TEST(Leaves, ValidProcessCountsHoldAPowerOfTwoLeavesEach) {
  EXPECT_EQ(valid_process_counts(128), "1");
  EXPECT_EQ(valid_process_counts(129), "1, 2");
  EXPECT_EQ(valid_process_counts(512), "1, 2, 4");
  EXPECT_EQ(valid_process_counts(768), "1, 3, 6");
  EXPECT_EQ(valid_process_counts(1024), "1, 2, 4, 8");
}

}  // namespace
}  // namespace dropkit::train
