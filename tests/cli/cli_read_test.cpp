// The dropkit command line's reading subcommands as a user meets them: compare, bench, predict
// (examples, aggregates, figures, refusals), batch-norm recalibration, and the progress line on a
// terminal. Runs the real binary on a small synthetic MNIST-style directory (support/cli.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "dropkit/core/atomic_file.h"
#include "support/cli.h"

namespace dropkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

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

  const auto k = run("bench kernels --json --sizes 4096,1024 --reps 1");  // a comma list as well
  ASSERT_EQ(k.code, 0) << k.err;
  const auto j = nlohmann::json::parse(k.out);
  // Every benchmark names the machine kind it measured, as /proc/cpuinfo's first processor does.
  const auto expect_machine = [](const nlohmann::json& m) {
    std::ifstream in("/proc/cpuinfo");
    std::string line, vendor;
    while (std::getline(in, line) && vendor.empty()) {
      if (line.rfind("vendor_id", 0) == 0) vendor = line.substr(line.find(':') + 2);
    }
    for (const char* key : {"cpu", "cpu_vendor", "cpu_family", "cpu_model", "isa"})
      ASSERT_TRUE(m.contains(key) && m[key].is_string()) << key;
    if (!vendor.empty()) {
      EXPECT_EQ(m["cpu_vendor"], vendor);
      EXPECT_NE(m["cpu_family"], "unknown");
      EXPECT_NE(m["cpu_model"], "unknown");
      EXPECT_NE(m["cpu_model"], m["cpu"]);  // "model", not "model name"
    }
  };
  expect_machine(j);
  std::set<std::size_t> sizes;
  for (const auto& row : j["results"]) {
    for (const char* key : {"op", "n", "threads", "seconds_median", "gb_per_s",
                            "copy_seconds_median", "ratio_to_copy"})
      EXPECT_TRUE(row.contains(key)) << key;
    sizes.insert(row["n"].get<std::size_t>());
    // The ratio is the median of per-repetition ratios: positive and finite, and exactly 1
    // for the reference itself.
    const double ratio = row["ratio_to_copy"].get<double>();
    EXPECT_TRUE(std::isfinite(ratio) && ratio > 0) << row["op"];
    if (row["op"] == "copy") {
      EXPECT_EQ(ratio, 1.0);
    }
  }
  EXPECT_EQ(sizes, (std::set<std::size_t>{1024, 4096}));

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
  EXPECT_EQ(tj["conv_layers"], 0);
  expect_machine(tj);

  const auto p = run("bench predict --json --mc 3 --examples 20 --batch-rows 32 --rounds 1");
  ASSERT_EQ(p.code, 0) << p.err;
  const auto pj = nlohmann::json::parse(p.out);
  expect_machine(pj);
  EXPECT_EQ(pj["samples"], 3);
  EXPECT_EQ(pj["examples"], 20);
  for (const char* key : {"predict_seconds", "products_seconds", "predict_over_products"})
    EXPECT_GT(pj[key].get<double>(), 0.0) << key;

  // A convolutional net: its convolutions are part of the reference products.
  const auto cb =
      run("bench train --json --net conv2d:4:3:relu,max_pool2d,conv2d:3:3:padding=1,batchnorm,relu,"
          "dense:8,dropout:0.5,dense:4 --batch 8 --steps 3");
  ASSERT_EQ(cb.code, 0) << cb.err;
  const auto cj = nlohmann::json::parse(cb.out);
  EXPECT_EQ(cj["conv_layers"], 2);
  EXPECT_EQ(cj["dense_layers"], 2);
  EXPECT_GT(cj["products_seconds"].get<double>(), 0.0);
  EXPECT_GT(cj["products_update_masks_over_products"].get<double>(), 1.0);
}

