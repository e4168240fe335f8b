#include "dropkit/parallel/process_group.h"

#include <string>
#include <vector>

namespace dropkit::parallel {

PeerFailed::PeerFailed(int rank)
    : std::runtime_error("process " + std::to_string(rank) + " of the run failed"), rank_(rank) {}

void stop_together(ProcessGroup& group, std::exception_ptr error) {
  const unsigned char mine = error ? 1 : 0;
  std::vector<unsigned char> all(static_cast<std::size_t>(group.size()));
  group.all_gather(&mine, 1, all.data());
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (all[r] == 0) continue;
    if (static_cast<int>(r) == group.rank()) std::rethrow_exception(error);
    throw PeerFailed(static_cast<int>(r));
  }
}

}  // namespace dropkit::parallel
