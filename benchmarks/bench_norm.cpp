// Batch norm and group norm kernels, forward (training) and backward, against cuDNN's batch norm
// on the same shapes. Bytes are the minimum traffic of the op (forward: read x, write y;
// backward: read x and dy, write dx), the same count for kiln and cuDNN, reported as GB/s and as
// a fraction of the measured device copy bandwidth.
// BatchNorm + ReLU (--fuse on): the fused kernels against the separate pair (batch norm, then the
// ReLU kernels), both counted with the fused op's minimum traffic (forward: x, y; backward: x,
// dy, y as the mask, dx), so their GB/s compare their times directly.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "bench_util.h"
#include "kernels/activation/activation.h"
#include "kernels/norm/norm.h"
#ifdef KILN_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace {

using kiln::NormShape;

struct DevBuf {
  float* p = nullptr;
  explicit DevBuf(size_t n, float fill = 0.5f) {
    KILN_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)));
    std::vector<float> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = fill + 0.001f * static_cast<float>(i % 997);
    KILN_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  ~DevBuf() { cudaFree(p); }
};

void counters(benchmark::State& state, double bytes) {
  kiln::bench::set_bytes(state, bytes);
  const double copy = kiln::bench::measured_copy_bandwidth();
  state.counters["copy_GB/s"] = copy;
  state.counters["frac_copy"] = benchmark::Counter(bytes * 1e-9 * state.iterations() / copy,
                                                   benchmark::Counter::kIsRate);
}

NormShape shape_of(const benchmark::State& state, int64_t groups = 1) {
  return {state.range(0), state.range(1), state.range(2) * state.range(3), groups};
}

// Switches batch norm's persistent kernels for one benchmark (kiln::batchnorm_set_persistent)
// and reports the grid they launch (0: the three-kernel path).
struct Persistent {
  Persistent(benchmark::State& state, bool on, const NormShape& s, bool backward) {
    kiln::batchnorm_set_persistent(on);
    // the emulator runs every block of a cooperative launch at once: few blocks there
    if (kiln::bench::kOnEmulator) kiln::batchnorm_persistent_limits(8, SIZE_MAX);
    if (on)
      state.counters["persistent_grid"] =
          static_cast<double>(kiln::batchnorm_persistent_grid(s, backward));
  }
  ~Persistent() {
    kiln::batchnorm_set_persistent(false);
    kiln::batchnorm_persistent_limits(0, SIZE_MAX);
  }
};

// Args: N, C, H, W (and groups for group norm).
template <bool PERSIST>
void BM_BatchNormFwdTrain(benchmark::State& state) {
  const NormShape s = shape_of(state);
  const Persistent persistent(state, PERSIST, s, false);
  DevBuf x(s.numel()), y(s.numel()), w(s.c, 1), b(s.c, 0), m(s.c), is(s.c), rm(s.c, 0), rv(s.c, 1),
      nbt(2, 0);
  void* ws;
  KILN_CUDA_CHECK(cudaMalloc(&ws, kiln::batchnorm_workspace_bytes(s)));
  kiln::bench::time_cuda(state, nullptr, [&] {
    kiln::batchnorm_fwd_train(x.p, w.p, b.p, y.p, m.p, is.p, rm.p, rv.p, nbt.p, 0.1, 1e-5, s, ws, nullptr);
  });
  counters(state, 2.0 * s.numel() * sizeof(float));
  cudaFree(ws);
}

template <bool PERSIST>
void BM_BatchNormBwdTrain(benchmark::State& state) {
  const NormShape s = shape_of(state);
  const Persistent persistent(state, PERSIST, s, true);
  DevBuf x(s.numel()), dy(s.numel(), -0.2f), dx(s.numel()), w(s.c, 1), m(s.c), is(s.c, 1),
      dw(s.c), db(s.c);
  void* ws;
  KILN_CUDA_CHECK(cudaMalloc(&ws, kiln::batchnorm_workspace_bytes(s)));
  kiln::bench::time_cuda(state, nullptr, [&] {
    kiln::batchnorm_bwd(x.p, dy.p, w.p, m.p, is.p, dx.p, dw.p, db.p, true, s, ws, nullptr);
  });
  counters(state, 3.0 * s.numel() * sizeof(float));
  cudaFree(ws);
}

template <bool FUSED>
void BM_BatchNormReluFwdTrain(benchmark::State& state) {
  const NormShape s = shape_of(state);
  DevBuf x(s.numel()), pre(s.numel()), y(s.numel()), w(s.c, 1), b(s.c, 0), m(s.c), is(s.c),
      rm(s.c, 0), rv(s.c, 1), nbt(2, 0);
  void* ws;
  KILN_CUDA_CHECK(cudaMalloc(&ws, kiln::batchnorm_workspace_bytes(s)));
  kiln::bench::time_cuda(state, nullptr, [&] {
    kiln::batchnorm_fwd_train(x.p, w.p, b.p, FUSED ? y.p : pre.p, m.p, is.p, rm.p, rv.p, nbt.p, 0.1,
                              1e-5, s, ws, nullptr, FUSED);
    if (!FUSED) kiln::activation_fwd(kiln::Act::ReLU, pre.p, y.p, s.numel(), nullptr);
  });
  counters(state, 2.0 * s.numel() * sizeof(float));
  cudaFree(ws);
}

