// CPU references for the dense family. Float and double GEMM go through CBLAS (OpenBLAS)
// when the build found it; the loop fallback keeps the CPU-only build dependency-free.
#include <cstdlib>
#include <vector>

#include "kernels/dense/dense.h"

#ifdef KILN_HAVE_CBLAS
#include <cblas.h>
#endif

namespace kiln {

namespace {
template <typename T>
void gemm_loops(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  std::vector<T> row(static_cast<size_t>(N));
  for (int64_t i = 0; i < M; ++i) {
    std::fill(row.begin(), row.end(), T(0));
    for (int64_t k = 0; k < K; ++k) {
      T a = ta ? A[k * lda + i] : A[i * lda + k];
      if (a == T(0)) continue;
      if (tb) {
        for (int64_t j = 0; j < N; ++j) row[j] += a * B[j * ldb + k];
      } else {
        const T* b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) row[j] += a * b[j];
      }
    }
    T* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = alpha * row[j] + (beta == T(0) ? T(0) : beta * c[j]);
  }
}
}  // namespace

template <typename T>
void gemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
              const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
#ifdef KILN_HAVE_CBLAS
  // The reference's GEMMs are small (one image, one batch): OpenBLAS threads cost more than they
  // give, and erratically so when tests run in parallel. One thread unless the user sets one.
  static const bool once = [] {
    if (!std::getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
  auto opa = ta ? CblasTrans : CblasNoTrans;
  auto opb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, opa, opb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
#else
  gemm_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

template <typename T>
void bias_add_ref(T* y, const T* b, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] += b[c];
}

template <typename T>
void bias_grad_ref(const T* dy, T* db, int64_t rows, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) db[c] = T(0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) db[c] += dy[r * cols + c];
}

#define KILN_INSTANTIATE(T)                                                                   \
  template void gemm_ref<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t,      \
                            const T*, int64_t, T, T*, int64_t);                               \
  template void bias_add_ref<T>(T*, const T*, int64_t, int64_t);                              \
  template void bias_grad_ref<T>(const T*, T*, int64_t, int64_t);
KILN_INSTANTIATE(float)
KILN_INSTANTIATE(double)
#undef KILN_INSTANTIATE

}  // namespace kiln
