// IDX files (the format MNIST and Fashion-MNIST ship in) and the image/label datasets built from
// them. Only unsigned-byte arrays are supported because that is all those datasets use; every
// problem with a file is reported as a DataError naming the file, so a bad download fails loudly
// at load time instead of producing a silently wrong model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace dropkit::data {

// Thrown for every problem with a data file: the message names the file and the problem
// (e.g. "/x/train-images-idx3-ubyte.gz: payload is 1000 bytes, header promises 47040000").
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An IDX array of unsigned bytes (element type 0x08): its dimensions and raw payload.
struct IdxArray {
  std::vector<std::uint32_t> dims;
  std::vector<std::uint8_t> bytes;
};

// Reads an IDX file, gzip-compressed or plain (detected by the gzip magic 1f 8b, not the name).
// The header is validated before the payload is allocated, so a corrupt header cannot trigger a
// huge allocation: magic (two zero bytes, type byte, ndims byte), element type 0x08 (unsigned
// byte) only, ndims in 1..4, every dimension > 0, total size <= 2^31 bytes. The payload length
// must then equal the product of dims exactly: a short file ("truncated") and trailing bytes
// ("trailing data") are both errors, as is a missing or unreadable file, or one that is not a
// regular file (a named pipe would block forever). A gzip file must be ONE gzip member whose
// trailer verifies (CRC-32 and length): a cut anywhere, a second member or any byte after the
// stream is an error; the trailer's length must equal the header plus the payload it promises,
// which is checked before the payload is read (a gzip bomb's false header fails at once).
// Memory: exactly what the header promises, reserved once the size is verified and touched only
// as bytes arrive.
IdxArray read_idx(const std::filesystem::path& path);

// Images as bytes, row-major [count, rows*cols], labels as bytes [count].
struct Dataset {
  std::vector<std::uint8_t> images;  // count x rows x cols bytes, unless `floats`
  // count x rows x cols float features (data/npz.h), used as given: make_batch copies them and
  // compute_normalization leaves them unscaled. `images` is then empty.
  std::vector<float> values;
  bool floats = false;
  std::vector<std::uint8_t> labels;
  std::size_t count = 0, rows = 0, cols = 0;
  std::string labels_file;  // where the labels came from (for messages; "" if not from a file)
  std::size_t features() const { return rows * cols; }
};

// Reads an images file (3 dims: count, rows, cols) and a labels file (1 dim: count); checks the
// counts agree -- from both headers, before either payload is read -- and each label < num_classes
// (the error names the index, the value and the range). num_classes outside 1..256 is a caller bug
// and throws std::invalid_argument.
Dataset load_idx_pair(const std::filesystem::path& images, const std::filesystem::path& labels,
                      int num_classes = 10);

// A data set's size as its files' headers give it, before any payload is read.
struct DatasetShape {
  std::size_t count = 0, rows = 0, cols = 0;
  std::string images_file;  // for messages
};
// The headers of an images file (3 dims), of an images and a labels file (counts agreeing), or
// of a split of an MNIST-style directory: every check load_idx_pair makes before it reads a
// payload, and nothing read beyond the headers. DataError as the loaders throw it.
DatasetShape peek_images(const std::filesystem::path& images);
DatasetShape peek_idx_pair(const std::filesystem::path& images,
                           const std::filesystem::path& labels);
// An images file alone (3 dims), without labels.
Dataset load_images(const std::filesystem::path& images);

// What identifies a data set's content: "<count>x<rows>x<cols> images crc32 <hex>, labels crc32
// <hex>" (zlib's CRC-32 over the bytes). A checkpoint keeps its data's, so that a resume on
// other data is refused.
std::string fingerprint(const Dataset& d);

struct TrainTest {
  Dataset train, test;
};

// Each function taking an MNIST-style directory below also takes an .npz archive in its place
// (data/npz.h decides which by is_npz_path and reads the archive), so every command that reads
// `--data` reads both.
//
// Loads a directory laid out like MNIST: train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each either plain or with ".gz" (the plain name
// wins if both exist, since it is usually the one a user unpacked on purpose). Missing files are
// a DataError naming the directory and every file name looked for. Train and test must have the
// same rows/cols, which is checked from the four headers before any payload is read.
TrainTest load_mnist_dir(const std::filesystem::path& dir, int num_classes = 10);

// One split of such a directory (train-* or t10k-*): `eval` needs only the test split.
enum class MnistSplit { kTrain, kTest };
Dataset load_mnist_split(const std::filesystem::path& dir, MnistSplit split, int num_classes = 10);
DatasetShape peek_mnist_split(const std::filesystem::path& dir, MnistSplit split);

// Every file name load_mnist_dir may read in `dir` (both splits, plain and .gz), whether it
// exists or not: the inputs an output must never replace (core/atomic_file.h).
std::vector<std::filesystem::path> mnist_files(const std::filesystem::path& dir);

// Debian's dataset-fashion-mnist location: /usr/share/datasets/fashion-mnist
std::filesystem::path default_data_dir();

}  // namespace dropkit::data
