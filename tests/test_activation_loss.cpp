// Activation and loss families: double-precision gradient checks (inputs kept away from the
// ReLU kink), softmax cross-entropy values/gradients/accuracy, deterministic accumulation,
// and GPU vs reference with poisoned outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "engine/context.h"
#include "engine/error.h"
#include "kernels/activation/activation.h"
#include "kernels/loss/loss.h"
#include "test_util.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace kiln;
using kiln::test::all_close;
using kiln::test::grad_check;
using kiln::test::random_vec;

namespace {
std::vector<double> away_from_zero(std::vector<double> v) {
  for (auto& x : v) x = x >= 0 ? x + 0.05 : x - 0.05;  // |x| >= 0.05 >> h
  return v;
}
}  // namespace

TEST(ActivationRef, GradCheckDoubleAllKinds) {
  for (Act a : {Act::ReLU, Act::Sigmoid, Act::Tanh}) {
    const int n = 50;
    auto x = away_from_zero(random_vec<double>(n, 1, -3, 3));
    auto g = random_vec<double>(n, 2);
    std::vector<double> y(n), dx(n);
    activation_fwd_ref<double>(a, x.data(), y.data(), n);
    activation_bwd_ref<double>(a, y.data(), g.data(), dx.data(), n);
    auto f = [&](const std::vector<double>& v) {
      std::vector<double> out(n);
      activation_fwd_ref<double>(a, v.data(), out.data(), n);
      return test::dot(g, out);
    };
    EXPECT_TRUE(grad_check(f, x, dx)) << act_name(a);
  }
}

TEST(ActivationRef, KnownValues) {
  std::vector<float> x{-1.f, 0.f, 2.f}, y(3);
  activation_fwd_ref<float>(Act::ReLU, x.data(), y.data(), 3);
  EXPECT_EQ(y, (std::vector<float>{0.f, 0.f, 2.f}));
  // torch.relu(nan) is nan (the NaN must reach the loss, not become 0), and its backward
  // (threshold_backward: y <= 0 ? 0 : dy) passes dy through a NaN output.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> xn{nan, -1.f, 0.f}, yn(3), dyn{1.f, 1.f, 1.f}, dxn(3);
  activation_fwd_ref<float>(Act::ReLU, xn.data(), yn.data(), 3);
  EXPECT_TRUE(std::isnan(yn[0]));
  activation_bwd_ref<float>(Act::ReLU, yn.data(), dyn.data(), dxn.data(), 3);
  EXPECT_EQ(dxn, (std::vector<float>{1.f, 0.f, 0.f}));
  activation_fwd_ref<float>(Act::Sigmoid, x.data(), y.data(), 3);
  EXPECT_NEAR(y[1], 0.5f, 1e-7);
  activation_fwd_ref<float>(Act::Tanh, x.data(), y.data(), 3);
  EXPECT_NEAR(y[2], std::tanh(2.0f), 1e-7);
  EXPECT_THROW(parse_act("gelu"), Error);
}

TEST(SoftmaxXentRef, ValuesAccuracyAndGradCheck) {
  const int N = 4, K = 5;
  auto z = random_vec<double>(N * K, 3, -2, 2);
  std::vector<int32_t> y{0, 4, 2, 1};
  std::vector<double> dz(N * K), loss(N), correct(N);
  softmax_xent_ref<double>(z.data(), y.data(), N, K, 1.0 / N, dz.data(), loss.data(), correct.data());
  for (int n = 0; n < N; ++n) {
    double s = 0;
    int arg = 0;
    for (int k = 0; k < K; ++k) {
      s += std::exp(z[n * K + k]);
      if (z[n * K + k] > z[n * K + arg]) arg = k;
    }
    EXPECT_NEAR(loss[n], std::log(s) - z[n * K + y[n]], 1e-12);
    EXPECT_EQ(correct[n], arg == y[n] ? 1.0 : 0.0);
  }
  auto mean_loss = [&](const std::vector<double>& v) {
    std::vector<double> l(N), c(N);
    softmax_xent_ref<double>(v.data(), y.data(), N, K, 1.0, nullptr, l.data(), c.data());
    double s = 0;
    for (double x : l) s += x;
    return s / N;
  };
  EXPECT_TRUE(grad_check(mean_loss, z, dz));
}

