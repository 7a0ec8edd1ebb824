// Pooling benchmarks: max/avg pooling forward and backward and global average pooling on the
// pooled layers of the cnn (8x22x22) and cifar (32x32x32, 64x16x16, 128x8x8) models at batch
// 128 and 512. These kernels are bandwidth-bound: counters are GB/s (bytes each kernel must
// move: inputs read once, outputs written once, argmax included) and the fraction of the
// measured device-to-device copy bandwidth. Rows ending in /index64 run the same kernels
// with 64-bit indices (pool_set_index64: what shapes past 2^31 elements take; until session 24
// every shape did), the others with 32-bit ones.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "benchmarks/bench_util.h"
#include "engine/tensor.h"
#include "kernels/pool/pool.h"

namespace kiln {
namespace {

enum class Kind { MaxFwd, MaxBwd, AvgFwd, AvgBwd, GapFwd, GapBwd };

void run(benchmark::State& state, PoolShape s, Kind kind, bool index64) {
  pool_set_index64(index64);
  Tensor x = Tensor::zeros({s.x_numel()}, Device::CUDA);
  Tensor y = Tensor::zeros({s.y_numel()}, Device::CUDA);
  Tensor arg = Tensor::zeros({s.y_numel()}, Device::CUDA);  // int32 storage
  auto* a = reinterpret_cast<int32_t*>(arg.data());
  const int64_t planes = s.n * s.c, hw = s.h * s.w;
  const double X = double(s.x_numel()) * 4, Y = double(s.y_numel()) * 4, G = double(planes) * 4;
  maxpool2d_fwd(s, x.data(), y.data(), a, nullptr);  // valid argmax for the backward case
  double bytes = 0;
  std::function<void()> fn;
  switch (kind) {
    case Kind::MaxFwd:
      fn = [&] { maxpool2d_fwd(s, x.data(), y.data(), a, nullptr); };
      bytes = X + 2 * Y;
      break;
    case Kind::MaxBwd:
      fn = [&] { maxpool2d_bwd(s, y.data(), a, x.data(), nullptr); };
      bytes = 2 * Y + X;
      break;
    case Kind::AvgFwd:
      fn = [&] { avgpool2d_fwd(s, x.data(), y.data(), nullptr); };
      bytes = X + Y;
      break;
    case Kind::AvgBwd:
      fn = [&] { avgpool2d_bwd(s, y.data(), x.data(), nullptr); };
      bytes = Y + X;
      break;
    case Kind::GapFwd:
      fn = [&] { global_avgpool_fwd(planes, hw, x.data(), y.data(), nullptr); };
      bytes = X + G;
      break;
    case Kind::GapBwd:
      fn = [&] { global_avgpool_bwd(planes, hw, y.data(), x.data(), nullptr); };
      bytes = G + X;
      break;
  }
  bench::time_cuda(state, nullptr, fn);
  bench::set_bytes(state, bytes);
  state.counters["of_copy_bw"] = benchmark::Counter(
      bytes * 1e-9 * state.iterations() / bench::measured_copy_bandwidth(), benchmark::Counter::kIsRate);
}

int register_all() {
  struct Layer {
    const char* name;
    int64_t c, hw;
  };
  const Layer layers[] = {{"cnn.pool", 8, 22}, {"cifar.pool1", 32, 32}, {"cifar.pool2", 64, 16},
                          {"cifar.pool3", 128, 8}};
  const std::pair<const char*, Kind> kinds[] = {
      {"maxpool_fwd", Kind::MaxFwd}, {"maxpool_bwd", Kind::MaxBwd}, {"avgpool_fwd", Kind::AvgFwd},
      {"avgpool_bwd", Kind::AvgBwd}, {"gap_fwd", Kind::GapFwd},     {"gap_bwd", Kind::GapBwd}};
  for (int64_t batch : {128, 512})
    for (const auto& l : layers)
      for (const auto& [kname, kind] : kinds) {
        PoolShape s;
        s.n = batch, s.c = l.c, s.h = s.w = l.hw, s.kh = s.kw = 2, s.stride = 2, s.pad = 0;
        const std::string name = std::string("pool/") + l.name + "/" + std::to_string(l.c) + "x" +
                                 std::to_string(l.hw) + "x" + std::to_string(l.hw) + "/b" +
                                 std::to_string(batch) + "/" + kname;
        benchmark::RegisterBenchmark(name.c_str(), run, s, kind, false)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
        if (kind != Kind::GapFwd)  // the same kernels, 64-bit indices
          benchmark::RegisterBenchmark((name + "/index64").c_str(), run, s, kind, true)
              ->UseManualTime()
              ->Unit(benchmark::kMicrosecond);
      }
  return 0;
}

const int registered = register_all();

}  // namespace
}  // namespace kiln

KILN_BENCH_MAIN()
