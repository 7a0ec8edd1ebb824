// The CUDA emulator's own tests (tests/cuda_emu, `emu` preset only): the GPU suite trusts it to
// run kernels as a device would and to fail where a device or compute-sanitizer would, so each
// behaviour it claims is checked here, including the failures.
#ifdef KILN_CUDA_EMU
#include <cooperative_groups.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

namespace {

constexpr int kN = 64;

// Each thread publishes its id, then reads its right neighbour's; `barrier` off is a race.
void rotate_kernel(int* out, bool barrier) {
  __shared__ int s[kN];
  const int t = threadIdx.x;
  s[t] = t + 1000 * static_cast<int>(blockIdx.x);
  if (barrier) __syncthreads();
  out[blockIdx.x * kN + t] = s[(t + 1) % kN];
}

std::vector<int> run_rotate(bool barrier, const char* order) {
  EXPECT_TRUE(kiln_emu::set_order(order));
  int* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, 3 * kN * sizeof(int)), cudaSuccess);
  kiln_emu::make_launcher("rotate_kernel", 3, kN)([](auto... a) { rotate_kernel(a...); }, d, barrier);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> h(3 * kN);
  EXPECT_EQ(cudaMemcpy(h.data(), d, h.size() * sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d);
  kiln_emu::set_order("forward");
  return h;
}

std::vector<int> rotate_expected() {
  std::vector<int> want(3 * kN);
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < kN; ++t) want[b * kN + t] = (t + 1) % kN + 1000 * b;
  return want;
}

TEST(CudaEmu, BarrierMakesSharedMemoryWritesVisibleInEveryOrder) {
  for (const char* order : {"forward", "reverse", "random:7"}) EXPECT_EQ(run_rotate(true, order), rotate_expected()) << order;
}

TEST(CudaEmu, MissingBarrierShowsUpInReverseOrder) {
  // Without the barrier, reverse order runs thread t before t+1 has written: the race is visible.
  EXPECT_NE(run_rotate(false, "reverse"), rotate_expected());
}

// Block b adds 1 to what block b-1 wrote: a dependency between blocks that CUDA never orders.
void chain_kernel(int* v) {
  if (threadIdx.x == 0) v[blockIdx.x + 1] = v[blockIdx.x] + 1;
}

TEST(CudaEmu, BlocksThatDependOnEachOtherShowUpInReverseOrder) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 9 * sizeof(int)), cudaSuccess);
  const auto run = [&](const char* order) {
    EXPECT_TRUE(kiln_emu::set_order(order));
    cudaMemset(d, 0, 9 * sizeof(int));
    kiln_emu::make_launcher("chain_kernel", 8, 32)([](auto... a) { chain_kernel(a...); }, d);
    int last = -1;
    cudaMemcpy(&last, d + 8, sizeof last, cudaMemcpyDeviceToHost);
    kiln_emu::set_order("forward");
    return last;
  };
  EXPECT_EQ(run("forward"), 8);
  EXPECT_EQ(run("reverse"), 1) << "each block saw its predecessor's slot still 0";
  cudaFree(d);
}

void warp_kernel(const int* in, int* sum_xor, int* sum_down, unsigned* ballot) {
  const int t = threadIdx.x;
  int v = in[t], w = in[t];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  for (int o = 16; o > 0; o >>= 1) w += __shfl_down_sync(0xffffffffu, w, o);
  sum_xor[t] = v;
  sum_down[t] = w;
  ballot[t] = __ballot_sync(0xffffffffu, in[t] % 3 == 0);
}

