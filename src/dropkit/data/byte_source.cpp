// ByteSource (data/byte_source.h): a data file opened (regular files only), told plain from
// gzip by its magic, and read; gzip through zlib's inflate, one member with a verified trailer.
#include "dropkit/data/byte_source.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

#include "dropkit/core/atomic_file.h"

namespace dropkit::data {

ByteSource::ByteSource(const std::filesystem::path& path) : path_(path) {
  // Only regular files (or links to them), refused at once otherwise (core/atomic_file.h):
  // opening a named pipe would wait for a writer forever, and a device or directory is never
  // a data set.
  int fd = -1;
  try {
    fd = open_regular_file(path);
  } catch (const std::runtime_error& e) {
    throw DataError(e.what());
  }
  file_ = ::fdopen(fd, "rb");
  if (file_ == nullptr) {
    const int err = errno;
    ::close(fd);
    fail(path_, "cannot open: ", std::strerror(err));
  }
  try {  // (the destructor does not run for a constructor that throws)
    if (std::fseek(file_, 0, SEEK_END) != 0) fail_errno();
    size_ = std::ftell(file_);
    std::rewind(file_);
    std::array<unsigned char, 2> magic{};
    const std::size_t n = std::fread(magic.data(), 1, magic.size(), file_);
    if (n < magic.size() && std::ferror(file_)) fail_errno();
    std::rewind(file_);
    if (n == magic.size() && magic[0] == 0x1F && magic[1] == 0x8B) open_gzip();
  } catch (...) {
    std::fclose(file_);
    file_ = nullptr;
    throw;
  }
}

ByteSource::~ByteSource() {
  if (file_ != nullptr) std::fclose(file_);
  if (gzip_) inflateEnd(&z_);
}

void ByteSource::fail_errno() {
  fail(path_, "read error: ", std::strerror(errno));
}

void ByteSource::open_gzip() {
  // The trailer's last 4 bytes: ISIZE, little-endian. A file too short for a header and a
  // trailer (18 bytes) is cut short.
  if (size_ < 18) fail(path_, "truncated: a gzip file of ", size_, " bytes (at least 18 needed)");
  std::array<unsigned char, 4> tail{};
  if (std::fseek(file_, size_ - 4, SEEK_SET) != 0 || std::fread(tail.data(), 1, 4, file_) != 4) {
    fail_errno();
  }
  isize_ = std::uint32_t{tail[0]} | std::uint32_t{tail[1]} << 8 | std::uint32_t{tail[2]} << 16 |
           std::uint32_t{tail[3]} << 24;
  std::rewind(file_);
  if (inflateInit2(&z_, 16 + MAX_WBITS) != Z_OK) fail(path_, "cannot start zlib");
  gzip_ = true;
  in_.resize(1 << 17);
}

std::size_t ByteSource::read_plain(std::uint8_t* out, std::size_t n) {
  const std::size_t got = std::fread(out, 1, n, file_);
  if (got < n && std::ferror(file_)) fail_errno();
  return got;
}

std::size_t ByteSource::read_gz(std::uint8_t* out, std::size_t n) {
  std::size_t total = 0;
  while (total < n && !ended_ && !cut_short_) {
    if (z_.avail_in == 0) {
      const std::size_t got = std::fread(in_.data(), 1, in_.size(), file_);
      if (got == 0) {
        if (std::ferror(file_)) fail_errno();
        cut_short_ = true;  // the file ended, the stream did not
        break;
      }
      z_.next_in = in_.data();
      z_.avail_in = static_cast<uInt>(got);
    }
    const auto want = static_cast<uInt>(std::min<std::size_t>(n - total, UINT_MAX));
    z_.next_out = out + total;
    z_.avail_out = want;
    const int rc = inflate(&z_, Z_NO_FLUSH);
    total += want - z_.avail_out;
    if (rc == Z_STREAM_END) {
      ended_ = true;
      // One member: not a byte may follow its trailer.
      if (z_.avail_in > 0 || std::fgetc(file_) != EOF) {
        fail(path_,
             "data after the end of the gzip stream (a second gzip member or trailing "
             "garbage; data files must be one gzip member)");
      }
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      fail(path_, "gzip error: ", z_.msg != nullptr ? z_.msg : "corrupt stream");
    }
  }
  return total;
}

}  // namespace dropkit::data
