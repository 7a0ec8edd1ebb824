// Convolution benchmarks: kiln's forward, backward-data, backward-filter (+bias) and their sum
// (one training step of the layer) against cuDNN (fastest algorithm from
// cudnnFind*AlgorithmEx, workspace allowed, FP32 FMA math; its rows say whether that algorithm
// is deterministic, as kiln's kernels are) and, for 1x1 layers, cuBLAS (default FP32 math) strided
// batched GEMM (forward and backward-data; backward-filter sums over the batch, which is not a
// strided batched GEMM). Shapes are the real conv layers of make_cnn (1x28x28) and make_cifar
// (3x32x32) at batch 128 and 512 (8 on the CUDA emulator, whose runs only check that the cases
// run and report). Counters: GFLOP/s (2 FLOPs per multiply-add) and, on kiln
// rows, kiln/cuDNN (median time ratio over 20 cold runs; < 1 means kiln is faster).
// Bias: kiln adds it in the forward kernel's epilogue and sums its gradient in the
// backward-filter kernel; the cuDNN rows add it with cudnnAddTensor and sum it with
// cudnnConvolutionBackwardBias, separate passes over y and dy (as PyTorch's cuDNN path does), and
// the cuBLAS 1x1 rows have none: kiln/cuDNN includes what that fusion saves, kiln/cuBLAS counts
// kiln's bias against it.
// Fused ReLU (--fuse on): kiln_relu_separate is the unfused layer pair (conv, then the ReLU
// kernels' forward/backward passes), kiln_relu_fused the conv kernel with the ReLU in the
// epilogue (backward: the same passes as separate, as Conv2d runs it); fused rows report
// fused/separate (< 1: fusion pays).
// Tiles: the kiln rows run the default tile choice (ConvTiles::kAuto; the label names the
// tiles), kiln_small_tiles / kiln_wide_tiles / kiln_tall_tiles the same kernels with every
// tile at most 64 x 64 (all kiln had before 2026-12-04), the largest the shape allows, or the
// most rows at 64 columns (ConvTiles::kSmall, kWide, kTall); kiln rows report
// tiles_auto/small (< 1: the wider tiles pay). The results are bitwise the same.
#include <benchmark/benchmark.h>
#include <cublas_v2.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/bench_util.h"
#include "engine/tensor.h"
#include "kernels/activation/activation.h"
#include "kernels/conv/conv.h"
#include "layers/conv.h"
#include "layers/models.h"
#ifdef KILN_HAVE_CUDNN
#include "kernels/conv/conv_cudnn.h"
#endif

namespace kiln {
namespace {

Tensor random_device(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& x : v) x = u(g);
  return Tensor::from_vector(v, {n}, Device::CUDA);
}

// All buffers of one layer shape, created on first use and shared by its benchmarks.
struct Case {
  ConvShape s;
  Tensor x, w, b, y, dy, dx, dw, db, ws;
  Tensor pre, yr, dpre;  // ReLU cases: conv output before the ReLU, after it, and dy behind it
#ifdef KILN_HAVE_CUDNN
  std::unique_ptr<cudnn_conv::Conv> cudnn;
#endif
  cublasHandle_t cublas = nullptr;
  explicit Case(const ConvShape& sh) : s(sh) {
    x = random_device(s.x_numel(), 1);
    w = random_device(s.w_numel(), 2);
    b = random_device(s.k, 3);
    dy = random_device(s.y_numel(), 4);
    y = Tensor::zeros({s.y_numel()}, Device::CUDA);
    dx = Tensor::zeros({s.x_numel()}, Device::CUDA);
    dw = Tensor::zeros({s.w_numel()}, Device::CUDA);
    db = Tensor::zeros({s.k}, Device::CUDA);
    ws = Tensor::zeros({std::max<int64_t>(1, int64_t(conv2d_bwd_filter_workspace(s)))}, Device::CUDA);
    pre = Tensor::zeros({s.y_numel()}, Device::CUDA);
    dpre = Tensor::zeros({s.y_numel()}, Device::CUDA);
    // a real ReLU output (about half zeros) as the mask from the start, so a backward-only
    // benchmark does not run against an all-zero mask that would skip every dy load
    yr = Tensor::zeros({s.y_numel()}, Device::CUDA);
    conv2d_fwd(s, x.data(), w.data(), b.data(), yr.data(), nullptr, true);
#ifdef KILN_HAVE_CUDNN
    cudnn = std::make_unique<cudnn_conv::Conv>(s, nullptr);
    cudnn->find_best(x.data(), w.data(), y.data(), dy.data(), dx.data(), dw.data());
#endif
    KILN_CUBLAS_CHECK(cublasCreate(&cublas));
    KILN_CUBLAS_CHECK(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));  // FP32, no TF32
  }
  ~Case() {
    if (cublas) cublasDestroy(cublas);
  }
  Case(const Case&) = delete;
  Case& operator=(const Case&) = delete;
};

