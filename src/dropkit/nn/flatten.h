// Flatten, kind "flatten": [N, d1, d2, ...] -> [N, d1 * d2 * ...], the same elements in the same
// (row-major) order. No config, no parameters. Backward gives dy the input's shape.
//
// Dense layers read any input as [N, features] already (nn/linear.h), so a flatten is needed only
// where a layer cares about rank; it copies (one pass over the activations), which keeps the
// Layer contract simple: every layer writes its own output buffer.
#pragma once

#include "dropkit/nn/layer.h"
#include "dropkit/nn/layer_kind.h"

namespace dropkit::nn {

class Flatten : public Layer {
 public:
  static constexpr const char* kKind = "flatten";
  // This kind's registry entry: options, text form, factory (model/registry.cpp lists them).
  static LayerKind registration();
  std::string kind() const override { return kKind; }
  nlohmann::json config() const override { return nlohmann::json::object(); }
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const Context& ctx) override;
  void backward(const Tensor& dy, Tensor& dx) override;

 private:
  bool has_train_forward_ = false;
  Shape in_shape_, out_shape_;
};

}  // namespace dropkit::nn
