// The CLI under hostile input: files nested 100,000 deep, named pipes where files belong, JSON
// with a key twice, numbers beyond their range, outputs that name inputs, data whose headers
// disagree, runs that diverge before their first checkpoint. Each test stands for a class of
// inputs: exit 2 with one short line naming the problem (never a crash, a hang or the JSON
// library's text), and nothing written.
#include <sys/stat.h>
#include <zlib.h>

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

// A command that must answer at once: a hang is killed after 30 s (exit 124), never waited for.
constexpr const char* kPatience = "timeout 30";

void expect_short_error(const Result& r, const std::string& what) {
  expect_one_line_error(r, what);
  EXPECT_LT(r.err.size(), 400u) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("json.exception")));
}

class CliHostile : public Cli {
 protected:
  // A trained model (one epoch, 4 classes) in root_/model.
  fs::path model() {
    const fs::path m = root_ / "model";
    if (!fs::exists(m / "checkpoint.safetensors")) {
      EXPECT_EQ(run(train_args("--epochs 1 --out " + m.string())).code, 0);
    }
    return m;
  }
  std::string data() const { return (root_ / "data").string(); }
};

TEST_F(CliHostile, JsonNestedAnyDepthIsOneShortLine) {
  const fs::path out = root_ / "never";
  for (const int depth : {65, 50000, 100000}) {
    const fs::path net = root_ / "deep.json";
    std::ofstream(net) << std::string(depth, '[') << std::string(depth, ']');
    expect_short_error(
        run("train --data " + data() + " --net " + net.string() + " --out " + out.string()),
        "nested more than 64 levels");
    std::ofstream(net) << "{\"layers\": " << std::string(depth, '[') << std::string(depth, ']')
                       << "}";
    expect_short_error(run("train --data " + data() + " --net " + net.string()),
                       "nested more than 64 levels");
  }
  // A metrics.jsonl line nested deep is refused the same way.
  const fs::path m = model();
  std::ofstream(m / "metrics.jsonl") << std::string(100000, '[') << std::string(100000, ']');
  expect_short_error(run("compare " + m.string()), "metrics.jsonl:1: JSON nested more than");
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliHostile, NamedPipesAreRefusedAtOnceWhereverAFileIsRead) {
  const fs::path m = model();
  const fs::path run_dir = root_ / "fifo_run";
  fs::create_directories(run_dir);
  ASSERT_EQ(mkfifo((run_dir / "checkpoint.safetensors").c_str(), 0600), 0);
  const std::string where = (run_dir / "checkpoint.safetensors").string();
  for (const std::string& args :
       {"eval --data " + data() + " --model " + run_dir.string(),
        "predict --data " + data() + " --model " + run_dir.string(),
        "train --data " + data() + " --resume " + run_dir.string() + " --epochs 3"}) {
    const auto r = run_with_env(kPatience, args);
    expect_short_error(r, where + ": it is not a regular file (a named pipe");
  }
  // compare reads metrics.jsonl; --net reads a file; predict reads --images.
  fs::remove(m / "metrics.jsonl");
  ASSERT_EQ(mkfifo((m / "metrics.jsonl").c_str(), 0600), 0);
  expect_short_error(run_with_env(kPatience, "compare " + m.string()), "not a regular file");
  const fs::path net = root_ / "net.json";
  ASSERT_EQ(mkfifo(net.c_str(), 0600), 0);
  expect_short_error(run_with_env(kPatience, "train --data " + data() + " --net " + net.string()),
                     "not a regular file");
  expect_short_error(
      run_with_env(kPatience, "predict --model " + m.string() + " --images " + net.string()),
      "not a regular file");
}

TEST_F(CliHostile, EveryNumberIsParsedByTheOptionTablesRules) {
  const fs::path m = model();
  const std::string predict = "predict --data " + data() + " --model " + m.string();
  for (const char* seed : {"-1", "18446744073709551616", "99999999999999999999999", "2.5", "x"}) {
    expect_short_error(run(predict + " --seed " + seed), "--seed");
  }
  expect_short_error(run(predict + " --seed -1"), "outside [0, 2^64-1]");
  expect_short_error(run(predict + " --seed 18446744073709551616"), "[0, 2^64-1]");
  expect_short_error(run(predict + " --mc -3"), "--mc = -3 is outside [0, 1000000]");
  expect_short_error(run(predict + " --batch-rows 0"), "outside [1, 1048576]");
  expect_short_error(run("eval --data " + data() + " --model " + m.string() + " --threads -1"),
                     "--threads = -1 is outside [0, 256]");
  expect_short_error(run("eval --data " + data() + " --model " + m.string() +
                         " --recalibrate-bn 18446744073709551616"),
                     "recalibrate_bn");
  expect_short_error(run("bench train --steps 1e3"), "is not a whole number");
  expect_short_error(run("demo --drop-prob 1.5"), "outside [0, 1]");
  // The largest seed is a seed.
  EXPECT_EQ(run(predict + " --mc 1 --seed 18446744073709551615").code, 0);
}

