#include "dropkit/core/memory.h"

#include <unistd.h>

#include <stdexcept>

#include <fmt/format.h>

namespace dropkit {

std::uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
}

void check_fits_in_memory(std::uint64_t bytes, const std::string& what) {
  const std::uint64_t have = physical_memory_bytes();
  if (have == 0 || bytes <= have) return;
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  throw std::invalid_argument(
      fmt::format("{} needs about {:.1f} GiB, more than the {:.1f} GiB of memory this machine has",
                  what, static_cast<double>(bytes) / kGiB, static_cast<double>(have) / kGiB));
}

}  // namespace dropkit
