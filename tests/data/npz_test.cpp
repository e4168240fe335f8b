// The .npz reader (data/npz.h) against archives written byte by byte here, stored and deflated,
// as np.savez and np.savez_compressed write them (python/tests/test_npz.py checks files NumPy
// itself wrote): every array kind it accepts, and every damage a hostile or broken file can
// carry refused as a DataError naming the problem.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "dropkit/data/batcher.h"
#include "dropkit/data/idx.h"
#include "dropkit/data/npz.h"
#include "support/idx_files.h"
#include "support/temp_dir.h"

namespace dropkit {
namespace {

namespace fs = std::filesystem;
using test::Bytes;

void put(Bytes& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// A .npy member: magic, version 1.0, the dict padded to a multiple of 64, payload.
Bytes npy(const std::string& descr, const std::string& shape, const Bytes& payload,
          const std::string& extra = "") {
  std::string dict =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", " + extra + "}";
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  put(out, dict.size(), 2);
  out.insert(out.end(), dict.begin(), dict.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

template <class T>
Bytes raw(const std::vector<T>& v) {
  Bytes out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

struct Entry {
  std::string name;
  Bytes content;
};

Bytes deflate_raw(const Bytes& in) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Bytes out(deflateBound(&z, in.size()));
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A ZIP archive of the entries, stored (method 0) or deflated (8); `data`, when given, receives
// each member's data as [first, last) offsets.
Bytes zip(const std::vector<Entry>& entries, bool deflated = false,
          std::vector<std::pair<std::size_t, std::size_t>>* data_ranges = nullptr) {
  Bytes out, dir;
  for (const Entry& e : entries) {
    const Bytes data = deflated ? deflate_raw(e.content) : e.content;
    const auto crc =
        static_cast<std::uint32_t>(crc32(0, e.content.data(), static_cast<uInt>(e.content.size())));
    const std::uint64_t offset = out.size();
    const int method = deflated ? 8 : 0;
    put(out, 0x04034b50, 4);
    put(out, 20, 2);
    put(out, 0, 2);
    put(out, method, 2);
    put(out, 0, 4);  // time, date
    put(out, crc, 4);
    put(out, data.size(), 4);
    put(out, e.content.size(), 4);
    put(out, e.name.size(), 2);
    put(out, 0, 2);
    out.insert(out.end(), e.name.begin(), e.name.end());
    if (data_ranges) data_ranges->emplace_back(out.size(), out.size() + data.size());
    out.insert(out.end(), data.begin(), data.end());
    put(dir, 0x02014b50, 4);
    put(dir, 20, 2);
    put(dir, 20, 2);
    put(dir, 0, 2);
    put(dir, method, 2);
    put(dir, 0, 4);
    put(dir, crc, 4);
    put(dir, data.size(), 4);
    put(dir, e.content.size(), 4);
    put(dir, e.name.size(), 2);
    put(dir, 0, 2);  // extra
    put(dir, 0, 2);  // comment
    put(dir, 0, 2);  // disk
    put(dir, 0, 2);
    put(dir, 0, 4);
    put(dir, offset, 4);
    dir.insert(dir.end(), e.name.begin(), e.name.end());
  }
  const std::uint64_t dir_at = out.size();
  out.insert(out.end(), dir.begin(), dir.end());
  put(out, 0x06054b50, 4);
  put(out, 0, 4);
  put(out, entries.size(), 2);
  put(out, entries.size(), 2);
  put(out, dir.size(), 4);
  put(out, dir_at, 4);
  put(out, 0, 2);
  return out;
}

// Three 2x2 float32 training examples and two test examples, labels 0..2 in int64.
std::vector<Entry> float_set() {
  return {
      {"x_train.npy",
       npy("<f4", "(3, 2, 2)", raw(std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}))},
      {"y_train.npy", npy("<i8", "(3,)", raw(std::vector<std::int64_t>{0, 1, 2}))},
      {"x_test.npy",
       npy("<f4", "(2, 2, 2)", raw(std::vector<float>{-1, -2, -3, -4, 0.5f, 0.25f, 0, 1}))},
      {"y_test.npy", npy("<i8", "(2,)", raw(std::vector<std::int64_t>{2, 1}))},
  };
}

class NpzTest : public testing::Test {
 protected:
  fs::path write(const Bytes& bytes, const std::string& name = "d.npz") {
    const fs::path p = tmp_.path() / name;
    test::write_plain(p, bytes);
    return p;
  }
  // The DataError's message for loading `bytes`.
  std::string error_of(const Bytes& bytes) {
    try {
      data::load_npz(write(bytes));
    } catch (const data::DataError& e) {
      return e.what();
    }
    ADD_FAILURE() << "loaded without an error";
    return "";
  }
  test::TempDir tmp_{"dropkit_npz_test"};
};

TEST_F(NpzTest, ReadsFloatFeaturesAsGivenStoredAndDeflated) {
  for (bool deflated : {false, true}) {
    const auto d = data::load_npz(write(zip(float_set(), deflated)));
    ASSERT_TRUE(d.train.floats);
    EXPECT_EQ(d.train.count, 3u);
    EXPECT_EQ(d.train.rows, 2u);
    EXPECT_EQ(d.train.cols, 2u);
    EXPECT_EQ(d.train.values[5], 5.0f);
    EXPECT_EQ(d.test.values[4], 0.5f);
    EXPECT_EQ(d.train.labels, (std::vector<std::uint8_t>{0, 1, 2}));
    EXPECT_EQ(d.test.labels, (std::vector<std::uint8_t>{2, 1}));
    // Used as given: no normalization, and a batch holds the values themselves.
    const auto norm = data::compute_normalization(d.test, std::vector<std::uint32_t>{0, 1});
    EXPECT_EQ(norm.mean, 0.0f);
    EXPECT_EQ(norm.std, 1.0f);
    Tensor x;
    std::vector<std::uint8_t> labels;
    data::make_batch(d.test, std::vector<std::uint32_t>{1}, norm, x, labels);
    EXPECT_EQ(x.shape(), (Shape{1, 1, 2, 2}));
    EXPECT_EQ(x.data()[1], 0.25f);
    EXPECT_EQ(labels[0], 1);
  }
}

TEST_F(NpzTest, ReadsUint8ImagesAsIdxImagesAndFloat64AsFloat32) {
  const Bytes pixels = {0, 255, 128, 7, 9, 1};
  const auto d = data::load_npz(write(zip({
      {"x_train.npy", npy("|u1", "(2, 3)", pixels)},
      {"y_train.npy", npy("|u1", "(2,)", {1, 0})},
      {"x_test.npy", npy("|u1", "(1, 3)", {3, 4, 5})},
      {"y_test.npy", npy("<u2", "(1,)", raw(std::vector<std::uint16_t>{9}))},
  })));
  EXPECT_FALSE(d.train.floats);
  EXPECT_EQ(d.train.rows, 1u);  // (N, F): one row of F features
  EXPECT_EQ(d.train.cols, 3u);
  EXPECT_EQ(d.train.images, pixels);
  EXPECT_EQ(d.test.labels, (std::vector<std::uint8_t>{9}));
  EXPECT_NE(data::fingerprint(d.train).find("images"), std::string::npos);

  auto set = float_set();
  set[0] = {"x_train.npy",
            npy("<f8", "(3, 4)", raw(std::vector<double>{0.1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}))};
  set[2] = {"x_test.npy", npy("<f8", "(2, 4)", raw(std::vector<double>(8, 1e300 / 1e300)))};
  const auto f = data::load_npz(write(zip(set)));
  EXPECT_EQ(f.train.values[0], 0.1f);
  EXPECT_NE(data::fingerprint(f.train).find("float32 features"), std::string::npos);
}

TEST_F(NpzTest, ThePathDecidesBetweenArchiveAndDirectory) {
  const fs::path file = write(zip(float_set()), "data.bin");
  EXPECT_TRUE(data::is_npz_path(file));  // an existing file, whatever its name
  EXPECT_TRUE(data::is_npz_path(tmp_.path() / "missing.npz"));
  EXPECT_FALSE(data::is_npz_path(tmp_.path()));
  // The MNIST-directory entry points read an archive in its place.
  EXPECT_EQ(data::load_mnist_dir(file).train.count, 3u);
  EXPECT_EQ(data::peek_mnist_split(file, data::MnistSplit::kTest).count, 2u);
  EXPECT_EQ(data::mnist_files(file), std::vector<fs::path>{file});
}

TEST_F(NpzTest, RefusesMissingArraysNamingWhatTheFileHolds) {
  auto set = float_set();
  set.pop_back();
  const std::string e = error_of(zip(set));
  EXPECT_NE(e.find("no arrays x_test and y_test"), std::string::npos) << e;
  EXPECT_NE(e.find("x_train.npy, y_train.npy, x_test.npy"), std::string::npos) << e;
}

TEST_F(NpzTest, RefusesArraysThatDisagree) {
  const auto with = [](std::size_t i, Entry e) {
    auto s = float_set();
    s[i] = std::move(e);
    return s;
  };
  const std::vector<std::pair<std::vector<Entry>, std::string>> cases = {
      {with(1, {"y_train.npy", npy("<i8", "(2,)", raw(std::vector<std::int64_t>{0, 1}))}),
       "3 examples but y_train has 2 labels"},
      {with(1, {"y_train.npy", npy("<i8", "(3,)", raw(std::vector<std::int64_t>{0, 10, 1}))}),
       "label at index 1 is 10, outside 0..9"},
      {with(1, {"y_train.npy", npy("<i4", "(3,)", raw(std::vector<std::int32_t>{0, 1, -1}))}),
       "label at index 2 is -1"},
      {with(1, {"y_train.npy", npy("<f4", "(3,)", raw(std::vector<float>{0, 1, 2}))}),
       "integer labels"},
      {with(0, {"x_train.npy", npy("<f4", "(3, 4, 1, 1)", raw(std::vector<float>(12)))}),
       "4 dimensions"},
      {with(0, {"x_train.npy", npy("<i4", "(3, 4)", raw(std::vector<std::int32_t>(12)))}),
       "uint8 (images), float32 or float64"},
      {with(0, {"x_train.npy", npy("<f4", "(3, 3)", raw(std::vector<float>(9)))}),
       "differ in shape"},
      {with(0,
            {"x_train.npy", npy("<f4", "(3, 2, 2)",
                                raw(std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                       std::numeric_limits<float>::quiet_NaN()}))}),
       "element 11 (example 2) is NaN"},
      {with(0, {"x_train.npy", npy(">f4", "(3, 2, 2)", raw(std::vector<float>(12)))}),
       "dtype '>f4' is not supported"},
      {with(0, {"x_train.npy", npy("<f4", "(3, 2, 2)", raw(std::vector<float>(11)))}),
       "its shape needs 48 bytes, the member has 44"},
      {with(0, {"x_train.npy",
                npy("<f4", "(3, 9999999999, 9999999999)", raw(std::vector<float>(12)))}),
       "more than 2^64 bytes"},
      {with(0, {"x_train.npy", npy("<f4", "(3, 2, 2)", raw(std::vector<float>(12)), "'extra': 1")}),
       "unexpected key 'extra'"},
  };
  for (const auto& [entries, expected] : cases) {
    const std::string e = error_of(zip(entries));
    EXPECT_NE(e.find(expected), std::string::npos) << "expected '" << expected << "' in: " << e;
    EXPECT_EQ(e.rfind(tmp_.path().string(), 0), 0u) << "the message names the file: " << e;
  }
}

TEST_F(NpzTest, RefusesFortranOrderAndMalformedHeaders) {
  for (const std::string& dict :
       {std::string("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }"),
        std::string("{'descr': '<f4', 'shape': (3, 4), }"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)"),
        std::string("{'descr': '<f4 'fortran_order': False, 'shape': (3, 4), }"),
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (3, x), }")}) {
    Bytes member = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    put(member, dict.size(), 2);
    member.insert(member.end(), dict.begin(), dict.end());
    const Bytes payload = raw(std::vector<float>(12));
    member.insert(member.end(), payload.begin(), payload.end());
    auto set = float_set();
    set[0] = {"x_train.npy", member};
    const std::string e = error_of(zip(set));
    EXPECT_NE(e.find("x_train.npy"), std::string::npos) << dict << ": " << e;
  }
}

// Where the central directory starts (the end record's offset field).
std::size_t directory_at(const Bytes& archive) {
  const std::size_t e = archive.size() - 22;
  std::size_t at = 0;
  for (int i = 3; i >= 0; --i) at = (at << 8) | archive[e + 16 + static_cast<std::size_t>(i)];
  return at;
}

TEST_F(NpzTest, RefusesEveryTruncationAndCorruptionOfTheArchive) {
  for (bool deflated : {false, true}) {
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    const Bytes good = zip(float_set(), deflated, &ranges);
    // Every cut: the end record moves or vanishes, or a member is cut.
    for (std::size_t n = 0; n < good.size(); n += deflated ? 3 : 7) {
      const Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
      EXPECT_FALSE(error_of(cut).empty()) << "cut at " << n;
    }
    // A flipped bit anywhere in a member's data is caught (CRC-32, the deflate stream, or a
    // header check). The last byte of a deflate stream may hold padding bits, which are unused.
    for (const auto& [first, last] : ranges) {
      for (std::size_t at = first; at < last - (deflated ? 1 : 0); ++at) {
        Bytes bad = good;
        bad[at] ^= 0x40;
        EXPECT_FALSE(error_of(bad).empty()) << "flip at " << at;
      }
    }
  }
}

TEST_F(NpzTest, ADeflateBombIsRefusedFromItsRecordedSizes) {
  Bytes archive = zip(float_set(), true);
  const std::size_t dir = directory_at(archive);
  ASSERT_EQ(archive[dir], 0x50);
  archive[dir + 24 + 3] = 0x7F;  // the first member now claims about 2^31 bytes
  const std::string e = error_of(archive);
  EXPECT_NE(e.find("claims"), std::string::npos) << e;
}

// Every way out closes the file: a reader that leaked a descriptor per refused file would run
// out of them in a long-lived process (the fuzzer found that after 25,000 inputs).
TEST_F(NpzTest, ARefusedFileLeavesNoDescriptorOpen) {
  const auto open_descriptors = [] {
    return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{});
  };
  Bytes cut = zip(float_set());
  cut.resize(cut.size() - 30);  // the directory damaged: the constructor throws
  const fs::path damaged = write(cut), good = write(zip(float_set()), "good.npz");
  const auto before = open_descriptors();
  for (int i = 0; i < 50; ++i) {
    EXPECT_THROW(data::load_npz(damaged), data::DataError);
    EXPECT_THROW(data::load_npz(write({'x'}, "tiny.npz")), data::DataError);
    data::load_npz(good);
  }
  EXPECT_EQ(open_descriptors(), before);
}

TEST_F(NpzTest, RefusesWhatIsNotARegularFileOrNotAZip) {
  EXPECT_NE(error_of({'n', 'o', 't', ' ', 'a', ' ', 'z', 'i', 'p'}).find("not an .npz file"),
            std::string::npos);
  EXPECT_THROW(data::load_npz(tmp_.path() / "missing.npz"), data::DataError);
  const fs::path fifo = tmp_.path() / "fifo.npz";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THROW(data::load_npz(fifo), data::DataError);  // at once, without blocking
}

}  // namespace
}  // namespace dropkit
