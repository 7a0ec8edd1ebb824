// Dropout forward (element-wise and channel) in GB/s (read x, write y) against a plain
// device-to-device copy of the same bytes, the ceiling for a one-pass kernel.
#include <cuda_runtime.h>

#include "bench_util.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"

namespace {

void run(benchmark::State& state, bool channel) {
  const kiln::DropoutShape s{state.range(0), state.range(1), state.range(2) * state.range(3)};
  const size_t bytes = static_cast<size_t>(s.numel()) * sizeof(float);
  float *x, *y;
  KILN_CUDA_CHECK(cudaMalloc(&x, bytes));
  KILN_CUDA_CHECK(cudaMalloc(&y, bytes));
  KILN_CUDA_CHECK(cudaMemset(x, 0, bytes));
  kiln::DropoutParams p{kiln::dropout_key(1, 2, 3), kiln::dropout_threshold(0.1), 1.0f / 0.9f, channel};
  kiln::bench::time_cuda(state, nullptr, [&] { kiln::dropout_fwd(x, y, p, s, nullptr); });
  kiln::bench::set_bytes(state, 2.0 * bytes);
  state.counters["frac_copy"] = benchmark::Counter(
      2.0 * bytes * 1e-9 * state.iterations() / kiln::bench::measured_copy_bandwidth(),
      benchmark::Counter::kIsRate);
  cudaFree(x);
  cudaFree(y);
}

void BM_DropoutFwd(benchmark::State& state) { run(state, false); }
void BM_Dropout2dFwd(benchmark::State& state) { run(state, true); }

void BM_CopyBaseline(benchmark::State& state) {
  kiln::bench::time_copy_baseline(state, static_cast<size_t>(state.range(0) * state.range(1) *
                                                             state.range(2) * state.range(3)) *
                                             sizeof(float));
}

void shapes(benchmark::internal::Benchmark* b) {
  b->Args({128, 16, 28, 28})->Args({512, 16, 28, 28})->Args({64, 64, 56, 56})->Args({256, 1, 1, 4097});
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_DropoutFwd)->Apply(shapes);
BENCHMARK(BM_Dropout2dFwd)->Apply(shapes);
BENCHMARK(BM_CopyBaseline)->Apply(shapes);

}  // namespace

KILN_BENCH_MAIN()
