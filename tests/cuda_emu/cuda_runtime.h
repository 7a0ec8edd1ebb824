// kiln's CUDA emulator: the subset of the CUDA runtime, the device built-ins and the launch
// syntax that kiln's kernels use, implemented on the CPU so the real kernel source runs in the
// GPU tests on a machine without a GPU (the `emu` preset). A test harness, not a product: it
// answers "is the indexing, the tiling, the barrier and shuffle logic, the launch geometry and the
// stream-capture discipline right?", never "is it fast?".
//
// Execution model. A launch runs its blocks one after another; the threads of a block are fibers
// (a small x86-64 stack switch) that run until they reach __syncthreads() or a warp collective, so shared memory
// (`__shared__` becomes `static`) and barriers behave as on the device. KILN_EMU_ORDER=forward
// (default) | reverse | random[:seed] sets the order in which runnable threads are resumed
// between barriers, and the order of the blocks: a kernel whose result changes with the order
// has a race (a missing barrier, or blocks that depend on each other's writes).
// A barrier some live threads can never reach is reported as a deadlock and aborts the process.
// cudaEventQuery answers "not ready" at the first query after a record (KILN_EMU_EVENTS=late,
// the default: a device behind the host) or "done" at once (KILN_EMU_EVENTS=ready).
//
// Checks the real device would make, or that compute-sanitizer would: launch geometry
// (zero/oversized grids and blocks -> cudaErrorInvalidConfiguration from cudaGetLastError),
// pointer kernel arguments that lie in no device allocation (host pointers passed to a kernel),
// cudaMemcpy/cudaMemset ranges against the allocation they touch, synchronous calls and
// default-stream work while a stream is being captured (cudaErrorStreamCaptureUnsupported /
// Implicit), and use of freed or unknown device pointers in cudaFree. Device memory is host
// memory, so run the emulated tests under ASan to get memcheck's out-of-bounds reports; new
// allocations are filled with NaN bytes (initcheck's concern: memory read before any write).
#pragma once

#include <math.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- qualifiers --------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __constant__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

// ---- vector types ------------------------------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

// ---- runtime types -----------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCooperativeLaunchTooLarge = 720,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaDeviceAttr {
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrL2CacheSize = 38,
  cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
  cudaDevAttrCooperativeLaunch = 95,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventBlockingSync = 1, cudaEventDisableTiming = 2;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int clockRate;
  int major, minor;
  int multiProcessorCount;
  int memoryClockRate;
  int memoryBusWidth;
  int l2CacheSize;
  int maxThreadsPerMultiProcessor;
  size_t sharedMemPerMultiprocessor;
};

struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
typedef CUgraph_st* cudaGraph_t;
typedef CUgraphExec_st* cudaGraphExec_t;

// ---- runtime API -------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaRuntimeGetVersion(int* v);
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaDeviceSynchronize();

cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
// The C++ conveniences of the real header: any T** for the out-pointer.
template <typename T>
cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(p), bytes); }
template <typename T>
cudaError_t cudaMallocHost(T** p, size_t bytes) { return cudaMallocHost(reinterpret_cast<void**>(p), bytes); }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s = nullptr);

cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);

cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);

// Kernel attributes and occupancy, keyed by the kernel's address. The emulated SM has 2,048
// threads and 228 KiB of shared memory (1 KiB reserved per block, 227 KiB per block at most);
// a launch with more than 48 KiB of dynamic shared memory needs
// cudaFuncAttributeMaxDynamicSharedMemorySize raised first, as on the device. Only
// cudaLaunchCooperativeKernel knows the kernel's address: a `<<<>>>` launch stays at 48 KiB
// whatever the attribute says. The occupancy counts threads and dynamic shared memory only (no
// registers, no static shared memory): a device may fit fewer blocks than the emulator.
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void* func,
                                                          int block_size, size_t dynamic_smem);
template <typename T>
cudaError_t cudaFuncSetAttribute(T* func, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}
template <typename T>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, T* func, int block_size,
                                                          size_t dynamic_smem) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, reinterpret_cast<const void*>(func),
                                                       block_size, dynamic_smem);
}

