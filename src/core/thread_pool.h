// A persistent pool of worker threads. Threads are created once and wait (spinning briefly,
// then sleeping on a futex) for the next job, so dispatching a kernel costs microseconds,
// not a thread creation.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace whale {

class ThreadPool {
 public:
  // n_threads counts the calling thread; 0 means one per available core.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(tid) once on every thread, tid in [0, size()); returns when all are done.
  // Called from inside a job, it runs fn(0) inline (no nested parallelism).
  void run(const std::function<void(int tid)>& fn);

  // Splits [0, n) into chunks of at least `grain` items handed out dynamically; fn(begin, end).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

  static int default_threads();

 private:
  void worker_loop(int tid);

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace whale