TEST(SoftmaxXentRef, LargeLogitsStayFinite) {
  std::vector<float> z{1000.f, -1000.f, 0.f}, loss(1), correct(1), dz(3);
  std::vector<int32_t> y{1};
  softmax_xent_ref<float>(z.data(), y.data(), 1, 3, 1.f, dz.data(), loss.data(), correct.data());
  EXPECT_NEAR(loss[0], 2000.f, 1e-3);
  EXPECT_TRUE(std::isfinite(dz[0]) && std::isfinite(dz[1]));
}

// An infinite maximum is NaN in torch (logsumexp: inf - inf): a +inf logit, whatever the
// label, and a row of -inf give a NaN loss and all-NaN dlogits, never a finite gradient from a
// NaN loss. A -inf logit beside finite ones is an ordinary row (an infinite loss at its label).
TEST(SoftmaxXentRef, InfiniteMaximumIsNanAsTorch) {
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    std::vector<float> z;
    int32_t y;
  };
  for (const Case& c : std::vector<Case>{
           {{inf, 0, 0}, 0}, {{inf, 0, 0}, 1}, {{1, inf, inf}, 2}, {{-inf, -inf, -inf}, 0}}) {
    std::vector<float> dz(3, 0.f), loss(1), correct(1);
    softmax_xent_ref<float>(c.z.data(), &c.y, 1, 3, 1.f, dz.data(), loss.data(), correct.data());
    EXPECT_TRUE(std::isnan(loss[0])) << c.z[0] << " " << c.z[1] << " label " << c.y;
    for (float d : dz) EXPECT_TRUE(std::isnan(d)) << c.z[0] << " " << c.z[1] << " label " << c.y;
  }
  std::vector<float> z{-inf, 0.f, 1.f}, dz(3), loss(1), correct(1);
  int32_t y = 0;
  softmax_xent_ref<float>(z.data(), &y, 1, 3, 1.f, dz.data(), loss.data(), correct.data());
  EXPECT_EQ(loss[0], inf);
  EXPECT_EQ(dz[0], -1.f);
  EXPECT_NEAR(dz[2], 1.f / (1.f + std::exp(-1.f)), 1e-6);
}

TEST(SoftmaxXentRef, SmallLossNextToLargeLogitsKeepsFloatPrecision) {
  // The float loss and gradient against double precision on the same logits: computing
  // (m + log s) - z[y] rounds to m's precision (0.8% off for the first row); log s - (z[y] - m)
  // does not.
  const std::vector<std::vector<float>> rows = {
      {20, 10, 0, 0}, {1000, 1000, -1000, 0}, {-30, -45, -31, -60}};
  for (const auto& zf : rows)
    for (int32_t y : {0, 1}) {
      std::vector<float> loss(1), correct(1), dz(4);
      softmax_xent_ref<float>(zf.data(), &y, 1, 4, 1.f, dz.data(), loss.data(), correct.data());
      std::vector<double> zd(zf.begin(), zf.end()), dzd(4);
      double ld = 0, cd = 0;
      softmax_xent_ref<double>(zd.data(), &y, 1, 4, 1.0, dzd.data(), &ld, &cd);
      EXPECT_NEAR(loss[0], ld, 4e-7 * ld + 1e-30) << zf[0] << " label " << y;
      for (int k = 0; k < 4; ++k) EXPECT_NEAR(dz[k], dzd[k], 3e-7 * std::fabs(dzd[k]) + 1e-12) << k;
    }
}

// torch.argmax semantics for accuracy: a NaN logit is the maximum (the first NaN wins), else
// the first of tied maxima.
template <typename T>
void check_argmax_rule() {
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  const int K = 4;
  struct Row {
    std::vector<T> z;
    int arg;
  };
  const std::vector<Row> rows = {{{1, nan, 3, 2}, 1},       {{nan, 5, nan, 1}, 0},  {{1, 2, 3, nan}, 3},
                                 {{2, 5, 5, 1}, 1},         {{7, 7, 7, 7}, 0},      {{-inf, -inf, -inf, -inf}, 0},
                                 {{0, inf, nan, inf}, 2},   {{-0.0, 0.0, -1, -2}, 0}};
  for (size_t r = 0; r < rows.size(); ++r)
    for (int32_t y = 0; y < K; ++y) {
      T loss = 0, correct = -1;
      softmax_xent_ref<T>(rows[r].z.data(), &y, 1, K, T(1), nullptr, &loss, &correct);
      EXPECT_EQ(correct, y == rows[r].arg ? T(1) : T(0)) << "row " << r << " label " << y;
      bool has_nan = false;
      for (T v : rows[r].z) has_nan |= std::isnan(v);
      if (has_nan) EXPECT_TRUE(std::isnan(loss)) << "row " << r;
    }
}

