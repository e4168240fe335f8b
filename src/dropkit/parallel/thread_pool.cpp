#include "dropkit/parallel/thread_pool.h"

#include <immintrin.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>

namespace dropkit::parallel {
namespace {
// About 46 microseconds of spinning before sleeping (4000 pauses, measured on the Sapphire
// Rapids VM; a pause is ~30 cycles there): long enough to bridge the gap between the kernels
// of one training step, short enough not to matter when the pool is idle.
constexpr int kSpinIterations = 4000;
}  // namespace

ThreadPool::ThreadPool(int threads) : size_(threads) {
  if (threads < 1 || threads > 256) {
    throw std::invalid_argument("ThreadPool: threads must be in [1, 256], got " +
                                std::to_string(threads));
  }
  threads_.reserve(threads - 1);
  for (int t = 1; t < threads; ++t) threads_.emplace_back([this, t] { worker(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (auto& th : threads_) th.join();
}

void ThreadPool::run(const std::function<void(int)>& task) {
  if (size_ == 1) {
    task(0);
    return;
  }
  task_ = &task;
  mxcsr_ = _mm_getcsr();
  error_ = nullptr;
  pending_.store(size_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  try {
    task(0);
  } catch (...) {
    std::lock_guard lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
  }
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinIterations) {
      _mm_pause();
    } else {
      const int p = pending_.load(std::memory_order_acquire);
      if (p != 0) pending_.wait(p, std::memory_order_acquire);
    }
  }
  task_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::worker(int t) {
  std::uint64_t seen = 0;
  for (;;) {
    std::uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen; ++spin) {
      if (spin < kSpinIterations) {
        _mm_pause();
      } else {
        generation_.wait(seen, std::memory_order_acquire);
      }
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load()) return;
    _mm_setcsr(mxcsr_);
    try {
      (*task_)(t);
    } catch (...) {
      std::lock_guard lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

namespace {
int threads_from_env() {
  if (const char* env = std::getenv("DROPKIT_THREADS")) {
    const int t = std::atoi(env);
    if (t >= 1 && t <= 256) return t;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(std::min(hc, 256u));
}
std::unique_ptr<ThreadPool>& pool_slot() {
  static std::unique_ptr<ThreadPool> pool = std::make_unique<ThreadPool>(threads_from_env());
  return pool;
}
}  // namespace

ThreadPool& default_pool() {
  return *pool_slot();
}
void set_default_threads(int threads) {
  if (default_pool().size() != threads) pool_slot() = std::make_unique<ThreadPool>(threads);
}

ScopedFlushDenormals::ScopedFlushDenormals() : saved_(_mm_getcsr()) {
  _mm_setcsr(saved_ | 0x8040);  // FTZ (bit 15) and DAZ (bit 6)
}
ScopedFlushDenormals::~ScopedFlushDenormals() {
  _mm_setcsr(saved_);
}

ThreadPool& serial_pool() {
  thread_local ThreadPool pool(1);
  return pool;
}

}  // namespace dropkit::parallel
