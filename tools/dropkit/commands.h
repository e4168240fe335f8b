// The subcommands of the dropkit CLI, one file each (cmd_<name>.cpp). Every subcommand registers
// its flags on a CLI11 sub-app and returns the function that runs it; main() turns every exception
// into a one-line message and exit code 2.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace dropkit::cli {

using Run = std::function<int()>;

Run add_bench(CLI::App& app);
Run add_demo(CLI::App& app);
Run add_train(CLI::App& app);
Run add_eval(CLI::App& app);
Run add_compare(CLI::App& app);
Run add_predict(CLI::App& app);

}  // namespace dropkit::cli
