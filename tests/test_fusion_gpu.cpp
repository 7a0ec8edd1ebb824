// Fused ReLU on the GPU: the fused conv kernels (implicit GEMM, 1x1, split-K backward-filter, bias
// reduction) and the fused batch-norm kernels (vector and scalar paths, several splits, train and
// eval) against the fused CPU references over awkward shapes, every output poisoned first.
// The backward kernels are given the reference's y as the mask, so a pre-activation rounding to
// the other side of 0 on the GPU cannot flip a mask bit between the two sides.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/context.h"
#include "kernels/conv/conv.h"
#include "kernels/norm/norm.h"
#include "tests/conv_shapes.h"
#include "tests/test_util.h"

namespace kiln {
namespace {

#ifdef KILN_WITH_CUDA
Tensor dev(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}, Device::CUDA);
}
Tensor dev_poisoned(int64_t n) { return test::poisoned({n}, Device::CUDA); }
#endif

using GpuConvCase = test::NamedConvShape;
using test::conv_shape;

class ConvReluGpu : public ::testing::TestWithParam<GpuConvCase> {};

TEST_P(ConvReluGpu, MatchesFusedReference) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const GpuConvCase& p = GetParam();
  const ConvShape& s = p.s;
  auto x = test::random_vec<float>(s.x_numel(), 81), w = test::random_vec<float>(s.w_numel(), 82);
  auto b = test::random_vec<float>(s.k, 83), dy = test::random_vec<float>(s.y_numel(), 84);
  const float* bp = p.bias ? b.data() : nullptr;
  std::vector<float> y(s.y_numel()), dx(s.x_numel()), dw(s.w_numel()), db(s.k);
  conv2d_fwd_ref<float>(s, x.data(), w.data(), bp, y.data(), true);
  conv2d_bwd_data_ref<float>(s, dy.data(), w.data(), dx.data(), y.data());
  conv2d_bwd_filter_ref<float>(s, x.data(), dy.data(), dw.data(), p.bias ? db.data() : nullptr, y.data());

  Context ctx(Device::CUDA);
  Tensor gx = dev(x), gw = dev(w), gb = dev(b), gdy = dev(dy), gyref = dev(y);
  Tensor gy = dev_poisoned(s.y_numel()), gdx = dev_poisoned(s.x_numel()), gdw = dev_poisoned(s.w_numel()),
         gdb = dev_poisoned(s.k);
  Tensor ws = dev_poisoned(std::max<int64_t>(1, static_cast<int64_t>(conv2d_bwd_filter_workspace(s))));
  conv2d_fwd(s, gx.data(), gw.data(), p.bias ? gb.data() : nullptr, gy.data(), ctx.stream(), true);
  conv2d_bwd_data(s, gdy.data(), gw.data(), gdx.data(), ctx.stream(), gyref.data());
  conv2d_bwd_filter(s, gx.data(), gdy.data(), gdw.data(), p.bias ? gdb.data() : nullptr, ws.data(),
                    ctx.stream(), gyref.data());
  ctx.sync();
  EXPECT_TRUE(test::all_close(gy.to_vector(), y, 1e-4, 1e-4)) << "forward";
  EXPECT_TRUE(test::all_close(gdx.to_vector(), dx, 1e-4, 1e-4)) << "backward-data";
  // backward-filter and bias sum n*P*Q products: float rounding grows with that length
  const double tol = std::max(1e-3, 1e-6 * static_cast<double>(s.n * s.p() * s.q()));
  EXPECT_TRUE(test::all_close(gdw.to_vector(), dw, tol, 1e-4)) << "backward-filter";
  if (p.bias) EXPECT_TRUE(test::all_close(gdb.to_vector(), db, tol, 1e-4)) << "bias";
#endif
}

// N=1, odd sizes, stride 2, padding, both 1x1 paths, channels off multiples of 4 and 32, no bias,
// and batches deep enough for split-K backward-filter with several tiles on every axis.
INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvReluGpu,
    ::testing::Values(
        GpuConvCase{"N1Odd3x3", conv_shape(1, 3, 7, 9, 5, 3, 3, 1, 0), true},
        GpuConvCase{"Stride2Pad1N1", conv_shape(1, 5, 9, 8, 7, 3, 3, 2, 1), true},
        GpuConvCase{"Pad2K5NoBias", conv_shape(2, 3, 11, 10, 6, 5, 5, 1, 2), false},
        GpuConvCase{"OneByOne", conv_shape(3, 7, 5, 6, 9, 1, 1, 1, 0), true},
        GpuConvCase{"OneByOneStride2", conv_shape(2, 6, 7, 7, 5, 1, 1, 2, 0), true},
        GpuConvCase{"OneByOneSplitK", conv_shape(16, 33, 13, 11, 37, 1, 1, 1, 0), true},
        GpuConvCase{"OneByOneK24NoBias", conv_shape(2, 20, 6, 5, 24, 1, 1, 1, 0), false},
        GpuConvCase{"Channels33x70", conv_shape(2, 33, 6, 5, 70, 3, 3, 1, 1), true},
        GpuConvCase{"CnnSplitK", conv_shape(128, 16, 24, 24, 16, 3, 3, 1, 0), true}),
    [](const auto& info) { return info.param.name; });

