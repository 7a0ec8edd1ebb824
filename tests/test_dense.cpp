// Dense family and the Linear layer: GEMM reference vs naive loops for every transpose case,
// double-precision gradient checks of Linear, bias ops, and GPU (cuBLAS + kernels) vs reference.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "engine/context.h"
#include "engine/error.h"
#include "kernels/dense/dense.h"
#include "layers/linear.h"
#include "layers/model.h"
#include "test_util.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace kiln;
using kiln::test::all_close;
using kiln::test::grad_check;
using kiln::test::random_vec;

namespace {
// C = op(A) op(B), the definition written out.
std::vector<double> naive_gemm(bool ta, bool tb, int M, int N, int K, const std::vector<double>& A,
                               const std::vector<double>& B) {
  std::vector<double> C(M * N, 0.0);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j)
      for (int k = 0; k < K; ++k)
        C[i * N + j] += (ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
  return C;
}

// Linear forward in double through the references: y = x W^T + b.
std::vector<double> linear_fwd(const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>& b, int n, int in, int out) {
  std::vector<double> y(n * out);
  gemm_ref<double>(false, true, n, out, in, 1.0, x.data(), in, w.data(), in, 0.0, y.data(), out);
  bias_add_ref<double>(y.data(), b.data(), n, out);
  return y;
}
}  // namespace

TEST(GemmRef, AllTransposeCasesMatchNaive) {
  const int M = 5, N = 7, K = 3;
  for (auto* gemm : {&gemm_ref<double>, &gemm_loops_ref<double>})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        auto A = random_vec<double>(M * K, 1 + ta), B = random_vec<double>(K * N, 3 + tb);
        std::vector<double> C(M * N, 123.0);
        gemm(ta, tb, M, N, K, 1.0, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0, C.data(), N);
        auto want = naive_gemm(ta, tb, M, N, K, A, B);
        for (int i = 0; i < M * N; ++i)
          EXPECT_NEAR(C[i], want[i], 1e-12)
              << "ta=" << ta << " tb=" << tb << (gemm == &gemm_loops_ref<double> ? " (loops)" : "");
      }
}

// A 0 in A still multiplies B, as in BLAS, cuBLAS and torch: 0 * inf and 0 * NaN are NaN (the
// loops once skipped zeros, hiding a diverged gradient behind a ReLU's zeros).
TEST(GemmRef, ZeroTimesInfIsNaNAsInBlas) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  for (auto* gemm : {&gemm_ref<float>, &gemm_loops_ref<float>})
    for (float bad : {inf, nan}) {
      const std::vector<float> A{0, 1}, B{bad, 2};
      float C = 7;
      gemm(false, false, 1, 1, 2, 1.f, A.data(), 2, B.data(), 1, 0.f, &C, 1);
      EXPECT_TRUE(std::isnan(C)) << C << (gemm == &gemm_loops_ref<float> ? " (loops)" : "");
    }
}

