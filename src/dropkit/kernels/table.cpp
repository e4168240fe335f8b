#include "dropkit/kernels/table.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "dropkit/kernels/generic.h"

namespace dropkit::kernels {
namespace scalar {
extern const KernelTable kTable;
}
namespace avx2 {
extern const KernelTable kTable;
}
namespace avx512 {
extern const KernelTable kTable;
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  }
  return false;
}

const KernelTable& kernel_table(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::invalid_argument(fmt::format("this CPU does not support {}", isa_name(isa)));
  }
  switch (isa) {
    case Isa::kAvx512:
      return avx512::kTable;
    case Isa::kAvx2:
      return avx2::kTable;
    case Isa::kScalar:
      break;
  }
  return scalar::kTable;
}

namespace {
Isa best_isa() {
  if (const char* env = std::getenv("DROPKIT_ISA")) {
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (isa_name(isa) == env) {
        if (isa_supported(isa)) return isa;
        break;
      }
    }
  }
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kScalar;
}
std::atomic<Isa> g_active{best_isa()};
}  // namespace

const KernelTable& active_kernels() {
  return kernel_table(g_active.load(std::memory_order_relaxed));
}
Isa active_isa() {
  return g_active.load(std::memory_order_relaxed);
}
void set_active_isa(Isa isa) {
  kernel_table(isa);  // throws if unsupported
  g_active.store(isa, std::memory_order_relaxed);
}

}  // namespace dropkit::kernels
