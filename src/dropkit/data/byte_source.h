// Internal to data/: the bytes of a data file, read directly or through zlib (ByteSource), and
// fail(), which throws the DataError naming the file that every problem in data/ is reported as.
// The IDX format on top of it is data/idx_reader.h; the public interface is data/idx.h.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <vector>

#include "dropkit/data/idx.h"

namespace dropkit::data {

// Throws DataError("<path>: <parts...>").
template <typename... Parts>
[[noreturn]] void fail(const std::filesystem::path& path, const Parts&... parts) {
  std::ostringstream out;
  out << path.string() << ": ";
  (out << ... << parts);
  throw DataError(out.str());
}

// zlib's CRC-32 of `size` bytes (fed in pieces: crc32 takes a uInt length).
inline std::uint32_t crc32_of(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const Bytef*>(data);
  uLong c = crc32(0L, Z_NULL, 0);
  for (std::size_t at = 0; at < size; at += std::size_t{1} << 30) {
    c = crc32(c, bytes + at, static_cast<uInt>(std::min<std::size_t>(size - at, 1u << 30)));
  }
  return static_cast<std::uint32_t>(c);
}

// A file read either directly or through zlib; which one is decided by content, because
// datasets are routinely renamed, re-compressed or unpacked without fixing the extension.
//
// gzip goes through zlib's inflate, not gzread: gzread lets a stream cut inside its 8-byte
// trailer pass in some cases and silently skips whatever follows the stream. Here the stream
// must end with a verified trailer (CRC-32 and length, which inflate checks before it reports
// the end), and nothing may follow it: a file is ONE gzip member. (Concatenated members are
// valid gzip, but no data set ships that way, and one member makes the trailer's length field
// a check on the IDX header before anything is allocated: gzip_size().)
class ByteSource {
 public:
  explicit ByteSource(const std::filesystem::path& path);
  ~ByteSource();
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  // Returns fewer than n bytes only at the end of the data; real I/O or gzip errors throw.
  std::size_t read(std::uint8_t* out, std::size_t n) {
    return gzip_ ? read_gz(out, n) : read_plain(out, n);
  }

  bool gzip() const { return gzip_; }
  // The file's size in bytes (compressed, for gzip).
  std::uint64_t file_size() const { return static_cast<std::uint64_t>(size_); }
  // The gzip trailer's length field: the uncompressed size modulo 2^32 (gzip files only).
  std::uint32_t gzip_size() const { return isize_; }
  // True once a gzip file has ended before its stream did: such a file is damaged even when the
  // payload it yielded happens to be complete, because its checksum was never verified.
  bool cut_short() const { return cut_short_; }

 private:
  [[noreturn]] void fail_errno();
  void open_gzip();
  std::size_t read_plain(std::uint8_t* out, std::size_t n);
  std::size_t read_gz(std::uint8_t* out, std::size_t n);

  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  bool gzip_ = false, ended_ = false, cut_short_ = false;
  z_stream z_{};
  std::vector<Bytef> in_;
  std::uint32_t isize_ = 0;
  long size_ = 0;
};

}  // namespace dropkit::data
