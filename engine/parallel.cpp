#include "engine/parallel.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/error.h"

namespace kiln {
namespace {

thread_local bool t_in_parallel = false;  // a pool worker, or a caller inside parallel_for

// Worker threads 1..W wait for a generation; piece 0 runs on the caller.
class Pool {
 public:
  explicit Pool(int workers) : pid_(getpid()) {
    threads_.reserve(static_cast<size_t>(workers));
    for (int i = 1; i <= workers; ++i) threads_.emplace_back([this, i] { loop(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    go_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return static_cast<int>(threads_.size()); }
  pid_t pid() const { return pid_; }

  // Runs piece(i) for i in [0, pieces), pieces <= workers() + 1; the first exception wins.
  void run(int pieces, const std::function<void(int)>& piece) {
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &piece;
      pieces_ = pieces;
      pending_ = pieces - 1;
      error_ = nullptr;
      ++generation_;
    }
    go_.notify_all();
    run_piece(0);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_piece(int i) {
    try {
      (*job_)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void loop(int id) {
    t_in_parallel = true;
    uint64_t seen = 0;
    for (;;) {
      int pieces;
      {
        std::unique_lock<std::mutex> lk(m_);
        go_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        pieces = pieces_;
      }
      if (id >= pieces) continue;  // this loop has fewer pieces than the pool has threads
      run_piece(id);
      bool last;
      {
        std::lock_guard<std::mutex> lk(m_);
        last = --pending_ == 0;
      }
      if (last) done_.notify_one();
    }
  }

  const pid_t pid_;
  std::mutex m_;
  std::condition_variable go_, done_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  const std::function<void(int)>* job_ = nullptr;
  int pieces_ = 0;
  int pending_ = 0;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

std::atomic<int> g_threads{1};
std::mutex g_pool_mutex;  // held while a loop runs on the pool, and to replace it
Pool* g_pool = nullptr;   // never destroyed at exit: its threads may outlive static destructors

}  // namespace

void set_num_threads(int n) {
  if (n < 1) KILN_FAIL("set_num_threads: " << n << " threads (need at least 1)");
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  g_threads = n;
  // A pool of another size, or one inherited through fork() (whose threads this process does
  // not have), is replaced when next used; a smaller count shrinks it now.
  if (g_pool && g_pool->pid() == getpid() && g_pool->workers() > n - 1) {
    delete g_pool;
    g_pool = nullptr;
  }
}

int num_threads() {
  return g_threads;
}

int available_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  const int64_t pieces =
      std::min<int64_t>(g_threads, std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
  if (pieces <= 1 || t_in_parallel) return fn(0, n);
  std::unique_lock<std::mutex> lk(g_pool_mutex, std::try_to_lock);
  if (!lk.owns_lock()) return fn(0, n);  // another thread's loop has the pool
  const int want = static_cast<int>(g_threads) - 1;
  if (g_pool && g_pool->pid() != getpid()) g_pool = nullptr;  // forked: its threads are gone
  if (g_pool && g_pool->workers() != want) {
    delete g_pool;
    g_pool = nullptr;
  }
  if (!g_pool) g_pool = new Pool(want);
  const int p = static_cast<int>(std::min<int64_t>(pieces, g_pool->workers() + 1));
  t_in_parallel = true;
  struct Reset {
    ~Reset() { t_in_parallel = false; }
  } reset;
  g_pool->run(p, [&](int i) { fn(n * i / p, n * (i + 1) / p); });
}

}  // namespace kiln
