// Internal to data/: an IDX file opened and its header checked, the payload not yet read
// (IdxReader), so that the loaders (data/dataset.cpp) can check a pair of files against each other
// before either payload is allocated. The public interface is data/idx.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "dropkit/data/byte_source.h"
#include "dropkit/data/idx.h"

namespace dropkit::data {

// An IDX file opened, its header read and checked (against the gzip trailer's length too); the
// payload not yet read, so that a pair of files can be checked against each other first.
class IdxReader {
 public:
  explicit IdxReader(const std::filesystem::path& path);
  const std::vector<std::uint32_t>& dims() const { return dims_; }

  IdxArray read();

 private:
  std::filesystem::path path_;
  ByteSource source_;
  std::vector<std::uint32_t> dims_;
  std::size_t expected_ = 0;
};

}  // namespace dropkit::data
