// What the machine can hold: requests that cannot fit are refused with a message up front,
// rather than ending in std::bad_alloc (or the OOM killer) after minutes of work.
#pragma once

#include <cstdint>
#include <string>

namespace dropkit {

// The machine's physical memory in bytes (sysconf), or 0 if it cannot be told.
std::uint64_t physical_memory_bytes();

// Throws std::invalid_argument("<what> needs about X GiB, more than the Y GiB of memory this
// machine has") when `bytes` exceeds the physical memory; does nothing if that is unknown.
void check_fits_in_memory(std::uint64_t bytes, const std::string& what);

}  // namespace dropkit
