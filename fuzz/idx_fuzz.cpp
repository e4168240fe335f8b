// libFuzzer harness: the IDX/gzip reader (data/idx.h) on arbitrary bytes, plain or gzip (the
// reader decides by content). Any outcome but a DataError naming the file, or a valid array whose
// size matches its header, is a finding; sanitizers catch the rest.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "dropkit/data/idx.h"

namespace {
const std::filesystem::path& scratch() {
  static const std::filesystem::path path = [] {
    char dir[] = "/tmp/dropkit_fuzz_idx_XXXXXX";
    if (mkdtemp(dir) == nullptr) std::abort();
    return std::filesystem::path(dir) / "input";
  }();
  return path;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  {
    std::FILE* f = std::fopen(scratch().c_str(), "wb");
    if (f == nullptr) std::abort();
    if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
    std::fclose(f);
  }
  try {
    const auto array = dropkit::data::read_idx(scratch());
    std::size_t n = 1;
    for (auto d : array.dims) n *= d;
    if (array.dims.empty() || n != array.bytes.size()) std::abort();
  } catch (const dropkit::data::DataError& e) {
    if (std::string(e.what()).find(scratch().string()) == std::string::npos) std::abort();
  }
  return 0;
}
