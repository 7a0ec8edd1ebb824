// Pooling: hand-computed values (tie rule, count_include_pad), double-precision gradient checks
// of max/avg/global-average pooling, layer shape errors and receptive fields, and (with a GPU)
// the CUDA kernels against the reference with poisoned outputs, ties included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels/pool/pool.h"
#include "kernels/pool/pool_window.h"
#include "layers/model.h"
#include "layers/pool.h"
#include "tests/test_util.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace kiln {
namespace {

// A k x k window, or k x kw when kw is given.
PoolShape make_pool(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride,
                    int64_t pad, int64_t kw = 0) {
  PoolShape s;
  s.n = n, s.c = c, s.h = h, s.w = w, s.kh = k, s.kw = kw ? kw : k, s.stride = stride, s.pad = pad;
  return s;
}

struct NamedPool {
  std::string name;
  PoolShape s;
};
// As NamedConvShape (tests/conv_shapes.h): gtest and ctest list the name, not a byte dump that
// holds the name's heap pointer and so changes from one test discovery to the next.
void PrintTo(const NamedPool& p, std::ostream* os) { *os << p.name; }

std::vector<NamedPool> pool_shapes() {
  return {
      {"K2S2", make_pool(2, 3, 8, 8, 2, 2, 0)},
      {"K2S2OddN1", make_pool(1, 5, 7, 9, 2, 2, 0)},
      {"K3S2Pad1Overlap", make_pool(2, 3, 9, 8, 3, 2, 1)},
      {"K3S1Pad1", make_pool(1, 2, 5, 6, 3, 1, 1)},
      {"StrideGreaterThanKernel", make_pool(2, 2, 11, 10, 2, 3, 0)},
      // kh != kw: a kernel that swaps or squares the window sizes shows here only
      {"K2x3S2Pad1NonSquare", make_pool(2, 3, 7, 9, 2, 2, 1, 3)},
  };
}

// Distinct values spaced far more than the difference step apart: no ties, no kinks.
std::vector<double> distinct_values(size_t n, uint64_t seed) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), 0.0);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  for (auto& x : v) x = x * 0.01 - 0.3;
  return v;
}

// ---- hand-computed values ----------------------------------------------------------------------

TEST(PoolRef, MaxPoolTieTakesFirstInRowMajorOrder) {
  PoolShape s = make_pool(1, 1, 2, 4, 2, 2, 0);
  std::vector<float> x = {1, 3, 5, 5,   //
                          3, 2, 5, 5};
  std::vector<float> y(2);
  std::vector<int32_t> arg(2);
  maxpool2d_fwd_ref<float>(s, x.data(), y.data(), arg.data());
  EXPECT_EQ(y, std::vector<float>({3, 5}));
  EXPECT_EQ(arg, std::vector<int32_t>({1, 2}));  // (0,1) beats (1,0); (0,2) beats the rest
  std::vector<float> dy = {10, 20}, dx(8);
  maxpool2d_bwd_ref<float>(s, dy.data(), arg.data(), dx.data());
  EXPECT_EQ(dx, std::vector<float>({0, 10, 20, 0, 0, 0, 0, 0}));
}

TEST(PoolRef, MaxPoolOverlappingWindowsSumGradients) {
  PoolShape s = make_pool(1, 1, 1, 5, 1, 1, 0);
  s.kw = 3;  // 1x3 windows, stride 1: the middle maximum is in all three
  std::vector<float> x = {0, 1, 9, 1, 0}, y(3), dx(5);
  std::vector<int32_t> arg(3);
  maxpool2d_fwd_ref<float>(s, x.data(), y.data(), arg.data());
  std::vector<float> dy = {1, 2, 4};
  maxpool2d_bwd_ref<float>(s, dy.data(), arg.data(), dx.data());
  EXPECT_EQ(dx, std::vector<float>({0, 0, 7, 0, 0}));
}

TEST(PoolRef, AvgPoolCountsPaddingInDivisor) {
  PoolShape s = make_pool(1, 1, 3, 3, 3, 1, 1);
  std::vector<float> x(9, 1.0f), y(9);
  avgpool2d_fwd_ref<float>(s, x.data(), y.data());
  EXPECT_FLOAT_EQ(y[0], 4.0f / 9);  // corner: 4 real pixels, divisor 9
  EXPECT_FLOAT_EQ(y[1], 6.0f / 9);
  EXPECT_FLOAT_EQ(y[4], 1.0f);
}

