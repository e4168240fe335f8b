// The safetensors file format, used for model checkpoints so that they can be read by other tools
// (PyTorch, JAX, the `safetensors` Python package) and inspected without running dropkit.
//
// Layout: an 8-byte little-endian u64 N, then N bytes of JSON header, then the data section. The
// header maps each tensor name to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}
// (byte offsets relative to the start of the data section), plus an optional "__metadata__"
// object of string -> string. Only F32 tensors are supported because dropkit has no other dtype.
//
// Decoding trusts nothing: every inconsistency is a FormatError naming the file and the problem,
// and nothing is allocated for a tensor before the whole header has been validated, so a corrupt
// or truncated checkpoint fails loudly instead of loading garbage or crashing.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "dropkit/core/tensor.h"

namespace dropkit::model {

// A tensor to encode: a name, a row-major shape (empty for a scalar) and its values, not owned.
struct TensorView {
  std::string name;
  std::vector<std::int64_t> shape;
  std::span<const float> data;
};

// The bytes of a safetensors file holding `tensors` and `metadata`. Tensors are written in the
// given order, contiguous, and appear in the header in that order ("__metadata__" first, omitted
// when empty); the header is padded with spaces to a multiple of 8 bytes so the data section
// starts 8-byte aligned. Throws std::invalid_argument for a duplicate name, the reserved name
// "__metadata__", a negative dimension, a data size that does not match the shape, or a name or
// metadata string that is not valid UTF-8.
std::string encode_safetensors(const std::vector<TensorView>& tensors,
                               const std::map<std::string, std::string>& metadata);

struct Safetensors {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Tensor> tensors;
};

// Thrown for every problem with a safetensors file; the message is "<source>: <problem>".
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses and validates a whole safetensors file; `source` names the file in error messages.
// Rejected: fewer than 8 bytes; a header length beyond the remaining bytes or above 100 MB; a
// header that is not a JSON object; a tensor entry that is not an object, lacks dtype, shape or
// data_offsets, or has them with the wrong JSON types; a dtype other than F32; a negative
// dimension; data_offsets that are not begin <= end within the data section, or whose span is not
// 4 * (number of elements); tensors that overlap; bytes of the data section covered by no tensor
// (gaps between tensors as well as trailing bytes); metadata values that are not strings.
Safetensors decode_safetensors(std::string_view bytes, const std::string& source);

}  // namespace dropkit::model
