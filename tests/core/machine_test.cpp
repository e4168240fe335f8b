// The machine as /proc/cpuinfo names it: the first processor's fields, spaces and tabs around
// the colon, fields missing, and the kind the docs print.
#include "dropkit/core/machine.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

namespace dropkit {
namespace {

TEST(Machine, TheFirstProcessorsFieldsAreRead) {
  const Machine m = parse_cpuinfo(
      "processor\t: 0\n"
      "vendor_id\t: AuthenticAMD\n"
      "cpu family\t: 26\n"
      "model\t\t: 2\n"
      "model name\t: AMD EPYC 9R45  \n"
      "flags\t\t: fpu avx512f\n"
      "\n"
      "processor\t: 1\n"
      "vendor_id\t: GenuineIntel\n"
      "cpu family\t: 6\n"
      "model\t\t: 207\n");
  EXPECT_EQ(m.vendor, "AuthenticAMD");
  EXPECT_EQ(m.family, "26");
  EXPECT_EQ(m.model, "2");  // not "model name"'s value, nor the second processor's
  EXPECT_EQ(m.cpu, "AMD EPYC 9R45");
  EXPECT_EQ(m.kind(), "AuthenticAMD family 26 model 2");
}

TEST(Machine, WhatTheTextDoesNotSayIsUnknown) {
  for (const char* text : {"", "\n", "garbage without a colon\n", "model\t:\nvendor_id :\n",
                           ": no key\ncpu family: 25"}) {
    SCOPED_TRACE(text);
    const Machine m = parse_cpuinfo(text);
    EXPECT_EQ(m.vendor, "unknown");
    EXPECT_EQ(m.model, "unknown");
    EXPECT_EQ(m.cpu, "unknown");
  }
  EXPECT_EQ(parse_cpuinfo(": no key\ncpu family: 25").family, "25");  // no newline at the end
  EXPECT_EQ(parse_cpuinfo("").kind(), "unknown family unknown model unknown");
}

TEST(Machine, ThisMachineIsReadWhereProcSaysIt) {
  std::ifstream in("/proc/cpuinfo");
  if (!in) GTEST_SKIP() << "no /proc/cpuinfo";
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Machine m = this_machine();
  EXPECT_EQ(m.kind(), parse_cpuinfo(text).kind());
  if (text.find("vendor_id") != std::string::npos) EXPECT_NE(m.vendor, "unknown");
  if (text.find("cpu family") != std::string::npos) EXPECT_NE(m.family, "unknown");
}

}  // namespace
}  // namespace dropkit