TEST(PoolRef, GlobalAvgPoolIsThePlaneMean) {
  std::vector<float> x = {1, 2, 3, 4, 10, 20, 30, 40}, y(2), dx(8);
  global_avgpool_fwd_ref<float>(2, 4, x.data(), y.data());
  EXPECT_EQ(y, std::vector<float>({2.5f, 25.0f}));
  std::vector<float> dy = {4, 8};
  global_avgpool_bwd_ref<float>(2, 4, dy.data(), dx.data());
  EXPECT_EQ(dx, std::vector<float>({1, 1, 1, 1, 2, 2, 2, 2}));
}

// A large plane's float mean is the double mean rounded once: the reference summed in float,
// which stalls at 2^24 (a plane of 2^24 + 2^22 ones averaged 0.8) and drifts well before.
TEST(PoolRef, GlobalAvgPoolOfALargePlaneIsTheRoundedMean) {
  const int64_t big = (int64_t{1} << 24) + (int64_t{1} << 22);
  std::vector<float> ones(static_cast<size_t>(big), 1.f), y(1);
  global_avgpool_fwd_ref<float>(1, big, ones.data(), y.data());
  EXPECT_EQ(y[0], 1.f);
  const auto x = test::random_vec<float>(1000000, 41, 10, 11);
  double sum = 0;
  for (float v : x) sum += v;
  global_avgpool_fwd_ref<float>(1, 1000000, x.data(), y.data());
  EXPECT_EQ(y[0], static_cast<float>(sum / 1e6));
}

// The CUDA global average pool sums in double too: a 1024 x 1024 plane of 0.1 averages to 0.1f
// exactly, as the reference (a lane's float sum was 2.6e-4 off).
TEST(GlobalPoolGpu, ALargePlaneAveragesToTheRoundedMean) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const int64_t hw = 1024 * 1024;
  const std::vector<float> x(static_cast<size_t>(2 * hw), 0.1f);
  std::vector<float> want(2);
  global_avgpool_fwd_ref<float>(2, hw, x.data(), want.data());
  ASSERT_EQ(want, (std::vector<float>{0.1f, 0.1f}));
  Tensor X = Tensor::from_vector(x, {2 * hw}, Device::CUDA), Y = test::poisoned({2}, Device::CUDA);
  global_avgpool_fwd(2, hw, X.data(), Y.data(), nullptr);
  EXPECT_EQ(Y.to_vector(), want);
#endif
}

// ---- gradient checks ---------------------------------------------------------------------------

TEST(PoolRef, GradientsMatchCentralDifferences) {
  uint64_t seed = 40;
  for (const auto& [name, s] : pool_shapes()) {
    SCOPED_TRACE(name);
    auto x = distinct_values(s.x_numel(), seed++);
    auto g = test::random_vec<double>(s.y_numel(), seed++);
    std::vector<double> y(g.size()), dx(x.size());
    std::vector<int32_t> arg(g.size());
    maxpool2d_fwd_ref<double>(s, x.data(), y.data(), arg.data());
    maxpool2d_bwd_ref<double>(s, g.data(), arg.data(), dx.data());
    // C++17 lambdas cannot capture a structured binding (clang refuses): an init-capture.
    EXPECT_TRUE(test::grad_check(
        [&, &s = s](const std::vector<double>& v) {
          maxpool2d_fwd_ref<double>(s, v.data(), y.data(), arg.data());
          return test::dot(g, y);
        },
        x, dx))
        << "maxpool";
    avgpool2d_bwd_ref<double>(s, g.data(), dx.data());
    EXPECT_TRUE(test::grad_check(
        [&, &s = s](const std::vector<double>& v) {
          avgpool2d_fwd_ref<double>(s, v.data(), y.data());
          return test::dot(g, y);
        },
        x, dx))
        << "avgpool";
    const int64_t planes = s.n * s.c, hw = s.h * s.w;
    auto gg = test::random_vec<double>(planes, seed++);
    std::vector<double> yy(planes);
    global_avgpool_bwd_ref<double>(planes, hw, gg.data(), dx.data());
    EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) {
      global_avgpool_fwd_ref<double>(planes, hw, v.data(), yy.data());
      return test::dot(gg, yy);
    }, x, dx)) << "global avgpool";
  }
}

