#include "dropkit/data/idx.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <zlib.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "support/idx_files.h"

#include "support/temp_dir.h"

namespace dropkit::data {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;
using test::header;
using test::idx;
using test::write_gz;
using test::write_plain;
using testing::HasSubstr;

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Deterministic but irregular, so a reader that reorders or drops bytes cannot pass by accident
// and gzip cannot compress it to nothing.
Bytes pattern(std::size_t n, std::uint32_t seed = 1) {
  Bytes out(n);
  std::uint32_t state = seed * 2654435761u + 12345u;
  for (auto& b : out) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<std::uint8_t>(state >> 24);
  }
  return out;
}

Bytes read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Returns the DataError message, recording a failure if nothing (or something else) is thrown.
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DataError";
  return "";
}

std::string read_error(const fs::path& path) {
  return error_of([&] { read_idx(path); });
}

class IdxTest : public testing::Test {
 protected:
  fs::path plain(const std::string& name, const Bytes& bytes) {
    write_plain(dir_ / name, bytes);
    return dir_ / name;
  }
  fs::path gz(const std::string& name, const Bytes& bytes) {
    write_gz(dir_ / name, bytes);
    return dir_ / name;
  }

  test::TempDir tmp_{"dropkit_idx_test"};
  const fs::path dir_ = tmp_.path();
};

TEST_F(IdxTest, RoundTripsOneToFourDimsPlainAndGz) {
  const std::vector<std::vector<std::uint32_t>> shapes = {{7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2}};
  for (std::size_t s = 0; s < shapes.size(); ++s) {
    SCOPED_TRACE(testing::Message() << "shape #" << s);
    std::size_t n = 1;
    for (const auto d : shapes[s]) n *= d;
    const Bytes payload = pattern(n, static_cast<std::uint32_t>(s));
    std::string name = "a";  // (appended: GCC 12 warns falsely on "a" + std::string)
    name += std::to_string(s);
    const IdxArray from_plain = read_idx(plain(name, idx(shapes[s], payload)));
    const IdxArray from_gz = read_idx(gz(name + ".gz", idx(shapes[s], payload)));
    EXPECT_EQ(from_plain.dims, shapes[s]);
    EXPECT_EQ(from_plain.bytes, payload);
    EXPECT_EQ(from_gz.dims, from_plain.dims);
    EXPECT_EQ(from_gz.bytes, from_plain.bytes);
  }
}

TEST_F(IdxTest, ReadsLargeDimensionsBigEndian) {
  // 300 = 0x012C exercises more than the low byte of each dimension.
  const Bytes payload = pattern(300 * 2, 9);
  const IdxArray array = read_idx(gz("big.gz", idx({300, 2}, payload)));
  EXPECT_EQ(array.dims, (std::vector<std::uint32_t>{300, 2}));
  EXPECT_EQ(array.bytes, payload);
}

TEST_F(IdxTest, DetectsGzipByContentNotName) {
  const Bytes payload = pattern(12, 3);
  const IdxArray gz_named_plain = read_idx(gz("no-extension", idx({3, 4}, payload)));
  const IdxArray plain_named_gz = read_idx(plain("fake.gz", idx({3, 4}, payload)));
  EXPECT_EQ(gz_named_plain.bytes, payload);
  EXPECT_EQ(plain_named_gz.bytes, payload);
}

TEST_F(IdxTest, RejectsBadMagic) {
  const auto path = plain("bad", concat({0x01, 0x00, 0x08, 0x01, 0, 0, 0, 1}, {42}));
  const auto message = read_error(path);
  EXPECT_THAT(message, HasSubstr("bad magic"));
  EXPECT_THAT(message, HasSubstr(path.string()));
}

TEST_F(IdxTest, RejectsUnknownElementType) {
  EXPECT_THAT(read_error(plain("t", concat(header(0x42, {1}), {0}))), HasSubstr("0x42"));
}

TEST_F(IdxTest, RejectsFloatElementTypeSayingOnlyUbyteIsSupported) {
  const auto path = gz("float.gz", concat(header(0x0D, {2}), pattern(8)));
  const auto message = read_error(path);
  EXPECT_THAT(message, HasSubstr("ubyte"));
  EXPECT_THAT(message, HasSubstr("0x0D"));
  EXPECT_THAT(message, HasSubstr(path.string()));
}

TEST_F(IdxTest, RejectsZeroAndFiveDimensions) {
  EXPECT_THAT(read_error(plain("d0", header(0x08, {}))), HasSubstr("0 dimensions"));
  EXPECT_THAT(read_error(plain("d5", idx({1, 1, 1, 1, 1}, {7}))), HasSubstr("5 dimensions"));
}

