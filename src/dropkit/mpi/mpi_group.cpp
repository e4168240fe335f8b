#include "dropkit/mpi/mpi_group.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace dropkit::mpi {
namespace {

void check(int status, const char* what) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw std::runtime_error(std::string("MPI: ") + what + " failed: " + std::string(text, length));
}

}  // namespace

Session::Session(int& argc, char**& argv) {
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
}

Session::~Session() {
  MPI_Finalize();
}

MpiGroup::MpiGroup(MPI_Comm comm) {
  check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiGroup::~MpiGroup() {
  MPI_Comm_free(&comm_);
}

void MpiGroup::all_gather(const void* mine, std::size_t bytes, void* all) {
  // MPI counts are ints: larger messages go in pieces, each gathered into a buffer and moved to
  // its place in every process's block.
  const std::size_t piece = static_cast<std::size_t>(INT_MAX) / static_cast<std::size_t>(size_);
  const bool in_place =
      mine == static_cast<const char*>(all) + static_cast<std::size_t>(rank_) * bytes;
  if (bytes <= piece) {
    check(MPI_Allgather(in_place ? MPI_IN_PLACE : mine, static_cast<int>(bytes), MPI_BYTE, all,
                        static_cast<int>(bytes), MPI_BYTE, comm_),
          "MPI_Allgather");
    return;
  }
  std::vector<char> buffer(piece * static_cast<std::size_t>(size_));
  for (std::size_t at = 0; at < bytes; at += piece) {
    const std::size_t n = std::min(piece, bytes - at);
    check(MPI_Allgather(static_cast<const char*>(mine) + at, static_cast<int>(n), MPI_BYTE,
                        buffer.data(), static_cast<int>(n), MPI_BYTE, comm_),
          "MPI_Allgather");
    for (int r = 0; r < size_; ++r) {
      std::memcpy(static_cast<char*>(all) + static_cast<std::size_t>(r) * bytes + at,
                  buffer.data() + static_cast<std::size_t>(r) * n, n);
    }
  }
}

void MpiGroup::send_recv(int partner, const void* send, std::size_t send_bytes, void* recv,
                         std::size_t recv_bytes) {
  // In pieces of at most INT_MAX bytes, the same on both sides.
  constexpr std::size_t kPiece = INT_MAX;
  for (std::size_t at = 0; at < std::max(send_bytes, recv_bytes); at += kPiece) {
    const std::size_t s = at < send_bytes ? std::min(kPiece, send_bytes - at) : 0;
    const std::size_t r = at < recv_bytes ? std::min(kPiece, recv_bytes - at) : 0;
    check(MPI_Sendrecv(static_cast<const char*>(send) + (s ? at : 0), static_cast<int>(s), MPI_BYTE,
                       partner, 0, static_cast<char*>(recv) + (r ? at : 0), static_cast<int>(r),
                       MPI_BYTE, partner, 0, comm_, MPI_STATUS_IGNORE),
          "MPI_Sendrecv");
  }
}

void MpiGroup::abort(int code) const {
  MPI_Abort(comm_, code);
  std::_Exit(code);  // MPI_Abort does not return; should it, end this process at least
}

}  // namespace dropkit::mpi