Case& get_case(const ConvShape& s) {
  static std::map<std::string, std::unique_ptr<Case>> cases;
  const std::string key = std::to_string(s.n) + "," + std::to_string(s.c) + "," + std::to_string(s.h) +
                          "," + std::to_string(s.w) + "," + std::to_string(s.k) + "," + std::to_string(s.kh) +
                          "," + std::to_string(s.stride) + "," + std::to_string(s.pad);
  auto& c = cases[key];
  if (!c) c = std::make_unique<Case>(s);
  return *c;
}

enum class Op { Fwd, BwdData, BwdFilter, Step };
enum class Impl {
  Kiln,
  Cudnn,
  Cublas,
  KilnReluSeparate,
  KilnReluFused,
  KilnSmallTiles,
  KilnWideTiles,
  KilnTallTiles
};
const char* op_name(Op o) {
  switch (o) {
    case Op::Fwd: return "fwd";
    case Op::BwdData: return "bwd_data";
    case Op::BwdFilter: return "bwd_filter";
    case Op::Step: return "fwd+bwd";
  }
  return "";
}

std::function<void()> kiln_fn(Case& c, Op op) {
  const ConvShape& s = c.s;
  auto fwd = [&c, s] { conv2d_fwd(s, c.x.data(), c.w.data(), c.b.data(), c.y.data(), nullptr); };
  auto data = [&c, s] { conv2d_bwd_data(s, c.dy.data(), c.w.data(), c.dx.data(), nullptr); };
  auto filt = [&c, s] {
    conv2d_bwd_filter(s, c.x.data(), c.dy.data(), c.dw.data(), c.db.data(), c.ws.data(), nullptr);
  };
  switch (op) {
    case Op::Fwd: return fwd;
    case Op::BwdData: return data;
    case Op::BwdFilter: return filt;
    case Op::Step: return [=] { fwd(); data(); filt(); };
  }
  return {};
}

// kiln_fn under another tile choice, set back to kAuto after each call.
std::function<void()> tiles_fn(Case& c, Op op, ConvTiles tiles) {
  return [f = kiln_fn(c, op), tiles] {
    conv_set_tiles(tiles);
    f();
    conv_set_tiles(ConvTiles::kAuto);
  };
}

// Conv + ReLU: separate kernels (what --fuse off runs) or fused (--fuse on).
std::function<void()> relu_fn(Case& c, Op op, bool fused) {
  const ConvShape& s = c.s;
  const int64_t ny = s.y_numel();
  auto fwd = [&c, s, ny, fused] {
    if (fused) {
      conv2d_fwd(s, c.x.data(), c.w.data(), c.b.data(), c.yr.data(), nullptr, true);
      return;
    }
    conv2d_fwd(s, c.x.data(), c.w.data(), c.b.data(), c.pre.data(), nullptr);
    activation_fwd(Act::ReLU, c.pre.data(), c.yr.data(), ny, nullptr);
  };
  // Backward is the same for both since session 24: the ReLU backward once, then the unmasked
  // kernels (Conv2d's fused backward on CUDA; masking dy on every load inside the kernels made
  // backward-filter 1.29-1.48x slower on the H200).
  auto relu_bwd = [&c, ny] { activation_bwd(Act::ReLU, c.yr.data(), c.dy.data(), c.dpre.data(), ny, nullptr); };
  auto data = [&c, s] { conv2d_bwd_data(s, c.dpre.data(), c.w.data(), c.dx.data(), nullptr); };
  auto filt = [&c, s] {
    conv2d_bwd_filter(s, c.x.data(), c.dpre.data(), c.dw.data(), c.db.data(), c.ws.data(), nullptr);
  };
  switch (op) {
    case Op::Fwd: return fwd;
    case Op::BwdData:
      return [=] {
        relu_bwd();
        data();
      };
    case Op::BwdFilter:
      return [=] {
        relu_bwd();
        filt();
      };
    case Op::Step:
      return [=] {
        fwd();
        relu_bwd();
        data();
        filt();
      };
  }
  return {};
}