TEST_F(IdxTest, RejectsZeroDimension) {
  const auto message = read_error(plain("z", header(0x08, {3, 0, 2})));
  EXPECT_THAT(message, HasSubstr("dimension 1 is 0"));
}

TEST_F(IdxTest, RejectsDimensionsAboveSizeCapBeforeReadingPayload) {
  const auto message = read_error(gz("huge.gz", header(0x08, {65536, 65536})));
  EXPECT_THAT(message, HasSubstr("65536x65536"));
  EXPECT_THAT(message, HasSubstr("limit"));
}

TEST_F(IdxTest, RejectsTruncatedPayloadPlainAndGz) {
  const Bytes short_file = idx({2, 3}, pattern(4));
  for (const auto& path : {plain("short", short_file), gz("short.gz", short_file)}) {
    SCOPED_TRACE(path.string());
    const auto message = read_error(path);
    EXPECT_THAT(message, HasSubstr("truncated"));
    EXPECT_THAT(message, HasSubstr("payload is 4 bytes, header promises 6"));
    EXPECT_THAT(message, HasSubstr(path.string()));
  }
}

TEST_F(IdxTest, RejectsGzipStreamCutMidPayload) {
  const auto full = gz("full.gz", idx({1000}, pattern(1000)));
  Bytes compressed = read_file(full);
  ASSERT_GT(compressed.size(), 100u);
  compressed.resize(compressed.size() / 2);
  const auto message = read_error(plain("cut.gz", compressed));
  EXPECT_THAT(message, HasSubstr("truncated"));
  EXPECT_THAT(message, HasSubstr("cut.gz"));
}

// Every cut of the last 1..12 bytes (the 8-byte CRC-32/length trailer and some of the stream)
// is refused, whatever the payload, plain-sized or empty-ish.
TEST_F(IdxTest, RejectsEveryCutOfTheGzipTrailer) {
  for (std::size_t n : {1u, 7u, 1000u, 70001u}) {
    const auto full =
        gz("full" + std::to_string(n) + ".gz", idx({static_cast<std::uint32_t>(n)}, pattern(n)));
    const Bytes compressed = read_file(full);
    for (std::size_t cut = 1; cut <= 12; ++cut) {
      SCOPED_TRACE(std::to_string(n) + " bytes, cut " + std::to_string(cut));
      Bytes shorter(compressed.begin(), compressed.end() - static_cast<std::ptrdiff_t>(cut));
      EXPECT_THAT(read_error(plain("cut.gz", shorter)), HasSubstr("truncated"));
    }
  }
}

// After the gzip stream nothing may follow: garbage, zeros, or a second gzip member.
TEST_F(IdxTest, RejectsAnythingAfterTheGzipStream) {
  const Bytes one = read_file(gz("one.gz", idx({1000}, pattern(1000))));
  for (const Bytes& tail : {Bytes{0}, Bytes{0, 0, 0, 0}, Bytes{'x', 'y', 'z'}, one}) {
    SCOPED_TRACE(tail.size());
    // The trailer's length no longer matches once anything is appended; a tail that keeps it
    // (the same member again ends in the same 4 bytes) must still be caught after the stream.
    const auto message = read_error(plain("more.gz", concat(one, tail)));
    EXPECT_THAT(message, testing::AnyOf(HasSubstr("after the end of the gzip stream"),
                                        HasSubstr("damaged gzip file")));
  }
  const auto twice = read_error(plain("twice.gz", concat(one, one)));
  EXPECT_THAT(twice, HasSubstr("second gzip member"));
}

// A gzip bomb: a tiny file whose image header claims a huge payload. The pair's headers are
// checked against each other (and against the gzip trailer) before any payload is read, so the
// claim is never allocated.
TEST_F(IdxTest, AGzipBombFailsOnItsHeadersBeforeAnyAllocation) {
  // 3000 x 100 x 100 zero pixels: 30 MB that gzip squeezes into about 30 KB, written in 1 MB
  // pieces so that the test itself never holds it (the peak memory below would hide it).
  const fs::path images = dir_ / "bomb-images.gz";
  {
    gzFile out = gzopen(images.c_str(), "wb");
    ASSERT_NE(out, nullptr);
    const Bytes h = header(0x08, {3000, 100, 100});
    ASSERT_EQ(gzwrite(out, h.data(), static_cast<unsigned>(h.size())), static_cast<int>(h.size()));
    const Bytes zeros(1000000);
    for (int i = 0; i < 30; ++i) ASSERT_EQ(gzwrite(out, zeros.data(), 1000000u), 1000000);
    ASSERT_EQ(gzclose(out), Z_OK);
  }
  EXPECT_LT(fs::file_size(images), 100000u);
  const auto labels = gz("bomb-labels.gz", idx({10}, Bytes(10)));
  struct rusage before {};
  getrusage(RUSAGE_SELF, &before);
  try {
    load_idx_pair(images, labels);
    ADD_FAILURE() << "a mismatched pair was accepted";
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), HasSubstr("3000 images"));
  }
  struct rusage after {};
  getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 10 * 1024) << "kilobytes more at peak";
  // A header that promises more than the gzip trailer says the file holds fails at once too.
  const auto liar = gz("liar.gz", concat(header(0x08, {1000}), pattern(10)));
  Bytes fake = read_file(liar);
  EXPECT_THAT(read_error(plain("liar2.gz", fake)),
              HasSubstr("trailer says the payload is 10 bytes, header promises 1000"));
}

