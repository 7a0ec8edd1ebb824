#include "engine/parallel.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

#include "engine/error.h"

namespace kiln {
namespace {

thread_local bool t_in_parallel = false;  // a pool worker, or a caller inside parallel_for

// Waking a sleeping thread takes tens of microseconds, hundreds in a virtual machine whose host
// has descheduled the idle CPU, and a training step runs dozens of loops with gaps of up to a
// few hundred microseconds between them: so a worker that finished a piece, and a caller
// waiting for the others' pieces, first spin this long on what they wait for before they sleep
// (as OpenMP runtimes do). The price: after a loop, each thread keeps a CPU busy for up to this.
// Measured on a 2-CPU VM: 100 us left a 1024-wide mlp and the cnn 2-4% slower than this.
// Spinning, a thread yields its CPU every 64 pauses: when the machine has more runnable threads
// than CPUs (another job, a compile, two sweep workers), a thread that kept its CPU would hold
// up the descheduled one whose piece it waits for. Measured there: a cnn epoch beside one busy
// loop 25 s without the yields, 7.1-7.6 s with them (3.4 s alone); alone, no difference.
constexpr auto kSpin = std::chrono::microseconds(1000);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins (yielding) until ready() or kSpin has passed. Its callers then wait on their condition with
// the same predicate, which returns at once when it holds.
template <typename Ready>
void spin_until(const Ready& ready) {
  const auto end = std::chrono::steady_clock::now() + kSpin;
  for (unsigned i = 1; !ready(); ++i) {
    cpu_relax();
    if (i % 64 == 0) {
      if (std::chrono::steady_clock::now() > end) return;
      sched_yield();
    }
  }
}

// Worker threads 1..W, each woken on its own when a loop has a piece for it; piece 0 runs on
// the caller. A loop with fewer pieces than workers wakes only the workers it needs.
class Pool {
 public:
  // Starts up to `workers` threads; as many as the system lets it when it refuses one (a
  // process or memory limit): fewer threads give the same results, later.
  explicit Pool(int workers) : requested_(workers) {
    slots_.reserve(static_cast<size_t>(workers));
    for (int i = 1; i <= workers; ++i) {
      auto slot = std::make_unique<Slot>();
      try {
        slot->thread = std::thread([this, i, s = slot.get()] { loop(i, *s); });
      } catch (const std::system_error&) {
        break;
      }
      slots_.push_back(std::move(slot));
    }
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_.store(true);
    }
    for (auto& s : slots_) s->wake.notify_one();
    for (auto& s : slots_) s->thread.join();
  }
  int requested() const { return requested_; }
  int workers() const { return static_cast<int>(slots_.size()); }

