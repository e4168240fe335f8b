// scripts/experiments on tiny settings (seconds): every experiment runs and reaches the report;
// a second call trains nothing; an interrupted run resumes from its checkpoint and ends with the
// same bits; --render-only draws the same report again from its stored data alone; bad
// arguments are refused with a message.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "support/idx_files.h"
#include "support/temp_dir.h"

namespace dropkit {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

Result run(const std::string& args, const std::string& env = "") {
  // Debian's interpreter where there is one: the python3 first on PATH may lack matplotlib.
  const std::string python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string cmd = env + " DROPKIT_BIN=" + std::string(DROPKIT_CLI) + " " + python + " " +
                          std::string(DROPKIT_SOURCE_DIR) + "/scripts/experiments " + args +
                          " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string read(const fs::path& f) {
  std::ifstream in(f);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The script trains through the Python package built beside the CLI (build/python), which a
// build without it (DROPKIT_BUILD_PYTHON=OFF, as the sanitizer build) does not have.
bool python_package_built() {
  const fs::path dir = fs::path(DROPKIT_CLI).parent_path() / "python" / "dropkit";
  if (!fs::is_directory(dir)) return false;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().starts_with("_core")) return true;
  }
  return false;
}

// 200 training and 50 test examples of 8x8 pixels in 4 classes: seconds per tiny mode.
void write_tiny_data(const fs::path& dir) {
  test::write_mnist_dir(
      dir, {test::synthetic_dataset(200, 8, 4, 1), test::synthetic_dataset(50, 8, 4, 2)});
}