// ---- device built-ins --------------------------------------------------------------------------
namespace kiln_emu {

struct ThreadState {
  uint3 thread_idx;
  unsigned lane, warp;
};
struct BlockState {
  uint3 block_idx;
  dim3 block_dim, grid_dim;
};
extern thread_local ThreadState* g_thread;
extern thread_local BlockState g_block;

// The resume order between barriers, as KILN_EMU_ORDER spells it; false for a bad spec.
bool set_order(const char* spec);

void syncthreads(const char* file, int line);
// cooperative_groups::this_grid().sync(): every thread of the grid waits here (cooperative
// launches only; traps otherwise).
void grid_sync();
// The calling block's dynamic shared memory (the launch's smem bytes, poisoned with NaN bytes at
// block start; each block of a cooperative launch keeps its own across grid syncs).
void* dynamic_smem();
// Warp collective: every live lane of the calling warp deposits `bits`, waits for the others,
// and gets the whole warp's deposits back (32 slots) before the warp moves on.
const uint64_t* warp_exchange(uint64_t bits);
[[noreturn]] void device_trap(const char* what);

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type above 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
template <typename T>
T shfl_from(T v, int src, int width) {
  const unsigned lane = g_thread->lane;
  const uint64_t* slots = warp_exchange(to_bits(v));
  const unsigned base = lane & ~static_cast<unsigned>(width - 1);
  if (src < 0 || static_cast<unsigned>(src) >= base + width || static_cast<unsigned>(src) < base) src = lane;
  return from_bits<T>(slots[src]);
}
}  // namespace kiln_emu

#define threadIdx (::kiln_emu::g_thread->thread_idx)
#define blockIdx (::kiln_emu::g_block.block_idx)
#define blockDim (::kiln_emu::g_block.block_dim)
#define gridDim (::kiln_emu::g_block.grid_dim)
constexpr int warpSize = 32;

// The barrier is identified by its source line (an optimiser may duplicate its call site).
#define __syncthreads() ::kiln_emu::syncthreads(__FILE__, __LINE__)
inline void __syncwarp(unsigned = 0xffffffffu) { kiln_emu::warp_exchange(0); }
// `extern __shared__ T name[]` cannot follow `__shared__` -> `static`: kernels declare dynamic
// shared memory with this macro (engine/cooperative.h gives the device spelling).
#define KILN_DYNAMIC_SMEM(T, name) T* name = static_cast<T*>(::kiln_emu::dynamic_smem())
inline void __threadfence() {}
inline void __threadfence_block() {}

template <typename T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int base = static_cast<int>(kiln_emu::g_thread->lane) & ~(width - 1);
  return kiln_emu::shfl_from(v, base + (src & (width - 1)), width);
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  return kiln_emu::shfl_from(v, static_cast<int>(kiln_emu::g_thread->lane) ^ mask, width);
}
template <typename T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(kiln_emu::g_thread->lane);
  const int in_seg = (lane & (width - 1)) + static_cast<int>(delta);
  return kiln_emu::shfl_from(v, in_seg < width ? lane + static_cast<int>(delta) : lane, width);
}
template <typename T>
T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = static_cast<int>(kiln_emu::g_thread->lane);
  const int in_seg = (lane & (width - 1)) - static_cast<int>(delta);
  return kiln_emu::shfl_from(v, in_seg >= 0 ? lane - static_cast<int>(delta) : lane, width);
}
unsigned __ballot_sync(unsigned mask, int pred);
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

template <typename T>
T __ldg(const T* p) { return *p; }
template <typename T>
T __ldcg(const T* p) { return *p; }
template <typename T>
T __ldcs(const T* p) { return *p; }
template <typename T>
void __stcs(T* p, T v) { *p = v; }
template <typename T>
void __stcg(T* p, T v) { *p = v; }

// Blocks run one at a time on one host thread, so a plain read-modify-write is atomic.
template <typename T>
T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <typename T>
T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <typename T>
T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <typename T>
T atomicMax(T* p, T v) { T old = *p; if (v > old) *p = v; return old; }
template <typename T>
T atomicMin(T* p, T v) { T old = *p; if (v < old) *p = v; return old; }
template <typename T>
T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }
inline unsigned atomicInc(unsigned* p, unsigned limit) {
  unsigned old = *p;
  *p = old >= limit ? 0 : old + 1;
  return old;
}