// A list of numbers is read entry by entry by the same rules, and a bad entry named with the
// flag and the range.
TEST_F(CliHostile, EveryEntryOfANumberListIsParsedByTheOptionTablesRules) {
  for (const char* sizes :
       {"12,abc", "-1", "99999999999999999999", "0", "4294967297", "1e3", "2.5", "12,-3"}) {
    const auto r = run(std::string("bench kernels --sizes ") + sizes);
    expect_short_error(r, "--sizes = ");
    EXPECT_THAT(r.err, HasSubstr("[1, 4294967296]")) << sizes;
  }
  expect_short_error(run("bench kernels --sizes 12,abc"),
                     "--sizes = 'abc' is not a whole number (--sizes takes whole numbers in [1, "
                     "4294967296])");
  expect_short_error(run("bench kernels --sizes -1"), "--sizes = -1 is outside [1, 4294967296]");
  expect_short_error(run("bench kernels --sizes 99999999999999999999"),
                     "--sizes = '99999999999999999999' is not within [1, 4294967296]");
}

TEST_F(CliHostile, DuplicateAndUnknownJsonKeysAreRefusedNamingThem) {
  const fs::path net = root_ / "net.json", out = root_ / "never";
  const std::string train = "train --data " + data() + " --out " + out.string() + " --net ";
  std::ofstream(net) << R"({"layers":[{"kind":"dropout","kind":"dense","units":10}]})";
  expect_short_error(run(train + net.string()), "key 'kind' given twice in layers[0]");
  std::ofstream(net) << R"([{"kind":"dense","units":4,"units":8}])";
  expect_short_error(run(train + net.string()), "key 'units' given twice in [0]");
  std::ofstream(net) << R"({"layers":[{"kind":"dense","units":4}],"lr":0.1})";
  expect_short_error(run(train + net.string()), "unknown key 'lr' (valid: layers)");
  std::ofstream(net) << R"({"layers":[{"kind":"dense","units":4,"unit":8}]})";
  expect_short_error(run(train + net.string()), "unknown option 'unit'");
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliHostile, MessagesNameTheFileThePlaceAndWhatWasExpected) {
  const fs::path out = root_ / "never";
  const std::string train = "train --data " + data() + " --out " + out.string() + " --net ";
  // A missing --net file is missing, not an unknown layer kind.
  expect_short_error(run(train + "nets/nope.json"), "cannot read nets/nope.json");
  expect_short_error(run(train + "nope.json"), "cannot read nope.json");
  const fs::path net = root_ / "net.json";
  std::ofstream(net) << "[\n  {\"kind\": \"dense\", \"units\": 4},\n  {\"kind\": dense}\n]";
  const auto r = run(train + net.string());
  expect_short_error(r, net.string() + ": not valid JSON at line 3, column");
  // 2^64 + 10 is out of range, not "not a whole number".
  std::ofstream(net) << R"([{"kind":"dense","units":18446744073709551626}])";
  expect_short_error(run(train + net.string()), "is outside [1, ");
  // A nested line in metrics.jsonl names the file, the line and what a line must be.
  const fs::path m = model();
  std::ofstream(m / "metrics.jsonl") << "[[1]]\n";
  expect_short_error(run("compare " + m.string()),
                     "metrics.jsonl:1: expected an object of epoch metrics, found an array");
  std::ofstream(m / "metrics.jsonl") << R"({"epoch": 1})"
                                     << "\n";
  expect_short_error(run("compare " + m.string()), "metrics.jsonl:1: step is missing");
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliHostile, TopKAboveTheClassCountIsRefusedNamingTheRange) {
  const fs::path m = model(), out = root_ / "never.csv";
  expect_short_error(run("predict --data " + data() + " --model " + m.string() +
                         " --top-k 5 --out " + out.string()),
                     "--top-k 5 is outside [0, 4]: the model has 4 classes");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(run("predict --data " + data() + " --model " + m.string() + " --top-k 4").code, 0);
}