TEST_F(IdxTest, RejectsGzipStreamMissingItsTrailer) {
  // The payload decompresses completely, but the CRC/length trailer is gone.
  const auto full = gz("full.gz", idx({1000}, pattern(1000)));
  Bytes compressed = read_file(full);
  compressed.resize(compressed.size() - 8);
  EXPECT_THAT(read_error(plain("notrailer.gz", compressed)), HasSubstr("truncated"));
}

TEST_F(IdxTest, RejectsCorruptGzipChecksum) {
  const auto full = gz("full.gz", idx({1000}, pattern(1000)));
  Bytes compressed = read_file(full);
  compressed[compressed.size() - 8] ^= 0xFF;  // first CRC byte
  EXPECT_THAT(read_error(plain("badcrc.gz", compressed)), HasSubstr("gzip error"));
}

TEST_F(IdxTest, RejectsTrailingDataPlainAndGz) {
  const Bytes long_file = idx({2, 3}, pattern(7));
  for (const auto& path : {plain("long", long_file), gz("long.gz", long_file)}) {
    SCOPED_TRACE(path.string());
    const auto message = read_error(path);
    // gzip: the trailer's length already disagrees with the header, before reading.
    EXPECT_THAT(message, testing::AnyOf(HasSubstr("trailing data"),
                                        HasSubstr("payload is 7 bytes, header promises 6")));
    EXPECT_THAT(message, HasSubstr(path.string()));
  }
}

TEST_F(IdxTest, RejectsTruncatedHeader) {
  EXPECT_THAT(read_error(plain("empty", {})), HasSubstr("truncated header"));
  EXPECT_THAT(read_error(plain("two", {0, 0})), HasSubstr("truncated header"));
  // Magic is fine, but the second of three dimension sizes is cut off.
  Bytes cut = header(0x08, {2, 3, 4});
  cut.resize(10);
  EXPECT_THAT(read_error(plain("dims", cut)), HasSubstr("truncated header"));
  EXPECT_THAT(read_error(gz("dims.gz", cut)), HasSubstr("truncated header"));
}

TEST_F(IdxTest, RejectsMissingFile) {
  const auto path = dir_ / "does-not-exist";
  const auto message = read_error(path);
  EXPECT_THAT(message, HasSubstr(path.string()));
  EXPECT_THAT(message, HasSubstr("cannot read"));
  EXPECT_THAT(message, HasSubstr("No such file"));
}

TEST_F(IdxTest, LoadsImageLabelPair) {
  const Bytes pixels = pattern(3 * 2 * 4, 5);
  const Dataset data =
      load_idx_pair(plain("img", idx({3, 2, 4}, pixels)), gz("lbl.gz", idx({3}, {9, 0, 4})));
  EXPECT_EQ(data.count, 3u);
  EXPECT_EQ(data.rows, 2u);
  EXPECT_EQ(data.cols, 4u);
  EXPECT_EQ(data.features(), 8u);
  EXPECT_EQ(data.images, pixels);
  EXPECT_EQ(data.labels, (Bytes{9, 0, 4}));
}

TEST_F(IdxTest, RejectsLabelOutOfRange) {
  const auto images = plain("img", idx({4, 1, 1}, pattern(4)));
  const auto labels = plain("lbl", idx({4}, {0, 1, 10, 2}));
  const auto message = error_of([&] { load_idx_pair(images, labels); });
  EXPECT_THAT(message, HasSubstr(labels.string()));
  EXPECT_THAT(message, HasSubstr("index 2"));
  EXPECT_THAT(message, HasSubstr("is 10"));
  EXPECT_THAT(message, HasSubstr("0..9"));
  // The same labels are fine once there are enough classes.
  EXPECT_NO_THROW(load_idx_pair(images, labels, 11));
}

TEST_F(IdxTest, RejectsImageLabelCountMismatch) {
  const auto images = plain("img", idx({4, 1, 1}, pattern(4)));
  const auto labels = plain("lbl", idx({3}, {0, 1, 2}));
  const auto message = error_of([&] { load_idx_pair(images, labels); });
  EXPECT_THAT(message, HasSubstr(images.string()));
  EXPECT_THAT(message, HasSubstr(labels.string()));
  EXPECT_THAT(message, HasSubstr("4 images"));
  EXPECT_THAT(message, HasSubstr("3 labels"));
}

