// bench_cpu: the CPU training path (no GPU needed; built in every configuration that finds
// Google Benchmark). BM_CpuEpoch times one epoch of Trainer::fit on the CPU over 2,048
// synthetic MNIST-shaped images with the apps' default recipe (Adam + one-cycle, Kaiming init,
// batch 32): gather, forward, loss, backward, optimizer step. BM_CpuConv times the conv
// reference's three passes on each of the default cnn's conv shapes at batch 32 (im2col + GEMM
// and each direct path; BM_CpuEpoch's cnn also runs each), BM_CpuPool
// its max pooling, BM_CpuOptimStep the optimizer step, BM_CpuLinear a wide Linear layer's GEMMs,
// BM_CpuDropout the mask loop of each instruction set this CPU runs, BM_CpuNorm the batch and
// group norm's passes with each, BM_CpuPoolLoop one small
// parallel_for on as many threads as CPUs, alone or beside other busy threads.
// Wall-clock time, one warm-up epoch or call first; report medians:
//   bench_cpu --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "apps/app_common.h"
#include "benchmarks/bench_recipe.h"
#include "engine/context.h"
#include "engine/dataset.h"
#include "engine/parallel.h"
#include "kernels/conv/conv.h"
#include "kernels/dense/dense.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"
#include "kernels/norm/norm.h"
#include "kernels/optim/optim.h"
#include "kernels/pool/pool.h"

