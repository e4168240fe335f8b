// A fixed team of threads that runs one task at a time over static ranges (ggml-style): thread t
// always gets the t-th contiguous range, no work stealing, no shared mutable state. Results
// that depend only on element indices are therefore identical for any thread count.
//
// Why not OpenMP: libgomp's idle threads spin, and on two cores they steal cycles from the
// threads doing work (oneDNN's own OpenMP team included); a pool we own spins briefly and then
// sleeps on a futex (std::atomic::wait), and the matrix products run inside it single-threaded.
//
// Workers adopt the caller's MXCSR for each task, so flushing denormals in the training thread
// (ScopedFlushDenormals) holds for every thread that works for it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dropkit::parallel {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads in [1, 256]; the caller is thread 0
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }
  // Runs task(t) for t = 0 .. size()-1 (t = 0 on the calling thread) and returns when all have
  // finished; rethrows the first exception a task threw. Not reentrant.
  void run(const std::function<void(int)>& task);

 private:
  void worker(int t);

  int size_;
  std::vector<std::thread> threads_;
  const std::function<void(int)>* task_ = nullptr;
  unsigned mxcsr_ = 0;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// The pool used when none is given: std::thread::hardware_concurrency() threads, or
// DROPKIT_THREADS if set. set_default_threads replaces it (not while it is running a task).
ThreadPool& default_pool();
void set_default_threads(int threads);
// A pool of one thread, the caller, one per thread: for work inside a task that is already split
// across another pool's threads.
ThreadPool& serial_pool();

// Splits [0, n) into pool.size() contiguous ranges whose inner boundaries are multiples of
// `align` and calls fn(begin, end) for each non-empty one, range t on thread t.
template <class Fn>
void parallel_for(ThreadPool& pool, std::size_t n, std::size_t align, Fn&& fn) {
  const std::size_t units = (n + align - 1) / align;
  const std::size_t threads = std::min<std::size_t>(pool.size(), units);
  if (threads <= 1) {
    if (n > 0) fn(std::size_t{0}, n);
    return;
  }
  pool.run([&](int t) {
    const std::size_t tt = static_cast<std::size_t>(t);
    if (tt >= threads) return;
    const std::size_t begin = std::min(n, units * tt / threads * align);
    const std::size_t end = std::min(n, units * (tt + 1) / threads * align);
    if (begin < end) fn(begin, end);
  });
}

// Sets FTZ and DAZ for the current thread and restores the previous MXCSR on destruction.
// Training flushes denormals: they are numerically irrelevant there and can cost 100x per op.
class ScopedFlushDenormals {
 public:
  ScopedFlushDenormals();
  ~ScopedFlushDenormals();
  ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
  ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;

 private:
  unsigned saved_;
};

}  // namespace dropkit::parallel
