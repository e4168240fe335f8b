#include "processes.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "measure.h"

#ifdef DROPKIT_WITH_MPI
#include "dropkit/mpi/mpi_group.h"
#endif

namespace dropkit::cli {

struct Processes::Impl {
#ifdef DROPKIT_WITH_MPI
  std::unique_ptr<mpi::Session> session;
  std::unique_ptr<mpi::MpiGroup> group;
#endif
  int local = 1;
};

Processes::Processes([[maybe_unused]] int& argc, [[maybe_unused]] char**& argv)
    : impl_(std::make_unique<Impl>()) {
  const parallel::Launch launch = parallel::launch_from_environment();
#ifdef DROPKIT_WITH_MPI
  if (!launch.launched) return;
  impl_->session = std::make_unique<mpi::Session>(argc, argv);
  auto group = std::make_unique<mpi::MpiGroup>(MPI_COMM_WORLD);
  if (group->size() > 1) {
    impl_->group = std::move(group);
    impl_->local = launch.local;
  }
#else
  if (launch.size > 1) {
    throw std::runtime_error(
        "started by an MPI launcher as one of " + std::to_string(launch.size) +
        " processes, but this dropkit was built without MPI (install libopenmpi-dev and "
        "rebuild; docs/distributed.md); each process would train on its own");
  }
#endif
}

Processes::~Processes() = default;

parallel::ProcessGroup* Processes::group() const {
#ifdef DROPKIT_WITH_MPI
  return impl_->group.get();
#else
  return nullptr;
#endif
}

int Processes::default_threads() const {
  return std::max(1, resolve_threads(0) / std::max(1, impl_->local));
}

int Processes::abort_all(int code) const {
#ifdef DROPKIT_WITH_MPI
  if (impl_->group) impl_->group->abort(code);
#endif
  return code;
}

namespace {
const Processes* current = nullptr;
}  // namespace

const Processes& processes() {
  if (current == nullptr) throw std::logic_error("cli::processes() before main set it");
  return *current;
}
void set_processes(const Processes* p) {
  current = p;
}

}  // namespace dropkit::cli
