// libFuzzer harness: the .npz reader (data/npz.h) on arbitrary bytes, the seed corpus files that
// NumPy wrote (np.savez, np.savez_compressed). Any outcome but a DataError naming the file, or a
// data set whose sizes agree with its shape (features and labels per example, labels in range),
// is a finding; sanitizers catch the rest.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "dropkit/data/npz.h"
#include "scratch_file.h"

namespace {

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
  const std::filesystem::path file = dropkit::fuzz::write_scratch("input.npz", data, size);
  try {
    const auto d = dropkit::data::load_npz(file, 10);
    check(d.train);
    check(d.test);
  } catch (const dropkit::data::DataError& e) {
    if (std::string(e.what()).find(file.string()) == std::string::npos) std::abort();
  }
  return 0;
}
