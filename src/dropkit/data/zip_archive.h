// Internal to data/: a ZIP archive opened and its central directory read (ZipArchive), members
// read on demand with pread, so that the .npz loader (data/npz.cpp) can check every array's
// header before any payload is allocated. Only what np.savez and np.savez_compressed write is
// accepted: members stored or deflated, ZIP64 records read, no encryption. Every problem is a
// DataError naming the file (data/byte_source.h). The public interface is data/npz.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace dropkit::data {

// A little-endian unsigned integer of `bytes` bytes (at most 8).
inline std::uint64_t little_endian(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// One entry of the central directory.
struct ZipMember {
  std::string name;
  std::uint16_t method = 0;  // 0 stored, 8 deflated
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0, size = 0, local_header = 0;
};

class ZipArchive {
 public:
  // Opens a regular file (anything else is refused at once) and reads its central directory.
  explicit ZipArchive(const std::filesystem::path& path);
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<ZipMember>& members() const { return members_; }
  // The member of that name, or nullptr.
  const ZipMember* find(std::string_view name) const;

  // The first n bytes of the member's content (n <= m.size). Reading the whole member checks
  // its CRC-32 and that the deflate stream ends exactly there.
  std::vector<std::uint8_t> read(const ZipMember& m, std::uint64_t n) const;

 private:
  void read_at(std::uint64_t at, std::uint8_t* out, std::uint64_t n) const;
  void read_directory();
  void read_zip64_extra(ZipMember& m, const std::uint8_t* extra, std::uint64_t len) const;
  std::uint64_t data_offset(const ZipMember& m) const;
  void inflate_into(const ZipMember& m, std::uint64_t at, std::uint8_t* out, std::uint64_t n) const;

  // Closes the file also when the constructor throws (a damaged directory): a member's
  // destructor runs then, the class's own does not.
  struct Descriptor {
    int fd = -1;
    Descriptor() = default;
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    ~Descriptor();
  };

  std::filesystem::path path_;
  Descriptor fd_;
  std::uint64_t size_ = 0;
  std::vector<ZipMember> members_;
};

}  // namespace dropkit::data