TEST(SoftmaxXentRef, ArgmaxNanIsMaximumAndTiesTakeFirstIndex) {
  check_argmax_rule<float>();
  check_argmax_rule<double>();
}

TEST(AccumulateRef, AddsSumsAndCount) {
  std::vector<float> a{1, 2, 3}, b{0, 1, 1};
  double acc[3] = {10, 20, 30};
  accumulate_sums_ref(a.data(), b.data(), 3, acc);
  EXPECT_EQ(acc[0], 16);
  EXPECT_EQ(acc[1], 22);
  EXPECT_EQ(acc[2], 33);
}

#ifdef KILN_WITH_CUDA
namespace {
// softmax_xent on the device (scale 1/N) for host logits z [N, K] and labels y, into poisoned
// outputs: dlogits, per-sample loss, per-sample correct. Synchronises before the inputs go.
std::tuple<Tensor, Tensor, Tensor> softmax_xent_gpu(Context& ctx, const std::vector<float>& z,
                                                    const std::vector<int32_t>& y, int N, int K) {
  Tensor dZ = Tensor::from_vector(z, {N * K}, Device::CUDA);
  Buffer dY(N * sizeof(int32_t), Device::CUDA);
  copy_bytes(dY.data(), Device::CUDA, y.data(), Device::CPU, N * sizeof(int32_t));
  Tensor gdz = test::poisoned({N * K}, Device::CUDA), gl = test::poisoned({N}, Device::CUDA),
         gc = test::poisoned({N}, Device::CUDA);
  softmax_xent(dZ.data(), static_cast<int32_t*>(dY.data()), N, K, 1.f / N, gdz.data(), gl.data(),
               gc.data(), ctx.stream());
  ctx.sync();
  return {gdz, gl, gc};
}
}  // namespace

TEST(ActivationGpu, MatchesReferenceOddSizes) {
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  for (Act a : {Act::ReLU, Act::Sigmoid, Act::Tanh})
    for (int n : {1, 255, 2500003}) {  // past 4096 blocks x 256: the grid-stride loop turns
      auto x = random_vec(n, 61, -4, 4), g = random_vec(n, 62);
      std::vector<float> y(n), dx(n);
      activation_fwd_ref<float>(a, x.data(), y.data(), n);
      activation_bwd_ref<float>(a, y.data(), g.data(), dx.data(), n);
      Tensor dX = Tensor::from_vector(x, {n}, Device::CUDA), dY = test::poisoned({n}, Device::CUDA);
      activation_fwd(a, dX.data(), dY.data(), n, ctx.stream());
      Tensor dG = Tensor::from_vector(g, {n}, Device::CUDA), dDx = test::poisoned({n}, Device::CUDA);
      Tensor yref = Tensor::from_vector(y, {n}, Device::CUDA);  // same y for both backward passes
      activation_bwd(a, yref.data(), dG.data(), dDx.data(), n, ctx.stream());
      ctx.sync();
      EXPECT_TRUE(all_close(dY.to_vector(), y, 1e-6, 1e-5)) << act_name(a) << " n=" << n;
      EXPECT_TRUE(all_close(dDx.to_vector(), dx, 1e-6, 1e-5)) << act_name(a) << " n=" << n;
    }
}

TEST(ActivationGpu, ReluKeepsNanAndPassesItsGradientAsTorch) {
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x{nan, -1.f, 0.f, 2.f}, g{1.f, 1.f, 1.f, 1.f};
  Tensor dX = Tensor::from_vector(x, {4}, Device::CUDA), dY = test::poisoned({4}, Device::CUDA);
  activation_fwd(Act::ReLU, dX.data(), dY.data(), 4, ctx.stream());
  Tensor dG = Tensor::from_vector(g, {4}, Device::CUDA), dDx = test::poisoned({4}, Device::CUDA);
  activation_bwd(Act::ReLU, dY.data(), dG.data(), dDx.data(), 4, ctx.stream());
  ctx.sync();
  const std::vector<float> y = dY.to_vector();
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(std::vector<float>(y.begin() + 1, y.end()), (std::vector<float>{0.f, 0.f, 2.f}));
  EXPECT_EQ(dDx.to_vector(), (std::vector<float>{1.f, 0.f, 0.f, 1.f}));
}

