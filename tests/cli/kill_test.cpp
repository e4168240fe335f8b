// kill -9 at random moments: a training run killed again and again -- before its first
// checkpoint, mid-epoch, during the end-of-epoch writes -- and resumed each time ends with the
// same checkpoint bytes and the same metrics (clock times aside) as a run that never stopped.
// The atomic writes, the directory lock (released by the kernel on death), the fresh-directory
// rule (--overwrite when a kill left only a config) and the resume repairs are all exercised.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "dropkit/core/atomic_file.h"
#include "support/idx_files.h"
#include "support/temp_dir.h"

namespace dropkit {
namespace {

namespace fs = std::filesystem;

// Starts `args` of the CLI in the background (output discarded); returns its pid.
pid_t spawn(const std::string& args) {
  const std::string cmd = "exec " + std::string(DROPKIT_CLI) + " " + args + " >/dev/null 2>&1";
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Waits for pid; returns its exit code, or -signal when a signal ended it.
int wait_for(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// metrics.jsonl without the clock times (a kill loses an epoch's time; nothing else may differ).
nlohmann::json metrics_without_times(const fs::path& file) {
  nlohmann::json all = nlohmann::json::array();
  const std::string text = read_file(file);
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t end = text.find('\n', pos);
    auto line = nlohmann::json::parse(text.substr(pos, end - pos));
    line.erase("epoch_seconds");
    all.push_back(line);
    pos = end + 1;
  }
  return all;
}

TEST(KillNine, ARunKilledAtRandomMomentsAndResumedEndsAsOneThatNeverStopped) {
  const test::TempDir tmp("dropkit_kill_test");
  const fs::path data = tmp.path() / "data";
  test::write_mnist_dir(
      data, {test::synthetic_dataset(800, 8, 4, 1), test::synthetic_dataset(100, 8, 4, 2)});
  const std::string base = "train --data " + data.string() +
                           " --net dropout:0.1,dense:192:relu,dropout:0.5,dense:192:relu,dense:4 "
                           "--lr 0.05 --val 40 --batch 16 --epochs 25 --threads 2 --out ";
  const fs::path straight = tmp.path() / "straight", killed = tmp.path() / "killed";
  ASSERT_EQ(wait_for(spawn(base + straight.string())), 0);

  std::mt19937 gen(2026);
  int kills = 0, attempts = 0;
  for (; attempts < 60; ++attempts) {
    const bool has_checkpoint = fs::exists(killed / "checkpoint.safetensors");
    const std::string args = has_checkpoint
                                 ? "train --data " + data.string() + " --resume " + killed.string()
                                 : base + killed.string() + " --overwrite";
    const pid_t pid = spawn(args);
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + gen() % 120));
    kill(pid, SIGKILL);
    const int code = wait_for(pid);
    if (code == 0) break;  // it finished before the kill
    ASSERT_EQ(code, -SIGKILL) << "a run failed on its own (exit " << code << ") after " << kills
                              << " kills";
    ++kills;
  }
  // Whatever the last kill left, one more resume finishes the run.
  if (fs::exists(killed / "checkpoint.safetensors")) {
    ASSERT_EQ(wait_for(spawn("train --data " + data.string() + " --resume " + killed.string())), 0);
  } else {
    ASSERT_EQ(wait_for(spawn(base + killed.string() + " --overwrite")), 0);
  }
  EXPECT_GE(kills, 3) << "the runs finished too fast to be killed";
  EXPECT_EQ(read_file(killed / "checkpoint.safetensors"),
            read_file(straight / "checkpoint.safetensors"))
      << kills << " kills";
  EXPECT_EQ(metrics_without_times(killed / "metrics.jsonl"),
            metrics_without_times(straight / "metrics.jsonl"));
  // No temporary file of a killed write survives the last resume.
  for (const auto& entry : fs::directory_iterator(killed)) {
    const std::string name = entry.path().filename().string();
    EXPECT_EQ(name.find(".tmp."), std::string::npos) << entry.path();
    EXPECT_FALSE(name.starts_with(".dropkit-write-probe.")) << entry.path();
  }
}

}  // namespace
}  // namespace dropkit