// Batch norm + ReLU: training (statistics, running stats) and eval forward, backward in both.
void bn_relu_gpu_vs_ref(const NormShape& s, bool train) {
#ifdef KILN_WITH_CUDA
  const int64_t n = s.numel(), c = s.c;
  auto x = test::random_vec<float>(n, 91, -2, 3), w = test::random_vec<float>(c, 92, 0.5, 1.5);
  auto b = test::random_vec<float>(c, 93), dy = test::random_vec<float>(n, 94);
  auto rm = test::random_vec<float>(c, 95, -0.3, 0.3), rv = test::random_vec<float>(c, 96, 0.5, 1.5);
  std::vector<float> y(n), mean(c), is(c), dx(n), dw(c), db(c), rm_ref = rm, rv_ref = rv;
  float nbt[2] = {0, 0};
  if (train) {
    batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                   rm_ref.data(), rv_ref.data(), nbt, 0.1, 1e-5, s, nullptr, true);
  } else {
    batchnorm_fwd_eval_ref<float>(x.data(), w.data(), b.data(), rm.data(), rv.data(), y.data(), 1e-5, s, true);
    batchnorm_invstd_ref<float>(rv.data(), is.data(), 1e-5, c);
    mean = rm;
  }
  batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                           dw.data(), db.data(), train, s, nullptr, y.data());

  Context ctx(Device::CUDA);
  Tensor gx = dev(x), gw = dev(w), gb = dev(b), gdy = dev(dy), grm = dev(rm), grv = dev(rv), gyref = dev(y);
  Tensor gy = dev_poisoned(n), gdx = dev_poisoned(n), gdw = dev_poisoned(c), gdb = dev_poisoned(c);
  Tensor gmean = train ? dev_poisoned(c) : dev(mean), gis = dev_poisoned(c),
         gnbt = Tensor::zeros({2}, Device::CUDA);
  Tensor ws = dev_poisoned(static_cast<int64_t>(batchnorm_workspace_bytes(s) / sizeof(float)) + 2);
  if (train) {
    batchnorm_fwd_train(gx.data(), gw.data(), gb.data(), gy.data(), gmean.data(), gis.data(), grm.data(),
                        grv.data(), gnbt.data(), 0.1, 1e-5, s, ws.data(), ctx.stream(), true);
  } else {
    batchnorm_fwd_eval(gx.data(), gw.data(), gb.data(), grm.data(), grv.data(), gy.data(), 1e-5, s,
                       ctx.stream(), true);
    batchnorm_invstd(grv.data(), gis.data(), 1e-5, c, ctx.stream());
  }
  batchnorm_bwd(gx.data(), gdy.data(), gw.data(), gmean.data(), gis.data(), gdx.data(), gdw.data(),
                gdb.data(), train, s, ws.data(), ctx.stream(), gyref.data());
  ctx.sync();
  const double m = static_cast<double>(s.n * s.hw);
  EXPECT_TRUE(test::all_close(gy.to_vector(), y, 1e-5, 1e-4)) << "forward";
  EXPECT_TRUE(test::all_close(gdx.to_vector(), dx, 1e-4, 1e-3)) << "dx";
  EXPECT_TRUE(test::all_close(gdw.to_vector(), dw, std::max(1e-5, 1e-6 * m), 1e-4)) << "dweight";
  EXPECT_TRUE(test::all_close(gdb.to_vector(), db, std::max(1e-5, 1e-6 * m), 1e-4)) << "dbias";
  if (train) {
    EXPECT_TRUE(test::all_close(grm.to_vector(), rm_ref, 1e-5, 1e-4)) << "running mean";
    EXPECT_TRUE(test::all_close(grv.to_vector(), rv_ref, 1e-5, 1e-4)) << "running var";
  }
#else
  (void)s;
  (void)train;
#endif
}

TEST(BatchNormReluGpu, AwkwardShapesTrainAndEval) {
  KILN_SKIP_WITHOUT_GPU();
  // scalar paths (hw odd, 1-D, N=1), the float4 path (hw % 4 == 0), channels off multiples of
  // 4/32, and n*hw > 8192 (several statistics splits)
  for (const NormShape& s : {NormShape{1, 3, 7, 1}, NormShape{3, 5, 6, 1}, NormShape{7, 33, 1, 1},
                             NormShape{4, 6, 8, 1}, NormShape{16, 3, 1024, 1}, NormShape{5, 37, 484, 1}})
    for (bool train : {true, false}) {
      SCOPED_TRACE("n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " hw=" +
                   std::to_string(s.hw) + (train ? " train" : " eval"));
      bn_relu_gpu_vs_ref(s, train);
    }
}

}  // namespace
}  // namespace kiln
