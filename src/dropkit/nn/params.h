// ParamArena: every trainable parameter of a model in one contiguous buffer, their gradients in a
// second one of the same layout, and the buffers (non-trainable state) in a third. Layers hold
// views; optimizers, max-norm and checkpoints are flat loops over the arena (llm.c's habit).
//
// Names are stable and readable: "<prefix>.<spec name>", where the model gives each layer the
// prefix "layers.<index>.<kind>", e.g. "layers.3.dense.weight". They name tensors in checkpoints.
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
    std::string name;  // "<prefix>.<spec name>", e.g. "layers.1.dense.weight"
    ParamSpec spec;
    std::size_t offset;  // in floats, into values() and grads() (buffers: into buffers())
    std::size_t numel() const { return spec.shape.numel(); }
    std::size_t rows() const;  // shape[0] (1 for a scalar): the unit a GradientSink sees
  };

  // Lays out the parameters and buffers of `layers` (in order) and binds each layer's views.
  // prefixes[i] names layer i (default: its index). With last_is_output (a whole network, as
  // Sequential builds it), the last layer with trainable parameters is the output layer, whose
  // units are not hidden: max-norm is for hidden units only (docs/spec.md section 3), so its
  // kMaxNormRows flags are dropped.
  explicit ParamArena(const std::vector<Layer*>& layers,
                      const std::vector<std::string>& prefixes = {}, bool last_is_output = false);
  ParamArena(const ParamArena&) = delete;
  ParamArena& operator=(const ParamArena&) = delete;

  // Trainable parameters, in layer order.
  const std::vector<Entry>& entries() const { return entries_; }
  std::size_t size() const { return values_.numel(); }
  std::span<float> values() { return values_.span(); }
  std::span<const float> values() const { return values_.span(); }
  std::span<float> grads() { return grads_.span(); }
  void zero_grads();

  // Buffers, in layer order.
  const std::vector<Entry>& buffer_entries() const { return buffer_entries_; }
  std::span<float> buffers() { return buffers_.span(); }
  std::span<const float> buffers() const { return buffers_.span(); }

  // The values of a trainable parameter or a buffer.
  std::span<float> values_of(const Entry& e);
  std::span<const float> values_of(const Entry& e) const;
  // The index in entries() of the trainable parameter whose values start at `param` (how a
  // gradient sink or a penalty names its parameter); std::invalid_argument for a pointer outside
  // values() or inside a parameter.
  std::size_t entry_at(const float* param) const;

 private:
  std::vector<Entry> entries_, buffer_entries_;
  Tensor values_, grads_, buffers_;
};

}  // namespace dropkit::nn