TEST(LossGpu, SoftmaxXentAndAccumulateMatchReference) {
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  for (auto [N, K] : {std::pair{1, 10}, {7, 3}, {513, 10}, {64, 100}}) {
    auto z = random_vec(N * K, 71, -5, 5);
    std::vector<int32_t> y(N);
    for (int i = 0; i < N; ++i) y[i] = (i * 7) % K;
    std::vector<float> dz(N * K), l(N), c(N);
    softmax_xent_ref<float>(z.data(), y.data(), N, K, 1.f / N, dz.data(), l.data(), c.data());
    auto [gdz, gl, gc] = softmax_xent_gpu(ctx, z, y, N, K);
    Buffer acc(3 * sizeof(double), Device::CUDA);
    zero_bytes(acc.data(), Device::CUDA, acc.bytes());
    accumulate_sums(gl.data(), gc.data(), N, static_cast<double*>(acc.data()), ctx.stream());
    ctx.sync();
    EXPECT_TRUE(all_close(gdz.to_vector(), dz, 1e-6, 1e-4));
    EXPECT_TRUE(all_close(gl.to_vector(), l, 1e-5, 1e-5));
    EXPECT_TRUE(all_close(gc.to_vector(), c, 0, 0));
    double h[3], want[3] = {0, 0, 0};
    copy_bytes(h, Device::CPU, acc.data(), Device::CUDA, sizeof h);
    accumulate_sums_ref(l.data(), c.data(), N, want);
    EXPECT_NEAR(h[0], want[0], 1e-3);
    EXPECT_EQ(h[1], want[1]);
    EXPECT_EQ(h[2], want[2]);
  }
}

TEST(LossGpu, LargeLogitsStayFiniteAndMatchReference) {
  // exp(z) overflows float past z = 88.7: a log-sum-exp that does not subtract the row maximum
  // gives inf/NaN here, where the reference (and PyTorch) stay finite.
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  const int N = 6, K = 40;
  auto z = random_vec(N * K, 91, -5, 5);
  const float shift[N] = {0.f, 100.f, -100.f, 500.f, -1000.f, 3000.f};
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) z[n * K + k] += shift[n];
  std::vector<int32_t> y(N);
  for (int n = 0; n < N; ++n) y[n] = (n * 11) % K;
  // Row 0 confidently right (loss ~1e-9): its loss and gradient must keep float precision
  // on the device too (log1p of the rest, not log of 1 + the rest).
  z[y[0]] += 25.f;
  std::vector<float> dz(N * K), l(N), c(N);
  softmax_xent_ref<float>(z.data(), y.data(), N, K, 1.f / N, dz.data(), l.data(), c.data());
  for (float v : l) ASSERT_TRUE(std::isfinite(v)) << "the reference itself overflowed";
  ASSERT_GT(l[0], 0.f);
  ASSERT_LT(l[0], 1e-6f);
  auto [gdz, gl, gc] = softmax_xent_gpu(ctx, z, y, N, K);
  EXPECT_TRUE(all_close(gl.to_vector(), l, 1e-5, 1e-4));
  EXPECT_TRUE(all_close(gdz.to_vector(), dz, 1e-6, 1e-4));
  EXPECT_NEAR(gl.to_vector()[0], l[0], 1e-4 * l[0]);  // relative: the row-0 loss is tiny
  EXPECT_NEAR(gdz.to_vector()[y[0]], dz[y[0]], 1e-4 * std::fabs(dz[y[0]]));
  EXPECT_TRUE(all_close(gc.to_vector(), c, 0, 0));
}

