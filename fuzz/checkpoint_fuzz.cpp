// libFuzzer harness: the checkpoint loader (train/checkpoint.h) on arbitrary bytes. It must
// return a complete checkpoint or throw CheckpointError naming the source; nothing else.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dropkit/train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto ck = dropkit::train::read_checkpoint_bytes(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-input");
    if (!ck.model) std::abort();
  } catch (const dropkit::train::CheckpointError& e) {
    if (std::string(e.what()).find("fuzz-input") == std::string::npos) std::abort();
  }
  return 0;
}
