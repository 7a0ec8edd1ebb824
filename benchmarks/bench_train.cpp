// bench_train: end-to-end training throughput. One timed iteration = one epoch of Trainer::fit
// (gather, forward, loss, backward, fused optimizer step, the epoch-end sync) over a synthetic
// dataset resident on the device (MNIST shape 60000x1x28x28 for mlp and cnn, CIFAR shape
// 50000x3x32x32 for cifar), with the default recipe (Adam + one-cycle, Kaiming init), at batch
// 128 and 512, CUDA graphs off and on. Times come from CUDA events around the epoch; the
// counters report the median epoch (ms) and images/s from it. No L2 flush: an epoch touches
// far more than L2. The graph run's epochs include its warm-up step, capture and instantiation
// (once per epoch), as a user's epoch would. Synthetic data: throughput only, not accuracy.
//   bench_train --benchmark_format=json --benchmark_out=train.json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/bench_recipe.h"
#include "benchmarks/bench_util.h"
#include "engine/context.h"
#include "engine/dataset.h"
#include "engine/step_graph.h"
#include "engine/trainer.h"
#include "layers/models.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace {

using namespace kiln;

// Random pixels (already "normalised") and uniform labels, uploaded once.
Dataset synthetic(int64_t n, const Shape& sample, uint64_t seed) {
  Dataset ds;
  ds.name = "synthetic";
  Shape shape{n};
  shape.insert(shape.end(), sample.begin(), sample.end());
  std::mt19937 g(static_cast<unsigned>(seed));
  std::normal_distribution<float> px(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(shape_numel(shape)));
  for (auto& v : x) v = px(g);
  ds.images = Tensor::from_vector(x, shape, Device::CUDA);
  ds.host_labels.resize(static_cast<size_t>(n));
  for (auto& l : ds.host_labels) l = static_cast<int32_t>(g() % 10);
  ds.labels = std::make_shared<Buffer>(static_cast<size_t>(n) * sizeof(int32_t), Device::CUDA);
  copy_bytes(ds.labels->data(), Device::CUDA, ds.host_labels.data(), Device::CPU, ds.labels->bytes());
  return ds;
}

constexpr int64_t kMnistImages = bench::kOnEmulator ? 1024 : 60000;
constexpr int64_t kCifarImages = bench::kOnEmulator ? 1024 : 50000;

const Dataset& dataset_for(const std::string& model) {
  static Dataset mnist, cifar;
  if (model == "cifar") {
    if (!cifar.size()) cifar = synthetic(kCifarImages, {3, 32, 32}, 2);
    return cifar;
  }
  if (!mnist.size()) mnist = synthetic(kMnistImages, {1, 28, 28}, 1);
  return mnist;
}

void BM_TrainEpoch(benchmark::State& state, const std::string& model) {
  const int64_t batch = state.range(0);
  const bool graphs = state.range(1) != 0;
  const Dataset& ds = dataset_for(model);
  bench::Recipe r =
      bench::default_recipe(model, false, ds.sample_shape(), Device::CUDA, ds.size(), batch);
  Context ctx(Device::CUDA, 0);
  r.train.cuda_graphs = graphs;
  Trainer tr(*r.model, *r.opt, *r.sched, ctx, r.train);
  auto epoch = [&] { tr.fit(ds, nullptr, 0); };
  epoch();  // warm-up: allocations, cuBLAS heuristics, first capture
  cudaEvent_t a, b;
  KILN_CUDA_CHECK(cudaEventCreate(&a));
  KILN_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> ms_all;
  for (auto _ : state) {
    KILN_CUDA_CHECK(cudaEventRecord(a, ctx.stream()));
    epoch();
    KILN_CUDA_CHECK(cudaEventRecord(b, ctx.stream()));
    KILN_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    KILN_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    state.SetIterationTime(ms / 1e3);
    ms_all.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms_all.begin(), ms_all.end());
  double med = ms_all.empty() ? 0 : ms_all[ms_all.size() / 2];
  state.counters["epoch_ms"] = med;
  state.counters["images_per_s"] = med > 0 ? static_cast<double>(ds.size()) / (med * 1e-3) : 0;
  state.counters["params"] = static_cast<double>(r.model->num_params());
  state.counters["graphs"] = graphs ? 1 : 0;
  const StepGraph* g = tr.step_graph();
  state.counters["replays_per_epoch"] =
      g ? static_cast<double>(g->replays()) / static_cast<double>(state.iterations() + 1) : 0;
  state.SetLabel(model + " batch " + std::to_string(batch) + (graphs ? " graphs" : " eager"));
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "graphs"});
  for (int64_t batch : {128, 512})
    for (int64_t graphs : {0, 1}) b->Args({batch, graphs});
  // (On the emulator, whose times mean nothing, two epochs after the warm-up show it all runs.)
  b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(bench::kOnEmulator ? 2 : 5);
}

BENCHMARK_CAPTURE(BM_TrainEpoch, mlp, std::string("mlp"))->Apply(args);
BENCHMARK_CAPTURE(BM_TrainEpoch, cnn, std::string("cnn"))->Apply(args);
BENCHMARK_CAPTURE(BM_TrainEpoch, cifar, std::string("cifar"))->Apply(args);

}  // namespace

KILN_BENCH_MAIN()