// ---- layers ------------------------------------------------------------------------------------

TEST(PoolLayer, InputSmallerThanKernelNamesLayerAndShapes) {
  Model m({4, 3, 3});
  m.add(std::make_unique<MaxPool2d>(2));  // -> [4, 1, 1]
  m.add(std::make_unique<AvgPool2d>(2));
  try {
    m.build(Device::CPU, 1);
    ADD_FAILURE() << "build did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("layer 1 (AvgPool2d(k2 s2 p0))"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[4, 1, 1]"), std::string::npos) << e.message();
  }
}

TEST(PoolLayer, PlanePastInt32IndexIsUsageErrorAtSetup) {
  // Shape level: build() fails in setup, nothing of the input's size is allocated.
  for (bool max : {true, false}) {
    Model m({1, 46341, 46341});  // 46341^2 = 2147488281 > 2^31-1; 46340^2 fits
    if (max) m.add(std::make_unique<MaxPool2d>(2));
    else m.add(std::make_unique<AvgPool2d>(2));
    try {
      m.build(Device::CPU, 1);
      ADD_FAILURE() << "build did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find(max ? "layer 0 (MaxPool2d(k2 s2 p0))" : "layer 0 (AvgPool2d(k2 s2 p0))"),
                std::string::npos) << e.message();
      EXPECT_NE(e.message().find("[1, 46341, 46341]: plane H*W = 46341*46341 exceeds 2^31-1"), std::string::npos)
          << e.message();
    }
  }
  Model ok({1, 46340, 46340});
  ok.add(std::make_unique<MaxPool2d>(2));
  EXPECT_NO_THROW(ok.build(Device::CPU, 1));
}

TEST(PoolLayer, BadParametersAndSmallInputsAreUsageErrorsNamingTheLayer) {
  struct Case {
    std::unique_ptr<Layer> layer;
    Shape in;
    std::string want;
  };
  std::vector<Case> cases;
  cases.push_back(
      {std::make_unique<MaxPool2d>(3, 1, 2),
       {1, 8, 8},
       "layer 0 (MaxPool2d(k3 s1 p2)): needs kernel > 0, stride > 0 and padding <= kernel/2"});
  cases.push_back(
      {std::make_unique<AvgPool2d>(2, -1, 0), {1, 8, 8}, "layer 0 (AvgPool2d(k2 s-1 p0)): needs"});
  cases.push_back(
      {std::make_unique<MaxPool2d>(int64_t(1) << 32, 1, (int64_t(1) << 31) - 1),
       {1, 2, 2},
       "layer 0 (MaxPool2d(k4294967296 s1 p2147483647)): kernel 4294967296 exceeds 2^31-1"});
  cases.push_back(
      {std::make_unique<AvgPool2d>(3, 1, int64_t(1) << 62), {1, 8, 8}, "needs kernel > 0"});
  cases.push_back({std::make_unique<AvgPool2d>(4, 1, 1),
                   {1, 1, 1},
                   "layer 0 (AvgPool2d(k4 s1 p1)): input [1, 1, 1] is smaller than the kernel 4x4 "
                   "(with padding 1)"});
  for (auto& c : cases) {
    Model m(c.in);
    m.add(std::move(c.layer));
    try {
      m.build(Device::CPU, 1);
      ADD_FAILURE() << "built: " << c.want;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find(c.want), std::string::npos) << e.message();
    }
  }
  Model ok({1, 8, 8});
  ok.add(std::make_unique<MaxPool2d>(3, 1, 1));  // padding exactly kernel/2 (rounded down) builds
  ok.build(Device::CPU, 1);
}

