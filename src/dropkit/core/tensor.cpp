#include "dropkit/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include <fmt/format.h>

namespace dropkit {

Shape::Shape(std::initializer_list<std::int64_t> dims) : Shape(std::vector<std::int64_t>(dims)) {}

Shape::Shape(std::vector<std::int64_t> dims) : dims_(std::move(dims)) {
  for (auto d : dims_) {
    if (d < 0)
      throw std::invalid_argument(fmt::format("Shape: negative extent {} in {}", d, str()));
  }
}

std::size_t Shape::numel() const {
  std::size_t n = 1;
  for (auto d : dims_) n *= static_cast<std::size_t>(d);
  return n;
}

std::string Shape::str() const {
  // (Not fmt::join: with fmt 9, GCC 12 -O3 warns falsely inside its spec parser.)
  std::string s = "[";
  for (std::size_t i = 0; i < dims_.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(dims_[i]);
  }
  return s + "]";
}

std::size_t Shape::row_size() const {
  // The product of the later axes, also for a batch of no examples (a data-parallel process
  // may hold no rows of a last batch).
  std::size_t n = 1;
  for (std::size_t i = 1; i < dims_.size(); ++i) n *= static_cast<std::size_t>(dims_[i]);
  return n;
}

Shape Shape::with_batch(std::int64_t n) const {
  std::vector<std::int64_t> d{n};
  d.insert(d.end(), dims_.begin(), dims_.end());
  return Shape(std::move(d));
}

Shape Shape::example() const {
  if (dims_.empty()) throw std::invalid_argument("Shape: a scalar has no per-example shape");
  return Shape(std::vector<std::int64_t>(dims_.begin() + 1, dims_.end()));
}

void Tensor::Free::operator()(float* p) const {
  std::free(p);
}

Tensor::Tensor(Shape shape) {
  resize(std::move(shape));
}

Tensor::Tensor(Shape shape, std::span<const float> values) : Tensor(std::move(shape)) {
  if (values.size() != numel_) {
    throw std::invalid_argument(fmt::format("Tensor: {} values given for shape {} ({} elements)",
                                            values.size(), shape_.str(), numel_));
  }
  if (numel_ != 0) std::memcpy(data_.get(), values.data(), numel_ * sizeof(float));
}

void Tensor::resize(Shape shape) {
  const std::size_t n = shape.numel();
  if (n > capacity_) {
    // Round up to whole cache lines, as aligned_alloc requires a multiple of the alignment.
    const std::size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (p == nullptr) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    data_.reset(p);
    capacity_ = bytes / sizeof(float);
  }
  shape_ = std::move(shape);
  numel_ = n;
}

void Tensor::reshape(Shape shape) {
  if (shape.numel() != numel_) {
    throw std::invalid_argument(fmt::format("Tensor: cannot reshape {} ({} elements) to {} ({})",
                                            shape_.str(), numel_, shape.str(), shape.numel()));
  }
  shape_ = std::move(shape);
}

Tensor Tensor::clone() const {
  return Tensor(shape_, span());
}

}  // namespace dropkit
