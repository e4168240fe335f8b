// libFuzzer harness: the IDX/gzip reader (data/idx.h) on arbitrary bytes, plain or gzip (the
// reader decides by content). Any outcome but a DataError naming the file, or a valid array whose
// size matches its header, is a finding; sanitizers catch the rest.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "dropkit/data/idx.h"
#include "scratch_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::filesystem::path file = dropkit::fuzz::write_scratch("input", data, size);
  try {
    const auto array = dropkit::data::read_idx(file);
    std::size_t n = 1;
    for (auto d : array.dims) n *= d;
    if (array.dims.empty() || n != array.bytes.size()) std::abort();
  } catch (const dropkit::data::DataError& e) {
    if (std::string(e.what()).find(file.string()) == std::string::npos) std::abort();
  }
  return 0;
}