TEST(CudaEmu, WarpShufflesAndBallotFollowCudaSemantics) {
  std::vector<int> h(64);
  std::iota(h.begin(), h.end(), 1);
  int *in, *sx, *sd;
  unsigned* b;
  ASSERT_EQ(cudaMalloc(&in, 64 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&sx, 64 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&sd, 64 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, 64 * sizeof(unsigned)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(in, h.data(), 64 * sizeof(int), cudaMemcpyHostToDevice), cudaSuccess);
  kiln_emu::make_launcher("warp_kernel", 1, 64)([](auto... a) { warp_kernel(a...); }, in, sx, sd, b);
  std::vector<int> x(64), d(64);
  std::vector<unsigned> bal(64);
  cudaMemcpy(x.data(), sx, 64 * sizeof(int), cudaMemcpyDeviceToHost);
  cudaMemcpy(d.data(), sd, 64 * sizeof(int), cudaMemcpyDeviceToHost);
  cudaMemcpy(bal.data(), b, 64 * sizeof(unsigned), cudaMemcpyDeviceToHost);
  for (int w = 0; w < 2; ++w) {
    int total = 0;
    unsigned mask = 0;
    for (int l = 0; l < 32; ++l) {
      total += h[w * 32 + l];
      if (h[w * 32 + l] % 3 == 0) mask |= 1u << l;
    }
    for (int l = 0; l < 32; ++l) {
      EXPECT_EQ(x[w * 32 + l], total) << "xor butterfly: every lane holds the warp sum";
      EXPECT_EQ(bal[w * 32 + l], mask);
    }
    EXPECT_EQ(d[w * 32], total) << "shfl_down tree: lane 0 holds the warp sum";
    // lane 31 never receives (source past the warp): it keeps 2^5 copies of its own value
    EXPECT_EQ(d[w * 32 + 31], 32 * h[w * 32 + 31]);
  }
  cudaFree(in);
  cudaFree(sx);
  cudaFree(sd);
  cudaFree(b);
}

void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) __syncthreads();  // UB in CUDA: a barrier under a non-uniform condition
  out[threadIdx.x] = 1;
  __syncthreads();
}

TEST(CudaEmuDeathTest, DivergentBarrierIsReported) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 64 * sizeof(int)), cudaSuccess);
  EXPECT_DEATH(kiln_emu::make_launcher("divergent_barrier_kernel", 1, 64)(
                   [](auto... a) { divergent_barrier_kernel(a...); }, d),
               "divergent __syncthreads in kernel divergent_barrier_kernel");
  cudaFree(d);
}

void half_warp_shuffle_kernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);  // full mask, half the lanes
  __syncthreads();
  out[threadIdx.x] = v;
}

TEST(CudaEmuDeathTest, WarpCollectiveMissingLanesIsADeadlock) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 32 * sizeof(int)), cudaSuccess);
  EXPECT_DEATH(kiln_emu::make_launcher("half_warp_shuffle_kernel", 1, 32)(
                   [](auto... a) { half_warp_shuffle_kernel(a...); }, d),
               "deadlock in kernel half_warp_shuffle_kernel");
  cudaFree(d);
}

void touch_kernel(float* p) { p[threadIdx.x] = 1.f; }

TEST(CudaEmuDeathTest, HostPointerPassedToKernelTraps) {
  std::vector<float> host(32);
  EXPECT_DEATH(kiln_emu::make_launcher("touch_kernel", 1, 32)([](auto... a) { touch_kernel(a...); }, host.data()),
               "touch_kernel: pointer argument #1 .* is in no device allocation");
}