TEST_F(IdxTest, RejectsWrongRankForImagesOrLabels) {
  const auto flat_images = plain("img", idx({4, 1}, pattern(4)));
  const auto labels = plain("lbl", idx({4}, {0, 1, 2, 3}));
  EXPECT_THAT(error_of([&] { load_idx_pair(flat_images, labels); }), HasSubstr("3 dimensions"));
  const auto images = plain("img3", idx({4, 1, 1}, pattern(4)));
  const auto matrix_labels = plain("lbl2", idx({4, 1}, {0, 1, 2, 3}));
  EXPECT_THAT(error_of([&] { load_idx_pair(images, matrix_labels); }), HasSubstr("1 dimension"));
}

TEST_F(IdxTest, LoadsMnistDirWithMixedGzAndPlainNames) {
  const Bytes train_pixels = pattern(5 * 2 * 3, 1);
  const Bytes test_pixels = pattern(2 * 2 * 3, 2);
  plain("train-images-idx3-ubyte", idx({5, 2, 3}, train_pixels));
  gz("train-labels-idx1-ubyte.gz", idx({5}, {0, 1, 2, 3, 4}));
  gz("t10k-images-idx3-ubyte.gz", idx({2, 2, 3}, test_pixels));
  plain("t10k-labels-idx1-ubyte", idx({2}, {8, 9}));
  // A broken .gz next to the plain file must be ignored: the plain name wins.
  plain("t10k-labels-idx1-ubyte.gz", {0x1F, 0x8B, 0, 0});

  const TrainTest data = load_mnist_dir(dir_);
  EXPECT_EQ(data.train.count, 5u);
  EXPECT_EQ(data.test.count, 2u);
  EXPECT_EQ(data.train.rows, 2u);
  EXPECT_EQ(data.train.cols, 3u);
  EXPECT_EQ(data.train.images, train_pixels);
  EXPECT_EQ(data.test.images, test_pixels);
  EXPECT_EQ(data.train.labels, (Bytes{0, 1, 2, 3, 4}));
  EXPECT_EQ(data.test.labels, (Bytes{8, 9}));
}

TEST_F(IdxTest, MnistDirMissingFileNamesDirAndFile) {
  plain("train-images-idx3-ubyte", idx({1, 1, 1}, {0}));
  plain("train-labels-idx1-ubyte", idx({1}, {0}));
  gz("t10k-images-idx3-ubyte.gz", idx({1, 1, 1}, {0}));
  const auto message = error_of([&] { load_mnist_dir(dir_); });
  EXPECT_THAT(message, HasSubstr(dir_.string()));
  EXPECT_THAT(message, HasSubstr("t10k-labels-idx1-ubyte"));
  EXPECT_THAT(message, HasSubstr("t10k-labels-idx1-ubyte.gz"));
  EXPECT_THAT(message, testing::Not(HasSubstr("train-images")));
}

TEST_F(IdxTest, MnistDirRejectsTrainTestShapeMismatch) {
  plain("train-images-idx3-ubyte", idx({1, 2, 2}, pattern(4)));
  plain("train-labels-idx1-ubyte", idx({1}, {0}));
  plain("t10k-images-idx3-ubyte", idx({1, 2, 3}, pattern(6)));
  plain("t10k-labels-idx1-ubyte", idx({1}, {0}));
  const auto message = error_of([&] { load_mnist_dir(dir_); });
  EXPECT_THAT(message, HasSubstr(dir_.string()));
  EXPECT_THAT(message, HasSubstr("2x2"));
  EXPECT_THAT(message, HasSubstr("2x3"));
}

TEST(FashionMnistTest, LoadsInstalledDataset) {
  const fs::path dir = default_data_dir();
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " not installed (Debian dataset-fashion-mnist)";
  const TrainTest data = load_mnist_dir(dir);
  for (const Dataset* set : {&data.train, &data.test}) {
    EXPECT_EQ(set->rows, 28u);
    EXPECT_EQ(set->cols, 28u);
    EXPECT_EQ(set->images.size(), set->count * 28 * 28);
    ASSERT_EQ(set->labels.size(), set->count);
    std::array<std::size_t, 10> per_class{};
    for (const std::uint8_t label : set->labels) {
      ASSERT_LT(label, 10);
      ++per_class[label];
    }
    for (std::size_t c = 0; c < per_class.size(); ++c) EXPECT_GT(per_class[c], 0u) << "class " << c;
  }
  EXPECT_EQ(data.train.count, 60000u);
  EXPECT_EQ(data.test.count, 10000u);
}

}  // namespace
}  // namespace dropkit::data
