#include "dropkit/parallel/process_group.h"

#include <cstdlib>
#include <initializer_list>
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

Launch launch_from_environment() {
  const auto number = [](const char* name) {
    const char* v = std::getenv(name);
    return v ? std::atoi(v) : 0;
  };
  Launch l;
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"}) {
    l.launched = l.launched || std::getenv(name) != nullptr;
  }
  // The first variable that names a positive number, of each pair.
  const auto first = [&](std::initializer_list<const char*> names, int otherwise) {
    for (const char* name : names) {
      if (const int n = number(name); n > 0) return n;
    }
    return otherwise;
  };
  l.size = first({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}, 0);
  l.local = first({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}, 1);
  return l;
}

}  // namespace dropkit::parallel
