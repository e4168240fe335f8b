#include "dropkit/data/idx.h"

#include <unistd.h>
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

#include "dropkit/core/atomic_file.h"

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
//
// gzip goes through zlib's inflate, not gzread: gzread lets a stream cut inside its 8-byte
// trailer pass in some cases and silently skips whatever follows the stream. Here the stream
// must end with a verified trailer (CRC-32 and length, which inflate checks before it reports
// the end), and nothing may follow it: a file is ONE gzip member. (Concatenated members are
// valid gzip, but no data set ships that way, and one member makes the trailer's length field
// a check on the IDX header before anything is allocated: gzip_size().)
class ByteSource {
 public:
  explicit ByteSource(const fs::path& path) : path_(path) {
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
  ~ByteSource() {
    if (file_ != nullptr) std::fclose(file_);
    if (gzip_) inflateEnd(&z_);
  }
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
  [[noreturn]] void fail_errno() { fail(path_, "read error: ", std::strerror(errno)); }

  void open_gzip() {
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

  std::size_t read_plain(std::uint8_t* out, std::size_t n) {
    const std::size_t got = std::fread(out, 1, n, file_);
    if (got < n && std::ferror(file_)) fail_errno();
    return got;
  }

  std::size_t read_gz(std::uint8_t* out, std::size_t n) {
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

  fs::path path_;
  std::FILE* file_ = nullptr;
  bool gzip_ = false, ended_ = false, cut_short_ = false;
  z_stream z_{};
  std::vector<Bytef> in_;
  std::uint32_t isize_ = 0;
  long size_ = 0;
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

namespace {

// An IDX file opened, its header read and checked (against the gzip trailer's length too); the
// payload not yet read, so that a pair of files can be checked against each other first.
class IdxReader {
 public:
  explicit IdxReader(const fs::path& path) : path_(path), source_(path) {
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
  const std::vector<std::uint32_t>& dims() const { return dims_; }

  IdxArray read() {
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

 private:
  fs::path path_;
  ByteSource source_;
  std::vector<std::uint32_t> dims_;
  std::size_t expected_ = 0;
};

}  // namespace

IdxArray read_idx(const std::filesystem::path& path) {
  return IdxReader(path).read();
}

namespace {

void check_images(const IdxReader& image_file, const fs::path& images) {
  if (image_file.dims().size() != 3) {
    fail(images, "images must have 3 dimensions (count, rows, cols), got ",
         image_file.dims().size());
  }
}

void check_pair(const IdxReader& image_file, const fs::path& images, const IdxReader& label_file,
                const fs::path& labels) {
  if (label_file.dims().size() != 1) {
    fail(labels, "labels must have 1 dimension (count), got ", label_file.dims().size());
  }
  check_images(image_file, images);
  if (image_file.dims()[0] != label_file.dims()[0]) {
    fail(images, image_file.dims()[0], " images but ", labels.string(), " has ",
         label_file.dims()[0], " labels");
  }
}

DatasetShape shape_of(const IdxReader& image_file, const fs::path& images) {
  return {image_file.dims()[0], image_file.dims()[1], image_file.dims()[2], images.string()};
}

// The images and labels files of a split of an MNIST-style directory.
std::array<fs::path, 2> split_files(const fs::path& dir, MnistSplit split) {
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
  return found;
}

}  // namespace

DatasetShape peek_images(const std::filesystem::path& images) {
  const IdxReader image_file(images);
  check_images(image_file, images);
  return shape_of(image_file, images);
}

DatasetShape peek_idx_pair(const std::filesystem::path& images,
                           const std::filesystem::path& labels) {
  const IdxReader label_file(labels), image_file(images);
  check_pair(image_file, images, label_file, labels);
  return shape_of(image_file, images);
}

Dataset load_images(const std::filesystem::path& images) {
  IdxReader image_file(images);
  check_images(image_file, images);
  IdxArray a = image_file.read();
  Dataset d;
  d.count = a.dims[0];
  d.rows = a.dims[1];
  d.cols = a.dims[2];
  d.images = std::move(a.bytes);
  return d;
}

DatasetShape peek_mnist_split(const std::filesystem::path& dir, MnistSplit split) {
  const auto files = split_files(dir, split);
  return peek_idx_pair(files[0], files[1]);
}

Dataset load_idx_pair(const std::filesystem::path& images, const std::filesystem::path& labels,
                      int num_classes) {
  if (num_classes < 1 || num_classes > 256) {
    throw std::invalid_argument("load_idx_pair: num_classes must be in 1..256, got " +
                                std::to_string(num_classes));
  }
  // Both headers first, checked against each other, before either payload is read: a pair
  // that disagrees (a gzip bomb's inflated image count, say) fails before any allocation.
  IdxReader label_file(labels), image_file(images);
  check_pair(image_file, images, label_file, labels);
  IdxArray label_array = label_file.read();
  IdxArray image_array = image_file.read();
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
  dataset.labels_file = labels.string();
  return dataset;
}

Dataset load_mnist_split(const std::filesystem::path& dir, MnistSplit split, int num_classes) {
  const auto files = split_files(dir, split);
  return load_idx_pair(files[0], files[1], num_classes);
}

TrainTest load_mnist_dir(const std::filesystem::path& dir, int num_classes) {
  // The four headers first: splits that disagree fail before a payload is read.
  const DatasetShape train = peek_mnist_split(dir, MnistSplit::kTrain);
  const DatasetShape test = peek_mnist_split(dir, MnistSplit::kTest);
  if (train.rows != test.rows || train.cols != test.cols) {
    fail(dir, "train images are ", train.rows, "x", train.cols, " but test images are ", test.rows,
         "x", test.cols, " (from the files' headers)");
  }
  TrainTest result;
  result.train = load_mnist_split(dir, MnistSplit::kTrain, num_classes);
  result.test = load_mnist_split(dir, MnistSplit::kTest, num_classes);
  return result;
}

std::string fingerprint(const Dataset& d) {
  auto crc = [](const std::vector<std::uint8_t>& bytes) {
    uLong c = crc32(0L, Z_NULL, 0);
    // crc32 takes a uInt length: feed it in pieces.
    for (std::size_t at = 0; at < bytes.size(); at += 1u << 30) {
      c = crc32(c, bytes.data() + at,
                static_cast<uInt>(std::min<std::size_t>(bytes.size() - at, 1u << 30)));
    }
    return static_cast<std::uint32_t>(c);
  };
  char buf[128];
  std::snprintf(buf, sizeof buf, "%zux%zux%zu images crc32 %08x, labels crc32 %08x", d.count,
                d.rows, d.cols, crc(d.images), crc(d.labels));
  return buf;
}

std::vector<std::filesystem::path> mnist_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const char* prefix : {"train", "t10k"}) {
    for (const char* kind : {"-images-idx3-ubyte", "-labels-idx1-ubyte"}) {
      for (const char* ext : {"", ".gz"}) files.push_back(dir / (std::string(prefix) + kind + ext));
    }
  }
  return files;
}

std::filesystem::path default_data_dir() {
  return "/usr/share/datasets/fashion-mnist";
}

}  // namespace dropkit::data