// predict: per-example lines (CSV or JSON lines), aggregates side by side, the sweep, the SVGs,
// out-of-distribution AUROC for the classes the model was trained without; the same bytes at
// any thread count.
TEST_F(Cli, PredictWritesExamplesAggregatesAndFigures) {
  const fs::path m = root_ / "ood_model";
  ASSERT_EQ(run(train_args("--epochs 2 --exclude-classes 3 --out " + m.string())).code, 0);
  const std::string base =
      "predict --model " + m.string() + " --data " + (root_ / "data").string() + " ";
  const fs::path csv = root_ / "p.csv", svg = root_ / "rel.svg", sweep = root_ / "sweep.svg";
  const auto r = run(base + "--mc 4 --sweep 1,2 --json --out " + csv.string() + " --reliability " +
                     svg.string() + " --sweep-svg " + sweep.string());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["examples"], 80);
  EXPECT_EQ(j["exclude_classes"], "3");
  for (const char* p : {"deterministic", "mc"}) {
    SCOPED_TRACE(p);
    EXPECT_EQ(j[p]["examples"], 60);  // the 20 test images of class 3 are out of distribution
    for (const char* k : {"accuracy", "nll", "brier", "ece"}) EXPECT_TRUE(j[p][k].is_number());
    EXPECT_TRUE(j[p]["misclassification_auroc"].contains("entropy"));
    EXPECT_TRUE(j[p]["ood_auroc"]["max_probability"].is_number());
  }
  EXPECT_TRUE(j["mc"]["ood_auroc"].contains("mutual_information"));
  ASSERT_EQ(j["sweep"].size(), 3u);  // 1, 2 and 4 samples
  EXPECT_EQ(j["sweep"][2]["samples"], 4);
  EXPECT_EQ(j["sweep"][2]["accuracy"], j["mc"]["accuracy"]);
  EXPECT_EQ(lines(csv), 81u);
  EXPECT_THAT(read_file(csv), ::testing::StartsWith("index,label,predicted,confidence,entropy,"
                                                    "mutual_information,variance,p0,p1,p2,p3\n"));
  for (const fs::path& f : {svg, sweep}) EXPECT_THAT(read_file(f), ::testing::EndsWith("</svg>\n"));

  // JSON lines with the top 2 classes; the deterministic prediction without --mc.
  const fs::path jl = root_ / "p.jsonl";
  ASSERT_EQ(run(base + "--top-k 2 --out " + jl.string()).code, 0);
  std::ifstream in(jl);
  std::string first;
  std::getline(in, first);
  const auto e = nlohmann::json::parse(first);
  EXPECT_EQ(e["index"], 0);
  EXPECT_EQ(e["top"].size(), 2u);
  EXPECT_EQ(e["mutual_information"], 0.0);
  EXPECT_EQ(e["top"][0][0], e["predicted"]);

  // The same bytes at 1 and 3 threads.
  const fs::path t1 = root_ / "t1.csv", t3 = root_ / "t3.csv";
  ASSERT_EQ(run(base + "--mc 3 --threads 1 --out " + t1.string()).code, 0);
  ASSERT_EQ(run(base + "--mc 3 --threads 3 --out " + t3.string()).code, 0);
  EXPECT_EQ(read_file(t1), read_file(t3));

  // Images without labels: per-example output, no accuracy.
  const auto images = run("predict --model " + m.string() + " --mc 2 --images " +
                          (root_ / "data" / "t10k-images-idx3-ubyte").string());
  ASSERT_EQ(images.code, 0) << images.err;
  EXPECT_THAT(images.out, HasSubstr("no labels"));
}

TEST_F(Cli, PredictRefusesBadRequestsAndWritesNothing) {
  const fs::path m = root_ / "model";
  ASSERT_EQ(run(train_args("--epochs 1 --out " + m.string())).code, 0);
  const fs::path out = root_ / "never.csv";
  const std::string base = "predict --model " + m.string() + " --data " +
                           (root_ / "data").string() + " --out " + out.string() + " ";
  expect_one_line_error(run(base + "--mc 4 --sweep 1,5"), "outside [1, 4]");
  expect_one_line_error(run(base + "--sweep 1,2"), "--sweep needs --mc");
  expect_one_line_error(run(base + "--mc 4 --sweep 1,x"), "not a sample count");
  expect_one_line_error(run(base + "--exclude-classes 7"), "[0, 3]");
  expect_one_line_error(
      run(base + "--labels " + (root_ / "data" / "t10k-labels-idx1-ubyte").string()),
      "--labels needs --images");
  expect_one_line_error(run("predict --model " + m.string() + " --out " + out.string() +
                            " --images " + (root_ / "data" / "t10k-labels-idx1-ubyte").string()),
                        "3 dimensions");
  expect_one_line_error(run("predict --model " + (root_ / "nowhere").string()), "nowhere");
  EXPECT_FALSE(fs::exists(out));
  // An output that exists and is not a regular file is refused up front, and left alone.
  const fs::path dir_out = root_ / "a_directory";
  fs::create_directories(dir_out);
  expect_one_line_error(run("predict --model " + m.string() + " --data " +
                            (root_ / "data").string() + " --out " + dir_out.string()),
                        "not a regular file");
  EXPECT_TRUE(fs::is_directory(dir_out));
  // An output directory that cannot be created fails before any prediction is made.
  const auto r = run("predict --model " + m.string() + " --data " + (root_ / "data").string() +
                     " --out /proc/no/such/dir/p.csv");
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("/proc/no/such/dir"));
}