TEST(CudaEmu, BadLaunchGeometryIsInvalidConfiguration) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 2048 * sizeof(float)), cudaSuccess);
  auto k = [](auto... a) { touch_kernel(a...); };
  kiln_emu::make_launcher("touch_kernel", 0, 32)(k, d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "empty grid";
  kiln_emu::make_launcher("touch_kernel", 1, 1025)(k, d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "block above 1024 threads";
  kiln_emu::make_launcher("touch_kernel", dim3(1, 65536), 32)(k, d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "grid.y above 65535";
  kiln_emu::make_launcher("touch_kernel", 1, 32)(k, d);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaFree(d);
}

// Cooperative launch: block b publishes b + 1 and fills its dynamic shared memory, the grid
// syncs (when `sync`), then each block reads its neighbour's value and its own shared memory.
void neighbour_kernel(int* v, int* out, bool sync) {
  KILN_DYNAMIC_SMEM(int, mine);
  const int b = static_cast<int>(blockIdx.x), g = static_cast<int>(gridDim.x);
  mine[threadIdx.x] = 100 * b + static_cast<int>(threadIdx.x);
  if (threadIdx.x == 0) v[b] = b + 1;
  if (sync) cooperative_groups::this_grid().sync();
  out[2 * (b * 64 + static_cast<int>(threadIdx.x))] = v[(b + 1) % g];
  out[2 * (b * 64 + static_cast<int>(threadIdx.x)) + 1] = mine[(threadIdx.x + 1) % 64];
}

std::vector<int> run_neighbours(const char* order, bool sync, int blocks = 6) {
  EXPECT_TRUE(kiln_emu::set_order(order));
  int *v = nullptr, *out = nullptr;
  EXPECT_EQ(cudaMalloc(&v, blocks * sizeof(int)), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&out, blocks * 128 * sizeof(int)), cudaSuccess);
  cudaMemset(v, 0, blocks * sizeof(int));
  void* args[] = {&v, &out, &sync};
  EXPECT_EQ(cudaLaunchCooperativeKernel(neighbour_kernel, blocks, 64, args, 64 * sizeof(int)),
            cudaSuccess);
  std::vector<int> h(blocks * 128);
  cudaMemcpy(h.data(), out, h.size() * sizeof(int), cudaMemcpyDeviceToHost);
  cudaFree(v);
  cudaFree(out);
  kiln_emu::set_order("forward");
  return h;
}

TEST(CudaEmu, CooperativeLaunchGridSyncAndPerBlockDynamicSharedMemory) {
  std::vector<int> want(6 * 128);
  for (int b = 0; b < 6; ++b)
    for (int t = 0; t < 64; ++t) {
      want[2 * (b * 64 + t)] = (b + 1) % 6 + 1;
      want[2 * (b * 64 + t) + 1] = 100 * b + (t + 1) % 64;
    }
  for (const char* order : {"forward", "reverse", "random:5"})
    EXPECT_EQ(run_neighbours(order, true), want) << order;
  // Without the grid sync, a block reads its neighbour's slot before the neighbour has run.
  EXPECT_NE(run_neighbours("forward", false), want);
}

TEST(CudaEmu, CooperativeLaunchLimitsAndDynamicSharedMemoryOptIn) {
  int *v = nullptr, *out = nullptr;
  bool sync = true;
  ASSERT_EQ(cudaMalloc(&v, 4096 * sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&out, 4096 * 128 * sizeof(int)), cudaSuccess);
  void* args[] = {&v, &out, &sync};
  int per_sm = 0;
  ASSERT_EQ(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, neighbour_kernel, 64, 256),
            cudaSuccess);
  EXPECT_EQ(per_sm, 32);  // 2,048 threads an SM, at most 32 blocks
  ASSERT_EQ(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, neighbour_kernel, 256, 56 * 1024),
      cudaSuccess);
  EXPECT_EQ(per_sm, 4);  // 228 KiB an SM, 1 KiB reserved a block
  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  EXPECT_EQ(cudaLaunchCooperativeKernel(neighbour_kernel, 32 * sms + 1, 64, args, 256),
            cudaErrorCooperativeLaunchTooLarge);
  EXPECT_EQ(cudaGetLastError(), cudaErrorCooperativeLaunchTooLarge);
  // Above 48 KiB of dynamic shared memory only after the kernel's attribute allows it.
  EXPECT_EQ(cudaLaunchCooperativeKernel(neighbour_kernel, 2, 64, args, 64 * 1024),
            cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaFuncSetAttribute(neighbour_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 228 * 1024),
            cudaErrorInvalidValue);
  cudaGetLastError();
  ASSERT_EQ(cudaFuncSetAttribute(neighbour_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 64 * 1024),
            cudaSuccess);
  EXPECT_EQ(cudaLaunchCooperativeKernel(neighbour_kernel, 2, 64, args, 64 * 1024), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaFree(v);
  cudaFree(out);
}

// A struct argument that lists its pointers (kiln_emu_pointers) has them checked like pointer
// arguments: a host pointer inside it traps at launch, as it would fault on the device.
struct TouchArgs {
  float* p;
};
void kiln_emu_pointers(const TouchArgs& a, kiln_emu::PointerList& out) {
  out.add(a.p);
}
void touch_struct_kernel(TouchArgs a) {
  a.p[threadIdx.x] = 1.f;
}

TEST(CudaEmuDeathTest, HostPointerInsideAStructArgumentTraps) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 32 * sizeof(float)), cudaSuccess);
  auto k = [](auto... a) { touch_struct_kernel(a...); };
  EXPECT_EQ(kiln_emu::make_launcher("touch_struct_kernel", 1, 32)(k, TouchArgs{d}), cudaSuccess);
  std::vector<float> host(32);
  EXPECT_DEATH(kiln_emu::make_launcher("touch_struct_kernel", 1, 32)(k, TouchArgs{host.data()}),
               "touch_struct_kernel: pointer argument #1 .* is in no device allocation");
  cudaFree(d);
}

void grid_sync_kernel(int* out) {
  cooperative_groups::this_grid().sync();
  out[threadIdx.x] = 1;
}
void early_exit_kernel(int* out) {
  if (blockIdx.x == 1) return;  // block 1 never reaches the grid sync
  cooperative_groups::this_grid().sync();
  out[threadIdx.x] = 1;
}