TEST(PoolLayer, ShapesAndReceptiveFields) {
  Model m({3, 9, 9});
  m.add(std::make_unique<MaxPool2d>(3, 2, 1));  // 5x5
  m.add(std::make_unique<AvgPool2d>(2));        // 2x2
  m.add(std::make_unique<GlobalAvgPool>());
  m.build(Device::CPU, 1);
  auto rows = m.summary();
  EXPECT_EQ(rows[0].out_shape, Shape({3, 5, 5}));
  EXPECT_EQ(rows[1].out_shape, Shape({3, 2, 2}));
  EXPECT_EQ(rows[2].out_shape, Shape({3}));
  EXPECT_EQ(rows[0].rf.size, 3);
  EXPECT_EQ(rows[1].rf.size, 5);  // 3 + 1*2
  EXPECT_EQ(rows[1].rf.jump, 4);
  EXPECT_EQ(rows[2].rf.size, 9);  // 5 + 1*4
  Context ctx(Device::CPU);
  auto xv = test::random_vec<float>(2 * 3 * 81, 9);
  Tensor y = m.forward(ctx, Tensor::from_vector(xv, {2, 3, 9, 9}, Device::CPU));
  EXPECT_EQ(y.shape(), Shape({2, 3}));
  Tensor dx = m.backward(ctx, Tensor::from_vector(std::vector<float>(6, 1.0f), {2, 3}, Device::CPU));
  EXPECT_FALSE(dx.defined());
}

// ---- GPU vs reference --------------------------------------------------------------------------

class PoolGpu : public ::testing::TestWithParam<NamedPool> {};