template <bool FUSED>
void BM_BatchNormReluBwdTrain(benchmark::State& state) {
  const NormShape s = shape_of(state);
  // y in [-0.5, 0.5]: about half the mask is zero, as after a ReLU on normalised values
  DevBuf x(s.numel()), y(s.numel(), -0.5f), dy(s.numel(), -0.2f), dpre(s.numel()), dx(s.numel()),
      w(s.c, 1), m(s.c), is(s.c, 1), dw(s.c), db(s.c);
  void* ws;
  KILN_CUDA_CHECK(cudaMalloc(&ws, kiln::batchnorm_workspace_bytes(s)));
  kiln::bench::time_cuda(state, nullptr, [&] {
    if (!FUSED) kiln::activation_bwd(kiln::Act::ReLU, y.p, dy.p, dpre.p, s.numel(), nullptr);
    kiln::batchnorm_bwd(x.p, FUSED ? dy.p : dpre.p, w.p, m.p, is.p, dx.p, dw.p, db.p, true, s, ws,
                        nullptr, FUSED ? y.p : nullptr);
  });
  counters(state, 4.0 * s.numel() * sizeof(float));
  cudaFree(ws);
}

template <bool CACHED>
void BM_GroupNormFwd(benchmark::State& state) {
  const NormShape s = shape_of(state, state.range(4));
  kiln::groupnorm_set_cached(CACHED);
  DevBuf x(s.numel()), y(s.numel()), w(s.c, 1), b(s.c, 0), m(s.n * s.groups), is(s.n * s.groups);
  void* ws;
  KILN_CUDA_CHECK(cudaMalloc(&ws, kiln::groupnorm_workspace_bytes(s)));
  kiln::bench::time_cuda(state, nullptr, [&] {
    kiln::groupnorm_fwd(x.p, w.p, b.p, y.p, m.p, is.p, 1e-5, s, ws, nullptr);
  });
  counters(state, 2.0 * s.numel() * sizeof(float));
  cudaFree(ws);
}

template <bool CACHED>
void BM_GroupNormBwd(benchmark::State& state) {
  const NormShape s = shape_of(state, state.range(4));
  kiln::groupnorm_set_cached(CACHED);
  DevBuf x(s.numel()), dy(s.numel(), -0.2f), dx(s.numel()), w(s.c, 1), m(s.n * s.groups),
      is(s.n * s.groups, 1), dw(s.c), db(s.c);
  void* ws;
  KILN_CUDA_CHECK(cudaMalloc(&ws, kiln::groupnorm_workspace_bytes(s)));
  kiln::bench::time_cuda(state, nullptr, [&] {
    kiln::groupnorm_bwd(x.p, dy.p, w.p, m.p, is.p, dx.p, dw.p, db.p, s, ws, nullptr);
  });
  counters(state, 3.0 * s.numel() * sizeof(float));
  cudaFree(ws);
}

#ifdef KILN_HAVE_CUDNN
#define CUDNN_OK(expr) KILN_CHECK((expr) == CUDNN_STATUS_SUCCESS, "cuDNN error in " #expr)

struct CudnnBn {
  cudnnHandle_t h;
  cudnnTensorDescriptor_t xd, pd;
  explicit CudnnBn(const benchmark::State& state) {
    CUDNN_OK(cudnnCreate(&h));
    CUDNN_OK(cudnnCreateTensorDescriptor(&xd));
    CUDNN_OK(cudnnCreateTensorDescriptor(&pd));
    CUDNN_OK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                        static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                                        static_cast<int>(state.range(2)), static_cast<int>(state.range(3))));
    CUDNN_OK(cudnnSetTensor4dDescriptor(pd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                        static_cast<int>(state.range(1)), 1, 1));
  }
  ~CudnnBn() {
    cudnnDestroyTensorDescriptor(xd);
    cudnnDestroyTensorDescriptor(pd);
    cudnnDestroy(h);
  }
};

void BM_CudnnBatchNormFwdTrain(benchmark::State& state) {
  const NormShape s = shape_of(state);
  DevBuf x(s.numel()), y(s.numel()), w(s.c, 1), b(s.c, 0), m(s.c), is(s.c), rm(s.c, 0), rv(s.c, 1);
  CudnnBn d(state);
  const float one = 1, zero = 0;
  kiln::bench::time_cuda(state, nullptr, [&] {
    CUDNN_OK(cudnnBatchNormalizationForwardTraining(d.h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.xd,
                                                    x.p, d.xd, y.p, d.pd, w.p, b.p, 0.1, rm.p, rv.p,
                                                    1e-5, m.p, is.p));
  });
  counters(state, 2.0 * s.numel() * sizeof(float));
}