// --recalibrate-bn re-estimates batchnorm's statistics before eval and predict, saving nothing.
TEST_F(Cli, RecalibrationOfBatchNormChangesTheNumbersButNotTheCheckpoint) {
  const fs::path m = root_ / "bn";
  ASSERT_EQ(run("train --data " + (root_ / "data").string() +
                " --net dense:24,dropout:0.5,batchnorm,relu,dense:4 --lr 0.1 --val 40 --batch 25 "
                "--epochs 2 --out " +
                m.string())
                .code,
            0);
  const std::string before = read_file(m / "checkpoint.safetensors");
  const std::string eval =
      "eval --json --data " + (root_ / "data").string() + " --model " + m.string();
  const auto plain = run(eval);
  const auto recal = run(eval + " --recalibrate-bn 200");
  ASSERT_EQ(recal.code, 0) << recal.err;
  const auto jp = nlohmann::json::parse(plain.out), jr = nlohmann::json::parse(recal.out);
  EXPECT_THAT(jr["recalibrated"].get<std::string>(), HasSubstr("1 batchnorm layer(s) on 200"));
  EXPECT_NE(jr["test_loss"], jp["test_loss"]);
  EXPECT_EQ(read_file(m / "checkpoint.safetensors"), before);
  const auto p = run("predict --json --data " + (root_ / "data").string() + " --model " +
                     m.string() + " --mc 3 --recalibrate-bn 200");
  ASSERT_EQ(p.code, 0) << p.err;
  // The same recalibrated model (its NLL computed another way: to rounding).
  EXPECT_NEAR(nlohmann::json::parse(p.out)["deterministic"]["nll"].get<double>(),
              jr["test_loss"].get<double>(), 1e-6);
  // A model without batchnorm has nothing to recalibrate.
  const fs::path plain_model = root_ / "plain";
  ASSERT_EQ(run(train_args("--epochs 1 --out " + plain_model.string())).code, 0);
  expect_one_line_error(run("eval --data " + (root_ / "data").string() + " --model " +
                            plain_model.string() + " --recalibrate-bn 100"),
                        "no batchnorm layer");
}

// The progress line: drawn and erased on a terminal (a pseudo-terminal from script(1)), for
// train, predict and every bench; never with --json, and never when the stream is a pipe.
TEST_F(Cli, ProgressLineOnlyOnATerminal) {
  if (std::system("command -v script >/dev/null 2>&1") != 0) GTEST_SKIP() << "no script(1)";
  const fs::path m = root_ / "progress_model";
  ASSERT_EQ(run(train_args("--epochs 1 --out " + m.string())).code, 0);
  const std::string predict =
      "predict --model " + m.string() + " --data " + (root_ / "data").string() + " --mc 3";
  // Runs `args` on a pseudo-terminal; what the terminal showed (stdout and stderr together).
  const auto on_terminal = [&](const std::string& args) {
    const fs::path shown = root_ / "terminal.txt";
    const std::string cmd = "script -qec \"" + std::string(DROPKIT_CLI) + " " + args + "\" " +
                            shown.string() + " >/dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << args;
    std::ifstream in(shown);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::pair<std::string, std::string> commands[] = {
      {"bench kernels --sizes 1024,2048 --reps 1", "bench kernels, sizes x thread counts ["},
      {"bench train --arch 20-16-4 --batch 8 --steps 3", "bench train, rounds ["},
      {predict, "predict, T = 3 ["},
      {train_args("--epochs 1"), "epoch 1/1 ["}};
  for (const auto& [args, label] : commands) {
    SCOPED_TRACE(args);
    // (A terminal shows "\n" as "\r\n": the line is recognised by its label and its erasure.)
    const std::string shown = on_terminal(args);
    EXPECT_THAT(shown, HasSubstr("\r" + label));
    EXPECT_THAT(shown, HasSubstr("\r\033[K"));  // erased when the work ends
    const std::string quiet = on_terminal(args + " --json");
    EXPECT_THAT(quiet, Not(HasSubstr(label)));
    EXPECT_THAT(quiet, Not(HasSubstr("\033[K")));
    EXPECT_THAT(run(args).err, Not(HasSubstr(label)));  // a pipe: nothing
  }
}

}  // namespace
}  // namespace dropkit