TEST_P(PoolGpu, MatchesReferenceIncludingTies) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const PoolShape s = GetParam().s;
  // small integers: many ties, which must resolve the same way on both devices
  auto x = test::random_vec<float>(s.x_numel(), 51, -3, 3);
  for (auto& v : x) v = std::floor(v);
  auto g = test::random_vec<float>(s.y_numel(), 52);
  std::vector<float> y(s.y_numel()), dx(s.x_numel()), ya(s.y_numel()), dxa(s.x_numel());
  std::vector<int32_t> arg(s.y_numel());
  maxpool2d_fwd_ref<float>(s, x.data(), y.data(), arg.data());
  maxpool2d_bwd_ref<float>(s, g.data(), arg.data(), dx.data());
  avgpool2d_fwd_ref<float>(s, x.data(), ya.data());
  avgpool2d_bwd_ref<float>(s, g.data(), dxa.data());

  Tensor X = Tensor::from_vector(x, {s.x_numel()}, Device::CUDA);
  Tensor G = Tensor::from_vector(g, {s.y_numel()}, Device::CUDA);
  Tensor Y = test::poisoned({s.y_numel()}, Device::CUDA), A = test::poisoned({s.y_numel()}, Device::CUDA);
  Tensor DX = test::poisoned({s.x_numel()}, Device::CUDA);
  maxpool2d_fwd(s, X.data(), Y.data(), reinterpret_cast<int32_t*>(A.data()), nullptr);
  maxpool2d_bwd(s, G.data(), reinterpret_cast<const int32_t*>(A.data()), DX.data(), nullptr);
  EXPECT_TRUE(test::all_close(Y.to_vector(), y, 0, 0)) << "maxpool forward";
  auto av = A.to_vector();
  std::vector<int32_t> ag(av.size());
  std::memcpy(ag.data(), av.data(), av.size() * sizeof(float));
  EXPECT_EQ(ag, arg) << "argmax (tie rule)";
  EXPECT_TRUE(test::all_close(DX.to_vector(), dx, 1e-6, 1e-6)) << "maxpool backward";

  Tensor YA = test::poisoned({s.y_numel()}, Device::CUDA), DXA = test::poisoned({s.x_numel()}, Device::CUDA);
  avgpool2d_fwd(s, X.data(), YA.data(), nullptr);
  avgpool2d_bwd(s, G.data(), DXA.data(), nullptr);
  EXPECT_TRUE(test::all_close(YA.to_vector(), ya, 1e-6, 1e-6)) << "avgpool forward";
  EXPECT_TRUE(test::all_close(DXA.to_vector(), dxa, 1e-6, 1e-6)) << "avgpool backward";
  {  // 64-bit indices (what shapes past 2^31 elements take) give the same bits as 32-bit ones
    struct Restore {
      ~Restore() { pool_set_index64(false); }
    } restore;
    pool_set_index64(true);
    Tensor Y2 = test::poisoned({s.y_numel()}, Device::CUDA),
           A2 = test::poisoned({s.y_numel()}, Device::CUDA);
    Tensor DX2 = test::poisoned({s.x_numel()}, Device::CUDA),
           YA2 = test::poisoned({s.y_numel()}, Device::CUDA);
    Tensor DXA2 = test::poisoned({s.x_numel()}, Device::CUDA);
    maxpool2d_fwd(s, X.data(), Y2.data(), reinterpret_cast<int32_t*>(A2.data()), nullptr);
    maxpool2d_bwd(s, G.data(), reinterpret_cast<const int32_t*>(A2.data()), DX2.data(), nullptr);
    avgpool2d_fwd(s, X.data(), YA2.data(), nullptr);
    avgpool2d_bwd(s, G.data(), DXA2.data(), nullptr);
    EXPECT_TRUE(test::all_close(Y2.to_vector(), Y.to_vector(), 0, 0)) << "maxpool forward, 64-bit";
    EXPECT_EQ(std::memcmp(A2.to_vector().data(), av.data(), av.size() * sizeof(float)), 0)
        << "argmax, 64-bit";
    EXPECT_TRUE(test::all_close(DX2.to_vector(), DX.to_vector(), 0, 0))
        << "maxpool backward, 64-bit";
    EXPECT_TRUE(test::all_close(YA2.to_vector(), YA.to_vector(), 0, 0))
        << "avgpool forward, 64-bit";
    EXPECT_TRUE(test::all_close(DXA2.to_vector(), DXA.to_vector(), 0, 0))
        << "avgpool backward, 64-bit";
  }

  const int64_t planes = s.n * s.c, hw = s.h * s.w;
  std::vector<float> yg(planes), dxg(s.x_numel());
  global_avgpool_fwd_ref<float>(planes, hw, x.data(), yg.data());
  global_avgpool_bwd_ref<float>(planes, hw, g.data(), dxg.data());  // first `planes` of g as dy
  Tensor YG = test::poisoned({planes}, Device::CUDA), DXG = test::poisoned({s.x_numel()}, Device::CUDA);
  global_avgpool_fwd(planes, hw, X.data(), YG.data(), nullptr);
  global_avgpool_bwd(planes, hw, G.data(), DXG.data(), nullptr);
  EXPECT_TRUE(test::all_close(YG.to_vector(), yg, 1e-5, 1e-5)) << "global avgpool forward";
  EXPECT_TRUE(test::all_close(DXG.to_vector(), dxg, 1e-6, 1e-6)) << "global avgpool backward";
  struct Restore {
    ~Restore() { pool_set_index64(false); }
  } restore;
  pool_set_index64(true);
  Tensor DXG2 = test::poisoned({s.x_numel()}, Device::CUDA);
  global_avgpool_bwd(planes, hw, G.data(), DXG2.data(), nullptr);
  pool_set_index64(false);
  EXPECT_TRUE(test::all_close(DXG2.to_vector(), DXG.to_vector(), 0, 0))
      << "global avgpool backward, 64-bit";
#endif
}

std::vector<NamedPool> gpu_pool_shapes() {
  auto v = pool_shapes();
  v.push_back({"Cnn128x8x22", make_pool(128, 8, 22, 22, 2, 2, 0)});
  v.push_back({"K3S2Pad1Odd", make_pool(3, 7, 15, 13, 3, 2, 1)});
  // planes smaller than the window, which the padding makes valid
  v.push_back({"H1K2Pad1", make_pool(2, 3, 1, 2, 2, 1, 1)});
  v.push_back({"H2W1K3Pad1", make_pool(1, 5, 2, 1, 3, 1, 1)});
  // Ten seeded random shapes; the name carries the shape.
  test::SeededInts draw(11);
  for (int i = 0; i < 10;) {
    PoolShape s = make_pool(draw(1, 3), draw(1, 6), draw(1, 13), draw(1, 13), draw(1, 4), draw(1, 3), 0, draw(1, 4));
    s.pad = draw(0, 1);
    if (2 * s.pad > std::min(s.kh, s.kw) || s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw) continue;
    auto d = [](int64_t x) { return std::to_string(x); };
    v.push_back({"Random" + d(i++) + "_n" + d(s.n) + "c" + d(s.c) + "h" + d(s.h) + "w" + d(s.w) + "_" + d(s.kh) +
                     "x" + d(s.kw) + "s" + d(s.stride) + "p" + d(s.pad),
                 s});
  }
  return v;
}

