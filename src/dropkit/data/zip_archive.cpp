// The ZIP archive reader under the .npz loader (data/zip_archive.h): the end-of-central-directory
// record (and its ZIP64 form), the directory's entries, each member's local header, and its
// content stored or deflated (zlib, raw deflate), every size checked against the file.
#include "dropkit/data/zip_archive.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "dropkit/core/atomic_file.h"
#include "dropkit/data/byte_source.h"

namespace dropkit::data {
namespace {

namespace fs = std::filesystem;

// Deflate cannot expand more than about 1032:1; a member claiming more is damaged (or a bomb).
constexpr std::uint64_t kMaxDeflateRatio = 1032;

}  // namespace

ZipArchive::ZipArchive(const fs::path& path) : path_(path) {
  try {
    fd_.fd = open_regular_file(path);
  } catch (const std::runtime_error& e) {
    throw DataError(e.what());
  }
  const off_t end = ::lseek(fd_.fd, 0, SEEK_END);
  if (end < 0) fail(path_, std::strerror(errno));
  size_ = static_cast<std::uint64_t>(end);
  read_directory();
}

// The first n bytes of the member's content (n <= m.size). Reading the whole member checks
// its CRC-32 and that the deflate stream ends exactly there.
std::vector<std::uint8_t> ZipArchive::read(const ZipMember& m, std::uint64_t n) const {
  std::vector<std::uint8_t> out(n);
  const std::uint64_t at = data_offset(m);
  if (m.method == 0) {
    read_at(at, out.data(), n);
  } else {
    inflate_into(m, at, out.data(), n);
  }
  if (n == m.size && crc32_of(out.data(), n) != m.crc) {
    fail(path_, "member ", m.name, " is damaged (its CRC-32 does not match)");
  }
  return out;
}

void ZipArchive::read_at(std::uint64_t at, std::uint8_t* out, std::uint64_t n) const {
  if (at > size_ || n > size_ - at) fail(path_, "the archive is cut short");
  while (n > 0) {
    const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, 1 << 30));
    const ssize_t got = ::pread(fd_.fd, out, chunk, static_cast<off_t>(at));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(path_, std::strerror(errno));
    if (got == 0) fail(path_, "the archive is cut short");
    out += got;
    at += static_cast<std::uint64_t>(got);
    n -= static_cast<std::uint64_t>(got);
  }
}

