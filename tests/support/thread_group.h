// A parallel::ProcessGroup of threads in one process: the data-parallel tests run P "processes"
// without MPI (the MPI ones, tests/cli/mpi_test.sh, run the real thing).
#pragma once

#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dropkit/parallel/process_group.h"

namespace dropkit::test {

class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), slots_(static_cast<std::size_t>(size)) {}

  // fn(group) on `size` threads, each with its own member of the group; rethrows the first
  // exception any of them threw (one that throws makes the others' next all_gather throw, as a
  // failed MPI process ends the job).
  void run(const std::function<void(parallel::ProcessGroup&)>& fn) {
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(size_));
    std::vector<std::thread> threads;
    for (int r = 0; r < size_; ++r) {
      threads.emplace_back([&, r] {
        Member m(*this, r);
        try {
          fn(m);
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
          std::lock_guard lock(mutex_);
          failed_ = true;
          changed_.notify_all();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (auto& e : errors) {  // the first failure, not the others' "another process failed"
      try {
        if (e) std::rethrow_exception(e);
      } catch (const std::runtime_error& x) {
        if (std::string(x.what()) != "another process of the group failed") throw;
      }
    }
  }

 private:
  class Member final : public parallel::ProcessGroup {
   public:
    Member(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return g_.size_; }
    void all_gather(const void* mine, std::size_t bytes, void* all) override {
      g_.slots_[static_cast<std::size_t>(rank_)].assign(static_cast<const char*>(mine),
                                                        static_cast<const char*>(mine) + bytes);
      g_.wait();
      for (int r = 0; r < g_.size_; ++r) {
        std::memcpy(static_cast<char*>(all) + static_cast<std::size_t>(r) * bytes,
                    g_.slots_[static_cast<std::size_t>(r)].data(), bytes);
      }
      g_.wait();
    }
    void send_recv(int partner, const void* send, std::size_t send_bytes, void* recv,
                   std::size_t recv_bytes) override {
      g_.slots_[static_cast<std::size_t>(rank_)].assign(
          static_cast<const char*>(send), static_cast<const char*>(send) + send_bytes);
      g_.wait();
      const auto& from = g_.slots_[static_cast<std::size_t>(partner)];
      if (from.size() != recv_bytes) throw std::logic_error("send_recv: sizes do not match");
      std::memcpy(recv, from.data(), recv_bytes);
      g_.wait();
    }

   private:
    ThreadGroup& g_;
    int rank_;
  };

  // A barrier that throws once a member has failed.
  void wait() {
    std::unique_lock lock(mutex_);
    const std::size_t phase = phase_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++phase_;
      changed_.notify_all();
    } else {
      changed_.wait(lock, [&] { return phase_ != phase || failed_; });
    }
    if (failed_) throw std::runtime_error("another process of the group failed");
  }

  int size_;
  std::vector<std::vector<char>> slots_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  std::size_t phase_ = 0;
  bool failed_ = false;
};

}  // namespace dropkit::test
