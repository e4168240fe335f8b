// The data sets built from IDX files (data/idx.h): an images file alone or with its labels,
// peeked at (headers only) or loaded, the splits of an MNIST-style directory such as Debian's
// Fashion-MNIST (or an .npz archive in its place: data/npz.h), and a data set's fingerprint. The
// files are read by data/idx_reader.h.
#include "dropkit/data/idx.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "dropkit/data/byte_source.h"
#include "dropkit/data/idx_reader.h"
#include "dropkit/data/npz.h"

namespace dropkit::data {
namespace {

namespace fs = std::filesystem;

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
  if (is_npz_path(dir)) return peek_npz_split(dir, split);
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
  if (is_npz_path(dir)) return load_npz_split(dir, split, num_classes);
  const auto files = split_files(dir, split);
  return load_idx_pair(files[0], files[1], num_classes);
}

TrainTest load_mnist_dir(const std::filesystem::path& dir, int num_classes) {
  if (is_npz_path(dir)) return load_npz(dir, num_classes);
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
  // Float features by their values' bytes (little-endian float32, as the machines dropkit runs
  // on), images by theirs.
  const std::uint32_t features = d.floats
                                     ? crc32_of(d.values.data(), d.values.size() * sizeof(float))
                                     : crc32_of(d.images.data(), d.images.size());
  char buf[160];
  std::snprintf(buf, sizeof buf, "%zux%zux%zu %s crc32 %08x, labels crc32 %08x", d.count, d.rows,
                d.cols, d.floats ? "float32 features" : "images", features,
                crc32_of(d.labels.data(), d.labels.size()));
  return buf;
}

std::vector<std::filesystem::path> mnist_files(const std::filesystem::path& dir) {
  if (is_npz_path(dir)) return {dir};
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