void ZipArchive::read_directory() {
  // The end-of-central-directory record: 22 bytes plus a comment of up to 65535.
  const std::uint64_t tail = std::min<std::uint64_t>(size_, 22 + 65535);
  std::vector<std::uint8_t> buf(tail);
  read_at(size_ - tail, buf.data(), tail);
  std::optional<std::uint64_t> eocd;
  for (std::uint64_t i = tail >= 22 ? tail - 22 + 1 : 0; i-- > 0;) {
    if (little_endian(&buf[i], 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (!eocd) fail(path_, "not an .npz file (no ZIP end-of-central-directory record)");
  const std::uint8_t* e = &buf[*eocd];
  std::uint64_t entries = little_endian(e + 10, 2), dir_size = little_endian(e + 12, 4),
                dir_at = little_endian(e + 16, 4);
  if (entries == 0xFFFF || dir_size == 0xFFFFFFFF || dir_at == 0xFFFFFFFF) {
    // ZIP64: the locator just before the record points at the ZIP64 end record.
    const std::uint64_t eocd_at = size_ - tail + *eocd;
    if (eocd_at < 20) fail(path_, "damaged ZIP64 directory");
    std::uint8_t loc[20];
    read_at(eocd_at - 20, loc, 20);
    if (little_endian(loc, 4) != 0x07064b50) fail(path_, "damaged ZIP64 directory (no locator)");
    std::uint8_t rec[56];
    read_at(little_endian(loc + 8, 8), rec, 56);
    if (little_endian(rec, 4) != 0x06064b50) fail(path_, "damaged ZIP64 directory (no end record)");
    entries = little_endian(rec + 32, 8);
    dir_size = little_endian(rec + 40, 8);
    dir_at = little_endian(rec + 48, 8);
  }
  if (dir_at > size_ || dir_size > size_ - dir_at || entries > dir_size / 46) {
    fail(path_, "damaged ZIP directory (it lies outside the file)");
  }
  std::vector<std::uint8_t> dir(dir_size);
  read_at(dir_at, dir.data(), dir_size);
  std::uint64_t at = 0;
  for (std::uint64_t k = 0; k < entries; ++k) {
    if (dir_size - at < 46 || little_endian(&dir[at], 4) != 0x02014b50) {
      fail(path_, "damaged ZIP directory (entry ", k, ")");
    }
    const std::uint8_t* h = &dir[at];
    const std::uint64_t name_len = little_endian(h + 28, 2), extra_len = little_endian(h + 30, 2),
                        comment_len = little_endian(h + 32, 2);
    if (dir_size - at - 46 < name_len + extra_len + comment_len) {
      fail(path_, "damaged ZIP directory (entry ", k, ")");
    }
    ZipMember m;
    m.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
    m.method = static_cast<std::uint16_t>(little_endian(h + 10, 2));
    m.crc = static_cast<std::uint32_t>(little_endian(h + 16, 4));
    m.compressed = little_endian(h + 20, 4);
    m.size = little_endian(h + 24, 4);
    m.local_header = little_endian(h + 42, 4);
    read_zip64_extra(m, h + 46 + name_len, extra_len);
    if (little_endian(h + 8, 2) & 1) fail(path_, "member ", m.name, " is encrypted");
    members_.push_back(std::move(m));
    at += 46 + name_len + extra_len + comment_len;
  }
}

// The ZIP64 extended information field (id 1) holds, in order, whichever of size, compressed
// size and header offset are 0xFFFFFFFF in the fixed record.
void ZipArchive::read_zip64_extra(ZipMember& m, const std::uint8_t* extra,
                                  std::uint64_t len) const {
  for (std::uint64_t at = 0; at + 4 <= len;) {
    const std::uint64_t id = little_endian(extra + at, 2), n = little_endian(extra + at + 2, 2);
    if (at + 4 + n > len) break;
    if (id == 1) {
      const std::uint8_t* p = extra + at + 4;
      std::uint64_t left = n;
      for (std::uint64_t* field : {&m.size, &m.compressed, &m.local_header}) {
        if (*field != 0xFFFFFFFF) continue;
        if (left < 8) fail(path_, "member ", m.name, ": damaged ZIP64 field");
        *field = little_endian(p, 8);
        p += 8;
        left -= 8;
      }
    }
    at += 4 + n;
  }
}

std::uint64_t ZipArchive::data_offset(const ZipMember& m) const {
  std::uint8_t h[30];
  read_at(m.local_header, h, 30);
  const std::uint64_t name_len = little_endian(h + 26, 2);
  if (little_endian(h, 4) != 0x04034b50 || little_endian(h + 8, 2) != m.method ||
      name_len != m.name.size()) {
    fail(path_, "member ", m.name, ": damaged local header");
  }
  std::string name(name_len, '\0');
  read_at(m.local_header + 30, reinterpret_cast<std::uint8_t*>(name.data()), name_len);
  if (name != m.name) fail(path_, "member ", m.name, ": damaged local header");
  const std::uint64_t at = m.local_header + 30 + name_len + little_endian(h + 28, 2);
  if (m.method != 0 && m.method != 8) {
    fail(path_, "member ", m.name, " uses compression method ", m.method,
         "; only stored (0) and deflated (8), as np.savez and np.savez_compressed write");
  }
  if (at > size_ || m.compressed > size_ - at) fail(path_, "the archive is cut short");
  if (m.method == 0 ? m.size != m.compressed : m.size / kMaxDeflateRatio > m.compressed + 1) {
    fail(path_, "member ", m.name, " claims ", m.size, " bytes from ", m.compressed,
         " compressed: damaged");
  }
  return at;
}

void ZipArchive::inflate_into(const ZipMember& m, std::uint64_t at, std::uint8_t* out,
                              std::uint64_t n) const {
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) fail(path_, "zlib: cannot start inflating");
  const auto damaged = [&](const char* why) {
    inflateEnd(&z);
    fail(path_, "member ", m.name, " is damaged (its deflate stream ", why, ")");
  };
  // Reading the whole member, inflate goes on into one spare byte until the stream ends, so
  // that a stream longer than its recorded size is caught.
  const bool whole = n == m.size;
  std::vector<std::uint8_t> in(1 << 16);
  std::uint8_t spare = 0;
  std::uint64_t fed = 0, produced = 0;
  for (;;) {
    if (z.avail_in == 0 && fed < m.compressed) {
      const auto k =
          static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), m.compressed - fed));
      read_at(at + fed, in.data(), k);
      fed += k;
      z.next_in = in.data();
      z.avail_in = static_cast<uInt>(k);
    }
    const bool extra = produced == n;
    if (extra && !whole) break;  // the prefix asked for
    z.next_out = extra ? &spare : out + produced;
    z.avail_out = extra ? 1u : static_cast<uInt>(std::min<std::uint64_t>(n - produced, 1u << 30));
    const uInt before = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    const uInt made = before - z.avail_out;
    if (extra && made > 0) damaged("is longer than its recorded size");
    produced += made;
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && z.avail_in == 0 && fed == m.compressed) damaged("is cut short");
    if (rc != Z_OK && rc != Z_BUF_ERROR) damaged("is corrupt");
  }
  inflateEnd(&z);
  if (produced != n) fail(path_, "member ", m.name, " is damaged (its deflate stream is short)");
}

ZipArchive::Descriptor::~Descriptor() {
  if (fd >= 0) ::close(fd);
}

const ZipMember* ZipArchive::find(std::string_view name) const {
  for (const ZipMember& m : members_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

}  // namespace dropkit::data
