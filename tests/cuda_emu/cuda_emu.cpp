// kiln's CUDA emulator: runtime, fiber scheduler and cuBLAS SGEMM. See cuda_runtime.h for the
// model and the checks.
#include <sys/mman.h>

#include <array>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

struct CUstream_st {
  CUgraph_st* capture = nullptr;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  bool invalidated = false;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point t{};
  bool queried = false;  // since the last record
};
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};
struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace kiln_emu {

thread_local ThreadState* g_thread = nullptr;
thread_local BlockState g_block{};

namespace {

// ---- diagnostics -------------------------------------------------------------------------------
thread_local cudaError_t g_last_error = cudaSuccess;

cudaError_t fail(cudaError_t e, const std::string& msg) {
  std::fprintf(stderr, "kiln-emu: %s\n", msg.c_str());
  g_last_error = e;
  return e;
}

std::string ptr_str(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

// ---- allocations -------------------------------------------------------------------------------
constexpr size_t kDeviceMemory = 80ull << 30;  // what the emulated device reports and allows
constexpr size_t kSmemPerSm = 228 * 1024;      // shared memory per SM (an H100's)
constexpr size_t kMaxSmemOptin = 227 * 1024;   // the most one block may opt in to
constexpr int kSms = 132;

struct Alloc {
  size_t bytes;
  bool pinned_host;
};
std::mutex g_alloc_mu;
std::map<uintptr_t, Alloc> g_allocs;

// The allocation containing [p, p + bytes) (bytes 0: p may be one past the end), or null.
const Alloc* find_alloc(const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lk(g_alloc_mu);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return nullptr;
  --it;
  const uintptr_t end = it->first + it->second.bytes;
  if (a > end || a + bytes > end) return nullptr;
  return &it->second;
}
bool is_device(const void* p, size_t bytes) {
  const Alloc* a = find_alloc(p, bytes);
  return a && !a->pinned_host;
}
bool is_device_accessible(const void* p, size_t bytes) { return find_alloc(p, bytes) != nullptr; }

// ---- capture -----------------------------------------------------------------------------------
thread_local int g_captures = 0;                    // streams this thread is capturing (non-relaxed)
thread_local std::vector<cudaStream_t> g_capturing;  // to invalidate them on an unsafe call

// A call that is illegal while this thread captures a stream (cudaMalloc, cudaMemcpy, ...):
// the real runtime fails it and invalidates the capture.
bool unsafe_during_capture(const char* api) {
  if (g_captures == 0) return false;
  for (cudaStream_t s : g_capturing) s->invalidated = true;
  fail(cudaErrorStreamCaptureUnsupported, std::string(api) + " while a stream is being captured (not allowed: "
                                               "it may synchronize; the capture is invalidated)");
  return true;
}

// Runs `op` on `s`, or records it when `s` is being captured.
cudaError_t enqueue(cudaStream_t s, const char* what, std::function<void()> op) {
  if (s && s->capture) {
    s->capture->ops.push_back(std::move(op));
    return cudaSuccess;
  }
  if (!s && g_captures > 0) {
    for (cudaStream_t c : g_capturing) c->invalidated = true;
    return fail(cudaErrorStreamCaptureImplicit,
                std::string(what) + " on the default stream while a stream is being captured");
  }
  op();
  return cudaSuccess;
}

// ---- fibers ------------------------------------------------------------------------------------
// A context switch is kiln_emu_switch (x86-64 System V: push the callee-saved registers, swap
// stack pointers, pop, return): no signal-mask system call, unlike swapcontext, which made the
// emulated tests ~50x slower. Under ASan every switch is announced to the sanitizer.
}  // namespace
}  // namespace kiln_emu

extern "C" void kiln_emu_switch(void** save_sp, void* next_sp);
asm(R"(
  .text
  .globl kiln_emu_switch
  .type kiln_emu_switch, @function
kiln_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kiln_emu_switch, .-kiln_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define KILN_EMU_ASAN 1
#endif

namespace kiln_emu {
namespace {

enum class FState { Run, AtBlock, AtWarp, AtGrid, Done };

struct Fiber {
  void* sp;
  char* stack;
  ThreadState ts;
  FState state;
  const char* barrier_file;  // which __syncthreads the thread waits at
  int barrier_line;
};

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStack = 512 * 1024;
#else
constexpr size_t kStack = 128 * 1024;
#endif

struct BlockRun {
  std::vector<Fiber> fibers;
  std::vector<char*> stacks;
  void* sched_sp = nullptr;
  const void* sched_bottom = nullptr;  // the scheduler's stack, for ASan's fiber annotations
  size_t sched_size = 0;
  Fiber* cur = nullptr;
  const std::function<void()>* body = nullptr;
  std::vector<std::array<uint64_t, 32>> warp_in, warp_out;
  bool synced = false;  // some thread reached a barrier or a warp collective
  unsigned live = 0;    // threads not yet finished
  uint3 idx{};          // the block (a cooperative launch keeps one BlockRun per block)
  std::vector<unsigned char> smem;  // its dynamic shared memory
};
thread_local BlockRun* g_run = nullptr;
thread_local unsigned char* g_smem = nullptr;  // the running block's dynamic shared memory
thread_local bool g_cooperative = false;       // the running launch is cooperative
constexpr unsigned char kSmemPoison = 0xff;    // NaN bytes, as fresh allocations
// Blocks run one at a time: __shared__ variables are statics.
std::mutex g_launch_mu;

char* stack_at(BlockRun& r, size_t i) {
  while (r.stacks.size() <= i) {
    void* p = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) device_trap("cannot map a fiber stack");
    r.stacks.push_back(static_cast<char*>(p));
  }
  return r.stacks[i];
}

// Scheduler -> fiber f; returns when f yields or finishes.
void resume(BlockRun& r, Fiber& f) {
#ifdef KILN_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStack);
  kiln_emu_switch(&r.sched_sp, f.sp);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  kiln_emu_switch(&r.sched_sp, f.sp);
#endif
}

// Fiber -> scheduler. `dying`: the fiber is done and is never resumed.
void yield_to_scheduler(bool dying = false) {
  BlockRun* r = g_run;
  Fiber* f = r->cur;
#ifdef KILN_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(dying ? nullptr : &fake, r->sched_bottom, r->sched_size);
  kiln_emu_switch(&f->sp, r->sched_sp);
  __sanitizer_finish_switch_fiber(fake, &r->sched_bottom, &r->sched_size);
#else
  (void)dying;
  kiln_emu_switch(&f->sp, r->sched_sp);
#endif
}

[[noreturn]] void fiber_main() {
#ifdef KILN_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_run->sched_bottom, &g_run->sched_size);
#endif
  (*g_run->body)();
  g_run->cur->state = FState::Done;
  yield_to_scheduler(true);
  device_trap("a finished thread was resumed");
}

// A fresh stack whose first switch "returns" into fiber_main with the ABI's alignment.
void* initial_sp(char* stack) {
  char* top = stack + kStack;
  void** sp = reinterpret_cast<void**>(top - 64);  // 16-aligned: six registers, then the return address
  for (int i = 0; i < 6; ++i) sp[i] = nullptr;
  sp[6] = reinterpret_cast<void*>(&fiber_main);
  sp[7] = nullptr;  // fiber_main's own (never used) return address
  return sp;
}

// Thread t (linear, x fastest) of a block of shape bd.
ThreadState thread_state(unsigned t, dim3 bd) {
  return ThreadState{uint3{t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)}, t & 31, t >> 5};
}

enum class Order { Forward, Reverse, Random };
struct OrderCfg {
  Order order = Order::Forward;
  uint64_t seed = 1;
  bool always_fibers = false;
};
bool parse_order(const std::string& v, OrderCfg& o) {
  if (v == "forward") o.order = Order::Forward;
  else if (v == "reverse") o.order = Order::Reverse;
  else if (v.rfind("random", 0) == 0 && (v.size() == 6 || v[6] == ':')) {
    o.order = Order::Random;
    if (v.size() > 7) o.seed = std::strtoull(v.c_str() + 7, nullptr, 10);
  } else {
    return false;
  }
  return true;
}
OrderCfg& order_cfg() {
  static OrderCfg c = [] {
    OrderCfg o;
    if (const char* e = std::getenv("KILN_EMU_ORDER"))
      if (!parse_order(e, o)) {
        std::fprintf(stderr, "kiln-emu: KILN_EMU_ORDER=%s: expected forward, reverse or random[:seed]\n", e);
        std::exit(2);
      }
    if (const char* e = std::getenv("KILN_EMU_FIBERS")) o.always_fibers = std::string(e) == "always";
    return o;
  }();
  return c;
}

// The generator behind Order::Random, reseeded when the seed changes.
std::mt19937_64& order_rng() {
  static thread_local std::mt19937_64 rng;
  static thread_local uint64_t seeded = ~0ull;
  if (seeded != order_cfg().seed) rng.seed(seeded = order_cfg().seed);
  return rng;
}

// Sets up one block's fibers (nothing runs yet).
void init_block_fibers(BlockRun& r) {
  const dim3 bd = g_block.block_dim;
  const unsigned nthreads = bd.x * bd.y * bd.z;
  const unsigned nwarps = (nthreads + 31) / 32;
  r.fibers.resize(nthreads);
  r.warp_in.resize(nwarps);
  r.warp_out.resize(nwarps);
  r.synced = false;
  r.live = nthreads;
  for (unsigned t = 0; t < nthreads; ++t) {
    Fiber& f = r.fibers[t];
    f.ts = thread_state(t, bd);
    f.state = FState::Run;
    f.stack = stack_at(r, t);
#ifdef KILN_EMU_ASAN
    // fiber_main's frame of the last block's thread (kernel frames returned and cleaned up)
    __asan_unpoison_memory_region(f.stack + kStack - 16384, 16384);
#endif
    f.sp = initial_sp(f.stack);
  }
}

// Runs the block's fibers (g_run, g_block and g_smem name the block) until every live thread
// has finished or waits at a grid sync.
void step_block_fibers(BlockRun& r, const char* name) {
  const unsigned nthreads = static_cast<unsigned>(r.fibers.size());
  const unsigned nwarps = (nthreads + 31) / 32;
  std::vector<unsigned> order(nthreads);
  for (unsigned t = 0; t < nthreads; ++t) order[t] = t;
  const OrderCfg& cfg = order_cfg();
  std::mt19937_64& rng = order_rng();
  if (cfg.order == Order::Reverse) std::reverse(order.begin(), order.end());

  while (r.live > 0) {
    if (cfg.order == Order::Random) std::shuffle(order.begin(), order.end(), rng);
    for (unsigned t : order) {
      Fiber& f = r.fibers[t];
      if (f.state != FState::Run) continue;
      r.cur = &f;
      g_thread = &f.ts;
      resume(r, f);
      if (f.state == FState::Done) --r.live;
    }
    if (r.live == 0) break;
    unsigned at_block = 0, at_warp = 0, at_grid = 0;
    for (const Fiber& f : r.fibers) {
      at_block += f.state == FState::AtBlock;
      at_warp += f.state == FState::AtWarp;
      at_grid += f.state == FState::AtGrid;
    }
    if (at_grid == r.live) break;  // parked at a grid sync: the grid scheduler releases it
    bool released = false;
    for (unsigned w = 0; w < nwarps; ++w) {
      bool any = false, all = true;
      for (unsigned t = w * 32; t < std::min(nthreads, w * 32 + 32); ++t) {
        const FState st = r.fibers[t].state;
        if (st == FState::Done) continue;
        any = true;
        all = all && st == FState::AtWarp;
      }
      if (!any || !all) continue;
      for (unsigned t = w * 32; t < w * 32 + 32; ++t) {
        const bool in = t < nthreads && r.fibers[t].state == FState::AtWarp;
        r.warp_out[w][t & 31] = in ? r.warp_in[w][t & 31] : 0;
        if (in) r.fibers[t].state = FState::Run;
      }
      released = true;
    }
    if (released) continue;
    if (at_block == r.live) {
      const Fiber* first = nullptr;
      for (Fiber& f : r.fibers) {
        if (f.state != FState::AtBlock) continue;
        if (first && (f.barrier_line != first->barrier_line ||
                      (f.barrier_file != first->barrier_file &&
                       std::strcmp(f.barrier_file, first->barrier_file)))) {
          std::fprintf(
              stderr,
              "kiln-emu: divergent __syncthreads in kernel %s, block (%u,%u,%u): threads wait at "
              "different barriers (%s:%d and %s:%d; a barrier under a condition that differs "
              "across the "
              "block)\n",
              name, g_block.block_idx.x, g_block.block_idx.y, g_block.block_idx.z,
              first->barrier_file, first->barrier_line, f.barrier_file, f.barrier_line);
          std::abort();
        }
        if (!first) first = &f;
        f.state = FState::Run;
      }
      continue;
    }
    std::fprintf(
        stderr,
        "kiln-emu: deadlock in kernel %s, block (%u,%u,%u): %u live threads, %u at __syncthreads, "
        "%u in a warp collective whose warp has lanes elsewhere, %u at a grid sync\n",
        name, g_block.block_idx.x, g_block.block_idx.y, g_block.block_idx.z, r.live, at_block,
        at_warp, at_grid);
    std::abort();
  }
  g_thread = nullptr;
}

// Runs one block with a fiber per thread. Returns whether any thread synchronised.
bool run_block_fibers(BlockRun& r, const char* name) {
  init_block_fibers(r);
  step_block_fibers(r, name);
  return r.synced;
}

// Runs one block without fibers (threads one after another on this stack): only for a kernel
// whose first block showed no barrier or warp collective.
void run_block_direct(const std::function<void()>& body, ThreadState& ts) {
  const dim3 bd = g_block.block_dim;
  const unsigned nthreads = bd.x * bd.y * bd.z;
  g_thread = &ts;
  for (unsigned t = 0; t < nthreads; ++t) {
    ts = thread_state(t, bd);
    body();
  }
  g_thread = nullptr;
}

thread_local bool g_direct = false;

// The blocks of a launch in the configured order (linear block ids).
std::vector<uint64_t> block_order(uint64_t nblocks) {
  std::vector<uint64_t> ids(nblocks);
  for (uint64_t i = 0; i < nblocks; ++i) ids[i] = i;
  if (order_cfg().order == Order::Reverse) std::reverse(ids.begin(), ids.end());
  if (order_cfg().order == Order::Random) std::shuffle(ids.begin(), ids.end(), order_rng());
  return ids;
}

uint3 block_index(uint64_t b, dim3 grid) {
  return uint3{unsigned(b % grid.x), unsigned(b / grid.x % grid.y),
               unsigned(b / (uint64_t(grid.x) * grid.y))};
}

void run_grid(const char* name, dim3 grid, dim3 block, size_t smem,
              const std::function<void()>& body) {
  std::lock_guard<std::mutex> lk(g_launch_mu);
  static thread_local BlockRun run;
  BlockRun* saved = g_run;
  g_run = &run;
  run.body = &body;
  g_block.block_dim = block;
  g_block.grid_dim = grid;
  bool fibers = true;
  ThreadState direct_ts{};
  // Blocks run in the configured order too: a kernel whose result depends on which block runs
  // first (one block reading what another writes, outside the last-block pattern) shows it.
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  std::vector<uint64_t> shuffled;
  if (order_cfg().order == Order::Random) shuffled = block_order(nblocks);
  for (uint64_t i = 0; i < nblocks; ++i) {
    const uint64_t b = order_cfg().order == Order::Forward ? i
                       : order_cfg().order == Order::Reverse ? nblocks - 1 - i
                                                            : shuffled[i];
    g_block.block_idx = block_index(b, grid);
    run.smem.assign(smem, kSmemPoison);
    g_smem = run.smem.data();
    if (fibers) {
      const bool synced = run_block_fibers(run, name);
      fibers = synced || order_cfg().always_fibers;
    } else {
      g_direct = true;
      run_block_direct(body, direct_ts);
      g_direct = false;
    }
  }
  g_smem = nullptr;
  g_run = saved;
}

// A cooperative launch: every block's fibers exist at once; each round runs every block until
// its threads finish or wait at a grid sync, then releases the sync. __shared__ variables are
// statics shared by all blocks, so only dynamic shared memory (each block its own) and registers
// (the fibers' stacks) carry a block's state across a grid sync.
void run_grid_cooperative(const char* name, dim3 grid, dim3 block, size_t smem,
                          const std::function<void()>& body) {
  std::lock_guard<std::mutex> lk(g_launch_mu);
  static thread_local std::vector<std::unique_ptr<BlockRun>> pool;
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  while (pool.size() < nblocks) pool.push_back(std::make_unique<BlockRun>());
  BlockRun* saved = g_run;
  g_block.block_dim = block;
  g_block.grid_dim = grid;
  const auto enter = [&](BlockRun& r) {
    g_run = &r;
    g_block.block_idx = r.idx;
    g_smem = r.smem.data();
  };
  for (uint64_t b = 0; b < nblocks; ++b) {
    BlockRun& r = *pool[b];
    r.body = &body;
    r.idx = block_index(b, grid);
    r.smem.assign(smem, kSmemPoison);
    enter(r);
    init_block_fibers(r);
  }
  g_cooperative = true;
  for (;;) {
    for (uint64_t b : block_order(nblocks)) {
      BlockRun& r = *pool[b];
      if (r.live == 0) continue;
      enter(r);
      step_block_fibers(r, name);
    }
    uint64_t waiting = 0, finished = 0;
    for (uint64_t b = 0; b < nblocks; ++b) (pool[b]->live ? waiting : finished) += 1;
    if (waiting == 0) break;
    if (finished > 0) {
      std::fprintf(stderr,
                   "kiln-emu: deadlock in kernel %s: %llu blocks wait at a grid sync that %llu "
                   "finished blocks "
                   "never reach\n",
                   name, static_cast<unsigned long long>(waiting),
                   static_cast<unsigned long long>(finished));
      std::abort();
    }
    for (uint64_t b = 0; b < nblocks; ++b)
      for (Fiber& f : pool[b]->fibers)
        if (f.state == FState::AtGrid) f.state = FState::Run;
  }
  g_cooperative = false;
  g_smem = nullptr;
  g_run = saved;
}

// Blocks of `threads` threads with `smem` bytes of dynamic shared memory that fit on one
// emulated SM (2,048 threads, 32 blocks, 228 KiB of shared memory with 1 KiB reserved per block).
int blocks_per_sm(unsigned threads, size_t smem) {
  if (threads == 0 || threads > 1024 || smem > kMaxSmemOptin) return 0;
  size_t n = std::min<size_t>(32, 2048 / threads);
  n = std::min(n, kSmemPerSm / (smem + 1024));
  return static_cast<int>(n);
}

std::mutex g_func_mu;
std::map<const void*, int> g_func_smem;  // cudaFuncAttributeMaxDynamicSharedMemorySize per kernel

size_t max_dynamic_smem(const void* func) {
  std::lock_guard<std::mutex> lk(g_func_mu);
  const auto it = func ? g_func_smem.find(func) : g_func_smem.end();
  return it == g_func_smem.end() ? 48 * 1024 : static_cast<size_t>(it->second);
}

}  // namespace

bool set_order(const char* spec) {
  OrderCfg o = order_cfg();
  if (!parse_order(spec, o)) return false;
  order_cfg() = o;
  return true;
}

// ---- device built-ins --------------------------------------------------------------------------
[[noreturn]] void device_trap(const char* what) {
  std::fprintf(stderr, "kiln-emu: %s\n", what);
  std::abort();
}

void syncthreads(const char* file, int line) {
  if (g_direct)
    device_trap("__syncthreads in a block run without fibers: the kernel's first block never synchronised "
                "(rerun with KILN_EMU_FIBERS=always)");
  g_run->synced = true;
  g_run->cur->state = FState::AtBlock;
  g_run->cur->barrier_file = file;
  g_run->cur->barrier_line = line;
  yield_to_scheduler();
}

const uint64_t* warp_exchange(uint64_t bits) {
  if (g_direct)
    device_trap("warp collective in a block run without fibers: the kernel's first block never used one "
                "(rerun with KILN_EMU_FIBERS=always)");
  BlockRun* r = g_run;
  r->synced = true;
  const unsigned w = g_thread->warp;
  r->warp_in[w][g_thread->lane] = bits;
  r->cur->state = FState::AtWarp;
  yield_to_scheduler();
  return r->warp_out[w].data();
}

void grid_sync() {
  if (!g_cooperative)
    device_trap(
        "cooperative_groups grid sync in a kernel not launched with cudaLaunchCooperativeKernel");
  g_run->synced = true;
  g_run->cur->state = FState::AtGrid;
  yield_to_scheduler();
}

void* dynamic_smem() {
  return g_smem;
}

cudaError_t launch_grid(const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                        std::function<void()> body, const void* const* pointers, size_t npointers,
                        const void* func, bool cooperative) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 ||
      grid.x > 2147483647u || smem > max_dynamic_smem(func)) {
    char b[320];
    std::snprintf(
        b, sizeof b,
        "kernel %s: invalid configuration grid (%u,%u,%u) block (%u,%u,%u) smem %zu (above 48 KiB "
        "needs cudaFuncAttributeMaxDynamicSharedMemorySize)",
        name, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
    return fail(cudaErrorInvalidConfiguration, b);
  }
  const unsigned long long nblocks = 1ull * grid.x * grid.y * grid.z;
  if (cooperative && nblocks > 1ull * kSms * blocks_per_sm(static_cast<unsigned>(threads), smem)) {
    char b[256];
    std::snprintf(b, sizeof b,
                  "kernel %s: cooperative launch of %llu blocks exceeds the %d that fit at once",
                  name, nblocks, kSms * blocks_per_sm(static_cast<unsigned>(threads), smem));
    return fail(cudaErrorCooperativeLaunchTooLarge, b);
  }
  for (size_t i = 0; i < npointers; ++i)
    if (pointers[i] && !is_device_accessible(pointers[i], 0)) {
      char b[256];
      std::snprintf(b, sizeof b, "kernel %s: pointer argument #%zu (%p) is in no device allocation", name, i + 1,
                    pointers[i]);
      device_trap(b);
    }
  std::string n = name;
  return enqueue(stream, name, [n, grid, block, smem, cooperative, body = std::move(body)] {
    if (cooperative)
      run_grid_cooperative(n.c_str(), grid, block, smem, body);
    else
      run_grid(n.c_str(), grid, block, smem, body);
  });
}

}  // namespace kiln_emu

