// dropkit: dropout, made fast and reproducible. See README.md for the commands.
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <string>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dropkit/core/options.h"
#include "dropkit/version.h"
#include "help_markdown.h"
#include "processes.h"

int main(int argc, char** argv) {
  // Under mpirun: join the job first (MPI may read its own arguments).
  std::unique_ptr<dropkit::cli::Processes> processes;
  try {
    processes = std::make_unique<dropkit::cli::Processes>(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "dropkit: error: {}\n", e.what());
    return 2;
  }
  dropkit::cli::set_processes(processes.get());
  const bool speaks = processes->rank() == 0;  // every process parses the same arguments
  CLI::App app{"dropkit: dropout (Srivastava et al. 2014), fast and reproducible"};
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("dropkit {}", dropkit::version()));
  std::map<CLI::App*, dropkit::cli::Run> runs;
  auto add = [&](const char* name, const char* help, auto add_fn) {
    CLI::App* sub = app.add_subcommand(name, help);
    runs[sub] = add_fn(*sub);
  };
  add("train", "train a network with or without dropout", dropkit::cli::add_train);
  add("eval", "evaluate a trained model in eval mode", dropkit::cli::add_eval);
  add("predict",
      "predict with a trained model: weight scaling or Monte-Carlo dropout, with uncertainty "
      "and calibration",
      dropkit::cli::add_predict);
  add("compare", "compare finished runs: accuracy table and one SVG of their curves",
      dropkit::cli::add_compare);
  add("bench", "measure the kernels, a training step or prediction against references",
      dropkit::cli::add_bench);
  add("demo", "apply dropout to a small tensor and show what each mode returns",
      dropkit::cli::add_demo);
  add("help-markdown", "print the CLI reference (docs/cli.md) in Markdown",
      [&app](CLI::App& sub) { return dropkit::cli::add_help_markdown(sub, app); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version: print, exit 0
    return speaks ? app.exit(e) : 0;
  } catch (const CLI::ParseError& e) {
    // One line, and exit code 2 for every usage error (CLI11's own codes vary).
    if (speaks) fmt::print(stderr, "dropkit: error: {}\n", e.what());
    return 2;
  }
  for (auto& [sub, run] : runs) {
    if (!sub->parsed()) continue;
    if (processes->size() > 1 && sub->get_name() != "train") {
      if (speaks) {
        fmt::print(stderr,
                   "dropkit {}: error: only `train` runs as several processes ({} were started "
                   "by mpirun); run `dropkit {}` as one process\n",
                   sub->get_name(), processes->size(), sub->get_name());
      }
      return 2;
    }
    try {
      return run();
    } catch (const dropkit::parallel::PeerFailed&) {
      return 2;  // another process of the run failed in its setup, and said why
    } catch (const nlohmann::json::exception& e) {
      // Every file is parsed and checked by the library (core/json_text.h); a JSON exception
      // reaching here is a value it failed to check. Still one line, without the library's tag.
      std::string what = e.what();
      if (what.starts_with("[json.exception.")) what = what.substr(what.find("] ") + 2);
      fmt::print(stderr, "dropkit {}: error: unexpected JSON value: {}\n", sub->get_name(), what);
      return 2;
    } catch (const std::exception& e) {
      // The library names options as `name` (core/options.h); here they are flags.
      fmt::print(stderr, "dropkit {}: error: {}\n", sub->get_name(),
                 dropkit::spell_options(e.what(), dropkit::flag_spelling));
      return 2;
    }
  }
  return 2;
}
