// Shape and Tensor: an owning, 64-byte aligned, row-major float32 array of any rank.
//
// A batch is a Tensor whose leading axis is the example: [N, features] for dense layers,
// [N, C, H, W] for images. reshape() changes the shape of the same elements in place (no copy,
// row-major order kept), which is all a flatten needs.
//
// Kernels take spans, not Tensors; a Tensor only owns memory and knows its shape. Alignment to
// 64 bytes keeps every row of a width that is a multiple of 16 on a cache-line and AVX-512
// boundary, but no kernel relies on it (all of them handle unaligned starts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace dropkit {

// A list of non-negative extents, row-major. An empty Shape is a scalar with one element.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims);
  explicit Shape(std::vector<std::int64_t> dims);

  std::size_t rank() const { return dims_.size(); }
  std::int64_t operator[](std::size_t axis) const { return dims_.at(axis); }
  const std::vector<std::int64_t>& dims() const { return dims_; }
  std::size_t numel() const;
  std::string str() const;  // "[128, 1024]"
  // Elements per index of the leading axis: numel() / dims[0] (numel() for a scalar; 0 when the
  // leading extent is 0).
  std::size_t row_size() const;
  // The same shape with a new leading extent, e.g. [1, 28, 28] -> [n, 1, 28, 28] via
  // with_batch(n) on the per-example shape.
  Shape with_batch(std::int64_t n) const;
  // All axes but the first: the per-example shape of a batch.
  Shape example() const;
  bool operator==(const Shape&) const = default;

 private:
  std::vector<std::int64_t> dims_;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape);  // zero-filled
  Tensor(Shape shape, std::span<const float> values);

  const Shape& shape() const { return shape_; }
  std::size_t numel() const { return numel_; }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  std::span<float> span() { return {data_.get(), numel_}; }
  std::span<const float> span() const { return {data_.get(), numel_}; }
  float& operator[](std::size_t i) { return data_[i]; }
  float operator[](std::size_t i) const { return data_[i]; }

  // Reuses the allocation when the element count does not grow: buffers that live across training
  // steps are resized every step, and a fresh allocation would page-fault on every write.
  void resize(Shape shape);
  // The same elements under another shape of equal element count; throws std::invalid_argument
  // naming both shapes otherwise.
  void reshape(Shape shape);

  Tensor clone() const;

 private:
  struct Free {
    void operator()(float* p) const;
  };
  Shape shape_;
  std::size_t numel_ = 0;
  std::size_t capacity_ = 0;
  std::unique_ptr<float[], Free> data_;
};

}  // namespace dropkit
