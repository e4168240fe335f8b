// `dropkit help-markdown`: the CLI reference (docs/cli.md) written from the CLI11 definitions that
// parse the command line -- every subcommand's description, flags, value types, defaults and
// help (with the option table's ranges) -- and the layer kinds of model/registry.h, so the
// reference says what --help says and never restates it. The test `docs` compares the output
// with docs/cli.md.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "commands.h"

namespace dropkit::cli {

// Markdown for `root` and every visible subcommand below it, one section each, in the order
// they were added; then the layer kinds `--net` takes.
std::string help_markdown(const CLI::App& root);

// Registers the hidden subcommand on `app` (left out of --help): it prints help_markdown(root).
Run add_help_markdown(CLI::App& app, const CLI::App& root);

}  // namespace dropkit::cli
