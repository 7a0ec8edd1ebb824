// The measured ceilings every other benchmark reports its fractions against, printed once per
// run so docs/PERFORMANCE.md can quote them with the device: device-to-device copy bandwidth
// (GB/s, read + write) for bandwidth-bound kernels, and the cuBLAS SGEMM peak in plain FP32 and
// with TF32 tensor cores (GFLOP/s) for conv and dense.
#include "benchmarks/bench_util.h"

namespace {

void BM_CopyBandwidth(benchmark::State& state) {
  for (auto _ : state) state.SetIterationTime(1.0);  // the value is the counter, not the time
  state.counters["GB/s"] = kiln::bench::measured_copy_bandwidth();
}
BENCHMARK(BM_CopyBandwidth)->UseManualTime()->Iterations(1);

void BM_SgemmPeak(benchmark::State& state) {
  const bool tf32 = state.range(0) != 0;
  for (auto _ : state) state.SetIterationTime(1.0);
  state.counters["GFLOP/s"] = kiln::bench::measured_sgemm_peak(tf32);
  state.SetLabel(tf32 ? "tf32 tensor cores" : "fp32 (default math)");
}
BENCHMARK(BM_SgemmPeak)->UseManualTime()->Iterations(1)->Arg(0)->Arg(1);

}  // namespace

KILN_BENCH_MAIN()
