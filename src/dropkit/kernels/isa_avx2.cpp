// The avx2 instantiation of the kernels (compile flags set in CMakeLists.txt).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "dropkit/kernels/generic.h"
#include "dropkit/kernels/simd.h"
#include "dropkit/kernels/table.h"

namespace dropkit::kernels::avx2 {
using S = simd::Avx2;
#include "dropkit/kernels/isa_masks.inc"
#include "dropkit/kernels/isa_optimizer.inc"
#include "dropkit/kernels/isa_table.inc"
}  // namespace dropkit::kernels::avx2