void BM_CudnnBatchNormBwd(benchmark::State& state) {
  const NormShape s = shape_of(state);
  DevBuf x(s.numel()), dy(s.numel(), -0.2f), dx(s.numel()), w(s.c, 1), m(s.c), is(s.c, 1),
      dw(s.c), db(s.c);
  CudnnBn d(state);
  const float one = 1, zero = 0;
  kiln::bench::time_cuda(state, nullptr, [&] {
    CUDNN_OK(cudnnBatchNormalizationBackward(d.h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero,
                                             d.xd, x.p, d.xd, dy.p, d.xd, dx.p, d.pd, w.p, dw.p,
                                             db.p, 1e-5, m.p, is.p));
  });
  counters(state, 3.0 * s.numel() * sizeof(float));
}
#endif

// 64x64x56x56 is 51 MB (about the H100/H200 L2), 128x64x56x56 twice that: what shared memory and
// L2 cannot hold between batch norm's two passes.
void bn_shapes(benchmark::internal::Benchmark* b) {
  b->Args({128, 16, 28, 28})
      ->Args({512, 16, 28, 28})
      ->Args({64, 64, 56, 56})
      ->Args({128, 64, 56, 56});
  b->Args({256, 128, 1, 1});
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}
void gn_shapes(benchmark::internal::Benchmark* b) {
  b->Args({128, 16, 28, 28, 4})->Args({512, 16, 28, 28, 4})->Args({64, 64, 56, 56, 32});
  b->Args({8, 64, 56, 56, 1});
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

// The three kernels (the default) and the persistent kernel (batchnorm_set_persistent).
BENCHMARK_TEMPLATE(BM_BatchNormFwdTrain, false)->Name("BM_BatchNormFwdTrain")->Apply(bn_shapes);
BENCHMARK_TEMPLATE(BM_BatchNormBwdTrain, false)->Name("BM_BatchNormBwdTrain")->Apply(bn_shapes);
BENCHMARK_TEMPLATE(BM_BatchNormFwdTrain, true)
    ->Name("BM_BatchNormFwdTrain/persistent")
    ->Apply(bn_shapes);
BENCHMARK_TEMPLATE(BM_BatchNormBwdTrain, true)
    ->Name("BM_BatchNormBwdTrain/persistent")
    ->Apply(bn_shapes);
BENCHMARK_TEMPLATE(BM_BatchNormReluFwdTrain, false)->Name("BM_BatchNormReluFwdTrain/separate")->Apply(bn_shapes);
BENCHMARK_TEMPLATE(BM_BatchNormReluFwdTrain, true)->Name("BM_BatchNormReluFwdTrain/fused")->Apply(bn_shapes);
BENCHMARK_TEMPLATE(BM_BatchNormReluBwdTrain, false)->Name("BM_BatchNormReluBwdTrain/separate")->Apply(bn_shapes);
BENCHMARK_TEMPLATE(BM_BatchNormReluBwdTrain, true)->Name("BM_BatchNormReluBwdTrain/fused")->Apply(bn_shapes);
// A copy of x's size timed the same way (cold L2, one per event pair): what a kernel that moves
// x's bytes twice (read x, write y) could reach here, next to the large-buffer copy rate
// `frac_copy` divides by.
void BM_CopyBaseline(benchmark::State& state) {
  const NormShape s = shape_of(state);
  kiln::bench::time_copy_baseline(state, static_cast<size_t>(s.numel()) * sizeof(float));
  counters(state, 2.0 * s.numel() * sizeof(float));
}
BENCHMARK(BM_CopyBaseline)->Apply(bn_shapes);
#ifdef KILN_HAVE_CUDNN
BENCHMARK(BM_CudnnBatchNormFwdTrain)->Apply(bn_shapes);
BENCHMARK(BM_CudnnBatchNormBwd)->Apply(bn_shapes);
#endif
// Groups in registers (the default) and the two-pass kernels (groupnorm_set_cached(false)).
BENCHMARK_TEMPLATE(BM_GroupNormFwd, true)->Name("BM_GroupNormFwd")->Apply(gn_shapes);
BENCHMARK_TEMPLATE(BM_GroupNormBwd, true)->Name("BM_GroupNormBwd")->Apply(gn_shapes);
BENCHMARK_TEMPLATE(BM_GroupNormFwd, false)->Name("BM_GroupNormFwd/two_pass")->Apply(gn_shapes);
BENCHMARK_TEMPLATE(BM_GroupNormBwd, false)->Name("BM_GroupNormBwd/two_pass")->Apply(gn_shapes);

}  // namespace

KILN_BENCH_MAIN()