namespace {

using namespace kiln;

#ifdef KILN_CUDA_EMU
constexpr int64_t kImages = 256;  // the emulator build only exercises the code
#else
constexpr int64_t kImages = 2048;
#endif

const Dataset& synthetic_mnist() {
  static Dataset ds;
  if (ds.size()) return ds;
  ds.name = "synthetic";
  std::mt19937 g(1);
  std::normal_distribution<float> px(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(kImages * 28 * 28));
  for (auto& v : x) v = px(g);
  ds.images = Tensor::from_vector(x, {kImages, 1, 28, 28}, Device::CPU);
  ds.host_labels.resize(static_cast<size_t>(kImages));
  for (auto& l : ds.host_labels) l = static_cast<int32_t>(g() % 10);
  ds.labels = std::make_shared<Buffer>(static_cast<size_t>(kImages) * sizeof(int32_t), Device::CPU);
  std::copy(ds.host_labels.begin(), ds.host_labels.end(), static_cast<int32_t*>(ds.labels->data()));
  return ds;
}

// The conv paths by number (bench arguments): 0 im2col + GEMM, 1 AVX2, 2 AVX-512 direct.
std::string conv_path_arg(int64_t i) {
  static const char* names[] = {"im2col", "avx2", "avx512"};
  return names[i];
}
bool has_conv_path(const std::string& name) {
  const std::vector<std::string> p = conv_ref_paths();
  return std::find(p.begin(), p.end(), name) != p.end();
}

// model "mlp-wide": the mlp with three hidden layers of 1024 (2.9M parameters), where the CPU
// epoch is the dense layers' GEMMs and the optimizer step.
void BM_CpuEpoch(benchmark::State& state, const std::string& model) {
  const int64_t batch = state.range(0);
  const Dataset& ds = synthetic_mnist();
  const bool fuse = state.range(1) != 0;
  const int threads = static_cast<int>(state.range(2));
  const std::string path = conv_path_arg(state.range(3));
  if (!has_conv_path(path)) return state.SkipWithError("this CPU does not run that conv path");
  set_num_threads(threads);
  set_conv_ref_path(path);
  const bool wide = model == "mlp-wide";
  bench::Recipe r =
      bench::default_recipe(wide ? "mlp" : model, fuse, ds.sample_shape(), Device::CPU, ds.size(),
                            batch, wide ? 1024 : 256, wide ? 3 : 2);
  Context ctx(Device::CPU, 0);
  Trainer tr(*r.model, *r.opt, *r.sched, ctx, r.train);
  tr.fit(ds, nullptr, 0);  // warm-up: buffers grow to their size
  for (auto _ : state) tr.fit(ds, nullptr, 0);
  state.counters["images_per_s"] = benchmark::Counter(
      static_cast<double>(ds.size()), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(model + " batch " + std::to_string(batch) + (fuse ? " fused" : "") + ", " +
                 app::thread_count(threads) + (model == "cnn" ? ", conv " + path : ""));
  set_num_threads(1);
  set_conv_ref_path("");
}

// n values from a standard normal distribution.
std::vector<float> normal_values(int64_t n, std::mt19937& g) {
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& e : v) e = d(g);
  return v;
}

// The default cnn's conv layers (train_mnist --summary) at batch 32.
ConvShape cnn_conv(int layer) {
  struct L {
    int64_t c, h, k, r;
  };
  static const L ls[] = {{1, 28, 16, 3}, {16, 26, 16, 3}, {16, 24, 16, 3}, {16, 22, 8, 1},
                         {8, 11, 24, 3}, {24, 9, 24, 3},  {24, 7, 24, 3},  {24, 5, 10, 1}};
  ConvShape s;
  s.n = 32;
  s.c = ls[layer].c;
  s.h = s.w = ls[layer].h;
  s.k = ls[layer].k;
  s.kh = s.kw = ls[layer].r;
  return s;
}

void BM_CpuConv(benchmark::State& state) {
  const ConvShape s = cnn_conv(static_cast<int>(state.range(0)));
  const int pass = static_cast<int>(state.range(1));  // 0 fwd, 1 bwd-data, 2 bwd-filter
  const std::string path = conv_path_arg(state.range(2));
  if (!has_conv_path(path)) return state.SkipWithError("this CPU does not run that conv path");
  set_conv_ref_path(path);
  std::mt19937 g(2);
  auto fill = [&](int64_t n) { return normal_values(n, g); };
  std::vector<float> x = fill(s.x_numel()), w = fill(s.w_numel()), b = fill(s.k),
                     y = fill(s.y_numel()), dx(x.size()), dw(w.size()), db(b.size());
  auto run = [&] {
    if (pass == 0) conv2d_fwd_ref<float>(s, x.data(), w.data(), b.data(), y.data(), false);
    if (pass == 1) conv2d_bwd_data_ref<float>(s, y.data(), w.data(), dx.data(), nullptr);
    if (pass == 2)
      conv2d_bwd_filter_ref<float>(s, x.data(), y.data(), dw.data(), db.data(), nullptr);
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2 * s.macs(), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  static const char* names[] = {"fwd", "bwd_data", "bwd_filter"};
  state.SetLabel(std::to_string(s.c) + "->" + std::to_string(s.k) + " k" + std::to_string(s.kh) +
                 " " + std::to_string(s.h) + "x" + std::to_string(s.w) + " " + names[pass] + " " +
                 path);
  set_conv_ref_path("");
}

void BM_CpuMaxPool(benchmark::State& state) {
  PoolShape s;  // the cnn's pool: [32, 8, 22, 22], 2x2 stride 2
  s.n = 32;
  s.c = 8;
  s.h = s.w = 22;
  s.kh = s.kw = 2;
  s.stride = 2;
  std::vector<float> x(static_cast<size_t>(s.n * s.c * s.h * s.w)), dx(x.size());
  std::mt19937 g(3);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& e : x) e = d(g);
  const size_t out = static_cast<size_t>(s.n * s.c * s.p() * s.q());
  std::vector<float> y(out), dy(out, 1.f);
  std::vector<int32_t> arg(out);
  const bool bwd = state.range(0) != 0;
  maxpool2d_fwd_ref<float>(s, x.data(), y.data(), arg.data());
  for (auto _ : state) {
    if (bwd)
      maxpool2d_bwd_ref<float>(s, dy.data(), arg.data(), dx.data());
    else
      maxpool2d_fwd_ref<float>(s, x.data(), y.data(), arg.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(bwd ? "bwd" : "fwd");
}

// One optimizer step over the mlp's 269,322 parameters (784-256-256-10: three weights, three
// biases) or, with params 1, the wide mlp's 2,919,434 (784-1024-1024-1024-10), as the CPU path
// takes it after every batch, on 1 or 2 threads.
void BM_CpuOptimStep(benchmark::State& state) {
  const OptimKind kind = static_cast<OptimKind>(state.range(0));
  const bool wide = state.range(1) != 0;
  const int threads = static_cast<int>(state.range(2));
  std::vector<int64_t> sizes = {784 * 256, 256, 256 * 256, 256, 256 * 10, 10};
  if (wide) sizes = {784 * 1024, 1024, 1024 * 1024, 1024, 1024 * 1024, 1024, 1024 * 10, 10};
  std::vector<OptimTensor> ts;
  int64_t off = 0;
  for (int64_t n : sizes) {
    OptimTensor t;
    t.offset = off;
    t.numel = n;
    t.decay = t.penalize = n > 1024;  // weights, not biases
    ts.push_back(t);
    off += (n + 15) / 16 * 16;
  }
  std::mt19937 g(4);
  std::normal_distribution<float> d(0.f, 0.01f);
  std::vector<float> w(off), gr(off), s1(off, 0.f), s2(off, 0.f);
  for (auto& e : w) e = d(g);
  for (auto& e : gr) e = d(g);
  std::vector<float> gn(ts.size()), wn(ts.size());
  OptimHyper h;
  h.kind = kind;
  h.lr = 1e-3f;
  h.momentum = 0.9f;
  OptimStepStats st;
  st.tensor_grad_norm = gn.data();
  st.tensor_weight_norm = wn.data();
  set_num_threads(threads);
  for (auto _ : state) {
    // SGD keeps one state buffer: FlatOptimizer passes no s2 for it, so neither does this.
    optim_step_ref<float>(w.data(), gr.data(), s1.data(),
                          kind == OptimKind::SGD ? nullptr : s2.data(), ts.data(),
                          static_cast<int>(ts.size()), h, &st);
    ++h.step;
    benchmark::ClobberMemory();
  }
  set_num_threads(1);
  state.counters["params_per_s"] =
      benchmark::Counter(static_cast<double>(off), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(kind == OptimKind::Adam ? "adam" : "sgd momentum") +
                 (wide ? ", wide mlp" : ", mlp") + ", " + app::thread_count(threads));
}

// The wide mlp's middle Linear layer at batch 32 (1024 -> 1024) through the CPU path's
// gemm_ref_blocks: pass 0 forward (y = x W^T), 1 the input gradient (dx = dy W), 2 the weight
// gradient (dW = dy^T x, a sum over the batch: one block), on 1 or 2 threads.
void BM_CpuLinear(benchmark::State& state) {
  const int pass = static_cast<int>(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  const int64_t n = 32, in = 1024, out = 1024;
  std::mt19937 g(5);
  auto fill = [&](int64_t k) { return normal_values(k, g); };
  const auto x = fill(n * in), w = fill(out * in), dy = fill(n * out);
  std::vector<float> y(static_cast<size_t>(n * out)), dx(x.size()), dw(w.size());
  set_num_threads(threads);
  auto run = [&] {
    if (pass == 0)
      gemm_ref_blocks<float>(false, true, n, out, in, 1.f, x.data(), in, w.data(), in, 0.f,
                             y.data(), out);
    else if (pass == 1)
      gemm_ref_blocks<float>(false, false, n, in, out, 1.f, dy.data(), out, w.data(), in, 0.f,
                             dx.data(), in);
    else
      gemm_ref_blocks<float>(true, false, out, in, n, 1.f, dy.data(), out, x.data(), in, 0.f,
                             dw.data(), in);
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  set_num_threads(1);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(n * in * out), benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
  static const char* names[] = {"fwd", "bwd_data", "bwd_weight"};
  state.SetLabel(std::string("1024->1024 batch 32 ") + names[pass] + ", " +
                 app::thread_count(threads));
}

// Element-wise dropout (p 0.05) over a [32, 32, 26, 26] tensor (692,224 elements, twice the
// cnn's first activation at batch 32), one thread, with the mask loop of instruction set `isa` (an
// index into dropout_ref_isas(); skipped where this CPU has fewer).
void BM_CpuDropout(benchmark::State& state) {
  const auto isas = dropout_ref_isas();
  const size_t k = static_cast<size_t>(state.range(0));
  if (k >= isas.size()) return state.SkipWithError("this CPU runs fewer mask loops");
  set_num_threads(1);
  const DropoutShape s{32, 32, 26 * 26};
  std::mt19937 g(5);
  const std::vector<float> x = normal_values(s.numel(), g);
  std::vector<float> y(x.size());
  DropoutParams p{dropout_key(1, 2, 3), dropout_threshold(0.05), static_cast<float>(1 / 0.95)};
  dropout_ref_isa<float>(isas[k], x.data(), y.data(), p, s);
  for (auto _ : state) {
    dropout_ref_isa<float>(isas[k], x.data(), y.data(), p, s);
    benchmark::ClobberMemory();
  }
  state.SetLabel(isas[k]);
  state.SetBytesProcessed(state.iterations() * s.numel() * 2 * static_cast<int64_t>(sizeof(float)));
}

// Batch norm (with the fused ReLU) and group norm (2 groups) on the cnn's first activation at
// batch 32 ([32, 8, 26, 26]), one thread, with the loops of instruction set `isa` (an index into
// norm_ref_isas(); skipped where this CPU has fewer): pass 0 batch norm's training forward
// (statistics, running statistics, y), 1 its backward behind the ReLU (dx, dweight, dbias), 2 its
// eval forward, 3 group norm's forward, 4 its backward.
void BM_CpuNorm(benchmark::State& state) {
  const auto isas = norm_ref_isas();
  const size_t k = static_cast<size_t>(state.range(0));
  const int pass = static_cast<int>(state.range(1));
  if (k >= isas.size()) return state.SkipWithError("this CPU runs fewer norm loops");
  set_num_threads(1);
  set_norm_ref_isa(isas[k]);
  const NormShape s{32, 8, 26 * 26, 2};
  std::mt19937 g(6);
  const std::vector<float> x = normal_values(s.numel(), g), dy = normal_values(s.numel(), g);
  std::vector<float> y(x.size()), dx(x.size()), w(8, 1.f), b(8, 0.1f), mean(64), is(64), rm(8, 0.f),
      rv(8, 1.f), dw(8), db(8);
  float nbt[2] = {0, 0};
  auto bn_train = [&] {
    batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                   rm.data(), rv.data(), nbt, 0.1, 1e-5, s, nullptr, true);
  };
  auto gn_fwd = [&] {
    groupnorm_fwd_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(), 1e-5,
                             s);
  };
  auto run = [&] {
    switch (pass) {
      case 0:
        return bn_train();
      case 1:
        return batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(),
                                        dx.data(), dw.data(), db.data(), true, s, nullptr,
                                        y.data());
      case 2:
        return batchnorm_fwd_eval_ref<float>(x.data(), w.data(), b.data(), rm.data(), rv.data(),
                                             y.data(), 1e-5, s, true);
      case 3:
        return gn_fwd();
      default:
        return groupnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(),
                                        dx.data(), dw.data(), db.data(), s, nullptr);
    }
  };
  if (pass < 3)
    bn_train();
  else
    gn_fwd();  // (the statistics and output the backward reads)
  run();
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  set_norm_ref_isa("");
  static const char* names[] = {"bn_train_fwd", "bn_bwd_relu", "bn_eval_fwd", "gn_fwd", "gn_bwd"};
  state.SetLabel(isas[k] + " " + names[pass]);
  state.SetItemsProcessed(state.iterations() * s.numel());
}

// One parallel_for of a few microseconds' work per piece on as many threads as this process
// has CPUs, back to back, with `busy` other threads spinning beside it the whole time (0: the
// machine to itself; 1: as under another process's job, or a compile). A waiting pool thread
// that kept its CPU would hold up the descheduled thread whose piece it waits for.
void BM_CpuPoolLoop(benchmark::State& state) {
  const int busy = static_cast<int>(state.range(0));
  const int threads = available_cpus();
  set_num_threads(threads);
  std::vector<float> v(static_cast<size_t>(threads) * 4096, 1.f);
  auto loop = [&] {
    parallel_for(threads, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t)
        for (size_t i = 0; i < 4096; ++i) v[static_cast<size_t>(t) * 4096 + i] *= 1.0001f;
    });
  };
  std::atomic<bool> stop{false};
  std::vector<std::thread> others;
  for (int i = 0; i < busy; ++i)
    others.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  loop();
  for (auto _ : state) {
    loop();
    benchmark::ClobberMemory();
  }
  stop = true;
  for (auto& t : others) t.join();
  state.SetLabel(app::thread_count(threads) + ", " + std::to_string(busy) + " busy beside");
}