TEST(Experiments, TinyModeRunsEveryExperimentResumesAndReports) {
  if (!python_package_built()) GTEST_SKIP() << "the Python package is not built";
  const test::TempDir tmp("dropkit_experiments_test");
  const fs::path root = tmp.path();
  write_tiny_data(root / "data");
  const std::string args = "--mode tiny --threads 2 --data " + (root / "data").string() +
                           " --out " + (root / "runs").string() + " --report-dir " +
                           (root / "report").string();
  const Result first = run(args);
  ASSERT_EQ(first.code, 0) << first.out;
  // 48 planned, of which 6 are the same training twice (the drop-rate sweep's p = 0 net is the
  // regularizers' "none", its p = 0.5 net the (1 - p) n sweep's p = 0.5, the regularizers'
  // dropout + max-norm concrete dropout's hand-set net): trained once each, and measured for
  // every experiment that reads them.
  EXPECT_THAT(first.out, HasSubstr("42 to do"));
  EXPECT_TRUE(fs::exists(root / "runs" / "droprate" / "p0-s1" / "result.json"));
  EXPECT_FALSE(fs::exists(root / "runs" / "regularizers" / "none-s1"));
  EXPECT_FALSE(fs::exists(root / "runs" / "concrete" / "handset-s1"));
  const auto shared = nlohmann::json::parse(
      read(root / "runs" / "regularizers" / "dropout-max-norm-s1" / "result.json"));
  EXPECT_TRUE(shared.at("post").at("predict").at("mc").contains("nll"));
  const auto learned =
      nlohmann::json::parse(read(root / "runs" / "concrete" / "learned-s1" / "result.json"));
  EXPECT_EQ(learned.at("drop_rates").size(), 3u);  // the rates learned, as the run ended
  const std::string md = read(root / "report" / "experiments.md");
  const std::string page = read(root / "report" / "experiments.html");
  for (const char* name : {"droprate", "scaled", "sizes", "regularizers", "lr", "sparsity", "mc",
                           "bn", "smoothness", "concrete"}) {
    EXPECT_TRUE(fs::exists(root / "runs" / name / "summary.json")) << name;
    EXPECT_THAT(md, HasSubstr(std::string("<a id=\"") + name + "\"></a>"));
    EXPECT_THAT(page, HasSubstr(std::string("<h2 id=\"") + name + "\">"));
  }
  EXPECT_THAT(md, HasSubstr("**Verdict: "));
  EXPECT_THAT(page, HasSubstr("<svg"));  // plots inline
  EXPECT_THAT(page, Not(HasSubstr("http://www.w3.org/2000/svg\" src")));
  EXPECT_TRUE(fs::exists(root / "report" / "figures" / "experiments" / "droprate.svg"));
  EXPECT_THAT(page, Not(HasSubstr("{rows}"))) << "the summary table is filled";
  EXPECT_THAT(page, HasSubstr("<a href=\"#droprate\">"));

  // --render-only draws the same report, byte for byte, from the stored experiments.json alone.
  const fs::path again_dir = root / "rendered";
  fs::create_directories(again_dir);
  fs::copy_file(root / "report" / "experiments.json", again_dir / "experiments.json");
  const Result rendered = run("--mode tiny --render-only --out " + (root / "none").string() +
                              " --report-dir " + again_dir.string());
  ASSERT_EQ(rendered.code, 0) << rendered.out;
  EXPECT_FALSE(fs::exists(root / "none")) << "no runs needed";
  EXPECT_EQ(read(again_dir / "experiments.html"), page);
  EXPECT_EQ(read(again_dir / "experiments.md"), md);
  for (const auto& f : fs::directory_iterator(root / "report" / "figures" / "experiments")) {
    EXPECT_EQ(read(again_dir / "figures" / "experiments" / f.path().filename()), read(f.path()))
        << f.path().filename();
  }

  // Nothing is trained again.
  const Result again = run(args);
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_THAT(again.out, HasSubstr("42 runs, 42 finished before, 0 to do"));

  // A run trained before an experiment asked to measure it (no "post" in its result) is
  // measured from its checkpoint, not trained again.
  {
    const fs::path f = root / "runs" / "regularizers" / "dropout-max-norm-s2" / "result.json";
    auto j = nlohmann::json::parse(read(f));
    j.erase("post");
    std::ofstream(f) << j.dump();
    const Result measured = run(args);
    ASSERT_EQ(measured.code, 0) << measured.out;
    EXPECT_THAT(measured.out, HasSubstr("dropout-max-norm-s2 (trained; measuring predict)"));
    EXPECT_THAT(measured.out, Not(HasSubstr("(new,")));
    EXPECT_TRUE(nlohmann::json::parse(read(f)).contains("post"));
  }

  // A run interrupted after its first epoch (made here from the script's own plan) resumes from
  // its checkpoint and ends with the uninterrupted run's bits.
  const fs::path run_dir = root / "runs" / "lr" / "lr0.1-dropout";
  const std::string metrics = read(run_dir / "metrics.jsonl");
  ASSERT_FALSE(metrics.empty());
  const Result plan = run(args + " --only lr --plan");
  ASSERT_EQ(plan.code, 0) << plan.out;
  const auto line_at = plan.out.find("{\"run\": \"lr/lr0.1-dropout\"");
  ASSERT_NE(line_at, std::string::npos) << plan.out;
  const auto j =
      nlohmann::json::parse(plan.out.substr(line_at, plan.out.find('\n', line_at) - line_at));
  std::string train = std::string(DROPKIT_CLI) + " train";
  for (const auto& a : j.at("args")) train += " '" + a.get<std::string>() + "'";
  fs::remove_all(run_dir);
  train += " --epochs 1 --threads 1 --data " + (root / "data").string() + " --out " +
           run_dir.string() + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(train.c_str()), 0) << train;
  const Result resumed = run(args + " --only lr");
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_THAT(resumed.out, HasSubstr("lr/lr0.1-dropout (resumed, 2 epochs"));
  EXPECT_THAT(resumed.out, HasSubstr("4 runs, 3 finished before, 1 to do"));
  // epoch_seconds differ between runs; everything else must be the same bits.
  auto strip = [](std::string s) {
    std::string out;
    std::size_t at = 0;
    for (std::size_t k; (k = s.find("\"epoch_seconds\":", at)) != std::string::npos;) {
      out += s.substr(at, k - at);
      at = s.find(',', k) + 1;
    }
    return out + s.substr(at);
  };
  EXPECT_EQ(strip(read(run_dir / "metrics.jsonl")), strip(metrics));
  // The report still holds every experiment, not only the one run again.
  EXPECT_THAT(read(root / "report" / "experiments.md"), HasSubstr("<a id=\"droprate\"></a>"));

  // Bad arguments: a message naming the valid choices, a non-zero exit.
  const Result bad = run(args + " --only droprate,nonsense");
  EXPECT_NE(bad.code, 0);
  EXPECT_THAT(bad.out, HasSubstr("unknown experiment(s) nonsense"));
  EXPECT_THAT(bad.out, HasSubstr("droprate, scaled, sizes"));
  const Result not_done = run("--mode tiny --report-only --out " + (root / "fresh").string() +
                              " --data " + (root / "data").string());
  EXPECT_NE(not_done.code, 0);
  EXPECT_THAT(not_done.out, HasSubstr("not finished"));
  // --partial reports what is finished (nothing here) and trains nothing.
  const Result partial =
      run("--mode tiny --report-only --partial --out " + (root / "fresh").string() + " --data " +
          (root / "data").string() + " --report-dir " + (root / "partial").string());
  EXPECT_EQ(partial.code, 0) << partial.out;
  EXPECT_THAT(partial.out, HasSubstr("not in the report (runs not finished): droprate"));
  EXPECT_FALSE(fs::exists(root / "fresh" / "droprate"));
}

}  // namespace
}  // namespace dropkit

