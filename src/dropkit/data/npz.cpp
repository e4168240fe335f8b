// The .npz reader (data/npz.h): NumPy's .npy format inside the members of a ZIP archive
// (data/zip_archive.h), format versions 1-3: magic, version, header length, a Python dict literal
// {'descr', 'fortran_order', 'shape'}, payload. Only what np.savez writes is accepted, and all of
// it is checked: sizes against each other and the archive, the dict's syntax strictly.
#include "dropkit/data/npz.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "dropkit/core/memory.h"
#include "dropkit/data/byte_source.h"
#include "dropkit/data/zip_archive.h"

namespace dropkit::data {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMaxNpyHeader = 1 << 16;  // NumPy writes a few hundred bytes

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

NpyHeader read_header(const ZipArchive& zip, const ZipMember& m) {
  const auto head = zip.read(m, std::min<std::uint64_t>(m.size, 12));
  if (head.size() < 10 || std::memcmp(head.data(), "\x93NUMPY", 6) != 0) {
    fail(zip.path(), "member ", m.name, " is not a .npy array");
  }
  const int major = head[6];
  if (major < 1 || major > 3) fail(zip.path(), "member ", m.name, ": .npy version ", major);
  if (major > 1 && head.size() < 12) fail(zip.path(), "member ", m.name, " is cut short");
  const std::uint64_t text_at = major == 1 ? 10 : 12;
  const std::uint64_t text_len = little_endian(&head[8], major == 1 ? 2 : 4);
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
  const ZipMember* x = nullptr;
  const ZipMember* y = nullptr;
  NpyHeader xh, yh;
  DatasetShape shape;
};

std::string member_list(const ZipArchive& zip) {
  std::string names;
  for (const ZipMember& m : zip.members()) names += (names.empty() ? "" : ", ") + m.name;
  return names.empty() ? "nothing" : names;
}

Split peek_split(const ZipArchive& zip, MnistSplit which) {
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

Dataset load_split(const ZipArchive& zip, const Split& s, int num_classes) {
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
      const std::uint64_t v = little_endian(p + i * s.yh.itemsize, s.yh.itemsize);
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
  const ZipArchive zip(file);
  return peek_split(zip, split).shape;
}

Dataset load_npz_split(const fs::path& file, MnistSplit split, int num_classes) {
  const ZipArchive zip(file);
  return load_split(zip, peek_split(zip, split), num_classes);
}

TrainTest load_npz(const fs::path& file, int num_classes) {
  const ZipArchive zip(file);
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