#ifdef KILN_WITH_CUDA
// Which index width the kernels take (host arithmetic: no launch, no GPU needed): 32 bits while
// both tensors stay below 2^31 elements, 64 past that or when asked.
TEST(PoolIndexWidth, ThirtyTwoBitsBelowTwoTo31) {
  struct Restore {
    ~Restore() { pool_set_index64(false); }
  } restore;
  const PoolShape small = make_pool(128, 8, 22, 22, 2, 2, 0);
  const PoolShape big = make_pool(1 << 16, 64, 32, 32, 2, 2, 0);  // 2^32 input elements
  EXPECT_EQ(pool_index_bits(small), 32);
  EXPECT_EQ(pool_index_bits(big), 64);
  // a stride of 2^32 - 1 on an 8x8 plane (one output row and column; as int it would be -1)
  EXPECT_EQ(pool_index_bits(make_pool(2, 3, 8, 8, 2, int64_t(4294967295), 0)), 64);
  pool_set_index64(true);
  EXPECT_EQ(pool_index_bits(small), 64);
}
#endif

INSTANTIATE_TEST_SUITE_P(Shapes, PoolGpu, ::testing::ValuesIn(gpu_pool_shapes()),
                         [](const ::testing::TestParamInfo<NamedPool>& i) { return i.param.name; });

// NaN in a max-pool window: torch's max_pool2d propagates it wherever it lies in the window.
// Four 1x3 windows: [1, NaN, 0] (the NaN after a finite maximum, not greater than it),
// [1, 0, NaN] (NaN last), [NaN, 5, 0] (NaN first, a larger value after it) and [NaN, 2, NaN].
// The argmax, which receives the gradient, is the window's last NaN: torch 1.13's CPU
// max_pool2d gives indices [1, 5, 6, 11] and its gradient for this input (its CUDA kernel has
// the same rule).
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
PoolShape nan_pool_shape() {
  return make_pool(1, 1, 1, 12, 1, 3, 0, 3);
}
std::vector<float> nan_pool_input() {
  return {1, kNan, 0, 1, 0, kNan, kNan, 5, 0, kNan, 2, kNan};
}

// Shapes the layers refuse (a usage error at setup) are runtime errors naming the function when
// a direct caller hands them to a reference or a launcher, not a division by zero (stride 0)
// or windows wholly in the padding (argmax -1, y 0, where PyTorch refuses the shape).
TEST(PoolShapeCheck, UnsupportedShapesAreErrorsNamingTheFunction) {
  EXPECT_EQ(pool_shape_error(make_pool(2, 3, 5, 5, 3, 2, 1)), "");
  EXPECT_EQ(pool_shape_error(make_pool(0, 3, 5, 5, 3, 2, 1)), "");  // an empty batch
  EXPECT_EQ(pool_shape_error(make_pool(2, 3, 1, 2, 2, 1, 1)), "");  // plane < window, padded
  const std::pair<PoolShape, const char*> bad[] = {
      {make_pool(1, 1, 4, 4, 2, 0, 0), "kernel and stride must be >= 1"},
      {make_pool(1, 1, 4, 4, 0, 1, 0), "kernel and stride must be >= 1"},
      {make_pool(1, 1, 4, 4, 3, 1, 2), "padding past half the window"},
      {make_pool(1, 1, 2, 8, 5, 1, 1), "window larger than the padded plane"},
      {make_pool(1, 1, 0, 4, 2, 2, 0), "negative or empty dimensions"},
      {make_pool(1, 1, 65536, 65536, 2, 2, 0), "a plane of more than 2^31-1 elements"},
      // A window of 2^32 with padding 2^31-1 over a 2x2 plane: one output, but the padded
      // plane's product overflowed int64 and the 32-bit launch narrowed the window to 0.
      {make_pool(1, 1, 2, 2, int64_t(1) << 32, 1, (int64_t(1) << 31) - 1), "a window past 2^31-1"},
      // 2 * pad overflowed int64 before it was compared
      {make_pool(1, 1, 2, 2, (int64_t(1) << 31) - 1, 1, int64_t(1) << 62),
       "padding past half the window"}};
  std::vector<float> buf(64, 0.f);
  std::vector<int32_t> arg(64, 0);
  for (const auto& [s, why] : bad) {
    EXPECT_EQ(pool_shape_error(s).rfind(why, 0), 0u) << pool_shape_error(s);
    try {
      maxpool2d_fwd_ref<float>(s, buf.data(), buf.data(), arg.data());
      ADD_FAILURE() << why << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Runtime);
      EXPECT_EQ(e.message().rfind("maxpool2d_fwd_ref: unsupported shape n=1 c=1 ", 0), 0u)
          << e.message();
      EXPECT_NE(e.message().find(why), std::string::npos) << e.message();
    }
    EXPECT_THROW(avgpool2d_bwd_ref<float>(s, buf.data(), buf.data()), Error) << why;
#ifdef KILN_WITH_CUDA
    if (cuda_available()) {  // checked before any launch: host buffers are never touched
      EXPECT_THROW(maxpool2d_fwd(s, nullptr, nullptr, nullptr, nullptr), Error) << why;
      EXPECT_THROW(avgpool2d_bwd(s, nullptr, nullptr, nullptr), Error) << why;
    }
#endif
  }
}