TEST(CudaEmuDeathTest, GridSyncOutsideCooperativeLaunchAndBlocksThatSkipItAreReported) {
  int* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 32 * sizeof(int)), cudaSuccess);
  EXPECT_DEATH(kiln_emu::make_launcher("grid_sync_kernel", 2, 32)(
                   [](auto... a) { grid_sync_kernel(a...); }, d),
               "grid sync in a kernel not launched with cudaLaunchCooperativeKernel");
  void* args[] = {&d};
  EXPECT_DEATH(cudaLaunchCooperativeKernel(early_exit_kernel, 3, 32, args),
               "2 blocks wait at a grid sync that 1 finished");
  cudaFree(d);
}

TEST(CudaEmu, CopiesAndSetsOutsideAnAllocationFail) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 16 * sizeof(float)), cudaSuccess);
  std::vector<float> h(17);
  EXPECT_EQ(cudaMemcpy(d, h.data(), 17 * sizeof(float), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(h.data(), d + 1, 16 * sizeof(float), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, h.data(), 16 * sizeof(float), cudaMemcpyDeviceToHost), cudaErrorInvalidValue)
      << "direction swapped";
  EXPECT_EQ(cudaMemset(d + 8, 0, 9 * sizeof(float)), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d, h.data(), 16 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  cudaGetLastError();
  EXPECT_EQ(cudaFree(d), cudaSuccess);
  EXPECT_EQ(cudaFree(d), cudaErrorInvalidValue) << "double free";
  cudaGetLastError();
}

TEST(CudaEmu, FreshAllocationsReadAsNanNotZero) {
  // Device memory is not cleared by cudaMalloc; the emulator fills it with NaN so that reading
  // memory nothing wrote cannot pass for a zero-initialised buffer.
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 1000 * sizeof(float)), cudaSuccess);
  std::vector<float> h(1000, 0.f);
  ASSERT_EQ(cudaMemcpy(h.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : h) ASSERT_TRUE(std::isnan(v));
  cudaFree(d);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 64 * sizeof(float)), cudaSuccess);
  EXPECT_TRUE(std::isnan(pinned[0]) && std::isnan(pinned[63]));
  cudaFreeHost(pinned);
}

void add_one_kernel(float* p) { p[threadIdx.x] += 1.f; }

TEST(CudaEmu, CaptureRecordsAndReplaysAndRejectsUnsafeCalls) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 32 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemset(d, 0, 32 * sizeof(float)), cudaSuccess);
  auto k = [](auto... a) { add_one_kernel(a...); };

  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  kiln_emu::make_launcher("add_one_kernel", 1, 32, 0, s)(k, d);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  float h = -1;
  ASSERT_EQ(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(h, 0.f) << "a captured launch does not run";
  cudaGraphExec_t e = nullptr;
  ASSERT_EQ(cudaGraphInstantiateWithFlags(&e, g, 0), cudaSuccess);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(h, 3.f) << "each replay runs it";

  // cudaMalloc during capture: refused, and the capture is invalidated
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, 64), cudaErrorStreamCaptureUnsupported);
  cudaGraph_t bad = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(bad, nullptr);
  // work on the legacy default stream during capture: refused
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  kiln_emu::make_launcher("add_one_kernel", 1, 32, 0, nullptr)(k, d);
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureImplicit);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();

  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);
  cudaFree(d);
  cudaStreamDestroy(s);
}

TEST(CudaEmu, SgemmColumnMajorWithBetaZeroIgnoringNanOutput) {
  // C(2x3) = A^T(2x4) * B(4x3); C starts as NaN, as a poisoned test output does
  const int m = 2, n = 3, k = 4;
  std::vector<float> a(k * m), b(k * n), c(m * n, NAN);
  for (int i = 0; i < k * m; ++i) a[i] = 0.5f * i - 1;
  for (int i = 0; i < k * n; ++i) b[i] = 0.25f * i + 2;
  float *da, *db, *dc;
  cudaMalloc(&da, a.size() * 4);
  cudaMalloc(&db, b.size() * 4);
  cudaMalloc(&dc, c.size() * 4);
  cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  const float one = 1, zero = 0;
  // A stored k x m column-major (lda = k), used transposed
  ASSERT_EQ(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, da, k, db, k, &zero, dc, m), CUBLAS_STATUS_SUCCESS);
  cudaMemcpy(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double want = 0;
      for (int l = 0; l < k; ++l) want += double(a[l + i * k]) * b[l + j * k];
      EXPECT_FLOAT_EQ(c[i + j * m], static_cast<float>(want)) << i << "," << j;
    }
  EXPECT_EQ(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, 1, db, k, &zero, dc, m),
            CUBLAS_STATUS_INVALID_VALUE)
      << "lda below the row count";
  cudaGetLastError();
  cublasDestroy(h);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

}  // namespace
#endif  // KILN_CUDA_EMU