// Sizes past 2^31-1 (a library caller's: a row stride of 2^31 here) are computed, not wrapped:
// CBLAS takes ints, so 2^31 turned negative and OpenBLAS returned with C untouched. The 8 GiB
// operands are address space only (MAP_NORESERVE; two pages of each are touched).
TEST(GemmRef, LeadingDimensionsPastIntRangeAreComputed) {
  const int64_t lda = int64_t(1) << 31, ldc = lda + 3;
  const size_t a_bytes = size_t(lda + 1) * sizeof(float), c_bytes = size_t(ldc + 1) * sizeof(float);
  void* a = mmap(nullptr, a_bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  void* c = mmap(nullptr, c_bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a == MAP_FAILED || c == MAP_FAILED) GTEST_SKIP() << "no 16 GiB of address space";
  float* A = static_cast<float*>(a);
  float* C = static_cast<float*>(c);
  A[0] = 1, A[lda] = 3;  // rows 0 and 1 of a 2 x 1 A
  const float B = 2;
  C[0] = C[ldc] = -7;  // poison
  gemm_ref<float>(false, false, 2, 1, 1, 1.f, A, lda, &B, 1, 0.f, C, ldc);
  EXPECT_EQ(C[0], 2.f);
  EXPECT_EQ(C[ldc], 6.f);
  munmap(a, a_bytes);
  munmap(c, c_bytes);
}

TEST(GemmRef, KernelNoteOnlyWhenOpenBlasChoseOlderKernelsByItself) {
  // OpenBLAS 0.3.21 on 2026-12-07's Xeon (AVX-512) fell back to Prescott: kiln's mlp trained
  // 1.5x slower than with OPENBLAS_CORETYPE=SkylakeX. The device line says so, and only then.
  EXPECT_EQ(gemm_kernel_note("Prescott", false, true, true, true),
            "older than this CPU, which this OpenBLAS does not know: "
            "OPENBLAS_CORETYPE=SkylakeX or Haswell is faster, with another rounding");
  EXPECT_NE(
      gemm_kernel_note("NEHALEM", false, true, true, false).find("OPENBLAS_CORETYPE=Haswell "),
      std::string::npos);
  for (const char* old : {"Sandybridge", "Athlon", "YONAH", "SSE_GENERIC", "Core2", "Generic"})
    EXPECT_NE(gemm_kernel_note(old, false, true, true, false), "") << old;
  EXPECT_EQ(gemm_kernel_note("Prescott", true, true, true, true), "");     // the user chose them
  EXPECT_EQ(gemm_kernel_note("Prescott", false, false, true, true), "");   // no choice to make
  EXPECT_EQ(gemm_kernel_note("Prescott", false, true, false, false), "");  // the CPU's own
  for (const char* own : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
    EXPECT_EQ(gemm_kernel_note(own, false, true, true, true), "") << own;
}

TEST(GemmRef, BetaAccumulates) {
  std::vector<float> A{1, 2}, B{3, 4}, C{10};
  gemm_ref<float>(false, false, 1, 1, 2, 2.0f, A.data(), 2, B.data(), 1, 0.5f, C.data(), 1);
  EXPECT_FLOAT_EQ(C[0], 2.0f * 11.0f + 5.0f);
}

// The cut: small products and sums over fewer than 64 terms stay one call; blocks of about 128
// rows or columns or more, at most 16; an empty C is one (empty) call.
TEST(GemmRefBlocks, TheCutDependsOnTheShapeOnly) {
  EXPECT_EQ(gemm_blocks(32, 256, 256), 1);     // 2M multiply-adds: one block's worth
  EXPECT_EQ(gemm_blocks(1024, 1024, 32), 1);   // a weight gradient over a batch of 32
  EXPECT_EQ(gemm_blocks(1024, 1024, 64), 8);   // a batch of 64: by rows, 128 each
  EXPECT_EQ(gemm_blocks(32, 1024, 1024), 8);   // by columns
  EXPECT_EQ(gemm_blocks(32, 100, 100000), 1);  // 100 columns: no room for two blocks of 128
  EXPECT_EQ(gemm_blocks(8192, 8192, 8192), 16);
  EXPECT_EQ(gemm_blocks(0, 4096, 4096), 1);
  EXPECT_EQ(gemm_blocks(0, 0, 64), 1);
  EXPECT_EQ(gemm_blocks(0, 0, 0), 1);
  float nothing = 1.f;
  gemm_ref_blocks<float>(false, false, 0, 0, 64, 1.f, &nothing, 64, &nothing, 1, 0.f, &nothing, 1);
  EXPECT_EQ(nothing, 1.f);
}

// Each block is its own GEMM on a slice of C: every transpose case, cuts by columns and by rows
// with an uneven last block, alpha and beta, leading dimensions past the rows (NaN between),
// against the definition in double; C poisoned where beta is 0 and its padding left alone; and the
// same bits on one thread and on three.
TEST(GemmRefBlocks, EveryCutAndTransposeMatchesTheDefinition) {
  struct Shape3 {
    int M, N, K;
  };
  const float nan = std::nanf("");
  const int pad = 3;
  for (Shape3 sh : {Shape3{40, 1000, 300}, Shape3{600, 40, 300}}) {
    const int M = sh.M, N = sh.N, K = sh.K;
    ASSERT_GE(gemm_blocks(M, N, K), 3) << M << "x" << N << "x" << K;
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.f, 0.5f}) {
          SCOPED_TRACE(std::to_string(M) + "x" + std::to_string(N) + " ta " + std::to_string(ta) +
                       " tb " + std::to_string(tb) + " beta " + std::to_string(beta));
          // op(A) is M x K: stored K x M when transposed; rows of lda = cols + pad.
          const int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
          const int lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
          const auto A = random_vec<float>(arows * acols, 5 + ta),
                     B = random_vec<float>(brows * bcols, 7 + tb);
          const auto C0 = random_vec<float>(M * N, 9);
          auto padded = [&](const std::vector<float>& v, int rows, int cols, int ld) {
            std::vector<float> p(static_cast<size_t>(rows) * ld, nan);
            for (int r = 0; r < rows; ++r)
              std::copy(v.begin() + r * cols, v.begin() + (r + 1) * cols, p.begin() + r * ld);
            return p;
          };
          const auto Ap = padded(A, arows, acols, lda), Bp = padded(B, brows, bcols, ldb);
          auto run = [&](int threads) {
            test::ThreadCount tc(threads);
            std::vector<float> C =
                padded(beta == 0.f ? std::vector<float>(M * N, nan) : C0, M, N, ldc);
            gemm_ref_blocks<float>(ta, tb, M, N, K, 0.75f, Ap.data(), lda, Bp.data(), ldb, beta,
                                   C.data(), ldc);
            return C;
          };
          const auto one = run(1), three = run(3);
          EXPECT_TRUE(test::bitwise_equal(three, one));
          const auto want = naive_gemm(ta, tb, M, N, K, std::vector<double>(A.begin(), A.end()),
                                       std::vector<double>(B.begin(), B.end()));
          std::vector<float> got, w;
          for (int i = 0; i < M; ++i) {
            for (int j = 0; j < N; ++j) {
              got.push_back(one[i * ldc + j]);
              w.push_back(
                  static_cast<float>(0.75 * want[i * N + j] + beta * double(C0[i * N + j])));
            }
            for (int j = N; j < ldc; ++j)
              ASSERT_TRUE(std::isnan(one[i * ldc + j])) << "C padding written, row " << i;
          }
          EXPECT_TRUE(all_close(got, w, 1e-4, 1e-4));
        }
  }
}

