// The dropkit command line as a user meets it: exit codes, one-line errors, nothing
// half-written, the files of --out, --json output, resume and eval. Runs the real binary on a
// small synthetic MNIST-style directory.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "dropkit/core/atomic_file.h"
#include "dropkit/model/safetensors.h"
#include "support/idx_files.h"
#include "support/temp_dir.h"

namespace dropkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

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

  Result run(const std::string& args) const {
    const fs::path err = root_ / "stderr.txt";
    const std::string cmd = std::string(DROPKIT_CLI) + " " + args + " 2>" + err.string();
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
  static std::size_t lines(const fs::path& f) {
    std::ifstream in(f);
    std::size_t n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n;
  }
  const test::TempDir tmp_{"dropkit_cli_test"};
  const fs::path root_ = tmp_.path();
};

void expect_one_line_error(const Result& r, const std::string& what) {
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(what));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(Cli, HelpDocumentsEveryTrainFlagWithItsDefault) {
  const auto r = run("train --help");
  EXPECT_EQ(r.code, 0);
  for (const char* flag :
       {"--data", "--arch", "--activation", "--dropout", "--input-dropout", "--scaling",
        "--max-norm", "--weight-decay", "--optimizer", "--lr", "--momentum", "--batch", "--epochs",
        "--val", "--seed", "--threads", "--out", "--resume", "--json"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
  EXPECT_THAT(r.out, HasSubstr("784-1024-1024-10"));
}

TEST_F(Cli, BadInputsGetOneLineAndExitCodeTwoAndWriteNothing) {
  const fs::path out = root_ / "never";
  expect_one_line_error(run(train_args("--bogus")), "--bogus");
  expect_one_line_error(run(train_args("--dropout 1.5 --out " + out.string())), "[0, 1]");
  expect_one_line_error(run(train_args("--input-dropout -0.1 --out " + out.string())), "[0, 1]");
  expect_one_line_error(run(train_args("--dropout nan --out " + out.string())), "dropout");
  expect_one_line_error(run(train_args("--out " + out.string(), "64-x-4")), "malformed --arch");
  expect_one_line_error(run(train_args("--out " + out.string(), "100-4")), "64");
  expect_one_line_error(run(train_args("--arch 64-4")), "--arch");  // given twice
  expect_one_line_error(run("train --data " + (root_ / "nope").string()), "missing");
  EXPECT_FALSE(fs::exists(out));
  // An --out below a regular file cannot be created.
  std::ofstream(root_ / "afile") << "x";
  expect_one_line_error(run(train_args("--out " + (root_ / "afile" / "run").string())),
                        "not writable");
  expect_one_line_error(run("train --resume " + (root_ / "nope").string()), "cannot read");
  expect_one_line_error(run("eval --model " + (root_ / "nope").string()), "cannot read");
}

TEST_F(Cli, CorruptDataAndCheckpointsAreRejected) {
  const fs::path bad = root_ / "bad_data";
  fs::create_directories(bad);
  for (const auto& f : fs::directory_iterator(root_ / "data"))
    fs::copy_file(f.path(), bad / f.path().filename(), fs::copy_options::overwrite_existing);
  fs::resize_file(bad / "train-images-idx3-ubyte", 1000);
  expect_one_line_error(run("train --data " + bad.string()), "truncated");

  const fs::path ck = root_ / "corrupt_ck";
  fs::create_directories(ck);
  std::ofstream(ck / "checkpoint.safetensors") << "definitely not safetensors";
  expect_one_line_error(run("train --resume " + ck.string()), ck.string());
}

TEST_F(Cli, TrainWritesItsFilesAndOneJsonObject) {
  const fs::path out = root_ / "run";
  const auto r = run(train_args("--epochs 3 --json --out " + out.string()));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);  // exactly one object, nothing else
  for (const char* k : {"test_accuracy", "test_loss", "train_accuracy", "epochs",
                        "epoch_seconds_median", "samples_per_second", "seed", "threads"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j["epochs"], 3);
  EXPECT_GT(j["test_accuracy"].get<double>(), 0.5);
  EXPECT_THAT(r.err, HasSubstr("epoch   3/3"));  // progress goes to stderr with --json
  for (const char* f : {"config.json", "metrics.jsonl", "checkpoint.safetensors", "curves.svg"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  EXPECT_EQ(lines(out / "metrics.jsonl"), 3u);
  for (const auto& f : fs::directory_iterator(out))
    EXPECT_THAT(f.path().filename().string(), Not(HasSubstr(".tmp")));

  const auto e =
      run("eval --json --data " + (root_ / "data").string() + " --model " + out.string());
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["test_accuracy"], j["test_accuracy"]);
}

TEST_F(Cli, ResumedRunEndsWhereAnUninterruptedOneDoes) {
  const fs::path a = root_ / "straight", b = root_ / "resumed";
  const auto straight = run(train_args("--epochs 3 --json --out " + a.string()));
  ASSERT_EQ(straight.code, 0) << straight.err;
  ASSERT_EQ(run(train_args("--epochs 1 --out " + b.string())).code, 0);
  expect_one_line_error(run("train --resume " + b.string() + " --lr 0.1"), "--lr");
  const auto resumed = run("train --json --data " + (root_ / "data").string() + " --resume " +
                           b.string() + " --epochs 3");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const auto ja = nlohmann::json::parse(straight.out), jb = nlohmann::json::parse(resumed.out);
  EXPECT_EQ(ja["test_loss"], jb["test_loss"]);
  EXPECT_EQ(ja["train_loss"], jb["train_loss"]);
  EXPECT_EQ(lines(b / "metrics.jsonl"), 3u);
  // The same weights and optimizer state, bit for bit (the metadata differs: epoch timings).
  const auto ca = model::decode_safetensors(read_file(a / "checkpoint.safetensors"), "a");
  const auto cb = model::decode_safetensors(read_file(b / "checkpoint.safetensors"), "b");
  ASSERT_EQ(ca.tensors.size(), cb.tensors.size());
  for (const auto& [name, t] : ca.tensors) {
    const Tensor& u = cb.tensors.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(std::memcmp(t.data(), u.data(), t.numel() * sizeof(float)), 0) << name;
  }
}

TEST_F(Cli, DivergenceExitsThreeNamingTheStepAndLeavesNoCheckpoint) {
  const fs::path out = root_ / "diverged";
  const auto r =
      run(train_args("--max-norm 0 --epochs 2 --out " + out.string(), "64-96-4", "1e30"));
  EXPECT_EQ(r.code, 3);
  EXPECT_THAT(r.err, HasSubstr("at step"));
  EXPECT_FALSE(fs::exists(out / "checkpoint.safetensors"));
}

TEST_F(Cli, CompareAndBenchRun) {
  const fs::path a = root_ / "cmp_a", b = root_ / "cmp_b";
  ASSERT_EQ(run(train_args("--epochs 2 --out " + a.string())).code, 0);
  ASSERT_EQ(run(train_args("--epochs 2 --dropout 0 --input-dropout 0 --out " + b.string())).code,
            0);
  const auto c =
      run("compare " + a.string() + " " + b.string() + " --svg " + (root_ / "cmp.svg").string());
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_THAT(c.out, HasSubstr("cmp_a"));
  EXPECT_THAT(c.out, HasSubstr("cmp_b"));
  EXPECT_TRUE(fs::exists(root_ / "cmp.svg"));

  const auto k = run("bench --json --sizes 4096 --reps 1");
  ASSERT_EQ(k.code, 0) << k.err;
  const auto j = nlohmann::json::parse(k.out);
  EXPECT_TRUE(j.contains("cpu"));
  for (const auto& row : j["results"]) {
    for (const char* key : {"op", "n", "threads", "seconds_median", "gb_per_s", "ratio_to_copy"})
      EXPECT_TRUE(row.contains(key)) << key;
  }

  const auto t = run("bench train --json --arch 20-16-16-4 --batch 8 --steps 3");
  ASSERT_EQ(t.code, 0) << t.err;
  const auto tj = nlohmann::json::parse(t.out);
  for (const char* key : {"products_seconds", "step_dropout_seconds", "step_no_dropout_seconds",
                          "update_alone_seconds", "masks_seconds"}) {
    ASSERT_TRUE(tj.contains(key)) << key;
    EXPECT_GT(tj[key].get<double>(), 0.0) << key;
  }
  // The parts measured alone are the products plus two positive times.
  EXPECT_GT(tj["products_update_masks_over_products"].get<double>(), 1.0);
  EXPECT_GT(tj["dropout_over_products"].get<double>(), 0.0);
}

}  // namespace
}  // namespace dropkit
