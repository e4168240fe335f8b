// For the harnesses of file readers: the fuzzer's bytes written to one file in a private
// temporary directory (made once per process), whose path the reader then opens.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace dropkit::fuzz {

inline std::filesystem::path write_scratch(const char* name, const std::uint8_t* data,
                                           std::size_t size) {
  static const std::filesystem::path dir = [] {
    char templ[] = "/tmp/dropkit_fuzz_XXXXXX";
    if (mkdtemp(templ) == nullptr) std::abort();
    return std::filesystem::path(templ);
  }();
  const std::filesystem::path path = dir / name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace dropkit::fuzz