// The bias gradient of a large batch is its double sum rounded once: the reference's float
// running sum stalled at 2^24 (2^24 + 2^22 rows of 1 summed to 2^24) and drifted well before.
TEST(DenseRef, BiasGradOfALargeBatchIsTheRoundedSum) {
  const int64_t big = (int64_t{1} << 24) + (int64_t{1} << 22);
  std::vector<float> ones(static_cast<size_t>(big), 1.f), db(2, std::nanf(""));
  bias_grad_ref<float>(ones.data(), db.data(), big, 1);
  EXPECT_EQ(db[0], static_cast<float>(big));
  const auto dy = random_vec<float>(1000000, 15, 10, 11);  // 500,000 rows, 2 columns
  double sum[2] = {0, 0};
  for (size_t i = 0; i < dy.size(); ++i) sum[i % 2] += dy[i];
  bias_grad_ref<float>(dy.data(), db.data(), 500000, 2);
  EXPECT_EQ(db, (std::vector<float>{static_cast<float>(sum[0]), static_cast<float>(sum[1])}));
}

TEST(LinearRef, GradCheckDouble) {
  const int n = 3, in = 4, out = 5;
  auto x = random_vec<double>(n * in, 11), w = random_vec<double>(out * in, 12), b = random_vec<double>(out, 13);
  auto g = random_vec<double>(n * out, 14);  // loss = sum g * y
  // analytic gradients through the same references the layer uses
  std::vector<double> dw(out * in), db(out), dx(n * in);
  gemm_ref<double>(true, false, out, in, n, 1.0, g.data(), out, x.data(), in, 0.0, dw.data(), in);
  bias_grad_ref<double>(g.data(), db.data(), n, out);
  gemm_ref<double>(false, false, n, in, out, 1.0, g.data(), out, w.data(), in, 0.0, dx.data(), in);
  auto loss_x = [&](const std::vector<double>& v) { return test::dot(g, linear_fwd(v, w, b, n, in, out)); };
  auto loss_w = [&](const std::vector<double>& v) { return test::dot(g, linear_fwd(x, v, b, n, in, out)); };
  auto loss_b = [&](const std::vector<double>& v) { return test::dot(g, linear_fwd(x, w, v, n, in, out)); };
  EXPECT_TRUE(grad_check(loss_x, x, dx));
  EXPECT_TRUE(grad_check(loss_w, w, dw));
  EXPECT_TRUE(grad_check(loss_b, b, db));
}

