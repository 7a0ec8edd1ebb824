// Shared benchmark plumbing: CUDA-event timing of one iteration (manual time), an L2 flush
// between iterations so each run starts cold, device skip, bandwidth/FLOP counters, and the
// measured ceilings they are reported against (device copy bandwidth, cuBLAS SGEMM peak in FP32
// and TF32), each measured once per process.
#pragma once
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>

#include "engine/cuda_check.h"
#include "engine/device.h"

namespace kiln::bench {

// On the CUDA emulator (emu preset) the benchmarks only exercise their code: sizes and
// repetitions shrink, and the numbers mean nothing.
#ifdef KILN_CUDA_EMU
constexpr bool kOnEmulator = true;
#else
constexpr bool kOnEmulator = false;
#endif

// Writes a buffer larger than L2 (H100: 50 MB) so the timed op does not start warm.
inline void flush_l2() {
  static void* buf = nullptr;
  static size_t bytes = 0;
  if (!buf) {
    int dev = 0, l2 = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev);
    bytes = static_cast<size_t>(l2) * 2;
    KILN_CUDA_CHECK(cudaMalloc(&buf, bytes));
  }
  KILN_CUDA_CHECK(cudaMemsetAsync(buf, 0, bytes, nullptr));
}

// Runs fn once per iteration on the default stream between two events and reports its time.
// fn must enqueue its work on the stream it is given.
inline void time_cuda(benchmark::State& state, cudaStream_t stream, const std::function<void()>& fn,
                      bool flush = true) {
  cudaEvent_t a, b;
  KILN_CUDA_CHECK(cudaEventCreate(&a));
  KILN_CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn();  // warm-up
  KILN_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (auto _ : state) {
    if (flush) flush_l2();
    KILN_CUDA_CHECK(cudaDeviceSynchronize());
    KILN_CUDA_CHECK(cudaEventRecord(a, stream));
    fn();
    KILN_CUDA_CHECK(cudaEventRecord(b, stream));
    KILN_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    KILN_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    state.SetIterationTime(ms / 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
}

// The shortest of `reps` runs of fn on the default stream, in milliseconds (CUDA events); the
// ceilings below are best cases, not medians.
inline float best_of_ms(int reps, const std::function<void()>& fn) {
  cudaEvent_t a, b;
  KILN_CUDA_CHECK(cudaEventCreate(&a));
  KILN_CUDA_CHECK(cudaEventCreate(&b));
  float best = 1e30f;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    best = std::min(best, ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return best;
}

// Achievable matrix-multiply peak (GFLOP/s): the best of 5 timed cuBLAS SGEMMs of 8192^3
// after a warm-up, in plain FP32 (tf32 false: CUBLAS_DEFAULT_MATH, cuBLAS's fastest FP32) or with
// TF32 tensor cores. The practical ceiling that compute-bound kernels (conv, dense) are
// reported against; below the data-sheet peak by what even cuBLAS cannot reach.
inline double measured_sgemm_peak(bool tf32) {
  static double gflops[2] = {0, 0};
  double& g = gflops[tf32 ? 1 : 0];
  if (g > 0) return g;
  const int n = kOnEmulator ? 256 : 8192;  // the emulator's SGEMM is a naive loop
  const size_t bytes = size_t(n) * n * sizeof(float);
  float *a, *b, *c;
  KILN_CUDA_CHECK(cudaMalloc(&a, bytes));
  KILN_CUDA_CHECK(cudaMalloc(&b, bytes));
  KILN_CUDA_CHECK(cudaMalloc(&c, bytes));
  KILN_CUDA_CHECK(cudaMemset(a, 0, bytes));  // zeros: the timing does not depend on values
  KILN_CUDA_CHECK(cudaMemset(b, 0, bytes));
  cublasHandle_t h;
  KILN_CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate failed");
  cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
  const float one = 1.f, zero = 0.f;
  auto run = [&] { cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c, n); };
  run();  // warm-up (cuBLAS picks and loads its kernel)
  KILN_CUDA_CHECK(cudaDeviceSynchronize());
  const float best = best_of_ms(5, run);
  cublasDestroy(h);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  g = 2.0 * n * n * double(n) / (best * 1e-3) * 1e-9;
  return g;
}

inline void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] = benchmark::Counter(bytes_per_iter * 1e-9 * state.iterations(),
                                              benchmark::Counter::kIsRate);
}
// GFLOP/s, and of_fp32_peak: the same rate as a fraction of measured_sgemm_peak(false).
inline void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9 * state.iterations(),
                                                 benchmark::Counter::kIsRate);
  state.counters["of_fp32_peak"] = benchmark::Counter(
      flops_per_iter * 1e-9 * state.iterations() / measured_sgemm_peak(false), benchmark::Counter::kIsRate);
}

// A device-to-device copy of `bytes` timed as the kernels are (time_cuda: cold L2 after a flush,
// one copy per event pair), reported as GB/s with read and write counted: the rate a
// bandwidth-bound kernel of that size could reach under the same measurement.
inline void time_copy_baseline(benchmark::State& state, size_t bytes) {
  void *x, *y;
  KILN_CUDA_CHECK(cudaMalloc(&x, bytes));
  KILN_CUDA_CHECK(cudaMalloc(&y, bytes));
  time_cuda(state, nullptr, [&] {
    KILN_CUDA_CHECK(cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice, nullptr));
  });
  set_bytes(state, 2.0 * bytes);
  cudaFree(x);
  cudaFree(y);
}

// Measured device-to-device copy bandwidth (GB/s, read+write counted), the ceiling that
// bandwidth-bound kernels are reported against.
inline double measured_copy_bandwidth() {
  static double gbs = 0;
  if (gbs > 0) return gbs;
  size_t n = size_t(1) << (kOnEmulator ? 24 : 28);  // 256 MiB (16 MiB on the emulator)
  void *s, *d;
  KILN_CUDA_CHECK(cudaMalloc(&s, n));
  KILN_CUDA_CHECK(cudaMalloc(&d, n));
  for (int i = 0; i < 3; ++i) cudaMemcpy(d, s, n, cudaMemcpyDeviceToDevice);
  const float best = best_of_ms(10, [&] { cudaMemcpyAsync(d, s, n, cudaMemcpyDeviceToDevice); });
  cudaFree(s);
  cudaFree(d);
  gbs = 2.0 * n / (best * 1e-3) * 1e-9;
  return gbs;
}

}  // namespace kiln::bench

// main() for every bench binary: exits 0 with a note when no GPU answers.
#define KILN_BENCH_MAIN()                                                      \
  int main(int argc, char** argv) {                                            \
    if (!::kiln::cuda_available()) {                                           \
      std::printf("no CUDA device answers: benchmarks skipped\n");            \
      return 0;                                                                \
    }                                                                          \
    benchmark::Initialize(&argc, argv);                                        \
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;          \
    benchmark::RunSpecifiedBenchmarks();                                       \
    benchmark::Shutdown();                                                     \
    return 0;                                                                  \
  }