inline float __int_as_float(int v) { return kiln_emu::from_bits<float>(static_cast<uint32_t>(v)); }
inline int __float_as_int(float v) { return static_cast<int>(kiln_emu::to_bits(v)); }
inline unsigned __float_as_uint(float v) { return static_cast<unsigned>(kiln_emu::to_bits(v)); }
inline float __uint_as_float(unsigned v) { return kiln_emu::from_bits<float>(v); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(static_cast<unsigned>(v)); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline uint64_t __umul64hi(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}
// CUDA's unqualified min/max overloads for the arithmetic types device code mixes.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- launches ----------------------------------------------------------------------------------
namespace kiln_emu {

// Runs `body` for every thread of every block (or records it into the stream's graph while the
// stream is being captured). `pointers` are the kernel's pointer arguments, checked against the
// device allocations; `name` identifies the kernel in error messages.
// `func` (may be null) is the kernel's address, for its attributes; `cooperative`: all blocks run
// together and may meet at grid_sync (cudaErrorCooperativeLaunchTooLarge beyond what fits).
cudaError_t launch_grid(const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                        std::function<void()> body, const void* const* pointers, size_t npointers,
                        const void* func = nullptr, bool cooperative = false);

// The pointers among a launch's arguments, for the check that each lies in a device allocation.
// A struct argument that carries device pointers lists them with a function found by
// argument-dependent lookup, `void kiln_emu_pointers(const T&, PointerList&)` (next to the
// struct, under #ifdef KILN_CUDA_EMU); other structs are not looked into.
struct PointerList {
  static constexpr size_t kMax = 64;
  const void* p[kMax] = {};
  size_t n = 0;
  void add(const void* q) {
    if (n == kMax) device_trap("a launch with more than 64 pointer arguments");
    p[n++] = q;
  }
};
template <typename T>
auto collect_pointer(const T& v, PointerList& out, int)
    -> decltype(kiln_emu_pointers(v, out), void()) {
  kiln_emu_pointers(v, out);
}
template <typename T>
void collect_pointer(const T& v, PointerList& out, long) {
  if constexpr (std::is_pointer<T>::value) out.add(reinterpret_cast<const void*>(v));
}

struct Launcher {
  const char* name;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  const void* func = nullptr;
  bool cooperative = false;
  // `kernel` is a stateless lambda forwarding to the kernel (so template arguments are deduced
  // from the launch arguments, as nvcc does). Arguments are copied at launch, as on the device.
  template <typename F, typename... A>
  cudaError_t operator()(F kernel, A&&... args) const {
    auto params = std::make_shared<std::tuple<std::decay_t<A>...>>(std::forward<A>(args)...);
    PointerList ptrs;
    std::apply([&](const auto&... v) { (collect_pointer(v, ptrs, 0), ...); }, *params);
    return launch_grid(
        name, grid, block, smem, stream, [kernel, params] { std::apply(kernel, *params); }, ptrs.p,
        ptrs.n, func, cooperative);
  }
};

inline Launcher make_launcher(const char* name, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = nullptr) {
  return Launcher{name, grid, block, smem, stream};
}
template <typename Tuple, size_t... I>
Tuple args_from(void** args, std::index_sequence<I...>) {
  return Tuple(*static_cast<std::tuple_element_t<I, Tuple>*>(args[I])...);
}
}  // namespace kiln_emu

// The runtime's cooperative launch: args[i] points at the kernel's i-th parameter (of its exact
// type), copied at launch.
template <typename... P>
cudaError_t cudaLaunchCooperativeKernel(void (*func)(P...), dim3 grid, dim3 block, void** args,
                                        size_t smem = 0, cudaStream_t stream = nullptr) {
  using Tuple = std::tuple<std::decay_t<P>...>;
  Tuple params = kiln_emu::args_from<Tuple>(args, std::index_sequence_for<P...>{});
  kiln_emu::Launcher l{
      "cooperative kernel", grid, block, smem, stream, reinterpret_cast<const void*>(func), true};
  return std::apply([&](auto&... v) { return l([func](auto... a) { func(a...); }, v...); }, params);
}

// `k<<<g, b, s, st>>>(args)` is rewritten by rewrite_launches.py into
// `::kiln_emu::make_launcher("k", g, b, s, st)([](auto... a) { k(a...); }, args)`.