TEST(LinearLayer, ShapeErrorNamesLayerAndShapes) {
  Model m({1, 28, 28});
  m.add(std::make_unique<Linear>(784, 10));
  try {
    m.build(Device::CPU, 0);
    FAIL() << "expected a usage error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("layer 0 (Linear(784 -> 10))"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("[1, 28, 28]"), std::string::npos) << e.message();
  }
}

TEST(LinearLayer, CpuLayerMatchesReferenceAndSkipsDxForFirstLayer) {
  Model m({6});
  m.add(std::make_unique<Linear>(6, 4));
  m.build(Device::CPU, 7);
  Context ctx(Device::CPU, 0);
  auto xv = random_vec(2 * 6, 21);
  Tensor x = Tensor::from_vector(xv, {2, 6}, Device::CPU);
  Tensor y = m.forward(ctx, x);
  auto w = m.param_refs()[0].param->value.to_vector(), b = m.param_refs()[1].param->value.to_vector();
  std::vector<float> want(8);
  gemm_ref<float>(false, true, 2, 4, 6, 1.f, xv.data(), 6, w.data(), 6, 0.f, want.data(), 4);
  bias_add_ref<float>(want.data(), b.data(), 2, 4);
  EXPECT_TRUE(all_close(y.to_vector(), want, 1e-6, 1e-6));
  Tensor dx = m.backward(ctx, Tensor::from_vector(random_vec(8, 22), {2, 4}, Device::CPU));
  EXPECT_FALSE(dx.defined());  // the first layer computes no input gradient
}

// ---- GPU vs reference -------------------------------------------------------------------------
#ifdef KILN_WITH_CUDA
// The CUDA bias gradient sums in double too: 60,000 rows of 0.1 (a full MNIST batch) give the
// reference's bits, 60,000 * 0.1f rounded once (a float sum per thread was 7e-5 off).
TEST(DenseGpu, BiasGradOfALargeBatchIsTheRoundedSum) {
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  const int64_t rows = 60000, cols = 10;
  std::vector<float> y(static_cast<size_t>(rows * cols), 0.1f), want(cols);
  bias_grad_ref<float>(y.data(), want.data(), rows, cols);
  EXPECT_EQ(want[0], static_cast<float>(60000 * static_cast<double>(0.1f)));
  Tensor src = Tensor::from_vector(y, {rows * cols}, Device::CUDA),
         out = test::poisoned({cols}, Device::CUDA);
  bias_grad(src.data(), out.data(), rows, cols, ctx.stream());
  ctx.sync();
  EXPECT_EQ(out.to_vector(), want);
}

// cuBLAS's sizes are int: past 2^31-1 the call is refused before cuBLAS sees it (it wrapped).
// The error must be that refusal: cuBLAS (and the emulator's) refuses the null handle too (not
// initialized), so any Error passed with the range check gone.
TEST(DenseGpu, GemmRefusesSizesPastInt) {
  const int64_t big = (int64_t{1} << 32) + 5;
  const auto error_of = [](int64_t m, int64_t ldb) {
    try {
      gemm_cuda(nullptr, false, m != 4, m, 4, 4, 1.f, nullptr, 4, nullptr, ldb, 0.f, nullptr, 4);
    } catch (const Error& e) {
      return e.message();
    }
    return std::string("no error");
  };
  for (const std::string& m : {error_of(big, 4), error_of(4, big)})
    EXPECT_NE(m.find("exceeds cuBLAS's int range (2^31-1)"), std::string::npos) << m;
}

TEST(DenseGpu, GemmAllTransposesOddSizes) {
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  const int M = 33, N = 17, K = 65;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto A = random_vec(M * K, 31 + ta), B = random_vec(K * N, 41 + tb);
      std::vector<float> want(M * N);
      gemm_ref<float>(ta, tb, M, N, K, 1.f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.f, want.data(), N);
      Tensor dA = Tensor::from_vector(A, {M * K}, Device::CUDA), dB = Tensor::from_vector(B, {K * N}, Device::CUDA);
      Tensor dC = test::poisoned({M * N}, Device::CUDA);
      gemm_cuda(ctx.cublas(), ta, tb, M, N, K, 1.f, dA.data(), ta ? M : K, dB.data(), tb ? K : N, 0.f, dC.data(), N);
      ctx.sync();
      EXPECT_TRUE(all_close(dC.to_vector(), want, 1e-4, 1e-4)) << "ta=" << ta << " tb=" << tb;
    }
}

