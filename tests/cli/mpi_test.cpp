// `mpirun -np P dropkit train ...` as a user runs it (docs/distributed.md): the checkpoint bytes
// of one process for P = 2 and 4, for a net with dropout, one with Gaussian dropout and one with
// batch norm; a distributed run resumed; a process count the batch cannot be shared by refused
// before anything is written; a process killed mid-run ending the job with the last checkpoint
// intact; a run directory locked by another job. Skipped when dropkit was built without MPI.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/cli.h"

namespace dropkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

#ifdef DROPKIT_MPIEXEC
// OpenMPI refuses root without these, more processes than cores need --oversubscribe, and
// containers may lack the kernel's cross-memory attach.
constexpr const char* kMpi =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
    "OMPI_MCA_btl_vader_single_copy_mechanism=none " DROPKIT_MPIEXEC;
#endif

// Lines of dropkit's own in a job's stderr (mpirun adds its report of the exit codes): an error
// every process saw is said once, by one process.
int said_by_dropkit(const std::string& err) {
  int n = 0;
  for (std::size_t at = 0; (at = err.find("dropkit", at)) != std::string::npos; ++at) {
    n += at == 0 || err[at - 1] == '\n';
  }
  return n;
}

std::string bytes_of(const fs::path& f) {
  std::ifstream in(f, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

class Mpi : public Cli {
 protected:
  void SetUp() override {
#ifndef DROPKIT_MPIEXEC
    GTEST_SKIP() << "dropkit was built without MPI";
#else
    // 1200 training examples: batches of 512, 512 and 176 (the last leaves processes idle).
    test::write_mnist_dir(root_ / "data", {test::synthetic_dataset(1250, 8, 4, 3),
                                           test::synthetic_dataset(200, 8, 4, 4)});
#endif
  }
  std::string args(const std::string& net, const std::string& extra) const {
    return "train --data " + (root_ / "data").string() + " --net " + net +
           " --val 50 --batch 512 --lr 0.05 --momentum-ramp-epochs 2 " + extra;
  }
  // The CLI under mpirun (the fixture's run() puts the binary first).
  Result under_mpirun(int processes, const std::string& a) const {
#ifdef DROPKIT_MPIEXEC
    const fs::path err = root_ / "mpi_stderr.txt";
    const std::string cmd = std::string(kMpi) + " -np " + std::to_string(processes) + " " +
                            DROPKIT_CLI + " " + a + " 2>" + err.string();
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    const int status = pclose(p);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, bytes_of(err)};
#else
    (void)processes;
    (void)a;
    return {};
#endif
  }
};

TEST_F(Mpi, TwoAndFourProcessesWriteTheCheckpointOfOneForEveryKindOfNet) {
  for (const char* net : {"dropout:0.2,dense:128:relu,dropout:0.5,dense:4",
                          "gaussian_dropout:0.2,dense:96:relu,gaussian_dropout:0.5,dense:4",
                          "dense:96,batchnorm,relu,dropout:0.3,dense:4"}) {
    SCOPED_TRACE(net);
    const fs::path one = root_ / "one";
    const Result r1 = run(args(net, "--epochs 2 --threads 2 --overwrite --out " + one.string()));
    ASSERT_EQ(r1.code, 0) << r1.err;
    for (int p : {2, 4}) {
      const fs::path d = root_ / ("p" + std::to_string(p));
      const Result r =
          under_mpirun(p, args(net, "--epochs 2 --threads 1 --overwrite --out " + d.string()));
      ASSERT_EQ(r.code, 0) << r.err;
      EXPECT_THAT(r.out, HasSubstr(std::to_string(p) + " processes x 1 threads"));
      EXPECT_THAT(r.out, HasSubstr("peak memory per process"));
      EXPECT_TRUE(bytes_of(d / "checkpoint.safetensors") ==
                  bytes_of(one / "checkpoint.safetensors"))
          << p << " processes";
    }
  }
}

TEST_F(Mpi, TheJsonSaysHowManyBytesEachProcessReceivedPerStep) {
  // 64 inputs -> 128 -> 4: 8836 parameters, 35,344 bytes of gradient per step.
  const double gradient = 4.0 * (64 * 128 + 128 + 128 * 4 + 4);
  for (int p : {2, 4}) {
    const fs::path d = root_ / ("json" + std::to_string(p));
    const Result r = under_mpirun(p, args("dense:128:relu,dropout:0.5,dense:4",
                                          "--epochs 2 --threads 1 --json --out " + d.string()));
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("processes"), p);
    const double received = j.at("bytes_received_per_step").get<double>();
    // Two processes gather each other's gradient; four halve it (half, then a quarter, from
    // the partners, then the other processes' sums: 2 (P - 1) / P of it); plus the loss,
    // evaluation and weight checks.
    const double expected = p == 2 ? gradient : 2.0 * (p - 1) / p * gradient;
    EXPECT_GE(received, expected);
    EXPECT_LE(received, expected * 1.05) << received;
    EXPECT_EQ(j.at("peak_memory_mib_per_process").size(), 2u);
  }
}

