#include "dropkit/core/machine.h"

#include <fstream>
#include <sstream>

#include "dropkit/core/text.h"

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
    if (trim(line, " \t\r").empty()) break;  // the first processor's fields end here
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = trim(line.substr(0, colon), " \t");
    const std::string_view value = trim(line.substr(colon + 1), " \t\r");
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
