// The .npz reader (data/npz.h): a ZIP archive's central directory, its members stored or
// deflated (zlib, raw deflate), and NumPy's .npy format inside them (format versions 1-3: magic,
// version, header length, a Python dict literal {'descr', 'fortran_order', 'shape'}, payload).
// Only what np.savez writes is accepted, and all of it is checked: sizes against each other and
// the file, CRC-32 of every payload read, the dict's syntax strictly.
#include "dropkit/data/npz.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dropkit/core/atomic_file.h"
#include "dropkit/core/memory.h"
#include "dropkit/data/byte_source.h"

namespace dropkit::data {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMaxNpyHeader = 1 << 16;  // NumPy writes a few hundred bytes
// Deflate cannot expand more than about 1032:1; a member claiming more is damaged (or a bomb).
constexpr std::uint64_t kMaxDeflateRatio = 1032;

std::uint64_t le(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct Member {
  std::string name;
  std::uint16_t method = 0;  // 0 stored, 8 deflated
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0, size = 0, local_header = 0;
};

// A ZIP archive opened and its central directory read; members read on demand with pread.
class Zip {
 public:
  explicit Zip(const fs::path& path) : path_(path) {
    try {
      fd_.fd = open_regular_file(path);
    } catch (const std::runtime_error& e) {
      throw DataError(e.what());
    }
    const off_t end = ::lseek(fd_.fd, 0, SEEK_END);
    if (end < 0) fail_errno();
    size_ = static_cast<std::uint64_t>(end);
    read_directory();
  }
  Zip(const Zip&) = delete;
  Zip& operator=(const Zip&) = delete;

  const fs::path& path() const { return path_; }
  const std::vector<Member>& members() const { return members_; }
  const Member* find(std::string_view name) const {
    for (const Member& m : members_) {
      if (m.name == name) return &m;
    }
    return nullptr;
  }

  // The first n bytes of the member's content (n <= m.size). Reading the whole member checks
  // its CRC-32 and that the deflate stream ends exactly there.
  std::vector<std::uint8_t> read(const Member& m, std::uint64_t n) const {
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

 private:
  [[noreturn]] void fail_errno() const { fail(path_, std::strerror(errno)); }

  void read_at(std::uint64_t at, std::uint8_t* out, std::uint64_t n) const {
    if (at > size_ || n > size_ - at) fail(path_, "the archive is cut short");
    while (n > 0) {
      const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, 1 << 30));
      const ssize_t got = ::pread(fd_.fd, out, chunk, static_cast<off_t>(at));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail_errno();
      if (got == 0) fail(path_, "the archive is cut short");
      out += got;
      at += static_cast<std::uint64_t>(got);
      n -= static_cast<std::uint64_t>(got);
    }
  }

  void read_directory() {
    // The end-of-central-directory record: 22 bytes plus a comment of up to 65535.
    const std::uint64_t tail = std::min<std::uint64_t>(size_, 22 + 65535);
    std::vector<std::uint8_t> buf(tail);
    read_at(size_ - tail, buf.data(), tail);
    std::optional<std::uint64_t> eocd;
    for (std::uint64_t i = tail >= 22 ? tail - 22 + 1 : 0; i-- > 0;) {
      if (le(&buf[i], 4) == 0x06054b50) {
        eocd = i;
        break;
      }
    }
    if (!eocd) fail(path_, "not an .npz file (no ZIP end-of-central-directory record)");
    const std::uint8_t* e = &buf[*eocd];
    std::uint64_t entries = le(e + 10, 2), dir_size = le(e + 12, 4), dir_at = le(e + 16, 4);
    if (entries == 0xFFFF || dir_size == 0xFFFFFFFF || dir_at == 0xFFFFFFFF) {
      // ZIP64: the locator just before the record points at the ZIP64 end record.
      const std::uint64_t eocd_at = size_ - tail + *eocd;
      if (eocd_at < 20) fail(path_, "damaged ZIP64 directory");
      std::uint8_t loc[20];
      read_at(eocd_at - 20, loc, 20);
      if (le(loc, 4) != 0x07064b50) fail(path_, "damaged ZIP64 directory (no locator)");
      std::uint8_t rec[56];
      read_at(le(loc + 8, 8), rec, 56);
      if (le(rec, 4) != 0x06064b50) fail(path_, "damaged ZIP64 directory (no end record)");
      entries = le(rec + 32, 8);
      dir_size = le(rec + 40, 8);
      dir_at = le(rec + 48, 8);
    }
    if (dir_at > size_ || dir_size > size_ - dir_at || entries > dir_size / 46) {
      fail(path_, "damaged ZIP directory (it lies outside the file)");
    }
    std::vector<std::uint8_t> dir(dir_size);
    read_at(dir_at, dir.data(), dir_size);
    std::uint64_t at = 0;
    for (std::uint64_t k = 0; k < entries; ++k) {
      if (dir_size - at < 46 || le(&dir[at], 4) != 0x02014b50) {
        fail(path_, "damaged ZIP directory (entry ", k, ")");
      }
      const std::uint8_t* h = &dir[at];
      const std::uint64_t name_len = le(h + 28, 2), extra_len = le(h + 30, 2),
                          comment_len = le(h + 32, 2);
      if (dir_size - at - 46 < name_len + extra_len + comment_len) {
        fail(path_, "damaged ZIP directory (entry ", k, ")");
      }
      Member m;
      m.name.assign(reinterpret_cast<const char*>(h + 46), name_len);
      m.method = static_cast<std::uint16_t>(le(h + 10, 2));
      m.crc = static_cast<std::uint32_t>(le(h + 16, 4));
      m.compressed = le(h + 20, 4);
      m.size = le(h + 24, 4);
      m.local_header = le(h + 42, 4);
      read_zip64_extra(m, h + 46 + name_len, extra_len);
      if (le(h + 8, 2) & 1) fail(path_, "member ", m.name, " is encrypted");
      members_.push_back(std::move(m));
      at += 46 + name_len + extra_len + comment_len;
    }
  }

  // The ZIP64 extended information field (id 1) holds, in order, whichever of size, compressed
  // size and header offset are 0xFFFFFFFF in the fixed record.
  void read_zip64_extra(Member& m, const std::uint8_t* extra, std::uint64_t len) const {
    for (std::uint64_t at = 0; at + 4 <= len;) {
      const std::uint64_t id = le(extra + at, 2), n = le(extra + at + 2, 2);
      if (at + 4 + n > len) break;
      if (id == 1) {
        const std::uint8_t* p = extra + at + 4;
        std::uint64_t left = n;
        for (std::uint64_t* field : {&m.size, &m.compressed, &m.local_header}) {
          if (*field != 0xFFFFFFFF) continue;
          if (left < 8) fail(path_, "member ", m.name, ": damaged ZIP64 field");
          *field = le(p, 8);
          p += 8;
          left -= 8;
        }
      }
      at += 4 + n;
    }
  }

  std::uint64_t data_offset(const Member& m) const {
    std::uint8_t h[30];
    read_at(m.local_header, h, 30);
    const std::uint64_t name_len = le(h + 26, 2);
    if (le(h, 4) != 0x04034b50 || le(h + 8, 2) != m.method || name_len != m.name.size()) {
      fail(path_, "member ", m.name, ": damaged local header");
    }
    std::string name(name_len, '\0');
    read_at(m.local_header + 30, reinterpret_cast<std::uint8_t*>(name.data()), name_len);
    if (name != m.name) fail(path_, "member ", m.name, ": damaged local header");
    const std::uint64_t at = m.local_header + 30 + name_len + le(h + 28, 2);
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

  void inflate_into(const Member& m, std::uint64_t at, std::uint8_t* out, std::uint64_t n) const {
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

  // Closes the file also when the constructor throws (a damaged directory): a member's
  // destructor runs then, the class's own does not.
  struct Descriptor {
    int fd = -1;
    Descriptor() = default;
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    ~Descriptor() {
      if (fd >= 0) ::close(fd);
    }
  };

  fs::path path_;
  Descriptor fd_;
  std::uint64_t size_ = 0;
  std::vector<Member> members_;
};

// The header of one .npy member: element type, shape, and where the payload starts.
struct NpyHeader {
  char kind = 0;  // 'u', 'i', 'f'
  int itemsize = 0;
  std::vector<std::uint64_t> shape;
  std::uint64_t payload_at = 0;
  std::uint64_t count() const {
    std::uint64_t n = 1;
    for (std::uint64_t d : shape) n *= d;  // checked against the member's size before use
    return n;
  }
};

// A strict reader of the header's dict literal, as np.lib.format writes it.
class DictText {
 public:
  DictText(std::string_view text, const fs::path& path, const std::string& member)
      : s_(text), path_(path), member_(member) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    while (!peek('}')) {
      const std::string key = string();
      expect(':');
      if (key == "descr") {
        parse_descr(string(), h);
        have_descr = true;
      } else if (key == "fortran_order") {
        if (word() != "False") {
          bad("fortran_order is True; save a C-ordered array (np.ascontiguousarray)");
        }
        have_order = true;
      } else if (key == "shape") {
        h.shape = tuple();
        have_shape = true;
      } else {
        bad("unexpected key '" + key + "'");
      }
      if (!peek('}')) expect(',');
    }
    expect('}');
    skip_space();
    if (pos_ != s_.size()) bad("text after the header's dict");
    if (!have_descr || !have_order || !have_shape) {
      bad("the header lacks 'descr', 'fortran_order' or 'shape'");
    }
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& why) const { fail(path_, "array ", member_, ": ", why); }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n')) ++pos_;
  }
  bool peek(char c) {
    skip_space();
    return pos_ < s_.size() && s_[pos_] == c;
  }
  void expect(char c) {
    if (!peek(c)) bad(std::string("malformed header (expected '") + c + "')");
    ++pos_;
  }
  std::string string() {
    skip_space();
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) {
      bad("malformed header (expected a string)");
    }
    const char q = s_[pos_++];
    const std::size_t end = s_.find(q, pos_);
    if (end == std::string_view::npos) bad("malformed header (unterminated string)");
    std::string out(s_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }
  std::string word() {
    skip_space();
    const std::size_t start = pos_;
    while (pos_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }
  std::vector<std::uint64_t> tuple() {
    std::vector<std::uint64_t> dims;
    expect('(');
    while (!peek(')')) {
      if (dims.size() == 32) bad("more than 32 dimensions");
      const std::size_t start = pos_;
      std::uint64_t v = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        if (v > (std::numeric_limits<std::uint64_t>::max() - 9) / 10) bad("a dimension overflows");
        v = v * 10 + static_cast<std::uint64_t>(s_[pos_++] - '0');
      }
      if (pos_ == start) bad("malformed shape");
      dims.push_back(v);
      if (!peek(')')) expect(',');
    }
    expect(')');
    return dims;
  }
  void parse_descr(const std::string& d, NpyHeader& h) const {
    const bool one_byte = d.size() == 3 && d[2] == '1';
    if (d.size() != 3 || !(d[0] == '<' || (d[0] == '|' && one_byte)) ||
        (d[1] != 'u' && d[1] != 'i' && d[1] != 'f') ||
        (d[2] != '1' && d[2] != '2' && d[2] != '4' && d[2] != '8') ||
        (d[1] == 'f' && d[2] != '4' && d[2] != '8')) {
      bad("dtype '" + d +
          "' is not supported (little-endian integers, float32 or float64; convert with "
          ".astype)");
    }
    h.kind = d[1];
    h.itemsize = d[2] - '0';
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  const fs::path& path_;
  const std::string& member_;
};

NpyHeader read_header(const Zip& zip, const Member& m) {
  const auto head = zip.read(m, std::min<std::uint64_t>(m.size, 12));
  if (head.size() < 10 || std::memcmp(head.data(), "\x93NUMPY", 6) != 0) {
    fail(zip.path(), "member ", m.name, " is not a .npy array");
  }
  const int major = head[6];
  if (major < 1 || major > 3) fail(zip.path(), "member ", m.name, ": .npy version ", major);
  if (major > 1 && head.size() < 12) fail(zip.path(), "member ", m.name, " is cut short");
  const std::uint64_t text_at = major == 1 ? 10 : 12;
  const std::uint64_t text_len = le(&head[8], major == 1 ? 2 : 4);
  if (text_len > kMaxNpyHeader || text_at + text_len > m.size) {
    fail(zip.path(), "member ", m.name, ": damaged .npy header length ", text_len);
  }
  const auto bytes = zip.read(m, text_at + text_len);
  const std::string text(bytes.begin() + static_cast<std::ptrdiff_t>(text_at), bytes.end());
  NpyHeader h = DictText(text, zip.path(), m.name).parse();
  h.payload_at = text_at + text_len;
  // The payload must be exactly the shape's elements: checked without overflow.
  std::uint64_t bytes_needed = static_cast<std::uint64_t>(h.itemsize);
  for (std::uint64_t d : h.shape) {
    if (__builtin_mul_overflow(bytes_needed, d, &bytes_needed)) {
      fail(zip.path(), "array ", m.name, ": its shape needs more than 2^64 bytes");
    }
  }
  if (bytes_needed != m.size - h.payload_at) {
    fail(zip.path(), "array ", m.name, ": its shape needs ", bytes_needed,
         " bytes, the member has ", m.size - h.payload_at);
  }
  return h;
}

struct Split {
  const Member* x = nullptr;
  const Member* y = nullptr;
  NpyHeader xh, yh;
  DatasetShape shape;
};

std::string member_list(const Zip& zip) {
  std::string names;
  for (const Member& m : zip.members()) names += (names.empty() ? "" : ", ") + m.name;
  return names.empty() ? "nothing" : names;
}

Split peek_split(const Zip& zip, MnistSplit which) {
  const std::string suffix = which == MnistSplit::kTrain ? "train" : "test";
  Split s;
  s.x = zip.find("x_" + suffix + ".npy");
  s.y = zip.find("y_" + suffix + ".npy");
  if (!s.x || !s.y) {
    fail(zip.path(), "no arrays x_", suffix, " and y_", suffix, " (it holds ", member_list(zip),
         "); save them with np.savez(file, x_train=..., y_train=..., x_test=..., y_test=...)");
  }
  s.xh = read_header(zip, *s.x);
  s.yh = read_header(zip, *s.y);
  const auto& xs = s.xh.shape;
  if (xs.size() != 2 && xs.size() != 3) {
    fail(zip.path(), "x_", suffix, " has ", xs.size(),
         " dimensions; it must be (examples, features) or (examples, rows, cols)");
  }
  if (s.xh.kind != 'f' && !(s.xh.kind == 'u' && s.xh.itemsize == 1)) {
    fail(zip.path(), "x_", suffix, " must be uint8 (images), float32 or float64");
  }
  if (s.yh.shape.size() != 1 || s.yh.kind == 'f') {
    fail(zip.path(), "y_", suffix, " must be a one-dimensional array of integer labels");
  }
  if (s.yh.shape[0] != xs[0]) {
    fail(zip.path(), "x_", suffix, " has ", xs[0], " examples but y_", suffix, " has ",
         s.yh.shape[0], " labels");
  }
  if (xs[0] > std::numeric_limits<std::uint32_t>::max()) {
    fail(zip.path(), "x_", suffix, " has ", xs[0], " examples, more than 2^32 - 1");
  }
  const std::uint64_t rows = xs.size() == 3 ? xs[1] : 1, cols = xs.back();
  if (rows == 0 || cols == 0) fail(zip.path(), "x_", suffix, " has no features");
  s.shape = {static_cast<std::size_t>(xs[0]), static_cast<std::size_t>(rows),
             static_cast<std::size_t>(cols), zip.path().string() + ":x_" + suffix};
  return s;
}

Dataset load_split(const Zip& zip, const Split& s, int num_classes) {
  if (num_classes < 1 || num_classes > 256) {
    throw std::invalid_argument("load_npz: num_classes must be in 1..256, got " +
                                std::to_string(num_classes));
  }
  const std::string x_name = s.x->name.substr(0, s.x->name.size() - 4);
  const std::string y_name = s.y->name.substr(0, s.y->name.size() - 4);
  const std::uint64_t n = s.shape.count, f = s.shape.rows * s.shape.cols;
  check_fits_in_memory(s.x->size + n * f * (s.xh.kind == 'f' ? 4 : 1) + s.y->size + n,
                       "reading " + zip.path().string());
  Dataset d;
  d.count = s.shape.count;
  d.rows = s.shape.rows;
  d.cols = s.shape.cols;
  d.labels_file = zip.path().string() + ":" + y_name;
  {
    const auto raw = zip.read(*s.y, s.y->size);
    const std::uint8_t* p = raw.data() + s.yh.payload_at;
    d.labels.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t v = le(p + i * s.yh.itemsize, s.yh.itemsize);
      const int bits = 8 * s.yh.itemsize;
      // The label as the signed or unsigned integer it is (sign-extended from its width).
      const long long value =
          s.yh.kind == 'i' && bits < 64 && (v >> (bits - 1)) != 0
              ? static_cast<long long>(v) - (1LL << (bits - 1)) - (1LL << (bits - 1))
              : static_cast<long long>(v);
      if (value < 0 || value >= num_classes) {
        fail(zip.path(), y_name, ": label at index ", i, " is ", value, ", outside 0..",
             num_classes - 1);
      }
      d.labels[i] = static_cast<std::uint8_t>(v);
    }
  }
  const auto raw = zip.read(*s.x, s.x->size);
  const std::uint8_t* p = raw.data() + s.xh.payload_at;
  if (s.xh.kind == 'u') {
    d.images.assign(p, p + n * f);
    return d;
  }
  d.floats = true;
  d.values.resize(n * f);
  for (std::uint64_t i = 0; i < n * f; ++i) {
    float v;
    if (s.xh.itemsize == 4) {
      std::memcpy(&v, p + 4 * i, 4);
    } else {
      double w;
      std::memcpy(&w, p + 8 * i, 8);
      v = static_cast<float>(w);
    }
    if (!std::isfinite(v)) {
      fail(zip.path(), x_name, ": element ", i, " (example ", i / f, ") is ",
           std::isnan(v) ? "NaN" : "infinite", s.xh.itemsize == 8 ? " as float32" : "");
    }
    d.values[i] = v;
  }
  return d;
}

}  // namespace

bool is_npz_path(const fs::path& path) {
  std::error_code ec;
  return path.extension() == ".npz" || (fs::exists(path, ec) && !fs::is_directory(path, ec));
}

DatasetShape peek_npz_split(const fs::path& file, MnistSplit split) {
  const Zip zip(file);
  return peek_split(zip, split).shape;
}

Dataset load_npz_split(const fs::path& file, MnistSplit split, int num_classes) {
  const Zip zip(file);
  return load_split(zip, peek_split(zip, split), num_classes);
}

TrainTest load_npz(const fs::path& file, int num_classes) {
  const Zip zip(file);
  const Split train = peek_split(zip, MnistSplit::kTrain),
              test = peek_split(zip, MnistSplit::kTest);
  if (train.shape.rows != test.shape.rows || train.shape.cols != test.shape.cols ||
      train.xh.kind != test.xh.kind) {
    fail(file, "x_train and x_test differ in shape or dtype (", train.shape.rows, "x",
         train.shape.cols, " against ", test.shape.rows, "x", test.shape.cols, ")");
  }
  TrainTest result;
  result.train = load_split(zip, train, num_classes);
  result.test = load_split(zip, test, num_classes);
  return result;
}

}  // namespace dropkit::data