#ifdef KILN_HAVE_CUDNN
std::function<void()> cudnn_fn(Case& c, Op op) {
  auto fwd = [&c] { c.cudnn->fwd(c.x.data(), c.w.data(), c.b.data(), c.y.data()); };
  auto data = [&c] { c.cudnn->bwd_data(c.dy.data(), c.w.data(), c.dx.data()); };
  auto filt = [&c] { c.cudnn->bwd_filter(c.x.data(), c.dy.data(), c.dw.data(), c.db.data()); };
  switch (op) {
    case Op::Fwd: return fwd;
    case Op::BwdData: return data;
    case Op::BwdFilter: return filt;
    case Op::Step: return [=] { fwd(); data(); filt(); };
  }
  return {};
}
#endif

// 1x1 as row-major Y[n] = W X[n] (forward) and dX[n] = W^T dY[n] (backward-data), written in
// cuBLAS's column-major terms as Y[n]^T = X[n]^T W^T etc., one strided batched call each.
std::function<void()> cublas_fn(Case& c, Op op) {
  const ConvShape& s = c.s;
  const int hw = int(s.h * s.w), C = int(s.c), K = int(s.k), n = int(s.n);
  if (op == Op::Fwd)
    return [&c, hw, C, K, n] {
      const float one = 1.f, zero = 0.f;
      KILN_CUBLAS_CHECK(cublasSgemmStridedBatched(c.cublas, CUBLAS_OP_N, CUBLAS_OP_N, hw, K, C, &one,
                                                  c.x.data(), hw, int64_t(C) * hw, c.w.data(), C, 0,
                                                  &zero, c.y.data(), hw, int64_t(K) * hw, n));
    };
  return [&c, hw, C, K, n] {
    const float one = 1.f, zero = 0.f;
    KILN_CUBLAS_CHECK(cublasSgemmStridedBatched(c.cublas, CUBLAS_OP_N, CUBLAS_OP_T, hw, C, K, &one,
                                                c.dy.data(), hw, int64_t(K) * hw, c.w.data(), C, 0,
                                                &zero, c.dx.data(), hw, int64_t(C) * hw, n));
  };
}

constexpr int kRatioReps = bench::kOnEmulator ? 2 : 20;