TEST(LossGpu, ArgmaxNanAndTiesMatchReference) {
  // Rows with NaN at the first / middle / last position, NaN in several lanes' elements, tied
  // maxima across lanes (K > 32 spreads a row over the warp butterfly), a +inf logit, a row of
  // -inf, and clean rows; labels
  // hit the expected arg-max for some rows. Accuracy must agree exactly; loss/dlogits are NaN on
  // NaN rows on both sides and close elsewhere.
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int K : {3, 10, 33, 100}) {
    const int N = 37;
    auto z = random_vec(N * K, 81 + K, -3, 3);
    std::vector<int32_t> y(N);
    for (int n = 0; n < N; ++n) {
      float* row = z.data() + n * K;
      int a = (n * 13) % K, b = (n * 5 + K / 2) % K;
      switch (n % 8) {
        case 0: row[a] = nan; break;
        case 1: row[a] = nan; row[b] = nan; row[(a + 1) % K] = 9.f; break;
        case 2: row[a] = 8.f; row[b] = 8.f; break;  // tie (a == b for some n: one maximum)
        case 3: row[K - 1] = nan; row[0] = 9.f; break;
        case 4: row[0] = nan; break;
        case 5:
          row[b] = INFINITY;
          break;  // NaN loss and dlogits (torch), in any lane
        case 6:
          std::fill(row, row + K, -INFINITY);
          break;
        default: break;
      }
      int first_nan = -1, first_max = 0;
      for (int k = 0; k < K; ++k) {
        if (std::isnan(row[k]) && first_nan < 0) first_nan = k;
        if (row[k] > row[first_max]) first_max = k;  // no NaN rows only use this
      }
      y[n] = n % 12 < 6 ? (first_nan >= 0 ? first_nan : first_max) : (n * 7) % K;
    }
    std::vector<float> dz(N * K), l(N), c(N);
    softmax_xent_ref<float>(z.data(), y.data(), N, K, 1.f / N, dz.data(), l.data(), c.data());
    auto [gdz, gl, gc] = softmax_xent_gpu(ctx, z, y, N, K);
    SCOPED_TRACE("K=" + std::to_string(K));
    EXPECT_TRUE(all_close(gc.to_vector(), c, 0, 0));
    double hits = 0;
    for (float v : c) hits += v;
    EXPECT_GT(hits, 0) << "no row hit its label: the accuracy comparison checks nothing";
    std::vector<float> got_l = gl.to_vector(), got_dz = gdz.to_vector();
    for (int n = 0; n < N; ++n) {
      const bool nan_row = std::isnan(l[n]);
      std::vector<float> g(got_dz.begin() + n * K, got_dz.begin() + (n + 1) * K), w(dz.begin() + n * K, dz.begin() + (n + 1) * K);
      if (nan_row) {
        EXPECT_TRUE(std::isnan(got_l[n])) << "row " << n;
        for (float v : g) EXPECT_TRUE(std::isnan(v)) << "row " << n;
      } else {
        EXPECT_NEAR(got_l[n], l[n], 1e-5 + 1e-5 * std::fabs(l[n])) << "row " << n;
        EXPECT_TRUE(all_close(g, w, 1e-6, 1e-4)) << "row " << n;
      }
    }
  }
}

// N = 0 (an empty batch): the activations and the loss launch no zero-block grid (a launch
// error on a device) and write nothing; the epoch sums add nothing, the count included (as the
// reference does).
TEST(ActivationLossGpuEmpty, EmptyBatchLaunchesNothing) {
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  Tensor X = test::poisoned({1}, Device::CUDA), Y = test::poisoned({1}, Device::CUDA),
         G = test::poisoned({1}, Device::CUDA), DX = test::poisoned({1}, Device::CUDA);
  for (Act a : {Act::ReLU, Act::Sigmoid, Act::Tanh}) {
    activation_fwd(a, X.data(), Y.data(), 0, ctx.stream());
    activation_bwd(a, Y.data(), G.data(), DX.data(), 0, ctx.stream());
  }
  Buffer labels(sizeof(int32_t), Device::CUDA);
  Tensor DZ = test::poisoned({1}, Device::CUDA), L = test::poisoned({1}, Device::CUDA),
         C = test::poisoned({1}, Device::CUDA);
  softmax_xent(X.data(), static_cast<int32_t*>(labels.data()), 0, 10, 1.f, DZ.data(), L.data(),
               C.data(), ctx.stream());
  const double start[3] = {1.5, 2, 3};
  Buffer acc(3 * sizeof(double), Device::CUDA);
  copy_bytes(acc.data(), Device::CUDA, start, Device::CPU, sizeof start);
  accumulate_sums(L.data(), C.data(), 0, static_cast<double*>(acc.data()), ctx.stream());
  ctx.sync();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  for (const Tensor* t : {&Y, &DX, &DZ, &L, &C})
    EXPECT_TRUE(std::isnan(t->to_vector()[0])) << "wrote past an empty output";
  double got[3], want[3] = {1.5, 2, 3};
  copy_bytes(got, Device::CPU, acc.data(), Device::CUDA, sizeof got);
  accumulate_sums_ref(nullptr, nullptr, 0, want);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i], want[i]) << i;
  EXPECT_EQ(want[2], 3.0);
}
#endif
