// The processes this dropkit runs among: itself alone, or the processes of an MPI job
// (`mpirun -np 4 dropkit train ...`), which `train` trains one model with, data-parallel
// (src/dropkit/train/distributed.h). MPI is initialised only when an MPI launcher started the
// process, so a plain run is exactly a plain run.
#pragma once

#include <memory>

#include "dropkit/parallel/process_group.h"

namespace dropkit::cli {

class Processes {
 public:
  // Joins the MPI job that started this process, if one did (throws std::runtime_error when
  // one did but this dropkit was built without MPI, and the job has more than one process).
  Processes(int& argc, char**& argv);
  ~Processes();

  // The job's processes; nullptr when this process runs alone (a job of one included).
  parallel::ProcessGroup* group() const;
  int rank() const { return group() ? group()->rank() : 0; }
  int size() const { return group() ? group()->size() : 1; }
  // Threads per process when --threads is not given: the machine's cores shared by the job's
  // processes on it.
  int default_threads() const;
  // Ends every process of the job with `code` (one process's error while the others wait in a
  // collective); returns `code` when this process runs alone.
  int abort_all(int code) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The processes of this run of the CLI (set by main).
const Processes& processes();
void set_processes(const Processes* p);

}  // namespace dropkit::cli
