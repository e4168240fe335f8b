// MPI for a data-parallel run: the job's processes as a parallel::ProcessGroup. Built into the
// separate library dropkit_mpi when CMake finds MPI (option DROPKIT_WITH_MPI); the core library
// never includes mpi.h.
//
//   dropkit::mpi::Session session(argc, argv);    // MPI_Init ... MPI_Finalize
//   dropkit::mpi::MpiGroup group(MPI_COMM_WORLD);
//   dropkit::train::Trainer trainer(config, data, pool, &group);
#pragma once

#include <mpi.h>

#include <cstddef>

#include "dropkit/parallel/process_group.h"

namespace dropkit::mpi {

// MPI_Init_thread (MPI_THREAD_FUNNELED: only the thread that made it calls MPI) on
// construction, MPI_Finalize on destruction. Whether to make one at all:
// parallel::launch_from_environment().
class Session {
 public:
  Session(int& argc, char**& argv);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
};

class MpiGroup final : public parallel::ProcessGroup {
 public:
  // A duplicate of `comm`, whose errors are returned (and thrown as std::runtime_error), not
  // fatal.
  explicit MpiGroup(MPI_Comm comm);
  ~MpiGroup() override;
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_gather(const void* mine, std::size_t bytes, void* all) override;
  void send_recv(int partner, const void* send, std::size_t send_bytes, void* recv,
                 std::size_t recv_bytes) override;
  // Ends every process of the job with `code` (MPI_Abort): for an error in one process while
  // the others wait in a collective.
  [[noreturn]] void abort(int code) const;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace dropkit::mpi
