// The dropkit command line as a user meets it: exit codes, one-line errors, nothing
// half-written, the files of --out, --json output, resume and eval. Runs the real binary on a
// small synthetic MNIST-style directory.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "dropkit/core/atomic_file.h"
#include "support/cli.h"
#include "support/idx_files.h"

namespace dropkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

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
  // Every option of the one table, with its range; every layer kind with its options.
  for (const char* text :
       {"--net", "--momentum-ramp-epochs", "--adam-beta2", "(0, inf)", "[0, 1]", "one of sgd, adam",
        "dense", "dropout", "flatten", "drop_prob", "mask_storage"}) {
    EXPECT_THAT(r.out, HasSubstr(text));
  }
}

TEST_F(Cli, NetSpecTrainsResumesBitForBitAndEvaluatesWithoutTheTrainingSet) {
  const std::string net = "dropout:0.1,dense:40,tanh,dropout:0.3:inference,dense:4";
  const fs::path a = root_ / "net_a", b = root_ / "net_b";
  const auto straight = run("train --data " + (root_ / "data").string() + " --net " + net +
                            " --lr 0.3 --val 40 --batch 25 --epochs 3 --json --out " + a.string());
  ASSERT_EQ(straight.code, 0) << straight.err;
  const auto ja = nlohmann::json::parse(straight.out);
  EXPECT_EQ(ja["net"], "dropout:0.1,dense:40:tanh,dropout:0.3:inference,dense:4");
  ASSERT_EQ(run("train --data " + (root_ / "data").string() + " --net " + net +
                " --lr 0.3 --val 40 --batch 25 --epochs 1 --out " + b.string())
                .code,
            0);
  const auto resumed = run("train --json --threads 3 --data " + (root_ / "data").string() +
                           " --resume " + b.string() + " --epochs 3");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(nlohmann::json::parse(resumed.out)["test_loss"], ja["test_loss"]);
  EXPECT_EQ(read_file(a / "checkpoint.safetensors"), read_file(b / "checkpoint.safetensors"));
  // config.json holds the options and the model.
  const auto config = nlohmann::json::parse(read_file(a / "config.json"));
  EXPECT_EQ(config["net"], net);
  EXPECT_EQ(config["model"]["layers"].size(), 4u);
  EXPECT_EQ(config["model"]["input_shape"], (nlohmann::json{1, 8, 8}));

  // eval needs only the test split.
  const fs::path test_only = root_ / "test_only";
  fs::create_directories(test_only);
  for (const char* f : {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    fs::copy_file(root_ / "data" / f, test_only / f);
  const auto e = run("eval --json --data " + test_only.string() + " --model " + a.string());
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["test_accuracy"], ja["test_accuracy"]);
  EXPECT_EQ(nlohmann::json::parse(e.out)["net"], ja["net"]);
}

// Every member of the dropout family trains from --net, resumes to the same bytes and evaluates.
TEST_F(Cli, EveryFamilyMemberTrainsResumesAndEvaluatesFromNet) {
  for (const std::string net :
       {"gaussian_noise:0.5,dense:32:relu,gaussian_dropout:0.5,dense:4",
        "alpha_dropout:0.1,dense:32:selu,alpha_dropout:0.1:shared_axes=1,dense:4",
        "dropout:0.2:shared_axes=2,dropconnect:32:0.5:relu,dense:4",
        "dropconnect:24:0.3:tanh:inference=gaussian:samples=20,dense:4"}) {
    SCOPED_TRACE(net);
    const fs::path a = root_ / "fam_a", b = root_ / "fam_b";
    fs::remove_all(a);
    fs::remove_all(b);
    const std::string base =
        "train --data " + (root_ / "data").string() + " --net " + net + " --val 40 --batch 25 ";
    const auto straight = run(base + "--epochs 2 --json --out " + a.string());
    ASSERT_EQ(straight.code, 0) << straight.err;
    ASSERT_EQ(run(base + "--epochs 1 --out " + b.string()).code, 0);
    ASSERT_EQ(run("train --data " + (root_ / "data").string() + " --resume " + b.string() +
                  " --epochs 2 --threads 1")
                  .code,
              0);
    EXPECT_EQ(read_file(a / "checkpoint.safetensors"), read_file(b / "checkpoint.safetensors"));
    const auto e =
        run("eval --json --data " + (root_ / "data").string() + " --model " + a.string());
    ASSERT_EQ(e.code, 0) << e.err;
    EXPECT_EQ(nlohmann::json::parse(e.out)["test_accuracy"],
              nlohmann::json::parse(straight.out)["test_accuracy"]);
  }
}

// A run trained from a --net JSON file keeps its model in the checkpoint: eval and resume work
// after the file is gone.
TEST_F(Cli, ARunOfANetFileOutlivesTheFile) {
  const fs::path spec = root_ / "net.json", out = root_ / "from_file";
  std::ofstream(spec) << R"([{"kind": "dense", "units": 16, "activation": "relu"},
                             {"kind": "dropout", "drop_prob": 0.25}, {"kind": "dense", "units": 4}])";
  ASSERT_EQ(run("train --data " + (root_ / "data").string() + " --net " + spec.string() +
                " --val 40 --batch 25 --epochs 1 --out " + out.string())
                .code,
            0);
  fs::remove(spec);
  const auto e = run("eval --data " + (root_ / "data").string() + " --model " + out.string());
  EXPECT_EQ(e.code, 0) << e.err;
  const auto r = run("train --data " + (root_ / "data").string() + " --resume " + out.string() +
                     " --epochs 2");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines(out / "metrics.jsonl"), 2u);
}