TEST(DenseGpu, BiasAddAndGradOddShapes) {
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  for (auto [rows, cols] : {std::pair{1, 1}, {3, 37}, {257, 10}, {64, 1000}}) {
    auto y = random_vec(rows * cols, 51), b = random_vec(cols, 52);
    std::vector<float> want = y;
    bias_add_ref<float>(want.data(), b.data(), rows, cols);
    Tensor dy = Tensor::from_vector(y, {rows * cols}, Device::CUDA), db = Tensor::from_vector(b, {cols}, Device::CUDA);
    bias_add(dy.data(), db.data(), rows, cols, ctx.stream());
    ctx.sync();
    EXPECT_TRUE(all_close(dy.to_vector(), want, 1e-6, 1e-6));
    std::vector<float> gwant(cols);
    bias_grad_ref<float>(y.data(), gwant.data(), rows, cols);
    Tensor src = Tensor::from_vector(y, {rows * cols}, Device::CUDA), out = test::poisoned({cols}, Device::CUDA);
    bias_grad(src.data(), out.data(), rows, cols, ctx.stream());
    ctx.sync();
    EXPECT_TRUE(all_close(out.to_vector(), gwant, 1e-4, 1e-4)) << rows << "x" << cols;
  }
}

// An empty batch through the Linear layer's kernels: a GEMM with M or N zero does nothing; one
// whose reduction is empty (the weight gradient over no rows) writes beta * C = 0, as the
// reference; the bias add has nothing to add to; the bias gradient over no rows is zero, and
// over no columns writes nothing. No zero-block grid is launched.
TEST(DenseGpuEmpty, EmptyBatchLaunchesNothingAndZeroesGradients) {
  KILN_SKIP_WITHOUT_GPU();
  Context ctx(Device::CUDA, 0);
  Tensor A = test::poisoned({12}, Device::CUDA), B = test::poisoned({12}, Device::CUDA);
  for (auto [M, N, K] : {std::tuple{0, 5, 3}, {4, 0, 3}}) {
    Tensor C = test::poisoned({1}, Device::CUDA);
    gemm_cuda(ctx.cublas(), false, false, M, N, K, 1.f, A.data(), K, B.data(), std::max(N, 1), 0.f,
              C.data(), std::max(N, 1));
    ctx.sync();
    EXPECT_TRUE(std::isnan(C.to_vector()[0])) << M << "x" << N << "x" << K;
  }
  // dW[out, in] = dy^T x over 0 rows
  const int out = 4, in = 3;
  Tensor DW = test::poisoned({out * in}, Device::CUDA);
  gemm_cuda(ctx.cublas(), true, false, out, in, 0, 1.f, A.data(), out, B.data(), in, 0.f, DW.data(),
            in);
  std::vector<float> want(out * in, 7.f), a(1), b(1);
  gemm_ref<float>(true, false, out, in, 0, 1.f, a.data(), out, b.data(), in, 0.f, want.data(), in);
  ctx.sync();
  EXPECT_EQ(DW.to_vector(), want);
  EXPECT_EQ(want, std::vector<float>(out * in, 0.f));
  Tensor Y = test::poisoned({1}, Device::CUDA), DB = test::poisoned({out}, Device::CUDA),
         NONE = test::poisoned({1}, Device::CUDA);
  bias_add(Y.data(), A.data(), 0, out, ctx.stream());
  bias_grad(Y.data(), DB.data(), 0, out, ctx.stream());
  bias_grad(Y.data(), NONE.data(), 5, 0, ctx.stream());
  ctx.sync();
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<float> dbw(out, 7.f);
  bias_grad_ref<float>(nullptr, dbw.data(), 0, out);
  EXPECT_EQ(DB.to_vector(), dbw);
  EXPECT_EQ(dbw, std::vector<float>(out, 0.f));
  EXPECT_TRUE(std::isnan(Y.to_vector()[0]));
  EXPECT_TRUE(std::isnan(NONE.to_vector()[0]));
}
#endif
