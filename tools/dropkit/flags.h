// Numeric flags, read one way: every number a subcommand takes (`predict --seed`, `eval
// --threads`, `bench --steps`, ...) is described by an Option (core/options.h: name, type,
// range) and parsed by its rules -- parse_option_text, then Option::check -- exactly as
// `train`'s options are. So "-1", "2.5", "1e3" or 2^64 are refused the same way everywhere,
// naming the flag and the valid range, never wrapped, rounded or saturated by a converter.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "dropkit/core/options.h"

namespace dropkit::cli {

namespace detail {
template <class T>
struct Unwrap {
  using type = T;
};
template <class T>
struct Unwrap<std::optional<T>> {
  using type = T;
};
}  // namespace detail

// For every flag that names a file or directory: an empty path ("--out ''", an unset shell
// variable) names nothing and is refused rather than read as "not given".
inline const CLI::Validator kNonEmptyPath(
    [](const std::string& path) {
      return path.empty() ? std::string("an empty path names no file (leave the flag out instead)")
                          : std::string();
    },
    "PATH");

// Registers `--<name>` (underscores become dashes) with `help` and the range [min, max] on
// `app`; the value given is parsed into `target` (a number, or an optional one) by the option
// table's rules, and a bad one is a usage error (exit 2) naming the flag and the range.
// `target` keeps its value as the default.
template <class T>
CLI::Option* add_number_flag(CLI::App& app, const std::string& name, T& target,
                             const std::string& help, double min, double max) {
  using Number = typename detail::Unwrap<T>::type;
  Option option{.name = name,
                .type = std::is_floating_point_v<Number> ? Option::Type::kReal : Option::Type::kInt,
                .help = help,
                .min = min,
                .max = max};
  const auto parse = [option, &target](const CLI::results_t& given) {
    try {
      const nlohmann::json v = parse_option_text(option, given.back(), "--");
      option.check(v, "--");
      target = v.get<Number>();
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError(e.what());
    }
    return true;
  };
  CLI::Option* flag = app.add_option(option.flag(), parse, help + " (" + option.range_text() + ")");
  flag->type_name(option.type == Option::Type::kInt ? "INT" : "FLOAT");
  if constexpr (std::is_same_v<T, Number>) flag->default_str(fmt::format("{}", target));
  return flag;
}

}  // namespace dropkit::cli
