// libFuzzer harness: the .npz reader (data/npz.h) on arbitrary bytes, the seed corpus files that
// NumPy wrote (np.savez, np.savez_compressed). Any outcome but a DataError naming the file, or a
// data set whose sizes agree with its shape (features and labels per example, labels in range),
// is a finding; sanitizers catch the rest.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "dropkit/data/npz.h"

namespace {
const std::filesystem::path& scratch() {
  static const std::filesystem::path path = [] {
    char dir[] = "/tmp/dropkit_fuzz_npz_XXXXXX";
    if (mkdtemp(dir) == nullptr) std::abort();
    return std::filesystem::path(dir) / "input.npz";
  }();
  return path;
}

void check(const dropkit::data::Dataset& d) {
  const std::size_t n = d.count * d.features();
  if ((d.floats ? d.values.size() : d.images.size()) != n) std::abort();
  if (d.labels.size() != d.count) std::abort();
  for (auto l : d.labels) {
    if (l >= 10) std::abort();
  }
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
    const auto d = dropkit::data::load_npz(scratch(), 10);
    check(d.train);
    check(d.test);
  } catch (const dropkit::data::DataError& e) {
    if (std::string(e.what()).find(scratch().string()) == std::string::npos) std::abort();
  }
  return 0;
}