// Median milliseconds over `reps` cold runs (L2 flushed before each), for the ratio counters
// (the mean until 2026-12-05: one slow run moved a ratio).
double median_ms(const std::function<void()>& fn, int reps = kRatioReps) {
  cudaEvent_t a, b;
  KILN_CUDA_CHECK(cudaEventCreate(&a));
  KILN_CUDA_CHECK(cudaEventCreate(&b));
  fn();
  std::vector<double> runs;
  for (int i = 0; i < reps; ++i) {
    bench::flush_l2();
    KILN_CUDA_CHECK(cudaEventRecord(a, nullptr));
    fn();
    KILN_CUDA_CHECK(cudaEventRecord(b, nullptr));
    KILN_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    KILN_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    runs.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(runs.begin(), runs.end());
  const size_t m = runs.size() / 2;
  return runs.size() % 2 ? runs[m] : (runs[m - 1] + runs[m]) / 2;
}

void run(benchmark::State& state, ConvShape s, Op op, Impl impl) {
  Case& c = get_case(s);
  std::function<void()> fn;
  if (impl == Impl::Kiln) fn = kiln_fn(c, op);
  if (impl == Impl::Cublas) fn = cublas_fn(c, op);
  if (impl == Impl::KilnSmallTiles) fn = tiles_fn(c, op, ConvTiles::kSmall);
  if (impl == Impl::KilnWideTiles) fn = tiles_fn(c, op, ConvTiles::kWide);
  if (impl == Impl::KilnTallTiles) fn = tiles_fn(c, op, ConvTiles::kTall);
  if (impl == Impl::KilnReluSeparate || impl == Impl::KilnReluFused)
    fn = relu_fn(c, op, impl == Impl::KilnReluFused);
#ifdef KILN_HAVE_CUDNN
  if (impl == Impl::Cudnn) fn = cudnn_fn(c, op);
#endif
  bench::time_cuda(state, nullptr, fn);
  bench::set_flops(state, 2.0 * s.macs() * (op == Op::Step ? 3 : 1));
#ifdef KILN_HAVE_CUDNN
  if (impl == Impl::Kiln) state.counters["kiln/cuDNN"] = median_ms(fn) / median_ms(cudnn_fn(c, op));
  if (impl == Impl::Cudnn) {  // 0: the fastest algorithm is not deterministic (kiln's are)
    const cudnn_conv::Conv& d = *c.cudnn;
    auto runs = [op](Op part) { return op == part || op == Op::Step; };  // Step runs all three
    const bool det = (!runs(Op::Fwd) || d.fwd_deterministic()) &&
                     (!runs(Op::BwdData) || d.data_deterministic()) &&
                     (!runs(Op::BwdFilter) || d.filter_deterministic());
    state.counters["deterministic"] = det ? 1 : 0;
  }
#endif
  if (impl == Impl::Kiln && s.is_1x1() && (op == Op::Fwd || op == Op::BwdData))
    state.counters["kiln/cuBLAS"] = median_ms(fn) / median_ms(cublas_fn(c, op));
  if (impl == Impl::KilnReluFused)
    state.counters["fused/separate"] = median_ms(fn) / median_ms(relu_fn(c, op, false));
  if (impl == Impl::Kiln) {
    state.counters["tiles_auto/small"] =
        median_ms(fn) / median_ms(tiles_fn(c, op, ConvTiles::kSmall));
    state.SetLabel(conv_tile_plan(s));
  }
}

std::string shape_label(const ConvShape& s) {
  return std::to_string(s.c) + "->" + std::to_string(s.k) + "_k" + std::to_string(s.kh) + "s" +
         std::to_string(s.stride) + "p" + std::to_string(s.pad) + "_" + std::to_string(s.h) + "x" +
         std::to_string(s.w) + "/b" + std::to_string(s.n);
}

// Registers every distinct conv layer shape of the cnn and cifar models.
int register_all() {
  ModelOptions o;
  const std::pair<const char*, std::unique_ptr<Model>> models[] = {
      {"cnn", make_cnn(o, {1, 28, 28}, 10)}, {"cifar", make_cifar(o, {3, 32, 32}, 10)}};
  for (const auto& [mname, m] : models) {
    m->build(Device::CPU, 1);
    for (int64_t batch :
         bench::kOnEmulator ? std::vector<int64_t>{8} : std::vector<int64_t>{128, 512})
      for (Layer* l : m->layers()) {
        auto* conv = dynamic_cast<Conv2d*>(l);
        if (!conv) continue;
        const ConvShape s = conv->conv_shape(batch);
        for (Op op : {Op::Fwd, Op::BwdData, Op::BwdFilter, Op::Step}) {
          const std::string base = std::string("conv/") + mname + "." + l->name() + "/" +
                                   shape_label(s) + "/" + op_name(op) + "/";
          std::vector<std::pair<std::string, Impl>> impls;
#ifdef KILN_HAVE_CUDNN
          impls.emplace_back("cudnn", Impl::Cudnn);
#endif
          if (s.is_1x1() && (op == Op::Fwd || op == Op::BwdData)) impls.emplace_back("cublas", Impl::Cublas);
          impls.emplace_back(s.is_1x1() ? "kiln_1x1" : "kiln", Impl::Kiln);
          impls.emplace_back("kiln_small_tiles", Impl::KilnSmallTiles);
          impls.emplace_back("kiln_wide_tiles", Impl::KilnWideTiles);
          impls.emplace_back("kiln_tall_tiles", Impl::KilnTallTiles);
          impls.emplace_back("kiln_relu_separate", Impl::KilnReluSeparate);
          impls.emplace_back("kiln_relu_fused", Impl::KilnReluFused);
          for (const auto& [iname, impl] : impls)
            benchmark::RegisterBenchmark((base + iname).c_str(), run, s, op, impl)
                ->UseManualTime()
                ->Unit(benchmark::kMicrosecond);
        }
      }
  }
  return 0;
}

const int registered = register_all();

}  // namespace
}  // namespace kiln

KILN_BENCH_MAIN()
