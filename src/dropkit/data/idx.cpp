// The IDX format (data/idx.h): a file's header read and checked before anything is allocated,
// and IdxReader (data/idx_reader.h), which reads the payload it promises. The bytes come from
// ByteSource (data/byte_source.h), plain or gzip; the datasets built on it are data/dataset.cpp.
#include "dropkit/data/idx.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "dropkit/data/byte_source.h"
#include "dropkit/data/idx_reader.h"

namespace dropkit::data {
namespace {

namespace fs = std::filesystem;

// Large enough that no real IDX file is rejected (MNIST train images are 47 MB), small enough
// that a corrupt header cannot ask for an absurd allocation.
constexpr std::uint64_t kMaxPayloadBytes = std::uint64_t{1} << 31;
constexpr int kMaxDims = 4;
constexpr std::uint8_t kUbyteType = 0x08;
// The payload is read in steps of this size into a buffer reserved for the verified size: pages
// are touched only as bytes arrive, so a gzip file with a forged trailer that claims 2 GiB costs
// the memory of what it actually decompresses to before it fails.
constexpr std::size_t kReadChunk = std::size_t{1} << 24;

std::string hex_byte(std::uint8_t value) {
  constexpr char kDigits[] = "0123456789ABCDEF";
  return std::string{'0', 'x', kDigits[value >> 4], kDigits[value & 0xF]};
}

// Names of the valid IDX element types, so an unsupported-but-valid file gets a precise message
// instead of being called corrupt.
const char* idx_type_name(std::uint8_t type) {
  switch (type) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return nullptr;
  }
}

std::uint32_t big_endian_u32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

// Returns the dims after checking everything the header alone can tell, so the caller can size
// the payload from them safely.
std::vector<std::uint32_t> read_header(ByteSource& source, const fs::path& path) {
  std::array<std::uint8_t, 4 + 4 * kMaxDims> header{};
  std::size_t got = source.read(header.data(), 4);
  if (got < 4) fail(path, "truncated header: file has ", got, " bytes, IDX magic needs 4");
  if (header[0] != 0 || header[1] != 0) {
    fail(path, "bad magic: expected two zero bytes, got ", hex_byte(header[0]), " ",
         hex_byte(header[1]), " (not an IDX file)");
  }
  const std::uint8_t type = header[2];
  if (type != kUbyteType) {
    if (const char* name = idx_type_name(type)) {
      fail(path, "element type ", hex_byte(type), " (", name,
           ") is not supported; only ubyte (0x08) is supported");
    }
    fail(path, "bad magic: unknown IDX element type ", hex_byte(type));
  }
  const int ndims = header[3];
  if (ndims < 1 || ndims > kMaxDims) {
    fail(path, "bad magic: ", ndims, " dimensions, expected 1..", kMaxDims);
  }
  const std::size_t dims_bytes = 4 * static_cast<std::size_t>(ndims);
  got = source.read(header.data() + 4, dims_bytes);
  if (got < dims_bytes) {
    fail(path, "truncated header: ", got, " of ", dims_bytes, " bytes of dimension sizes");
  }
  std::vector<std::uint32_t> dims(static_cast<std::size_t>(ndims));
  std::uint64_t total = 1;
  for (int i = 0; i < ndims; ++i) {
    dims[static_cast<std::size_t>(i)] = big_endian_u32(header.data() + 4 + 4 * i);
    if (dims[static_cast<std::size_t>(i)] == 0) fail(path, "dimension ", i, " is 0");
    // Checked per step: total stays <= 2^31 and a dim < 2^32, so the product cannot overflow.
    total *= dims[static_cast<std::size_t>(i)];
    if (total > kMaxPayloadBytes) {
      std::ostringstream shape;
      for (int j = 0; j < ndims; ++j) {
        shape << (j ? "x" : "") << big_endian_u32(header.data() + 4 + 4 * j);
      }
      fail(path, "dimensions ", shape.str(), " exceed the ", kMaxPayloadBytes, "-byte limit");
    }
  }
  return dims;
}

}  // namespace

IdxReader::IdxReader(const fs::path& path) : path_(path), source_(path) {
  dims_ = read_header(source_, path);
  expected_ = 1;
  for (const std::uint32_t dim : dims_) expected_ *= dim;
  const std::uint64_t head = 4 + 4 * dims_.size();
  if (!source_.gzip() && source_.file_size() != head + expected_) {
    // A plain file's size says it all before anything is read.
    if (source_.file_size() < head + expected_) {
      fail(path, "truncated: payload is ", source_.file_size() - head, " bytes, header promises ",
           expected_);
    }
    fail(path, "trailing data after the ", expected_, "-byte payload the header promises");
  }
  if (source_.gzip()) {
    // Payloads are below 2^31 bytes, so the trailer's length (mod 2^32) is exact here.
    const std::uint64_t isize = source_.gzip_size();
    if (isize < head) {
      fail(path, "truncated or damaged gzip file: its trailer gives ", isize,
           " bytes uncompressed, fewer than the IDX header's own ", head);
    }
    if (isize - head != expected_) {
      // (A cut file's "trailer" is whatever its last 4 bytes are: no finer diagnosis.)
      fail(path, "truncated or damaged gzip file: its trailer says the payload is ", isize - head,
           " bytes, header promises ", expected_, " (checked before reading it)");
    }
  }
}

IdxArray IdxReader::read() {
  IdxArray array;
  array.dims = dims_;
  // The size is verified (a plain file's length, a gzip trailer's): exactly that is reserved,
  // and the bytes are read in 16 MB steps into it.
  array.bytes.reserve(expected_);
  std::size_t got = 0;
  while (got < expected_) {
    const std::size_t want = std::min(kReadChunk, expected_ - got);
    array.bytes.resize(got + want);
    const std::size_t n = source_.read(array.bytes.data() + got, want);
    got += n;
    if (n < want) break;
  }
  if (got < expected_) {
    array.bytes.clear();
    fail(path_, "truncated: payload is ", got, " bytes, header promises ", expected_,
         source_.cut_short() ? " (gzip stream ends early)" : "");
  }
  std::uint8_t extra = 0;
  if (source_.read(&extra, 1) != 0) {
    fail(path_, "trailing data after the ", expected_, "-byte payload the header promises");
  }
  if (source_.cut_short()) fail(path_, "truncated: gzip stream ends before its trailer");
  return array;
}

IdxArray read_idx(const std::filesystem::path& path) {
  return IdxReader(path).read();
}

}  // namespace dropkit::data
