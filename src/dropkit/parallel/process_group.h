// ProcessGroup: the processes that train one model together, data-parallel
// (train/distributed.h), seen through the two exchanges of bytes the library needs. An MPI
// communicator is one (dropkit/mpi/mpi_group.h, built when MPI is found); the tests also use
// threads of one process.
//
// The library never asks a group for a floating-point reduction: it moves bytes and adds them
// itself, in one fixed order (kernels/leaves.h), so the bits do not depend on the transport, its
// algorithms or the process count.
#pragma once

#include <cstddef>
#include <exception>
#include <stdexcept>

namespace dropkit::parallel {

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every process's `bytes` bytes at `mine`, in rank order, into `all` (size() * bytes bytes);
  // `mine` may be this process's own place in `all` (all + rank() * bytes). A collective: every
  // process calls it, in the same order, with the same `bytes`. Throws std::runtime_error when the
  // transport fails.
  virtual void all_gather(const void* mine, std::size_t bytes, void* all) = 0;
  // Sends `send_bytes` bytes to process `partner` and receives `recv_bytes` bytes from it, at
  // once. Every process of the group calls it together (each with its own partner, pairs
  // matched: a's partner is b exactly when b's is a), so it is a collective too.
  virtual void send_recv(int partner, const void* send, std::size_t send_bytes, void* recv,
                         std::size_t recv_bytes) = 0;
};

// Thrown by stop_together in the processes whose own setup went well, when another's failed:
// that one reports the error; these should exit with the same status and say nothing more.
class PeerFailed : public std::runtime_error {
 public:
  explicit PeerFailed(int rank);
  int rank() const { return rank_; }

 private:
  int rank_;
};

// A collective for the end of a run's setup, so that its processes stop together, with one
// message, on an error only some of them saw (a directory one of them could not lock, a file
// one could not read): every process passes the exception its setup threw, or none. Returns when
// no process failed; otherwise the first failing process rethrows its own exception and the
// others throw PeerFailed.
void stop_together(ProcessGroup& group, std::exception_ptr error);

// One step of a run's setup: fn(), then, with a group, stop_together with what fn threw (every
// process calls it). Without a group, fn's exception propagates as it is.
template <class Fn>
void run_together(ProcessGroup* group, Fn&& fn) {
  if (group == nullptr) {
    fn();
    return;
  }
  std::exception_ptr error;
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
  stop_together(*group, error);
}

// What an MPI launcher (mpirun, mpiexec, srun with PMI) tells a process in its environment, read
// before MPI is initialised, so that a plain run never initialises it.
struct Launch {
  bool launched = false;  // an MPI launcher started this process
  int size = 0;           // the job's processes, where the launcher says (0: it does not)
  int local = 1;          // the job's processes on this machine (1 where it does not say)
};
Launch launch_from_environment();

}  // namespace dropkit::parallel