  // Runs piece(i) for i in [0, pieces), pieces <= workers() + 1; the first exception wins.
  void run(int pieces, const std::function<void(int)>& piece) {
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &piece;
      pieces_.store(pieces);
      pending_.store(pieces - 1);
      error_ = nullptr;
      generation_.store(generation_.load() + 1);  // last: a spinning worker reads it first
    }
    // (A worker still spinning has no waiter on its condition: this notify is then a no-op.)
    for (int i = 1; i < pieces; ++i) slots_[static_cast<size_t>(i - 1)]->wake.notify_one();
    run_piece(0);
    auto done = [this] { return pending_.load() == 0; };
    spin_until(done);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, done);  // returns at once when the spin saw it done
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  struct Slot {
    std::condition_variable wake;
    std::thread thread;
  };
  void run_piece(int i) {
    try {
      (*job_)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void loop(int id, Slot& slot) {
    t_in_parallel = true;
    uint64_t seen = 0;
    // A loop this worker has no piece of leaves `seen` behind; the next loop that has one
    // differs from it too. Read without the lock while spinning, and again under it.
    auto has_work = [&] {
      return stop_.load() || (generation_.load() != seen && id < pieces_.load());
    };
    for (;;) {
      spin_until(has_work);
      {
        std::unique_lock<std::mutex> lk(m_);
        slot.wake.wait(lk, has_work);
        if (stop_.load()) return;
        seen = generation_.load();
      }
      run_piece(id);
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lk(m_);  // see pending_
        done_.notify_one();
      }
    }
  }

  const int requested_;
  std::mutex m_;
  std::condition_variable done_;
  // Set under m_; atomic so that spinning threads may read them without it.
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pieces_{0};
  // The workers' pieces not yet finished: set under m_, counted down by the workers without it.
  // The one that reaches 0 then takes m_ to notify, so a caller that saw it above 0 under m_
  // and went to sleep cannot miss the wake-up.
  std::atomic<int> pending_{0};
  const std::function<void(int)>* job_ = nullptr;
  std::exception_ptr error_;
  std::vector<std::unique_ptr<Slot>> slots_;
};

std::atomic<int> g_threads{1};
// Held while a loop runs on the pool, and to replace it. A pointer, so that a forked child
// (whose copy may be locked by a thread it does not have) gets a fresh one; never freed.
std::mutex* g_pool_mutex = new std::mutex;
Pool* g_pool = nullptr;  // never destroyed at exit: its threads may outlive static destructors

// In a child of fork(): the parent's workers do not exist here, and the pool mutex may be held
// by a thread that does not either. Both are left behind (leaked) and made afresh when used.
void forget_pool_in_child() {
  g_pool_mutex = new std::mutex;
  g_pool = nullptr;
  t_in_parallel = false;
}
[[maybe_unused]] const bool g_atfork = [] {
  return pthread_atfork(nullptr, nullptr, forget_pool_in_child) == 0;
}();

}  // namespace

void set_num_threads(int n) {
  if (n < 1) KILN_FAIL("set_num_threads: " << n << " threads (need at least 1)");
  // Inside a loop the pool is busy with the caller's own loop: waiting for it would never end.
  if (t_in_parallel) KILN_FAIL("set_num_threads: called from inside a parallel_for");
  std::lock_guard<std::mutex> lk(*g_pool_mutex);
  g_threads = n;
  if (g_pool && g_pool->requested() > n - 1) {  // a smaller count shrinks the pool now
    delete g_pool;
    g_pool = nullptr;
  }
}

int num_threads() {
  return g_threads;
}

int cpu_quota(const std::string& cpu_max) {
  std::istringstream in(cpu_max);
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  char* end = nullptr;
  const double q = std::strtod(quota.c_str(), &end);
  if (end == quota.c_str() || *end != '\0' || !(q > 0)) return 0;
  return static_cast<int>(std::max(1.0, std::ceil(q / period)));
}

int available_cpus() {
  int n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  // A container given a CPU quota (docker --cpus, a Kubernetes limit: cgroup v2's cpu.max)
  // may see every CPU of its host.
  std::ifstream f("/sys/fs/cgroup/cpu.max");
  std::string line;
  if (f && std::getline(f, line)) {
    const int q = cpu_quota(line);
    if (q > 0) n = std::min(n, q);
  }
  return n;
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  const int threads = g_threads;
  const int64_t pieces =
      std::min<int64_t>(threads, std::max<int64_t>(1, n / std::max<int64_t>(1, grain)));
  if (pieces <= 1 || t_in_parallel) return fn(0, n);
  std::unique_lock<std::mutex> lk(*g_pool_mutex, std::try_to_lock);
  if (!lk.owns_lock()) return fn(0, n);  // another thread's loop has the pool
  const int want = threads - 1;
  if (g_pool && g_pool->requested() != want) {
    delete g_pool;
    g_pool = nullptr;
  }
  if (!g_pool) g_pool = new Pool(want);
  t_in_parallel = true;
  struct Reset {
    ~Reset() { t_in_parallel = false; }
  } reset;
  const int p = static_cast<int>(std::min<int64_t>(pieces, g_pool->workers() + 1));
  if (p <= 1) return fn(0, n);  // the system gave the pool no thread
  g_pool->run(p, [&](int i) { fn(n * i / p, n * (i + 1) / p); });
}

}  // namespace kiln
