// Option: one setting, defined once -- its name, type, default, valid range and help -- so that
// the command line, validation, config files and checkpoints all read it from the same place
// (train/config.h binds them to TrainConfig's fields; every layer describes its own config with
// them, model/registry.h).
//
// Values travel as JSON. check() is the one validation: it names the option, the value and the
// valid range ("lr = -1 is outside (0, inf)"). complete() turns a partial JSON object into a
// full, checked one: a missing key takes its default (so a field added later never breaks an
// old file), an unknown key is an error that lists the valid ones.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace dropkit {

struct Option {
  enum class Type { kBool, kInt, kReal, kString };

  std::string name;  // snake_case; the CLI flag is --name with '_' -> '-'
  Type type = Type::kReal;
  nlohmann::json default_value{};  // null: required (no default)
  std::string help{};
  // Numeric range; an open end excludes its bound. Integers are also checked to be whole.
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false, max_open = false;
  std::vector<std::string> choices{};  // a string option with choices accepts only these

  // "[0, 1]", "(0, inf)", "one of sgd, adam", "true or false", "any string".
  std::string range_text() const;
  // Throws std::invalid_argument "<owner><name> = <value> is outside <range>" (or "is not a
  // number", ...) unless `value` has this option's type and lies in its range. `owner` prefixes
  // the name in messages, e.g. "layer 3 (dense): ".
  void check(const nlohmann::json& value, const std::string& owner = "") const;
  std::string flag() const;  // "--lr-decay"
};

// "a, b, c": the lists of valid values that error messages show. (Not fmt::join: with fmt 9,
// GCC 12 -O3 warns falsely inside its format-spec parser.)
std::string join(std::span<const std::string> items, const char* separator = ", ");

// How the library names an option inside a message: its name in backquotes ("`train_size` 351
// is more than ..."). Each front end spells such references its own way -- the CLI as flags
// (spell_options(message, flag_spelling): "--train-size 351 is more than ...") -- so a message
// reads naturally from the command line, from C++ and from Python alike.
std::string option_ref(std::string_view name);
// `message` with every `name` reference (a snake_case name in backquotes) replaced by
// spelling(name); other backquoted text and a lone backquote stay.
std::string spell_options(std::string_view message, std::string (*spelling)(std::string_view));
// The CLI's spelling of an option: "train_size" -> "--train-size".
std::string flag_spelling(std::string_view name);

// Options of one kind of thing, in the order they are documented.
using OptionList = std::vector<Option>;

// The option named `name`, or nullptr.
const Option* find_option(std::span<const Option> options, const std::string& name);

// `given` (a JSON object) with every option present and checked: defaults for missing keys,
// std::invalid_argument for an unknown key (listing the valid ones) or a bad value. Keys named
// in `ignore` pass through untouched (e.g. a layer's "kind").
nlohmann::json complete_options(std::span<const Option> options, const nlohmann::json& given,
                                const std::string& owner, std::span<const std::string> ignore = {});

// A JSON value as a user wrote it on a command line or in a spec: "0.5" -> 0.5, "true" ->
// true, "relu" -> "relu", following the option's type; std::invalid_argument if it does not
// parse as that type (an empty string never parses as a number).
nlohmann::json parse_option_text(const Option& option, const std::string& text,
                                 const std::string& owner = "");

}  // namespace dropkit
