// Linear forward/backward (kiln layer: cuBLAS GEMM + bias kernels) vs the plain cuBLAS GEMMs
// alone on the same shapes, so the ratio shows what the layer adds (bias add, bias grad).
// Shapes: the MLP's layers on MNIST at batch 128 and 512.
#include <memory>

#include "bench_util.h"
#include "engine/context.h"
#include "kernels/dense/dense.h"
#include "layers/linear.h"
#include "layers/model.h"

using namespace kiln;

namespace {

struct LinearCase {
  std::unique_ptr<Context> ctx;
  std::unique_ptr<Model> model;
  Tensor x, dy;
  LinearCase(int64_t n, int64_t in, int64_t out) {
    ctx = std::make_unique<Context>(Device::CUDA, 0);
    model = std::make_unique<Model>(Shape{in});
    model->add(std::make_unique<Linear>(in, out));
    model->build(Device::CUDA, 1);
    model->layers()[0]->need_dx = true;  // time the full backward, as for an inner layer
    x = Tensor::zeros({n, in}, Device::CUDA);
    dy = Tensor::zeros({n, out}, Device::CUDA);
  }
};

double gemm_flops(int64_t n, int64_t in, int64_t out) { return 2.0 * n * in * out; }

void BM_LinearFwd(benchmark::State& st) {
  int64_t n = st.range(0), in = st.range(1), out = st.range(2);
  LinearCase c(n, in, out);
  kiln::bench::time_cuda(st, c.ctx->stream(), [&] { c.model->forward(*c.ctx, c.x); });
  kiln::bench::set_flops(st, gemm_flops(n, in, out));
}

void BM_LinearBwd(benchmark::State& st) {
  int64_t n = st.range(0), in = st.range(1), out = st.range(2);
  LinearCase c(n, in, out);
  c.model->forward(*c.ctx, c.x);
  kiln::bench::time_cuda(st, c.ctx->stream(), [&] { c.model->backward(*c.ctx, c.dy); });
  kiln::bench::set_flops(st, 2 * gemm_flops(n, in, out));
}

// The same GEMMs straight through cuBLAS: the floor the layer is compared with.
void BM_CublasFwd(benchmark::State& st) {
  int64_t n = st.range(0), in = st.range(1), out = st.range(2);
  Context ctx(Device::CUDA, 0);
  Tensor x = Tensor::zeros({n, in}, Device::CUDA), w = Tensor::zeros({out, in}, Device::CUDA),
         y = Tensor::zeros({n, out}, Device::CUDA);
  kiln::bench::time_cuda(st, ctx.stream(), [&] {
    gemm_cuda(ctx.cublas(), false, true, n, out, in, 1.f, x.data(), in, w.data(), in, 0.f, y.data(), out);
  });
  kiln::bench::set_flops(st, gemm_flops(n, in, out));
}

void BM_CublasBwd(benchmark::State& st) {
  int64_t n = st.range(0), in = st.range(1), out = st.range(2);
  Context ctx(Device::CUDA, 0);
  Tensor x = Tensor::zeros({n, in}, Device::CUDA), w = Tensor::zeros({out, in}, Device::CUDA),
         dy = Tensor::zeros({n, out}, Device::CUDA), dw = Tensor::zeros({out, in}, Device::CUDA),
         dx = Tensor::zeros({n, in}, Device::CUDA);
  kiln::bench::time_cuda(st, ctx.stream(), [&] {
    gemm_cuda(ctx.cublas(), true, false, out, in, n, 1.f, dy.data(), out, x.data(), in, 0.f, dw.data(), in);
    gemm_cuda(ctx.cublas(), false, false, n, in, out, 1.f, dy.data(), out, w.data(), in, 0.f, dx.data(), in);
  });
  kiln::bench::set_flops(st, 2 * gemm_flops(n, in, out));
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {128, 512}) {
    b->Args({n, 784, 256});
    b->Args({n, 256, 256});
    b->Args({n, 256, 10});
  }
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_LinearFwd)->Apply(shapes);
BENCHMARK(BM_CublasFwd)->Apply(shapes);
BENCHMARK(BM_LinearBwd)->Apply(shapes);
BENCHMARK(BM_CublasBwd)->Apply(shapes);

KILN_BENCH_MAIN()
