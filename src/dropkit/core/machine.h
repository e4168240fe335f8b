// The machine a figure was measured on, as `lscpu` names it: the CPU's vendor, family and model
// (and its marketing name). Every benchmark's JSON and every kept experiment result records it,
// from the CLI and from Python alike, so that each speed figure is attributable.
#pragma once

#include <string>
#include <string_view>

namespace dropkit {

struct Machine {
  std::string cpu = "unknown";     // "model name", e.g. "AMD EPYC 9R45"
  std::string vendor = "unknown";  // "vendor_id", e.g. "GenuineIntel", "AuthenticAMD"
  std::string family = "unknown";  // "cpu family" (decimal), e.g. "6", "26"
  std::string model = "unknown";   // "model" (decimal), e.g. "207"
  // "<vendor> family <family> model <model>": the machine kind the docs name.
  std::string kind() const;
};

// The first processor's fields of a /proc/cpuinfo text; "unknown" for any it does not give.
Machine parse_cpuinfo(std::string_view text);
// This machine's (/proc/cpuinfo; every field "unknown" where it cannot be read).
Machine this_machine();

}  // namespace dropkit