// Wall-clock time: with threads, the process's CPU time is not the epoch's.
BENCHMARK_CAPTURE(BM_CpuEpoch, mlp, std::string("mlp"))
    ->ArgNames({"batch", "fuse", "threads", "conv"})
    ->Args({32, 0, 1, 0})
    ->Args({32, 0, 2, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CpuEpoch, mlp_wide, std::string("mlp-wide"))
    ->ArgNames({"batch", "fuse", "threads", "conv"})
    ->Args({32, 0, 1, 0})
    ->Args({32, 0, 2, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_CpuEpoch, cnn, std::string("cnn"))  // conv: conv_path_arg
    ->ArgNames({"batch", "fuse", "threads", "conv"})
    ->ArgsProduct({{32}, {0}, {1, 2}, {0, 1, 2}})
    ->Args({32, 1, 1, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CpuConv)
    ->ArgNames({"layer", "pass", "conv"})
    ->ArgsProduct({{0, 1, 2, 4, 5, 6}, {0, 1, 2}, {0, 1, 2}})
    ->ArgsProduct({{3, 7}, {0, 1, 2}, {0}})  // the 1x1 layers: GEMM only
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CpuMaxPool)->ArgName("bwd")->DenseRange(0, 1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CpuOptimStep)
    ->ArgNames({"kind", "wide", "threads"})
    ->ArgsProduct({{static_cast<int>(OptimKind::SGD), static_cast<int>(OptimKind::Adam)},
                   {0, 1},
                   {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CpuLinear)
    ->ArgNames({"pass", "threads"})
    ->ArgsProduct({{0, 1, 2}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CpuDropout)->ArgName("isa")->DenseRange(0, 2)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CpuNorm)
    ->ArgNames({"isa", "pass"})
    ->ArgsProduct({{0, 1, 2}, {0, 1, 2, 3, 4}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CpuPoolLoop)
    ->ArgName("busy")
    ->DenseRange(0, 1)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

// The GEMM kernels go into the report's context ("cpu_gemm": "OpenBLAS Cooperlake"): the conv
// and Linear numbers depend on them as much as on the CPU.
int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("cpu_gemm", kiln::cpu_gemm_description());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
