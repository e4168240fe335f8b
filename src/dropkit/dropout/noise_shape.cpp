#include "dropkit/dropout/noise_shape.h"

#include <charconv>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/core/options.h"
#include "dropkit/kernels/table.h"

namespace dropkit::dropout {

std::vector<int> parse_shared_axes(const std::string& text) {
  std::vector<int> axes;
  if (text.empty()) return axes;
  auto fail = [&](const std::string& why) {
    return std::invalid_argument(
        fmt::format("shared_axes '{}': {} (axes after the example axis joined by '+', e.g. 2+3 for "
                    "[N, C, H, W] -> one value per channel)",
                    text, why));
  };
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find('+', start), text.size());
    int axis = 0;
    const auto [p, ec] = std::from_chars(text.data() + start, text.data() + end, axis);
    if (start == end || ec != std::errc() || p != text.data() + end) {
      throw fail(fmt::format("'{}' is not an axis", text.substr(start, end - start)));
    }
    if (axis < 1) throw fail("axis 0 holds the examples, which never share noise");
    if (!axes.empty() && axis <= axes.back()) throw fail("axes must ascend without repeats");
    axes.push_back(axis);
    start = end + 1;
  }
  return axes;
}

std::string shared_axes_text(const std::vector<int>& axes) {
  std::vector<std::string> parts;
  for (int a : axes) parts.push_back(std::to_string(a));
  return join(parts, "+");
}

Shape noise_shape(const Shape& input, const std::vector<int>& shared_axes) {
  std::vector<std::int64_t> dims = input.dims();
  for (int a : shared_axes) {
    if (static_cast<std::size_t>(a) >= dims.size()) {
      throw std::invalid_argument(
          fmt::format("shared axis {} is beyond the input {} (axes 1 to {} follow the examples)", a,
                      input.str(), static_cast<int>(dims.size()) - 1));
    }
    dims[static_cast<std::size_t>(a)] = 1;
  }
  return Shape(std::move(dims));
}

namespace detail {

void store_fence() {
  kernels::active_kernels().store_fence();
}

Walk plan_walk(const Shape& input, const Shape& noise) {
  Walk w;
  for (std::size_t a = 1; a < input.rank(); ++a) {
    const auto extent = static_cast<std::size_t>(input[a]);
    if (extent == 1) continue;  // either way: nothing to walk
    const bool shared = noise[a] == 1;
    if (!w.extent.empty() && w.shared.back() == shared) {
      w.extent.back() *= extent;
    } else {
      w.extent.push_back(extent);
      w.shared.push_back(shared);
    }
  }
  if (w.extent.empty()) {  // one element per example
    w.extent.push_back(1);
    w.shared.push_back(false);
  }
  const std::size_t k = w.extent.size();
  w.in_stride.assign(k, 1);
  w.noise_stride.assign(k, 1);
  for (std::size_t a = k - 1; a-- > 0;) {
    w.in_stride[a] = w.in_stride[a + 1] * w.extent[a + 1];
    w.noise_stride[a] = w.noise_stride[a + 1] * (w.shared[a + 1] ? 1 : w.extent[a + 1]);
  }
  w.example_size = input.row_size();
  w.noise_example_size = noise.row_size();
  return w;
}

}  // namespace detail
}  // namespace dropkit::dropout
