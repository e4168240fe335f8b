// ParamArena: every parameter of a model in one contiguous buffer, gradients in a second one of
// the same layout. Layers hold views; optimizers, max-norm and checkpoints are flat loops over
// the arena (llm.c's habit), and a checkpoint is the buffer plus the table of entries.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dropkit/core/tensor.h"
#include "dropkit/nn/layer.h"

namespace dropkit::nn {

class ParamArena {
 public:
  struct Entry {
    std::string name;  // "<layer index>.<param name>", e.g. "1.weight"
    ParamSpec spec;
    std::size_t offset;  // in floats, into values() and grads()
    std::size_t numel() const { return spec.shape.numel(); }
  };

  // Lays out the parameters of `layers` (in order) and binds each layer's views.
  explicit ParamArena(const std::vector<Layer*>& layers);
  ParamArena(const ParamArena&) = delete;
  ParamArena& operator=(const ParamArena&) = delete;

  const std::vector<Entry>& entries() const { return entries_; }
  std::size_t size() const { return values_.numel(); }
  std::span<float> values() { return values_.span(); }
  std::span<const float> values() const { return values_.span(); }
  std::span<float> grads() { return grads_.span(); }
  void zero_grads();

 private:
  std::vector<Entry> entries_;
  Tensor values_, grads_;
};

}  // namespace dropkit::nn