TEST_F(Mpi, AResumedDistributedRunEndsWithTheBytesOfOneThatNeverStopped) {
  const std::string net = "dense:96,batchnorm,relu,dropout:0.5,dense:4";
  const fs::path one = root_ / "one", two = root_ / "two";
  ASSERT_EQ(run(args(net, "--epochs 3 --out " + one.string())).code, 0);
  const Result first = under_mpirun(2, args(net, "--epochs 1 --threads 1 --out " + two.string()));
  ASSERT_EQ(first.code, 0) << first.err;
  const Result rest = under_mpirun(4, "train --data " + (root_ / "data").string() +
                                          " --threads 1 --epochs 3 --resume " + two.string());
  ASSERT_EQ(rest.code, 0) << rest.err;
  EXPECT_TRUE(bytes_of(two / "checkpoint.safetensors") == bytes_of(one / "checkpoint.safetensors"));
  EXPECT_EQ(lines(two / "metrics.jsonl"), 3u);
}

TEST_F(Mpi, AProcessCountTheBatchCannotBeSharedByIsRefusedBeforeAnythingIsWritten) {
  const fs::path d = root_ / "three";
  const Result r = under_mpirun(3, args("dense:32:relu,dense:4", "--epochs 1 --out " + d.string()));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("3 processes cannot share batches of 512 examples"));
  EXPECT_THAT(r.err, HasSubstr("Valid process counts for --batch 512: 1, 2, 4"));
  EXPECT_EQ(said_by_dropkit(r.err), 1) << r.err;
  EXPECT_FALSE(fs::exists(d));
}

TEST_F(Mpi, ARunThatDivergesStopsEveryProcessWithOneMessageAndStatus3) {
  const fs::path d = root_ / "diverged";
  const Result r =
      under_mpirun(2, "train --data " + (root_ / "data").string() +
                          " --net dense:64:relu,dense:4 --val 50 --batch 512 --lr 1e30 "
                          "--max-norm 0 --epochs 3 --threads 1 --out " +
                          d.string());
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("training diverged"));
  EXPECT_EQ(said_by_dropkit(r.err), 1) << r.err;
  EXPECT_FALSE(fs::exists(d / "checkpoint.safetensors"));
}

TEST_F(Mpi, OnlyTrainRunsAsSeveralProcesses) {
  const Result r = under_mpirun(2, "eval --model " + (root_ / "none").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("only `train` runs as several processes"));
}

TEST_F(Mpi, ADirectoryLockedByAnotherJobStopsEveryProcessWithOneMessage) {
  const std::string net = "dense:512:relu,dropout:0.5,dense:512:relu,dense:4";
  const fs::path d = root_ / "busy";
  ASSERT_EQ(run(args(net, "--epochs 1 --out " + d.string())).code, 0);
  // A long resume holds the lock while the job tries the same directory.
  const std::string holder = std::string(DROPKIT_CLI) + " train --data " +
                             (root_ / "data").string() + " --epochs 400 --threads 1 --resume " +
                             d.string() + " >/dev/null 2>&1";
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + holder).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const Result r = under_mpirun(2, "train --data " + (root_ / "data").string() +
                                       " --threads 1 --epochs 5 --resume " + d.string());
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("is in use by another dropkit process"));
  EXPECT_EQ(said_by_dropkit(r.err), 1) << r.err;
}

TEST_F(Mpi, AProcessKilledMidRunEndsTheJobAndLeavesTheLastCheckpoint) {
#ifdef DROPKIT_MPIEXEC
  const std::string net = "dense:512:relu,dropout:0.5,dense:512:relu,dense:4";
  const fs::path d = root_ / "killed";
  const fs::path err = root_ / "killed_stderr.txt";
  const std::string cmd = std::string(kMpi) + " -np 2 " + DROPKIT_CLI + " " +
                          args(net, "--epochs 400 --out " + d.string()) + " >/dev/null 2>" +
                          err.string();
  const pid_t job = fork();
  if (job == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for two finished epochs, then kill process 1 of the job.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (lines(d / "metrics.jsonl") < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(lines(d / "metrics.jsonl"), 2u);
  bool killed = false;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string env = bytes_of(e.path() / "environ");
    const std::string cmdline = bytes_of(e.path() / "cmdline");
    if (cmdline.find(d.string()) == std::string::npos || cmdline.find(DROPKIT_CLI) != 0 ||
        env.find(std::string("OMPI_COMM_WORLD_RANK=1")) == std::string::npos) {
      continue;
    }
    kill(std::stoi(e.path().filename().string()), SIGKILL);
    killed = true;
  }
  ASSERT_TRUE(killed) << "no process 1 found";
  int status = 0;
  waitpid(job, &status, 0);
  EXPECT_TRUE(!WIFEXITED(status) || WEXITSTATUS(status) != 0) << "the job ended well";
  EXPECT_THAT(bytes_of(err), HasSubstr("signal 9"));
  // The last checkpoint loads, and the run resumes from it.
  const Result r = run("eval --data " + (root_ / "data").string() + " --model " + d.string());
  EXPECT_EQ(r.code, 0) << r.err;
  const std::size_t done = lines(d / "metrics.jsonl");
  const Result more = run("train --data " + (root_ / "data").string() + " --threads 2 --epochs " +
                          std::to_string(done + 1) + " --resume " + d.string());
  EXPECT_EQ(more.code, 0) << more.err;
#endif
}

}  // namespace
}  // namespace dropkit
