// Writing IDX files in tests: the byte layout (magic, big-endian dimensions, payload), plain or
// gzip, and a small synthetic classification data set written as an MNIST-style directory.
#pragma once

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <vector>

#include "dropkit/data/idx.h"

namespace dropkit::test {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

inline Bytes header(std::uint8_t type, const std::vector<std::uint32_t>& dims) {
  Bytes out = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (const std::uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      out.push_back(static_cast<std::uint8_t>(d >> shift));
    }
  }
  return out;
}

inline Bytes idx(const std::vector<std::uint32_t>& dims, const Bytes& payload) {
  Bytes out = header(0x08, dims);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

inline void write_plain(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline void write_gz(const fs::path& path, const Bytes& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  ASSERT_NE(gz, nullptr) << path;
  if (!bytes.empty()) {
    EXPECT_EQ(gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(gz), Z_OK) << path;
}

// A learnable toy problem: `count` images of side x side pixels in `classes` classes; class c
// lights up its own band of rows, with deterministic noise on top.
inline data::Dataset synthetic_dataset(std::size_t count, std::size_t side, int classes,
                                       std::uint32_t seed) {
  data::Dataset d;
  d.count = count;
  d.rows = d.cols = side;
  d.images.resize(count * side * side);
  d.labels.resize(count);
  std::uint32_t state = seed * 2654435761u + 7u;
  for (std::size_t i = 0; i < count; ++i) {
    const int c = static_cast<int>(i % static_cast<std::size_t>(classes));
    d.labels[i] = static_cast<std::uint8_t>(c);
    for (std::size_t p = 0; p < side * side; ++p) {
      state = state * 1664525u + 1013904223u;
      const std::size_t band = (p / side) * static_cast<std::size_t>(classes) / side;
      const int base = band == static_cast<std::size_t>(c) ? 160 : 40;
      d.images[i * side * side + p] = static_cast<std::uint8_t>(base + (state >> 26));
    }
  }
  return d;
}

// Writes the four MNIST file names (plain IDX) into dir.
inline void write_mnist_dir(const fs::path& dir, const data::TrainTest& t) {
  fs::create_directories(dir);
  auto put = [&](const char* images, const char* labels, const data::Dataset& d) {
    const auto n = static_cast<std::uint32_t>(d.count);
    write_plain(
        dir / images,
        idx({n, static_cast<std::uint32_t>(d.rows), static_cast<std::uint32_t>(d.cols)}, d.images));
    write_plain(dir / labels, idx({n}, d.labels));
  };
  put("train-images-idx3-ubyte", "train-labels-idx1-ubyte", t.train);
  put("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", t.test);
}

}  // namespace dropkit::test