TEST_F(CliHostile, AnOutputThatIsAnInputOrAnotherOutputIsRefused) {
  const fs::path m = model();
  const std::string checkpoint = read_file(m / "checkpoint.safetensors");
  const std::string predict = "predict --data " + data() + " --model " + m.string();
  expect_short_error(run(predict + " --out " + (m / "checkpoint.safetensors").string()),
                     "is the same file as the model's");
  expect_short_error(run(predict + " --out " + (m / "metrics.jsonl").string()),
                     "is the same file as the model's");
  // Through a symbolic link, and through a path with "..".
  fs::create_symlink(m / "checkpoint.safetensors", root_ / "link.csv");
  expect_short_error(run(predict + " --out " + (root_ / "link.csv").string()), "same file");
  expect_short_error(
      run(predict + " --out " + (m / ".." / "model" / "checkpoint.safetensors").string()),
      "same file");
  expect_short_error(
      run(predict + " --out " + (root_ / "data" / "t10k-labels-idx1-ubyte").string()),
      "the data file");
  // Two outputs naming one file.
  const fs::path p = root_ / "p.svg";
  expect_short_error(run(predict + " --out " + p.string() + " --reliability " + p.string()),
                     "--reliability " + p.string() + " is the same file as --out");
  EXPECT_FALSE(fs::exists(p));
  expect_short_error(
      run("compare " + m.string() + " --svg " + (m / "checkpoint.safetensors").string()),
      "is the same file as a file of the run");
  EXPECT_EQ(read_file(m / "checkpoint.safetensors"), checkpoint);
}

TEST_F(CliHostile, EmptyPathsAndImagesWithDataAreRefused) {
  const fs::path m = model();
  expect_short_error(run(train_args("--epochs 1 --out ''")), "--out: an empty path");
  expect_short_error(run("predict --model " + m.string() + " --out ''"), "--out: an empty path");
  expect_short_error(run("compare " + m.string() + " --svg ''"), "--svg: an empty path");
  expect_short_error(run("predict --model " + m.string() + " --data " + data() + " --images " +
                         (root_ / "data" / "t10k-images-idx3-ubyte").string()),
                     "--images replaces the test split of --data");
}

