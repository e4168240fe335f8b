#include "dropkit/core/machine.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace dropkit {

std::string Machine::kind() const {
  return vendor + " family " + family + " model " + model;
}

Machine parse_cpuinfo(std::string_view text) {
  Machine m;
  struct Field {
    std::string_view key;
    std::string Machine::*value;
  };
  constexpr Field kFields[] = {{"model name", &Machine::cpu},
                               {"vendor_id", &Machine::vendor},
                               {"cpu family", &Machine::family},
                               {"model", &Machine::model}};
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) break;  // the first processor
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::size_t key_end = line.find_last_not_of(" \t", colon == 0 ? 0 : colon - 1);
    const std::string_view key = colon == 0 ? std::string_view{} : line.substr(0, key_end + 1);
    std::string_view value = line.substr(colon + 1);
    value.remove_prefix(std::min(value.find_first_not_of(" \t"), value.size()));
    value = value.substr(0, value.find_last_not_of(" \t\r") + 1);
    for (const Field& f : kFields) {
      if (key == f.key && !value.empty()) m.*f.value = std::string(value);
    }
  }
  return m;
}

Machine this_machine() {
  std::ifstream in("/proc/cpuinfo");
  if (!in) return {};
  std::ostringstream text;
  text << in.rdbuf();
  return parse_cpuinfo(text.str());
}

}  // namespace dropkit