TEST(PoolRef, MaxPoolNanAnywhereInTheWindowPropagates) {
  const PoolShape s = nan_pool_shape();
  ASSERT_EQ(s.y_numel(), 4);
  const std::vector<float> x = nan_pool_input();
  std::vector<float> y(4, -7.f), dy = {10, 20, 30, 40}, dx(12, -7.f);
  std::vector<int32_t> arg(4, -7);
  maxpool2d_fwd_ref<float>(s, x.data(), y.data(), arg.data());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(std::isnan(y[i])) << "window " << i << ": " << y[i];
  EXPECT_EQ(arg, (std::vector<int32_t>{1, 5, 6, 11}));
  maxpool2d_bwd_ref<float>(s, dy.data(), arg.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<float>{0, 10, 0, 0, 0, 20, 30, 0, 0, 0, 0, 40}));
}

// Unpadded planes take their own loop (branch-free selects over a row of outputs, stride 2
// compiled apart). It must give window_max's values and argmax bit for bit: values drawn from
// a few levels (ties everywhere), NaNs and infinities sprinkled in, float and double, strides
// below, at and above the window, odd planes, and a padded shape (the window_max loop) too.
template <typename T>
void expect_maxpool_matches_window_max(const PoolShape& s, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<T> x(static_cast<size_t>(s.x_numel()));
  for (auto& v : x) {
    const uint64_t u = g() % 64;
    v = u == 0   ? std::numeric_limits<T>::quiet_NaN()
        : u == 1 ? std::numeric_limits<T>::infinity()
        : u == 2 ? -std::numeric_limits<T>::infinity()
                 : static_cast<T>(static_cast<int>(g() % 5) - 2) * T(0.5);
  }
  const int64_t P = s.p(), Q = s.q(), n = s.y_numel();
  std::vector<T> y(static_cast<size_t>(n), T(-7)), want(y.size());
  std::vector<int32_t> arg(y.size(), -7), want_arg(y.size());
  maxpool2d_fwd_ref<T>(s, x.data(), y.data(), arg.data());
  for (int64_t pl = 0; pl < s.n * s.c; ++pl)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q) {
        const size_t o = static_cast<size_t>((pl * P + p) * Q + q);
        want[o] = pool_detail::window_max(s, x.data() + pl * s.h * s.w, p, q, &want_arg[o]);
      }
  EXPECT_EQ(arg, want_arg);
  for (size_t i = 0; i < y.size(); ++i)
    ASSERT_EQ(std::memcmp(&y[i], &want[i], sizeof(T)), 0)
        << "output " << i << ": " << y[i] << " vs " << want[i];
}