unsigned __ballot_sync(unsigned, int pred) {
  const uint64_t* slots = kiln_emu::warp_exchange(pred ? 3u : 2u);  // bit 1: lane took part
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l)
    if (slots[l] == 3u) m |= 1u << l;
  return m;
}

using kiln_emu::fail;
using kiln_emu::ptr_str;

// ---- device ------------------------------------------------------------------------------------
static int emu_devices() {
  static const int n = [] {
    const char* e = std::getenv("KILN_EMU_DEVICES");
    return e ? std::atoi(e) : 1;
  }();
  return n;
}
cudaError_t cudaGetDeviceCount(int* n) {
  *n = emu_devices();
  return *n > 0 ? cudaSuccess : fail(cudaErrorNoDevice, "no CUDA-capable device is detected (KILN_EMU_DEVICES=0)");
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidValue, "cudaSetDevice"); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "kiln CUDA emulator (CPU)");
  p->totalGlobalMem = kiln_emu::kDeviceMemory;
  p->sharedMemPerBlock = 48 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->clockRate = 1980000;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  p->memoryClockRate = 2619000;
  p->memoryBusWidth = 5120;
  p->l2CacheSize = 50 << 20;
  p->maxThreadsPerMultiProcessor = 2048;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  switch (a) {
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrL2CacheSize: *v = 50 * 1024 * 1024; break;  // an H100's 50 MiB
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:
      *v = static_cast<int>(kiln_emu::kSmemPerSm);
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *v = static_cast<int>(kiln_emu::kMaxSmemOptin);
      break;
    case cudaDevAttrCooperativeLaunch:
      *v = 1;
      break;
    default: return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute not emulated");
  }
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func) return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute(null function)");
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
    return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute not emulated");
  if (value < 0 || static_cast<size_t>(value) > kiln_emu::kMaxSmemOptin)
    return fail(cudaErrorInvalidValue,
                "cudaFuncSetAttribute: " + std::to_string(value) +
                    " bytes of dynamic shared memory exceed the 227 KiB a block may use");
  std::lock_guard<std::mutex> lk(kiln_emu::g_func_mu);
  kiln_emu::g_func_smem[func] = value;
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void* func,
                                                          int block_size, size_t dynamic_smem) {
  if (!func || block_size <= 0)
    return fail(cudaErrorInvalidValue, "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  *blocks = kiln_emu::blocks_per_sm(static_cast<unsigned>(block_size), dynamic_smem);
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
// Name and message of each emulated error, as the real runtime spells them.
static const struct {
  cudaError_t code;
  const char* name;
  const char* text;
} kErrors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration",
     "invalid configuration argument"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection",
     "invalid copy direction for memcpy"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing"},
    {cudaErrorStreamCaptureInvalidated, "cudaErrorStreamCaptureInvalidated",
     "operation failed due to a previous error during capture"},
    {cudaErrorStreamCaptureImplicit, "cudaErrorStreamCaptureImplicit",
     "operation would make the legacy stream depend on a capturing blocking stream"},
};
const char* cudaGetErrorName(cudaError_t e) {
  for (const auto& x : kErrors)
    if (x.code == e) return x.name;
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  for (const auto& x : kErrors)
    if (x.code == e) return x.text;
  return "unknown error";
}
cudaError_t cudaGetLastError() {
  cudaError_t e = kiln_emu::g_last_error;
  kiln_emu::g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return kiln_emu::g_last_error; }
cudaError_t cudaDeviceSynchronize() {
  if (kiln_emu::unsafe_during_capture("cudaDeviceSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return cudaSuccess;
}

// ---- memory ------------------------------------------------------------------------------------
static cudaError_t emu_alloc(void** p, size_t bytes, bool pinned, const char* api) {
  if (kiln_emu::unsafe_during_capture(api)) return cudaErrorStreamCaptureUnsupported;
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (bytes > kiln_emu::kDeviceMemory) return fail(cudaErrorMemoryAllocation, std::string(api) + ": out of memory");
  void* q = nullptr;
  if (posix_memalign(&q, 256, bytes) != 0) return fail(cudaErrorMemoryAllocation, std::string(api) + ": out of memory");
  // Neither cudaMalloc nor cudaMallocHost clears memory; fresh host pages would read as zeros,
  // the most forgiving value there is. All-ones bytes read as NaN floats (and -1 integers), so
  // a kernel or copy that consumes memory nothing wrote shows up in the comparison with the CPU
  // reference: the emulator's stand-in for compute-sanitizer's initcheck.
  std::memset(q, 0xff, bytes);
  std::lock_guard<std::mutex> lk(kiln_emu::g_alloc_mu);
  kiln_emu::g_allocs[reinterpret_cast<uintptr_t>(q)] = {bytes, pinned};
  *p = q;
  return cudaSuccess;
}
static cudaError_t emu_free(void* p, bool pinned, const char* api) {
  if (kiln_emu::unsafe_during_capture(api)) return cudaErrorStreamCaptureUnsupported;
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lk(kiln_emu::g_alloc_mu);
    auto it = kiln_emu::g_allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == kiln_emu::g_allocs.end() || it->second.pinned_host != pinned)
      return fail(cudaErrorInvalidValue, std::string(api) + "(" + ptr_str(p) + "): not a live allocation of that kind");
    kiln_emu::g_allocs.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) { return emu_alloc(p, bytes, false, "cudaMalloc"); }
cudaError_t cudaFree(void* p) { return emu_free(p, false, "cudaFree"); }
cudaError_t cudaMallocHost(void** p, size_t bytes) { return emu_alloc(p, bytes, true, "cudaMallocHost"); }
cudaError_t cudaFreeHost(void* p) { return emu_free(p, true, "cudaFreeHost"); }
cudaError_t cudaMemGetInfo(size_t* f, size_t* t) {
  *t = kiln_emu::kDeviceMemory;
  *f = *t;
  return cudaSuccess;
}

static cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* api) {
  using kiln_emu::is_device;
  using kiln_emu::is_device_accessible;
  if (bytes == 0) return cudaSuccess;
  const bool dst_dev = is_device_accessible(dst, bytes), src_dev = is_device_accessible(src, bytes);
  const auto where = [&] { return " (dst " + ptr_str(dst) + ", src " + ptr_str(src) + ", " + std::to_string(bytes) + " bytes)"; };
  switch (kind) {
    case cudaMemcpyHostToDevice:
      if (!dst_dev || is_device(src, 1))
        return fail(cudaErrorInvalidValue, std::string(api) + " HostToDevice: destination range is not device memory or source is" + where());
      break;
    case cudaMemcpyDeviceToHost:
      if (!src_dev || is_device(dst, 1))
        return fail(cudaErrorInvalidValue, std::string(api) + " DeviceToHost: source range is not device memory or destination is" + where());
      break;
    case cudaMemcpyDeviceToDevice:
      if (!src_dev || !dst_dev)
        return fail(cudaErrorInvalidValue, std::string(api) + " DeviceToDevice: a range is not device memory" + where());
      break;
    case cudaMemcpyHostToHost:
      if (is_device(src, 1) || is_device(dst, 1))
        return fail(cudaErrorInvalidValue, std::string(api) + " HostToHost with a device pointer" + where());
      break;
    case cudaMemcpyDefault:
      if ((is_device(src, 1) && !src_dev) || (is_device(dst, 1) && !dst_dev))
        return fail(cudaErrorInvalidValue, std::string(api) + ": range runs past its allocation" + where());
      break;
    default: return fail(cudaErrorInvalidMemcpyDirection, std::string(api) + ": bad kind");
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (kiln_emu::unsafe_during_capture("cudaMemcpy")) return cudaErrorStreamCaptureUnsupported;
  if (cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpy")) return e;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  if (cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpyAsync")) return e;
  return kiln_emu::enqueue(s, "cudaMemcpyAsync", [=] {
    if (bytes) std::memmove(dst, src, bytes);
  });
}
static cudaError_t check_set(void* dst, size_t bytes, const char* api) {
  if (bytes && !kiln_emu::is_device_accessible(dst, bytes))
    return fail(cudaErrorInvalidValue, std::string(api) + ": range " + ptr_str(dst) + " + " + std::to_string(bytes) +
                                           " bytes is not inside one device allocation");
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int v, size_t bytes) {
  if (kiln_emu::unsafe_during_capture("cudaMemset")) return cudaErrorStreamCaptureUnsupported;
  if (cudaError_t e = check_set(dst, bytes, "cudaMemset")) return e;
  if (bytes) std::memset(dst, v, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int v, size_t bytes, cudaStream_t s) {
  if (cudaError_t e = check_set(dst, bytes, "cudaMemsetAsync")) return e;
  return kiln_emu::enqueue(s, "cudaMemsetAsync", [=] {
    if (bytes) std::memset(dst, v, bytes);
  });
}

// ---- streams and graphs ------------------------------------------------------------------------
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (!s) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(null)");
  if (s->capture) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamDestroy on a capturing stream");
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  if (kiln_emu::unsafe_during_capture("cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  if (!s) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture on the legacy default stream");
  if (s->capture) return fail(cudaErrorInvalidValue, "cudaStreamBeginCapture: stream already capturing");
  s->capture = new CUgraph_st;
  s->mode = mode;
  s->invalidated = false;
  if (mode != cudaStreamCaptureModeRelaxed) {
    ++kiln_emu::g_captures;
    kiln_emu::g_capturing.push_back(s);
  }
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  if (!s || !s->capture) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture: stream is not capturing");
  if (s->mode != cudaStreamCaptureModeRelaxed) {
    --kiln_emu::g_captures;
    auto& v = kiln_emu::g_capturing;
    v.erase(std::remove(v.begin(), v.end(), s), v.end());
  }
  CUgraph_st* graph = s->capture;
  s->capture = nullptr;
  if (s->invalidated) {
    delete graph;
    *g = nullptr;
    return fail(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture: the capture was invalidated");
  }
  *g = graph;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  if (!g) return fail(cudaErrorInvalidValue, "cudaGraphInstantiateWithFlags(null graph)");
  *e = new CUgraphExec_st{g->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (!e) return fail(cudaErrorInvalidValue, "cudaGraphLaunch(null)");
  return kiln_emu::enqueue(s, "cudaGraphLaunch", [e] {
    for (const auto& op : e->ops) op();
  });
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}

// ---- events ------------------------------------------------------------------------------------
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord(null)");
  if (s && s->capture) return cudaSuccess;  // an event node: nothing to emulate
  e->queried = false;
  return kiln_emu::enqueue(s, "cudaEventRecord", [e] { e->t = std::chrono::steady_clock::now(); });
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  if (kiln_emu::unsafe_during_capture("cudaEventSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return cudaSuccess;
}
// A device runs behind the host: the first query after a record answers "not ready", and
// (the worst case of the runtime's bookkeeping) leaves that as the last error, which a caller
// must clear or its next launch check fails. Later queries find the work done.
// KILN_EMU_EVENTS=ready (read at every query, so a test can switch it) answers as a device
// that has caught up, the usual case on a real GPU: the emulator runs every launch before it
// returns, so the recorded work is always done. KILN_EMU_EVENTS=late (or unset) is the above.
cudaError_t cudaEventQuery(cudaEvent_t e) {
  if (!e) return fail(cudaErrorInvalidResourceHandle, "cudaEventQuery(null)");
  const char* mode = std::getenv("KILN_EMU_EVENTS");
  if (mode && std::string(mode) != "late" && std::string(mode) != "ready") {
    std::fprintf(stderr, "kiln-emu: KILN_EMU_EVENTS=%s: expected late or ready\n", mode);
    std::exit(2);
  }
  if (e->queried || (mode && std::string(mode) == "ready")) return cudaSuccess;
  e->queried = true;
  kiln_emu::g_last_error = cudaErrorNotReady;
  return cudaErrorNotReady;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }

// ---- cuBLAS ------------------------------------------------------------------------------------
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  if (kiln_emu::unsafe_during_capture("cublasCreate")) return CUBLAS_STATUS_NOT_INITIALIZED;
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
  h->math = m;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void* ws, size_t bytes) {
  if (bytes && !kiln_emu::is_device(ws, bytes)) {
    fail(cudaErrorInvalidValue, "cublasSetWorkspace: workspace is not device memory");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  (void)h;  // kiln sets one so cuBLAS never allocates under capture; the loop GEMM needs none
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

// TF32 keeps 10 mantissa bits (round to nearest even), as tensor cores read fp32 operands.
static float to_tf32(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  if ((b & 0x7f800000u) == 0x7f800000u) return x;
  b += 0x0fffu + ((b >> 13) & 1u);
  b &= 0xffffe000u;
  std::memcpy(&x, &b, 4);
  return x;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
  if (m < 0 || n < 0 || k < 0 || lda < std::max(1, arows) || ldb < std::max(1, brows) || ldc < std::max(1, m)) {
    fail(cudaErrorInvalidValue, "cublasSgemm: invalid dimensions or leading dimensions");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const size_t acols = ta == CUBLAS_OP_N ? k : m, bcols = tb == CUBLAS_OP_N ? n : k;
  const bool ok = (k == 0 || (kiln_emu::is_device_accessible(A, ((acols - 1) * lda + arows) * 4) &&
                              kiln_emu::is_device_accessible(B, ((bcols - 1) * ldb + brows) * 4))) &&
                  kiln_emu::is_device_accessible(C, ((size_t(n) - 1) * ldc + m) * 4);
  if (!ok) {
    fail(cudaErrorInvalidValue, "cublasSgemm: an operand range is not inside one device allocation");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const float al = *alpha, be = *beta;  // host pointer mode: read at call time
  const bool tf32 = h->math == CUBLAS_TF32_TENSOR_OP_MATH;
  const cudaError_t e = kiln_emu::enqueue(h->stream, "cublasSgemm", [=] {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0.f;
        for (int l = 0; l < k; ++l) {
          float a = ta == CUBLAS_OP_N ? A[i + size_t(l) * lda] : A[l + size_t(i) * lda];
          float b = tb == CUBLAS_OP_N ? B[l + size_t(j) * ldb] : B[j + size_t(l) * ldb];
          if (tf32) {
            a = to_tf32(a);
            b = to_tf32(b);
          }
          acc = fmaf(a, b, acc);
        }
        float& c = C[i + size_t(j) * ldc];
        c = be == 0.f ? al * acc : al * acc + be * c;  // beta 0: C is not read (may hold NaN)
      }
  });
  return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long sa,
                                         const float* B, int ldb, long long sb, const float* beta, float* C, int ldc,
                                         long long sc, int batch) {
  if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  for (int i = 0; i < batch; ++i) {  // each GEMM checks its own operand ranges
    cublasStatus_t st = cublasSgemm(h, ta, tb, m, n, k, alpha, A + i * sa, lda, B + i * sb, ldb, beta, C + i * sc, ldc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}