namespace dropkit {
namespace {

// The runs a plan lists, one per line.
std::vector<std::string> plan_lines(const std::string& out) {
  std::vector<std::string> lines;
  for (std::size_t at = 0, end; (end = out.find('\n', at)) != std::string::npos; at = end + 1) {
    if (out.compare(at, 8, "{\"run\": ") == 0) lines.push_back(out.substr(at, end - at));
  }
  return lines;
}

TEST(Experiments, ShardsSplitASweepAndTheLastToFinishWritesTheReport) {
  if (!python_package_built()) GTEST_SKIP() << "the Python package is not built";
  const test::TempDir tmp("dropkit_experiments_shards");
  const fs::path root = tmp.path();
  write_tiny_data(root / "data");
  const std::string args = "--mode tiny --threads 1 --data " + (root / "data").string() +
                           " --out " + (root / "runs").string() + " --report-dir " +
                           (root / "report").string();
  // Every run in exactly one shard, for several shard counts; the environment of an MPI job
  // names the shard as --shard does.
  const auto all = plan_lines(run(args + " --plan").out);
  ASSERT_GT(all.size(), 20u);
  for (int n : {2, 3, 5}) {
    std::multiset<std::string> seen;
    for (int i = 0; i < n; ++i) {
      const std::string shard = std::to_string(i) + "/" + std::to_string(n);
      const auto mine = plan_lines(run(args + " --plan --shard " + shard).out);
      EXPECT_EQ(mine,
                plan_lines(run(args + " --plan", "OMPI_COMM_WORLD_RANK=" + std::to_string(i) +
                                                     " OMPI_COMM_WORLD_SIZE=" + std::to_string(n))
                               .out))
          << shard;
      seen.insert(mine.begin(), mine.end());
    }
    EXPECT_EQ(seen, std::multiset<std::string>(all.begin(), all.end())) << n << " shards";
  }
  // Two shards of one experiment: the first trains its half and writes no report, the second
  // trains the rest and, finding every run finished, writes it.
  const Result first = run(args + " --only lr --shard 0/2");
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_THAT(first.out, HasSubstr("no report"));
  EXPECT_FALSE(fs::exists(root / "report" / "experiments.md"));
  const Result second = run(args + " --only lr --shard 1/2");
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_THAT(second.out, HasSubstr("0 finished before"));  // nothing trained twice
  EXPECT_TRUE(fs::exists(root / "report" / "experiments.md"));
  EXPECT_EQ(run(args + " --shard 2/2").code, 1);
}

}  // namespace
}  // namespace dropkit

namespace dropkit {
namespace {

TEST(Experiments, ThePaperProtocolChoosesItsRatesOnValidationAndNeverRepeatsAKeptRun) {
  if (!python_package_built()) GTEST_SKIP() << "the Python package is not built";
  const test::TempDir tmp("dropkit_experiments_paper");
  const fs::path root = tmp.path();
  write_tiny_data(root / "data");
  const std::string common = "--mode tiny-paper --threads 1 --data " + (root / "data").string() +
                             " --store " + (root / "store").string();
  // Before the learning rates are chosen, the plan holds only the runs that choose them.
  const Result plan = run(common + " --out " + (root / "a").string() + " --plan");
  ASSERT_EQ(plan.code, 0) << plan.out;
  EXPECT_THAT(plan.out, HasSubstr("\"lr/lr0.01-none\""));
  EXPECT_THAT(plan.out, Not(HasSubstr("droprate/")));
  const Result first = run(common + " --out " + (root / "a").string() + " --report-dir " +
                           (root / "report-a").string());
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_THAT(first.out, HasSubstr("learning rates chosen on validation"));
  const std::string md = read(root / "report-a" / "experiments.md");
  for (const char* name : {"droprate", "scaled", "sizes", "regularizers", "lr", "concrete"}) {
    EXPECT_THAT(md, HasSubstr(std::string("<a id=\"") + name + "\"></a>")) << name;
  }
  EXPECT_THAT(md, Not(HasSubstr("<a id=\"bn\"></a>")));  // not part of this protocol
  // Each kept result names the machine kind that trained it (its train_seconds depend on it),
  // and the report says which kinds trained its runs.
  const std::string kept = read(root / "store" / "lr" / "lr0.01-none.json");
  EXPECT_THAT(kept, HasSubstr("\"machine\": \""));
  EXPECT_THAT(kept, HasSubstr("\"date\": \""));
  EXPECT_THAT(md, testing::ContainsRegex("runs \\([0-9]+ on [^)]*family [^)]* model "));
  // The paper's recipe, at the chosen rate, in every later run.
  const Result later = run(common + " --out " + (root / "a").string() + " --plan --only droprate");
  EXPECT_THAT(later.out, HasSubstr("\"--momentum-ramp-epochs\", \"30\""));
  EXPECT_THAT(later.out, Not(HasSubstr("adam")));
  // A new machine (a fresh run directory) with the kept results trains nothing and reports the
  // same verdicts.
  const Result again = run(common + " --out " + (root / "b").string() + " --report-dir " +
                           (root / "report-b").string());
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_THAT(again.out, Not(HasSubstr("(new,")));
  const std::string md_b = read(root / "report-b" / "experiments.md");
  for (const char* verdict : {"held", "did not hold", "inconclusive"}) {
    EXPECT_EQ(md.find(verdict) == std::string::npos, md_b.find(verdict) == std::string::npos);
  }
  EXPECT_FALSE(fs::exists(root / "b" / "lr" / "lr0.01-none"));  // nothing trained there
}

}  // namespace
}  // namespace dropkit
