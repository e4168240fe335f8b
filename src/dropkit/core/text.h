// Small text helpers shared across the library's parsers (layer specs, /proc/cpuinfo).
#pragma once

#include <string_view>

namespace dropkit {

// `s` without the characters of `blank` at either end ("" if nothing else is left).
inline std::string_view trim(std::string_view s, std::string_view blank = " \t\n") {
  const auto b = s.find_first_not_of(blank);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(blank) - b + 1);
}

}  // namespace dropkit
