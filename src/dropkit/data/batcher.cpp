#include "dropkit/data/batcher.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/kernels/table.h"
#include "dropkit/rng/streams.h"

namespace dropkit::data {

Normalization compute_normalization(const Dataset& d, std::span<const std::uint32_t> rows) {
  if (d.floats) return {};  // float features are used as given
  const std::size_t f = d.features();
  std::uint64_t hist[256] = {};
  for (std::uint32_t r : rows) {
    const std::uint8_t* p = d.images.data() + static_cast<std::size_t>(r) * f;
    for (std::size_t i = 0; i < f; ++i) ++hist[p[i]];
  }
  double n = 0, sum = 0, sq = 0;
  for (int v = 0; v < 256; ++v) {
    const double x = v / 255.0, c = static_cast<double>(hist[v]);
    n += c;
    sum += c * x;
    sq += c * x * x;
  }
  if (n == 0) return {};
  const double mean = sum / n, var = std::max(0.0, sq / n - mean * mean);
  return {static_cast<float>(mean), static_cast<float>(var > 0 ? std::sqrt(var) : 1.0)};
}

Split split_train_val(std::size_t count, std::size_t val) {
  if (val >= count) {
    throw std::invalid_argument(
        fmt::format("validation size {} must be below the {} training examples", val, count));
  }
  Split s;
  s.train.resize(count - val);
  s.val.resize(val);
  std::iota(s.train.begin(), s.train.end(), 0u);
  std::iota(s.val.begin(), s.val.end(), static_cast<std::uint32_t>(count - val));
  return s;
}

std::vector<int> parse_class_list(const std::string& text, int num_classes) {
  std::vector<int> classes;
  if (text.empty()) return classes;
  const auto bad = [&](const std::string& why) {
    return std::invalid_argument(fmt::format(
        "class list '{}': {} (expected comma-separated class numbers in [0, {}], not all of "
        "them)",
        text, why, num_classes - 1));
  };
  std::size_t begin = 0;
  while (begin <= text.size()) {
    const std::size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    if (item.empty() || item.size() > 3 ||
        !std::all_of(item.begin(), item.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      throw bad("'" + item + "' is not a class number");
    }
    const int c = std::stoi(item);
    if (c >= num_classes) throw bad(fmt::format("{} is not a class", c));
    if (std::find(classes.begin(), classes.end(), c) != classes.end()) {
      throw bad(fmt::format("{} is named twice", c));
    }
    classes.push_back(c);
    begin = end + 1;
  }
  if (static_cast<int>(classes.size()) >= num_classes) throw bad("that leaves no class");
  std::sort(classes.begin(), classes.end());
  return classes;
}

std::string class_list_text(const std::vector<int>& classes) {
  std::string s;
  for (int c : classes) {
    if (!s.empty()) s += ',';
    s += std::to_string(c);
  }
  return s;
}

std::vector<std::uint32_t> rows_without(const Dataset& d, std::span<const std::uint32_t> rows,
                                        const std::vector<int>& classes) {
  std::vector<std::uint32_t> kept;
  kept.reserve(rows.size());
  for (std::uint32_t r : rows) {
    if (std::find(classes.begin(), classes.end(), d.labels.at(r)) == classes.end())
      kept.push_back(r);
  }
  return kept;
}

std::vector<std::uint32_t> epoch_permutation(std::span<const std::uint32_t> rows,
                                             std::uint64_t seed, std::uint64_t epoch) {
  std::vector<std::uint32_t> keys(rows.size());
  kernels::active_kernels().fill_bits({seed, rng::kShuffleStream, epoch}, 0, keys.data(),
                                      keys.size());
  std::vector<std::uint64_t> order(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) order[i] = (std::uint64_t{keys[i]} << 32) | i;
  std::sort(order.begin(), order.end());  // ties in the key fall back to the position
  std::vector<std::uint32_t> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) out[i] = rows[order[i] & 0xFFFFFFFFu];
  return out;
}

void make_batch(const Dataset& d, std::span<const std::uint32_t> rows, const Normalization& norm,
                Tensor& x, std::vector<std::uint8_t>& labels) {
  const std::size_t f = d.features();
  x.resize(Shape{static_cast<std::int64_t>(rows.size()), 1, static_cast<std::int64_t>(d.rows),
                 static_cast<std::int64_t>(d.cols)});
  labels.resize(rows.size());
  // One table lookup per pixel: the 256 possible values, standardized once.
  float table[256];
  for (int v = 0; v < 256; ++v) table[v] = (static_cast<float>(v) / 255.0f - norm.mean) / norm.std;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    float* out = x.data() + i * f;
    if (d.floats) {
      const float* p = d.values.data() + static_cast<std::size_t>(rows[i]) * f;
      std::copy(p, p + f, out);
    } else {
      const std::uint8_t* p = d.images.data() + static_cast<std::size_t>(rows[i]) * f;
      for (std::size_t j = 0; j < f; ++j) out[j] = table[p[j]];
    }
    labels[i] = d.labels.empty() ? 0 : d.labels[rows[i]];
  }
}

void augment_batch(Tensor& x, std::span<const std::uint32_t> rows, const Augmentation& a,
                   const rng::StreamKey& key, float fill) {
  if (!a.any()) return;
  const Shape& s = x.shape();
  const auto h = static_cast<std::int64_t>(s[s.rank() - 2]),
             w = static_cast<std::int64_t>(s[s.rank() - 1]);
  std::vector<float> src(static_cast<std::size_t>(h * w));
  const std::uint32_t span = 2 * static_cast<std::uint32_t>(a.shift) + 1;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::uint32_t word = rng::bits_at(key, rows[i]);
    const bool flip = a.flip && (word & 1u) != 0;
    // Each offset from its own byte: uniform over 2 shift + 1 values up to a bias of at most 2^-4
    // for shift <= 8 (256 mod 17 = 1), which a data augmentation can carry.
    const std::int64_t dy = static_cast<std::int64_t>(((word >> 8) & 0xFFu) % span) - a.shift;
    const std::int64_t dx = static_cast<std::int64_t>(((word >> 16) & 0xFFu) % span) - a.shift;
    if (!flip && dy == 0 && dx == 0) continue;
    float* img = x.data() + i * static_cast<std::size_t>(h * w);
    std::copy(img, img + h * w, src.begin());
    for (std::int64_t r = 0; r < h; ++r) {
      for (std::int64_t c = 0; c < w; ++c) {
        // Output (r, c) shows input (r - dy, c' - dx), c' the column after the flip.
        const std::int64_t sr = r - dy, sc0 = c - dx;
        const std::int64_t sc = flip ? w - 1 - sc0 : sc0;
        img[r * w + c] = (sr >= 0 && sr < h && sc0 >= 0 && sc0 < w)
                             ? src[static_cast<std::size_t>(sr * w + sc)]
                             : fill;
      }
    }
  }
}

}  // namespace dropkit::data