TEST_F(Cli, BadNetSpecsExitTwoNamingTheLayerAndWriteNothing) {
  const fs::path out = root_ / "never";
  const std::string base =
      "train --data " + (root_ / "data").string() + " --val 40 --out " + out.string();
  expect_one_line_error(run(base + " --net dense:16,conv:3"), "item 2 'conv:3'");
  expect_one_line_error(run(base + " --net dropout:1.5,dense:4"),
                        "drop_prob = 1.5 is outside [0, 1]");
  expect_one_line_error(run(base + " --net dense:16:relu:9"), "too many arguments");
  expect_one_line_error(run(base + " --net dense:3"), "train-labels-idx1-ubyte need [4] or more");
  expect_one_line_error(run(base + " --net dense:4 --arch 64-4 --dropout 0.1"),
                        "--net gives the whole layer list; --arch, --dropout apply only to the "
                        "--arch net (give one or the other)");
  expect_one_line_error(run(base + " --net ''"), "--net is empty");
  expect_one_line_error(run(base + " --arch 64-4 --train-size 100000"),
                        "--train-size 100000 is more than the 260 training examples there are "
                        "(after --val and --exclude-classes)");
  expect_one_line_error(run(base + " --lr ''"), "lr = '' is not a number");
  expect_one_line_error(run(base + " --seed -1"), "seed = -1 is outside");
  expect_one_line_error(run(base + " --batch 2.5"), "batch = '2.5' is not a whole number");
  expect_one_line_error(run(base + " --optimizer rmsprop"), "one of sgd, adam");
  const fs::path spec = root_ / "net.json";
  std::ofstream(spec) << R"([{"kind": "dense", "units": 4, "activation": "swish"}])";
  expect_one_line_error(run(base + " --net " + spec.string()), "layer 1: activation = \"swish\"");
  EXPECT_FALSE(fs::exists(out));
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
  // A net or a benchmark that cannot fit in memory is refused up front, not with bad_alloc.
  expect_one_line_error(run(train_args("--out " + out.string(), "64-1048576-1048576-4")),
                        "GiB of memory this machine has");
  expect_one_line_error(run("bench kernels --sizes 4294967296"), "GiB of memory this machine has");
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

// A fresh run never writes over another run's files: a non-empty --out is refused (exit 2,
// nothing changed) unless --overwrite, which replaces the run files and leaves others alone.
TEST_F(Cli, AFreshRunNeverWritesOverAnotherRun) {
  const fs::path out = root_ / "taken";
  fs::create_directories(out);  // an empty directory is fine
  ASSERT_EQ(run(train_args("--epochs 2 --out " + out.string())).code, 0);
  const std::string checkpoint = read_file(out / "checkpoint.safetensors");
  const std::string metrics = read_file(out / "metrics.jsonl");
  const std::string config = read_file(out / "config.json");
  expect_one_line_error(run(train_args("--epochs 1 --seed 5 --out " + out.string())), "not empty");
  EXPECT_EQ(read_file(out / "checkpoint.safetensors"), checkpoint);
  EXPECT_EQ(read_file(out / "metrics.jsonl"), metrics);
  EXPECT_EQ(read_file(out / "config.json"), config);
  // A directory another process is writing (it holds the lock) is refused, fresh or resumed.
  {
    const DirectoryLock held(out);
    expect_one_line_error(run(train_args("--epochs 1 --overwrite --out " + out.string())),
                          "in use by another dropkit process");
    expect_one_line_error(run("train --data " + (root_ / "data").string() + " --resume " +
                              out.string() + " --epochs 3"),
                          "in use by another dropkit process");
  }
  EXPECT_EQ(read_file(out / "checkpoint.safetensors"), checkpoint);
  // Any file makes a directory taken.
  const fs::path other = root_ / "other";
  fs::create_directories(other);
  std::ofstream(other / "notes.txt") << "mine";
  expect_one_line_error(run(train_args("--epochs 1 --out " + other.string())), "--overwrite");
  EXPECT_FALSE(fs::exists(other / "config.json"));
  // --overwrite: a new run (one epoch, another seed) replaces the old one's files.
  std::ofstream(out / "notes.txt") << "mine";
  ASSERT_EQ(run(train_args("--epochs 1 --seed 5 --overwrite --out " + out.string())).code, 0);
  EXPECT_NE(read_file(out / "checkpoint.safetensors"), checkpoint);
  const std::string fresh_metrics = read_file(out / "metrics.jsonl");
  EXPECT_EQ(std::count(fresh_metrics.begin(), fresh_metrics.end(), '\n'), 1);
  EXPECT_EQ(read_file(out / "notes.txt"), "mine");
}

// Resume questions what it is given: other data (refused, nothing written), fewer epochs than
// done (refused), and it repairs what a kill between the epoch's renames left: metrics.jsonl
// one epoch behind the checkpoint, and stale temporary files.
TEST_F(Cli, ResumeRefusesOtherDataAndFewerEpochsAndRepairsAKilledRunsFiles) {
  const fs::path out = root_ / "run";
  ASSERT_EQ(run(train_args("--epochs 2 --out " + out.string())).code, 0);
  const std::string config = read_file(out / "config.json");
  const std::string checkpoint = read_file(out / "checkpoint.safetensors");
  test::write_mnist_dir(root_ / "other", {test::synthetic_dataset(300, 8, 4, 9),
                                          test::synthetic_dataset(80, 8, 4, 2)});
  expect_one_line_error(run("train --data " + (root_ / "other").string() + " --resume " +
                            out.string() + " --epochs 3"),
                        "training data given are not those this run was trained on");
  expect_one_line_error(run("train --data " + (root_ / "data").string() + " --resume " +
                            out.string() + " --epochs 1"),
                        "fewer than the 2 epochs");
  expect_one_line_error(run("train --data " + (root_ / "data").string() + " --resume \"\""),
                        "--resume");
  EXPECT_EQ(read_file(out / "config.json"), config);
  EXPECT_EQ(read_file(out / "checkpoint.safetensors"), checkpoint);

  // A kill after the checkpoint's rename, before metrics.jsonl's: metrics one epoch short, and
  // the temporaries of the writes in flight.
  const std::string metrics = read_file(out / "metrics.jsonl");
  write_file_atomic(out / "metrics.jsonl", metrics.substr(0, metrics.find('\n') + 1));
  std::ofstream(out / ".metrics.jsonl.tmp.12345") << "half";
  std::ofstream(out / ".curves.svg.tmp.777") << "<svg";
  std::ofstream(out / ".mine.tmp.1") << "not ours";
  ASSERT_EQ(lines(out / "metrics.jsonl"), 1u);
  const auto r = run("train --data " + (root_ / "data").string() + " --resume " + out.string());
  ASSERT_EQ(r.code, 0) << r.err;  // nothing left to train: the files are repaired
  // Epoch 2 is back from the checkpoint's history, all but its clock time (never checkpointed).
  const std::string repaired = read_file(out / "metrics.jsonl");
  ASSERT_EQ(lines(out / "metrics.jsonl"), 2u);
  const std::size_t first = metrics.find('\n') + 1;
  EXPECT_EQ(repaired.substr(0, first), metrics.substr(0, first));
  auto second = nlohmann::json::parse(metrics.substr(first));
  second["epoch_seconds"] = 0.0;
  EXPECT_EQ(nlohmann::json::parse(repaired.substr(first)), second);
  EXPECT_FALSE(fs::exists(out / ".metrics.jsonl.tmp.12345"));
  EXPECT_FALSE(fs::exists(out / ".curves.svg.tmp.777"));
  EXPECT_TRUE(fs::exists(out / ".mine.tmp.1"));
  EXPECT_EQ(read_file(out / "checkpoint.safetensors"), checkpoint);
}

// Whole-run identity across ISAs: the same training run (every noise kind, BN, the update) with
// our kernels forced to scalar, AVX2 and AVX-512 writes the same checkpoint bytes. An ISA the
// machine lacks falls back, which the run's --json reports; those are skipped.
TEST_F(Cli, ATrainingRunIsTheSameBitsOnEveryIsa) {
  const std::string net =
      "dropout:0.2,dense:32:relu,gaussian_dropout:0.3,dense:24:selu,alpha_dropout:0.1,"
      "dense:16,batchnorm,relu,dropout:0.5:shared_axes=,dense:4";
  std::string reference;
  int compared = 0;
  for (const char* isa : {"scalar", "avx2", "avx512"}) {
    const fs::path out = root_ / (std::string("isa_") + isa);
    const auto r = run_with_env(
        std::string("DROPKIT_ISA=") + isa,
        "train --json --data " + (root_ / "data").string() + " --net " + net +
            " --val 40 --batch 25 --epochs 2 --optimizer adam --lr 0.01 --out " + out.string());
    ASSERT_EQ(r.code, 0) << r.err;
    if (nlohmann::json::parse(r.out)["isa"] != isa) continue;  // not on this machine
    const std::string bytes = read_file(out / "checkpoint.safetensors");
    if (reference.empty()) {
      reference = bytes;
      continue;
    }
    EXPECT_EQ(bytes, reference) << isa << " differs from scalar";
    ++compared;
  }
  EXPECT_GE(compared, 1) << "this machine runs only one of the ISAs";
}

// Test labels beyond the output layer are found before anything is written, and the message
// names the file they are in.
TEST_F(Cli, LabelsBeyondTheOutputLayerAreRefusedBeforeWritingNamingTheFile) {
  test::write_mnist_dir(root_ / "five", {test::synthetic_dataset(300, 8, 4, 1),
                                         test::synthetic_dataset(80, 8, 5, 2)});
  const fs::path out = root_ / "never";
  const auto r = run("train --data " + (root_ / "five").string() +
                     " --arch 64-16-4 --val 40 --epochs 1 --out " + out.string());
  expect_one_line_error(r, "t10k-labels-idx1-ubyte");
  EXPECT_THAT(r.err, HasSubstr("need [5] or more"));
  EXPECT_FALSE(fs::exists(out));
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
  expect_one_line_error(run("train --resume " + b.string() + " --net dense:4"), "--net");
  expect_one_line_error(run("train --resume ''"), "--resume: an empty path");
  const auto resumed = run("train --json --data " + (root_ / "data").string() + " --resume " +
                           b.string() + " --epochs 3");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  const auto ja = nlohmann::json::parse(straight.out), jb = nlohmann::json::parse(resumed.out);
  EXPECT_EQ(ja["test_loss"], jb["test_loss"]);
  EXPECT_EQ(ja["train_loss"], jb["train_loss"]);
  EXPECT_EQ(lines(b / "metrics.jsonl"), 3u);
  // The same file, byte for byte: the checkpoint holds no clock readings.
  EXPECT_EQ(read_file(a / "checkpoint.safetensors"), read_file(b / "checkpoint.safetensors"));
  // metrics.jsonl keeps the first run's epoch time for epoch 1.
  const std::string metrics = read_file(b / "metrics.jsonl");
  EXPECT_THAT(metrics.substr(0, metrics.find('\n')), HasSubstr("epoch_seconds"));
}

// When the last update of an epoch diverges, the epoch's weights and evaluated losses are NaN:
// the run exits 3 without recording that epoch, and whatever checkpoint is there still loads.
TEST_F(Cli, DivergenceInAnEpochsLastUpdateLeavesALoadableCheckpoint) {
  const fs::path out = root_ / "diverged_late";
  for (const char* lr : {"1e12", "1e9", "1e15"}) {
    fs::remove_all(out);
    // One step per epoch: every update is an epoch's last.
    const auto r = run("train --data " + (root_ / "data").string() +
                       " --val 40 --batch 65536 --epochs 5 --arch 64-32-4 --max-norm 0 --lr " + lr +
                       " --out " + out.string());
    ASSERT_EQ(r.code, 3) << lr << r.err;
    EXPECT_THAT(r.err, HasSubstr("at step"));
    if (fs::exists(out / "checkpoint.safetensors")) {
      const auto e = run("eval --data " + (root_ / "data").string() + " --model " + out.string());
      EXPECT_EQ(e.code, 0) << lr << e.err;
      const auto c = run("train --data " + (root_ / "data").string() + " --resume " + out.string() +
                         " --epochs 6");
      EXPECT_EQ(c.code, 3) << lr << c.err;  // it diverges again, but it loaded
    }
  }
}

// A named pipe in place of a data file is refused at once instead of blocking forever.
TEST_F(Cli, ANamedPipeAsADataFileIsRefused) {
  const fs::path d = root_ / "fifo_data";
  fs::create_directories(d);
  for (const auto& f : fs::directory_iterator(root_ / "data"))
    fs::copy_file(f.path(), d / f.path().filename());
  fs::remove(d / "t10k-labels-idx1-ubyte");
  ASSERT_EQ(mkfifo((d / "t10k-labels-idx1-ubyte").c_str(), 0600), 0);
  expect_one_line_error(run("train --data " + d.string()), "not a regular file");
  expect_one_line_error(run("eval --data " + d.string() + " --model " + (root_ / "x").string()),
                        "");  // the model is missing too; either error, at once
}

TEST_F(Cli, DivergenceExitsThreeNamingTheStepAndLeavesNoCheckpoint) {
  const fs::path out = root_ / "diverged";
  const auto r =
      run(train_args("--max-norm 0 --epochs 2 --out " + out.string(), "64-96-4", "1e30"));
  EXPECT_EQ(r.code, 3);
  EXPECT_THAT(r.err, HasSubstr("at step"));
  EXPECT_FALSE(fs::exists(out / "checkpoint.safetensors"));
}

}  // namespace
}  // namespace dropkit
