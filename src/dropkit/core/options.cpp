#include "dropkit/core/options.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/core/json_text.h"

namespace dropkit {
namespace {

std::string bound(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 18446744073709551615.0) return "2^64-1";  // the largest uint64 (seeds, counts)
  return fmt::format("{}", v);
}

}  // namespace

std::string join(std::span<const std::string> items, const char* separator) {
  std::string s;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) s += separator;
    s += items[i];
  }
  return s;
}

std::string Option::range_text() const {
  switch (type) {
    case Type::kBool:
      return "true or false";
    case Type::kString:
      return choices.empty() ? "any string" : "one of " + join(choices);
    case Type::kInt:
    case Type::kReal:
      break;
  }
  return fmt::format("{}{}, {}{}", min_open ? '(' : '[', bound(min), bound(max),
                     max_open ? ')' : ']');
}

std::string flag_spelling(std::string_view name) {
  std::string f = "--" + std::string(name);
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

std::string Option::flag() const {
  return flag_spelling(name);
}

std::string option_ref(std::string_view name) {
  return fmt::format("`{}`", name);
}

std::string spell_options(std::string_view message, std::string (*spelling)(std::string_view)) {
  std::string out;
  std::size_t i = 0;
  while (i < message.size()) {
    const std::size_t open = message.find('`', i);
    const std::size_t close = open == std::string_view::npos ? open : message.find('`', open + 1);
    if (close == std::string_view::npos) break;
    const std::string_view name = message.substr(open + 1, close - open - 1);
    // Only an option name (snake_case) is a reference; other quoted text stays as it is.
    const bool is_name = !name.empty() && name[0] >= 'a' && name[0] <= 'z' &&
                         std::all_of(name.begin(), name.end(), [](char c) {
                           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
                         });
    out += message.substr(i, open - i);
    out += is_name ? spelling(name) : message.substr(open, close - open + 1);
    i = close + 1;
  }
  out += message.substr(i);
  return out;
}

void Option::check(const nlohmann::json& value, const std::string& owner) const {
  auto fail = [&](const std::string& why) {
    // fmt, not dump(), for reals: JSON has no NaN or Inf and would print them as null.
    // (Values come from files anyone may write: json_excerpt keeps the message one line.)
    const std::string shown =
        value.is_number_float() ? fmt::format("{}", value.get<double>()) : json_excerpt(value);
    throw std::invalid_argument(fmt::format("{}{} = {} {}", owner, name, shown, why));
  };
  switch (type) {
    case Type::kBool:
      if (!value.is_boolean()) fail("is not true or false");
      return;
    case Type::kString:
      if (!value.is_string()) fail("is not a string");
      if (!choices.empty() &&
          std::find(choices.begin(), choices.end(), value.get<std::string>()) == choices.end()) {
        fail("is not " + range_text());
      }
      return;
    case Type::kInt:
      // A whole number beyond 64 bits arrives from JSON as a float (2^64 + 10 as
      // 1.8446744073709552e+19): it is out of range, not "not whole".
      if (value.is_number_float() && std::isfinite(value.get<double>()) &&
          std::trunc(value.get<double>()) == value.get<double>() &&
          !(value.get<double>() >= min && value.get<double>() <= max)) {
        fail("is outside " + range_text());
      }
      if (!value.is_number_integer()) fail("is not a whole number");
      break;
    case Type::kReal:
      if (!value.is_number()) fail("is not a number");
      break;
  }
  const double v = value.get<double>();
  // NaN fails every comparison, so it is outside every range.
  const bool above = min_open ? v > min : v >= min;
  const bool below = max_open ? v < max : v <= max;
  if (!(above && below)) fail("is outside " + range_text());
}

const Option* find_option(std::span<const Option> options, const std::string& name) {
  for (const auto& o : options)
    if (o.name == name) return &o;
  return nullptr;
}

nlohmann::json complete_options(std::span<const Option> options, const nlohmann::json& given,
                                const std::string& owner, std::span<const std::string> ignore) {
  if (!given.is_object()) {
    throw std::invalid_argument(
        fmt::format("{}expected a JSON object, got {}", owner, json_type_name(given)));
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : given.items()) {
    if (std::find(ignore.begin(), ignore.end(), key) != ignore.end()) {
      out[key] = value;
      continue;
    }
    if (find_option(options, key) == nullptr) {
      std::vector<std::string> names;
      for (const auto& o : options) names.push_back(o.name);
      throw std::invalid_argument(fmt::format("{}unknown option '{}' (valid: {})", owner, key,
                                              names.empty() ? "none" : join(names)));
    }
  }
  for (const auto& o : options) {
    const auto it = given.find(o.name);
    nlohmann::json v = it == given.end() ? o.default_value : *it;
    // JSON has one number type for 3 and 3.0; a real option takes either.
    if (o.type == Option::Type::kReal && v.is_number()) v = v.get<double>();
    o.check(v, owner);
    out[o.name] = std::move(v);
  }
  return out;
}

nlohmann::json parse_option_text(const Option& option, const std::string& text,
                                 const std::string& owner) {
  auto fail = [&](const char* what) {
    return std::invalid_argument(
        fmt::format("{}{} = '{}' is not {}", owner, option.name, text, what));
  };
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  switch (option.type) {
    case Option::Type::kBool:
      if (text == "true" || text == "1") return true;
      if (text == "false" || text == "0") return false;
      throw fail("true or false");
    case Option::Type::kString:
      return text;
    case Option::Type::kInt: {
      std::int64_t v = 0;
      const auto [p, ec] = std::from_chars(begin, end, v);
      if (!text.empty() && ec == std::errc() && p == end) return v;
      std::uint64_t u = 0;  // seeds go up to 2^64 - 1
      const auto [pu, ecu] = std::from_chars(begin, end, u);
      if (!text.empty() && ecu == std::errc() && pu == end) return u;
      if (ec == std::errc::result_out_of_range || ecu == std::errc::result_out_of_range) {
        throw fail(("within " + option.range_text()).c_str());
      }
      throw fail("a whole number");
    }
    case Option::Type::kReal: {
      // strtod, not from_chars: it accepts "nan" and "inf", which check() then names as out of
      // range instead of "not a number".
      if (text.empty()) throw fail("a number");
      char* stop = nullptr;
      const double v = std::strtod(text.c_str(), &stop);
      if (stop != text.c_str() + text.size()) throw fail("a number");
      return v;
    }
  }
  throw fail("valid");
}

}  // namespace dropkit
