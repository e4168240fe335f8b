// The dropkit binary run as a user runs it, for the CLI tests (tests/cli/): a fixture with its
// own directory and small synthetic MNIST-style data set, so tests run in parallel (ctest -j).
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "support/idx_files.h"
#include "support/temp_dir.h"

namespace dropkit {

struct Result {
  int code;
  std::string out, err;
};

// Every test gets its own directory (and data set), so tests run in parallel (ctest -j).
class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_mnist_dir(root_ / "data", {test::synthetic_dataset(300, 8, 4, 1),
                                           test::synthetic_dataset(80, 8, 4, 2)});
  }

  Result run(const std::string& args) const { return run_with_env("", args); }
  // `env` is put before the command ("NAME=value").
  Result run_with_env(const std::string& env, const std::string& args) const {
    const std::filesystem::path err = root_ / "stderr.txt";
    const std::string cmd =
        env + " " + std::string(DROPKIT_CLI) + " " + args + " 2>" + err.string();
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    const int status = pclose(p);
    std::ifstream in(err);
    std::string e((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, e};
  }
  // A flag may be given once (CLI11 rejects repeats), so tests override arch and lr here.
  std::string train_args(const std::string& extra, const std::string& arch = "64-96-4",
                         const std::string& lr = "0.3") const {
    return "train --data " + (root_ / "data").string() + " --arch " + arch + " --lr " + lr +
           " --val 40 --batch 25 --momentum 0.9 " + extra;
  }
  static std::size_t lines(const std::filesystem::path& f) {
    std::ifstream in(f);
    std::size_t n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n;
  }
  const test::TempDir tmp_{"dropkit_cli_test"};
  const std::filesystem::path root_ = tmp_.path();
};

inline void expect_one_line_error(const Result& r, const std::string& what) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, ::testing::HasSubstr(what));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  // The library's option references (`name`, core/options.h) reach the user as flags.
  EXPECT_EQ(r.err.find('`'), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}
}  // namespace dropkit