// A run that diverges, or is killed, before its first checkpoint leaves nothing that blocks a
// rerun, and says so.
TEST_F(CliHostile, DivergenceBeforeTheFirstCheckpointSaysSoAndLeavesTheDirectoryReusable) {
  const fs::path out = root_ / "diverged";
  const auto r = run("train --data " + data() +
                     " --net gaussian_noise:1e30,dense:4 --val 40 --batch 25 --epochs 2 --out " +
                     out.string());
  ASSERT_EQ(r.code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no epoch finished, so nothing was saved"));
  EXPECT_THAT(r.err, Not(HasSubstr("intact")));
  EXPECT_FALSE(fs::exists(out / "config.json"));
  EXPECT_FALSE(fs::exists(out / "checkpoint.safetensors"));
  ASSERT_EQ(run(train_args("--epochs 1 --out " + out.string())).code, 0);
  // A config.json alone (a kill before the first checkpoint, by an older dropkit) and the
  // temporaries of killed writes do not block a rerun either.
  const fs::path killed = root_ / "killed";
  fs::create_directories(killed);
  std::ofstream(killed / "config.json") << "{}";
  std::ofstream(killed / ".checkpoint.safetensors.tmp.1.0") << "half";
  ASSERT_EQ(run(train_args("--epochs 1 --out " + killed.string())).code, 0);
  EXPECT_FALSE(fs::exists(killed / ".checkpoint.safetensors.tmp.1.0"));
  // After a checkpoint, the message names the epoch that is kept.
  const auto later =
      run(train_args("--epochs 3 --max-norm 0 --lr 1e30 --resume " + killed.string()));
  EXPECT_NE(later.code, 0);
}

// Shapes are checked from the headers: data whose headers already disagree are refused before
// their payload is read (here a payload whose gzip checksum is broken: reading it would fail
// with another message).
TEST_F(CliHostile, ShapesAreCheckedFromHeadersBeforeAnyPayload) {
  const auto broken_gz = [](const fs::path& path, std::size_t side, std::size_t count) {
    test::Bytes payload(count * side * side, 7);
    test::write_gz(path,
                   test::idx({static_cast<std::uint32_t>(count), static_cast<std::uint32_t>(side),
                              static_cast<std::uint32_t>(side)},
                             payload));
    std::string bytes = read_file(path);
    bytes[bytes.size() - 8] ^= 0x55;  // the CRC-32 of the trailer
    write_file_atomic(path, bytes);
  };
  const fs::path m = model();
  const fs::path images = root_ / "big-images.gz";
  broken_gz(images, 9, 50);
  expect_short_error(run("predict --model " + m.string() + " --images " + images.string()),
                     "are 9x9 (81), as its header says");
  // Train and test of different sizes: refused before the training payload is read.
  const fs::path d = root_ / "mixed";
  fs::create_directories(d);
  for (const auto& f : fs::directory_iterator(root_ / "data"))
    fs::copy_file(f.path(), d / f.path().filename());
  fs::remove(d / "train-images-idx3-ubyte");
  broken_gz(d / "train-images-idx3-ubyte.gz", 9, 300);
  expect_short_error(run("train --data " + d.string()), "train images are 9x9 but test images");
}

// The memory estimate counts activations, not only parameters; the layer count is bounded.
TEST_F(CliHostile, ANetWhoseActivationsCannotFitIsRefusedWithTheEstimate) {
  const fs::path out = root_ / "never";
  const auto r =
      run("train --data " + data() +
          " --net conv2d:65536:3,flatten,dense:4 --val 40 --batch 65536 --out " + out.string());
  expect_short_error(r, "GiB of memory this machine has");
  EXPECT_THAT(r.err, HasSubstr("activation values per example"));
  std::string many = "dropout:0";
  for (int i = 0; i < 1100; ++i) many += ",dropout:0";
  expect_short_error(
      run("train --data " + data() + " --val 40 --net " + many + ",dense:4 --out " + out.string()),
      "a model has at most 1024 layers; this one has 1102");
  EXPECT_FALSE(fs::exists(out));
}

// predict's estimate (predict::check_predict_fits) counts the activations of one stacked pass:
// --batch-rows rows, each Monte-Carlo sample of an example one row. A request beyond the
// machine is refused with the estimate before any pass runs, and nothing is written.
TEST_F(CliHostile, APredictionWhoseStackedPassCannotFitIsRefusedWithTheEstimate) {
  // Few parameters, many activations: a 1 x 1 convolution of the 8 x 8 images padded to
  // 136 x 136 (16 channels), dropout on that, pooled to 2 x 2: 592,068 values per example, so
  // 2^20 rows need about 2.3 TiB.
  const fs::path m = root_ / "wide";
  ASSERT_EQ(run("train --data " + data() +
                " --net conv2d:16:1:padding=64,dropout:0.5,max_pool2d:64,flatten,dense:4 --val 40 "
                "--batch 25 --epochs 1 --out " +
                m.string())
                .code,
            0);
  const fs::path out = root_ / "never.csv", svg = root_ / "never.svg";
  const std::string predict =
      "predict --model " + m.string() + " --batch-rows 1048576 --out " + out.string();
  // Monte-Carlo on --data's test split, and weight scaling on --images.
  for (const std::string& args :
       {predict + " --data " + data() + " --mc 1000000 --reliability " + svg.string(),
        predict + " --images " + (root_ / "data" / "t10k-images-idx3-ubyte").string()}) {
    const auto r = run_with_env(kPatience, args);
    expect_short_error(r, "needs about 2312.8 GiB, more than the ");
    EXPECT_THAT(r.err, HasSubstr("predicting 1048576 rows per stacked pass"));
    EXPECT_THAT(r.err, HasSubstr("592068 activation values per example for 1048576 examples"));
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(svg));
  // The model itself predicts, in passes that fit.
  const auto small = run("predict --data " + data() + " --model " + m.string() +
                         " --mc 2 --batch-rows 64 --out " + out.string());
  EXPECT_EQ(small.code, 0) << small.err;
  EXPECT_EQ(lines(out), 81u);  // the header and 80 examples
}

TEST_F(CliHostile, ResumeRemembersTheRunsData) {
  const fs::path other = root_ / "other_data", out = root_ / "remembered";
  fs::copy(root_ / "data", other);
  ASSERT_EQ(run("train --data " + other.string() +
                " --arch 64-16-4 --val 40 --batch 25 --epochs 1 --out " + out.string())
                .code,
            0);
  const auto config = nlohmann::json::parse(read_file(out / "config.json"));
  EXPECT_EQ(config["data"], fs::weakly_canonical(other).string());
  // No --data: the run's own (the default directory would not be it).
  const auto r = run("train --resume " + out.string() + " --epochs 2");
  ASSERT_EQ(r.code, 0) << r.err;
  // Other data given explicitly are still checked by their fingerprints.
  test::write_mnist_dir(root_ / "third", {test::synthetic_dataset(300, 8, 4, 9),
                                          test::synthetic_dataset(80, 8, 4, 2)});
  expect_short_error(run("train --data " + (root_ / "third").string() + " --resume " +
                         out.string() + " --epochs 3"),
                     "not those this run was trained on");
}

}  // namespace
}  // namespace dropkit