TEST(PoolRef, MaxPoolUnpaddedLoopMatchesWindowMax) {
  const PoolShape shapes[] = {
      make_pool(3, 5, 22, 22, 2, 2, 0),   // the cnn's pool
      make_pool(2, 3, 9, 11, 2, 2, 0),    // odd plane: the last row and column unread
      make_pool(2, 3, 9, 8, 3, 2, 0),     // overlapping windows, stride 2
      make_pool(1, 4, 7, 10, 3, 1, 0),    // stride 1
      make_pool(2, 2, 11, 10, 2, 3, 0),   // stride past the window
      make_pool(1, 3, 8, 9, 2, 2, 0, 3),  // 2x3 windows
      make_pool(2, 3, 9, 8, 3, 2, 1),     // padded: window_max itself
  };
  uint64_t seed = 11;
  for (const PoolShape& s : shapes) {
    SCOPED_TRACE(::testing::Message() << s.h << "x" << s.w << " k" << s.kh << "x" << s.kw << " s"
                                      << s.stride << " p" << s.pad);
    expect_maxpool_matches_window_max<float>(s, seed++);
    expect_maxpool_matches_window_max<double>(s, seed++);
  }
}

TEST(PoolGpuNan, MaxPoolNanAnywhereInTheWindowMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const PoolShape s = nan_pool_shape();
  const std::vector<float> x = nan_pool_input(), dy = {10, 20, 30, 40};
  Tensor X = Tensor::from_vector(x, {12}, Device::CUDA),
         G = Tensor::from_vector(dy, {4}, Device::CUDA);
  // y starts finite: a NaN read back is the kernel's, not the poison's
  Tensor Y = Tensor::from_vector(std::vector<float>(4, -7.f), {4}, Device::CUDA),
         A = test::poisoned({4}, Device::CUDA);
  Tensor DX = test::poisoned({12}, Device::CUDA);
  maxpool2d_fwd(s, X.data(), Y.data(), reinterpret_cast<int32_t*>(A.data()), nullptr);
  maxpool2d_bwd(s, G.data(), reinterpret_cast<const int32_t*>(A.data()), DX.data(), nullptr);
  for (float v : Y.to_vector()) EXPECT_TRUE(std::isnan(v)) << v;
  auto av = A.to_vector();
  std::vector<int32_t> ag(av.size());
  std::memcpy(ag.data(), av.data(), av.size() * sizeof(float));
  EXPECT_EQ(ag, (std::vector<int32_t>{1, 5, 6, 11}));
  EXPECT_EQ(DX.to_vector(), (std::vector<float>{0, 10, 0, 0, 0, 20, 30, 0, 0, 0, 0, 40}));
#endif
}

// n = 0 (an empty batch): no zero-block grid is launched (a launch error on a device) and
// nothing is written; the reference writes nothing either.
TEST(PoolGpuEmpty, EmptyBatchLaunchesNothing) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const PoolShape s = make_pool(0, 3, 8, 8, 2, 2, 0);
  ASSERT_EQ(s.x_numel(), 0);
  ASSERT_EQ(s.y_numel(), 0);
  Tensor X = test::poisoned({1}, Device::CUDA), G = test::poisoned({1}, Device::CUDA);
  Tensor Y = test::poisoned({1}, Device::CUDA), A = test::poisoned({1}, Device::CUDA);
  Tensor DX = test::poisoned({1}, Device::CUDA);
  maxpool2d_fwd(s, X.data(), Y.data(), reinterpret_cast<int32_t*>(A.data()), nullptr);
  maxpool2d_bwd(s, G.data(), reinterpret_cast<const int32_t*>(A.data()), DX.data(), nullptr);
  avgpool2d_fwd(s, X.data(), Y.data(), nullptr);
  avgpool2d_bwd(s, G.data(), DX.data(), nullptr);
  global_avgpool_fwd(0, 64, X.data(), Y.data(), nullptr);
  global_avgpool_bwd(0, 64, G.data(), DX.data(), nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  for (const Tensor* t : {&Y, &A, &DX})
    EXPECT_TRUE(std::isnan(t->to_vector()[0])) << "wrote past an empty output";
#endif
}

}  // namespace
}  // namespace kiln
