#include "dropkit/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <system_error>
#include <utility>

namespace dropkit::data {
namespace {

namespace fs = std::filesystem;

// Large enough that no real IDX file is rejected (MNIST train images are 47 MB), small enough
// that a corrupt header cannot ask for an absurd allocation.
constexpr std::uint64_t kMaxPayloadBytes = std::uint64_t{1} << 31;
constexpr int kMaxDims = 4;
constexpr std::uint8_t kUbyteType = 0x08;
// The payload grows in steps of this size, so a tiny (e.g. gzip) file whose header claims 2 GiB
// fails after reading what it actually has rather than after allocating the whole claim.
constexpr std::size_t kReadChunk = std::size_t{1} << 24;

template <typename... Parts>
[[noreturn]] void fail(const fs::path& path, const Parts&... parts) {
  std::ostringstream out;
  out << path.string() << ": ";
  (out << ... << parts);
  throw DataError(out.str());
}

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

// A file read either directly or through zlib; which one is decided by content, because
// datasets are routinely renamed, re-compressed or unpacked without fixing the extension.
class ByteSource {
 public:
  explicit ByteSource(const fs::path& path) : path_(path) {
    // Only regular files (or links to them): opening a named pipe would wait for a writer
    // forever, and a device or directory is never a data set.
    std::error_code ec;
    const auto type = fs::status(path, ec).type();
    if (!ec && type != fs::file_type::regular) {
      fail(path_,
           "is not a regular file (data files must be; a named pipe, device or directory "
           "is refused)");
    }
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr) fail(path_, "cannot open: ", std::strerror(errno));
    std::array<unsigned char, 2> magic{};
    const std::size_t n = std::fread(magic.data(), 1, magic.size(), file_);
    if (n < magic.size() && std::ferror(file_)) fail_errno();
    if (n == magic.size() && magic[0] == 0x1F && magic[1] == 0x8B) {
      std::fclose(file_);
      file_ = nullptr;
      gz_ = gzopen(path.c_str(), "rb");
      if (gz_ == nullptr) fail(path_, "cannot open as gzip: ", std::strerror(errno));
      // The default 8 KiB buffers make decompressing tens of megabytes needlessly slow.
      gzbuffer(gz_, 1 << 17);
    } else {
      std::rewind(file_);
    }
  }
  ~ByteSource() {
    if (file_ != nullptr) std::fclose(file_);
    if (gz_ != nullptr) gzclose(gz_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  // Returns fewer than n bytes only at the end of the data; real I/O or gzip errors throw.
  std::size_t read(std::uint8_t* out, std::size_t n) {
    return gz_ != nullptr ? read_gz(out, n) : read_plain(out, n);
  }

  bool gzip() const { return gz_ != nullptr; }
  // True once a gzip stream has ended before its trailer: such a file is damaged even when the
  // payload it yielded happens to be complete, because its checksum was never verified.
  bool cut_short() const { return cut_short_; }

 private:
  [[noreturn]] void fail_errno() { fail(path_, "read error: ", std::strerror(errno)); }

  std::size_t read_plain(std::uint8_t* out, std::size_t n) {
    const std::size_t got = std::fread(out, 1, n, file_);
    if (got < n && std::ferror(file_)) fail_errno();
    return got;
  }

  std::size_t read_gz(std::uint8_t* out, std::size_t n) {
    std::size_t total = 0;
    while (total < n) {
      const auto want = static_cast<unsigned>(std::min<std::size_t>(n - total, INT_MAX));
      const int got = gzread(gz_, out + total, want);
      if (got > 0) total += static_cast<std::size_t>(got);
      if (got < 0 || static_cast<unsigned>(got) < want) {
        check_gz_error();
        break;
      }
    }
    return total;
  }

  // gzread reports a truncated stream as a short read, so the cause must be asked for.
  void check_gz_error() {
    int code = Z_OK;
    const char* message = gzerror(gz_, &code);
    if (code == Z_OK) return;
    if (code == Z_BUF_ERROR) {
      cut_short_ = true;
      return;
    }
    if (code == Z_ERRNO) fail_errno();
    fail(path_, "gzip error: ", message);
  }

  fs::path path_;
  std::FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  bool cut_short_ = false;
};

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

IdxArray read_idx(const std::filesystem::path& path) {
  ByteSource source(path);
  IdxArray array;
  array.dims = read_header(source, path);
  std::size_t expected = 1;
  for (const std::uint32_t dim : array.dims) expected *= dim;

  std::size_t got = 0;
  while (got < expected) {
    const std::size_t want = std::min(kReadChunk, expected - got);
    array.bytes.resize(got + want);
    const std::size_t n = source.read(array.bytes.data() + got, want);
    got += n;
    if (n < want) break;
  }
  if (got < expected) {
    array.bytes.clear();
    fail(path, "truncated: payload is ", got, " bytes, header promises ", expected,
         source.cut_short() ? " (gzip stream ends early)" : "");
  }
  std::uint8_t extra = 0;
  if (source.read(&extra, 1) != 0) {
    fail(path, "trailing data after the ", expected, "-byte payload the header promises");
  }
  if (source.cut_short()) fail(path, "truncated: gzip stream ends before its trailer");
  return array;
}

Dataset load_idx_pair(const std::filesystem::path& images, const std::filesystem::path& labels,
                      int num_classes) {
  if (num_classes < 1 || num_classes > 256) {
    throw std::invalid_argument("load_idx_pair: num_classes must be in 1..256, got " +
                                std::to_string(num_classes));
  }
  // Labels first: they are tiny, so a mismatched pair fails before the big read.
  IdxArray label_array = read_idx(labels);
  if (label_array.dims.size() != 1) {
    fail(labels, "labels must have 1 dimension (count), got ", label_array.dims.size());
  }
  IdxArray image_array = read_idx(images);
  if (image_array.dims.size() != 3) {
    fail(images, "images must have 3 dimensions (count, rows, cols), got ",
         image_array.dims.size());
  }
  if (image_array.dims[0] != label_array.dims[0]) {
    fail(images, image_array.dims[0], " images but ", labels.string(), " has ", label_array.dims[0],
         " labels");
  }
  for (std::size_t i = 0; i < label_array.bytes.size(); ++i) {
    const int label = label_array.bytes[i];
    if (label >= num_classes) {
      fail(labels, "label at index ", i, " is ", label, ", outside 0..", num_classes - 1);
    }
  }
  Dataset dataset;
  dataset.count = image_array.dims[0];
  dataset.rows = image_array.dims[1];
  dataset.cols = image_array.dims[2];
  dataset.images = std::move(image_array.bytes);
  dataset.labels = std::move(label_array.bytes);
  return dataset;
}

Dataset load_mnist_split(const std::filesystem::path& dir, MnistSplit split, int num_classes) {
  const std::string prefix = split == MnistSplit::kTrain ? "train" : "t10k";
  const std::array<std::string, 2> names = {prefix + "-images-idx3-ubyte",
                                            prefix + "-labels-idx1-ubyte"};
  std::array<fs::path, 2> found;
  std::string missing;
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (const std::string& name : {names[i], names[i] + ".gz"}) {
      std::error_code ec;
      // Anything but "not found" (e.g. permission denied) counts as present, so that read_idx
      // reports the real problem instead of a misleading "missing".
      if (fs::status(dir / name, ec).type() != fs::file_type::not_found) {
        found[i] = dir / name;
        break;
      }
    }
    if (found[i].empty()) {
      missing += std::string(missing.empty() ? "" : ", ") + names[i] + " (or " + names[i] + ".gz)";
    }
  }
  if (!missing.empty()) fail(dir, "missing MNIST-style data files: ", missing);
  return load_idx_pair(found[0], found[1], num_classes);
}

TrainTest load_mnist_dir(const std::filesystem::path& dir, int num_classes) {
  TrainTest result;
  result.train = load_mnist_split(dir, MnistSplit::kTrain, num_classes);
  result.test = load_mnist_split(dir, MnistSplit::kTest, num_classes);
  if (result.train.rows != result.test.rows || result.train.cols != result.test.cols) {
    fail(dir, "train images are ", result.train.rows, "x", result.train.cols,
         " but test images are ", result.test.rows, "x", result.test.cols);
  }
  return result;
}

std::filesystem::path default_data_dir() {
  return "/usr/share/datasets/fashion-mnist";
}

}  // namespace dropkit::data
