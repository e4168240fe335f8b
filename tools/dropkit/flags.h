// Numeric flags, read one way: every number a subcommand takes (`predict --seed`, `eval
// --threads`, `bench --steps`, ...) is described by an Option (core/options.h: name, type,
// range) and parsed by its rules -- parse_option_text, then Option::check -- exactly as
// `train`'s options are. So "-1", "2.5", "1e3" or 2^64 are refused the same way everywhere,
// naming the flag and the valid range, never wrapped, rounded or saturated by a converter.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

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

// `text`, given to `option`'s flag, parsed and checked by the option table's rules; a bad one
// is a CLI11 validation error (exit 2) naming the flag and the range.
template <class Value>
Value parse_flag_value(const Option& option, const std::string& text) {
  try {
    const nlohmann::json v = parse_option_text(option, text, "--");
    option.check(v, "--");
    return v.get<Value>();
  } catch (const std::invalid_argument& e) {
    throw CLI::ValidationError(e.what());
  }
}

// A numeric option described on the spot: `name` with `help` and the range [min, max].
template <class Number>
Option number_option(const std::string& name, const std::string& help, double min, double max) {
  return Option{.name = name,
                .type = std::is_floating_point_v<Number> ? Option::Type::kReal : Option::Type::kInt,
                .help = help,
                .min = min,
                .max = max};
}
}  // namespace detail

// An option's default as a user would type it: "relu", not "\"relu\""; empty for a required one.
inline std::string default_text(const Option& option) {
  if (option.default_value.is_null()) return "";
  return option.default_value.is_string() ? option.default_value.get<std::string>()
                                          : option.default_value.dump();
}

// For every flag that names a file or directory: an empty path ("--out ''", an unset shell
// variable) names nothing and is refused rather than read as "not given".
inline const CLI::Validator kNonEmptyPath(
    [](const std::string& path) {
      return path.empty() ? std::string("an empty path names no file (leave the flag out instead)")
                          : std::string();
    },
    "PATH");

// Registers `option`'s flag (--<name>, underscores become dashes) on `app`; the value given is
// parsed into `target` (a number, an optional one, or a string) by the option table's rules,
// and a bad one is a usage error (exit 2) naming the flag and the range. `target` keeps its
// value as the default. The help is the option's, with its range.
template <class T>
CLI::Option* add_option_flag(CLI::App& app, const Option& option, T& target) {
  using Value = typename detail::Unwrap<T>::type;
  const auto parse = [option, &target](const CLI::results_t& given) {
    target = detail::parse_flag_value<Value>(option, given.back());
    return true;
  };
  const bool free_text = option.type == Option::Type::kString && option.choices.empty();
  CLI::Option* flag = app.add_option(option.flag(), parse,
                                     spell_options(option.help, flag_spelling) +
                                         (free_text ? "" : " (" + option.range_text() + ")"));
  flag->type_name(option.type == Option::Type::kInt    ? "INT"
                  : option.type == Option::Type::kReal ? "FLOAT"
                                                       : "TEXT");
  if constexpr (std::is_same_v<T, Value>) flag->default_str(fmt::format("{}", target));
  return flag;
}

// A numeric flag described on the spot: `--<name>` with `help` and the range [min, max].
template <class T>
CLI::Option* add_number_flag(CLI::App& app, const std::string& name, T& target,
                             const std::string& help, double min, double max) {
  using Number = typename detail::Unwrap<T>::type;
  return add_option_flag(app, detail::number_option<Number>(name, help, min, max), target);
}

// A flag that takes a list of numbers (`--sizes 1024,4096` or `--sizes 1024 4096`), each entry
// parsed and checked by the option table's rules, as add_number_flag's one value is; a bad entry
// is a usage error naming the flag, the entry and the range. The list given replaces `target`
// (the default).
template <class Number>
CLI::Option* add_number_list_flag(CLI::App& app, const std::string& name,
                                  std::vector<Number>& target, const std::string& help, double min,
                                  double max) {
  const Option option = detail::number_option<Number>(name, help, min, max);
  const auto parse = [option, &target](const CLI::results_t& given) {
    std::vector<Number> values;
    for (const std::string& text : given) {
      try {
        values.push_back(detail::parse_flag_value<Number>(option, text));
      } catch (const CLI::ValidationError& e) {
        // "--sizes = 'abc' is not a whole number" says what is wrong, not what is right.
        const std::string range = option.range_text();
        std::string what = e.what();
        if (what.find(range) == std::string::npos) {
          what +=
              fmt::format(" ({} takes {} in {})", option.flag(),
                          option.type == Option::Type::kInt ? "whole numbers" : "numbers", range);
        }
        throw CLI::ValidationError(what);
      }
    }
    target = std::move(values);
    return true;
  };
  CLI::Option* flag =
      app.add_option(option.flag(), parse, help + " (each in " + option.range_text() + ")");
  flag->type_name(option.type == Option::Type::kInt ? "INT" : "FLOAT");
  flag->type_size(1, 1);
  flag->expected(CLI::detail::expected_max_vector_size);  // as a std::vector option's
  flag->delimiter(',');
  std::vector<std::string> defaults;
  for (const Number v : target) defaults.push_back(fmt::format("{}", v));
  flag->default_str(join(defaults, ","));
  return flag;
}

// The flags several subcommands share, each defined once.
inline CLI::Option* add_threads_flag(CLI::App& app, int& threads) {
  return add_number_flag(app, "threads", threads,
                         "threads (0 = all cores); results do not depend on it", 0, 256);
}
// `what`: the subcommand's own words on what it reads there.
inline CLI::Option* add_data_flag(CLI::App& app, std::string& data, const std::string& what) {
  return app
      .add_option(
          "--data", data,
          "directory with MNIST-style IDX files (.gz or not), or an .npz file with x_train, "
          "y_train, x_test, y_test (docs/guide.md)" +
              what)
      ->capture_default_str()
      ->check(kNonEmptyPath);
}
inline CLI::Option* add_json_flag(CLI::App& app, bool& json, const std::string& what) {
  return app.add_flag("--json", json, "print one JSON object on stdout" + what);
}
inline CLI::Option* add_recalibrate_bn_flag(CLI::App& app, std::uint64_t& examples) {
  return add_number_flag(app, "recalibrate_bn", examples,
                         "re-estimate batchnorm's running statistics with dropout off over this "
                         "many training examples of --data first (nothing is saved)",
                         0, 18446744073709551615.0);
}

}  // namespace dropkit::cli
