// The number format of matrix products' inputs (kernels/gemm.h); accumulation is fp32 in both.
#pragma once

#include <cstdint>
#include <string_view>

namespace dropkit::kernels {

enum class Precision { kF32, kBf16 };
std::string_view precision_name(Precision p);  // "f32", "bf16"
// std::invalid_argument naming the valid values unless s is one of them.
Precision parse_precision(std::string_view s);

using Bf16 = std::uint16_t;  // the upper half of an fp32's bits (kernels/gemm.h: to_bf16)

}  // namespace dropkit::kernels
