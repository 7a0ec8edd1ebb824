// CPU references for the dense family. Float and double GEMM go through CBLAS (OpenBLAS)
// when the build found it; the loop fallback keeps the CPU-only build dependency-free.
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "engine/json.h"
#include "engine/parallel.h"
#include "kernels/dense/dense.h"

#ifdef KILN_HAVE_CBLAS
#include <cblas.h>
// OpenBLAS's own (its cblas.h declares them; a cblas.h of another CBLAS would not).
extern "C" void openblas_set_num_threads(int num_threads);
extern "C" char* openblas_get_corename(void);
extern "C" char* openblas_get_config(void);
#endif

namespace kiln {

std::string gemm_kernel_note(const std::string& core, bool coretype_set, bool dynamic_arch,
                             bool avx2_fma, bool avx512f) {
  // (a build for one target, without DYNAMIC_ARCH, ignores OPENBLAS_CORETYPE)
  if (coretype_set || !dynamic_arch || !avx2_fma) return "";
  // OpenBLAS's x86 kernel sets without AVX2: its DYNAMIC_ARCH core names and its TargetList's
  // older targets, lower case.
  static const char* const kOld[] = {
      "prescott",     "core2",     "penryn",     "dunnington", "nehalem",    "sandybridge",
      "atom",         "katmai",    "coppermine", "northwood",  "banias",     "opteron",
      "opteron_sse3", "barcelona", "bobcat",     "bulldozer",  "piledriver", "steamroller",
      "nano",         "generic",   "unknown",    "athlon",     "yonah",      "sse_generic",
      "shanghai",     "istanbul",  "viac3",      "p2"};
  std::string lower;
  for (char c : core) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (std::find(std::begin(kOld), std::end(kOld), lower) == std::end(kOld)) return "";
  return std::string(
             "older than this CPU, which this OpenBLAS does not know: "
             "OPENBLAS_CORETYPE=") +
         (avx512f ? "SkylakeX or Haswell" : "Haswell") + " is faster, with another rounding";
}

std::string cpu_gemm_description() {
#ifdef KILN_HAVE_CBLAS
  // OpenBLAS picks its kernels for the CPU when it loads, or takes them from OPENBLAS_CORETYPE
  // (a dynamic-architecture build, when it knows the name): the variable is shown as it is, set
  // but empty too (OpenBLAS 0.3.21 then took Cooperlake on 2026-12-07's Xeon, not the Prescott
  // it takes with the variable unset).
  const char* env = std::getenv("OPENBLAS_CORETYPE");
  const bool chosen = env != nullptr;
  const std::string core = openblas_get_corename();
  const std::string note =
      gemm_kernel_note(core, chosen, std::strstr(openblas_get_config(), "DYNAMIC_ARCH") != nullptr,
                       __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
                       __builtin_cpu_supports("avx512f"));
  // (the variable when it chose the kernels, else the hint, if any; its control characters
  // escaped: a line break split the device line in two, an ESC reached the terminal)
  return "OpenBLAS " + core +
         (chosen         ? " (OPENBLAS_CORETYPE=" + (*env ? escape_controls(env) : "\"\"") + ")"
          : note.empty() ? ""
                         : " (" + note + ")");
#else
  return "loops";
#endif
}

template <typename T>
void gemm_loops_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                    int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  std::vector<T> row(static_cast<size_t>(N));
  for (int64_t i = 0; i < M; ++i) {
    std::fill(row.begin(), row.end(), T(0));
    for (int64_t k = 0; k < K; ++k) {
      T a = ta ? A[k * lda + i] : A[i * lda + k];
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
  // CBLAS takes int sizes (blasint: int in Debian's OpenBLAS): past 2^31-1 one wraps (2^32 + 5
  // rows: a 5-row GEMM) or turns negative (OpenBLAS prints "illegal value" and computes nothing).
  // Such a product runs in the 64-bit loops, as a build without BLAS would.
  if (std::max({M, N, K, lda, ldb, ldc}) > INT_MAX) {
    gemm_loops_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  auto opa = ta ? CblasTrans : CblasNoTrans;
  auto opb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, opa, opb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
#else
  gemm_loops_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

// Blocks of about kBlockWork multiply-adds or more (a wake-up of another thread costs a few
// microseconds; this is ~50) and about kBlockSide rows or columns or more (each block is an
// OpenBLAS call of its own, which packs the other operand again), at most kMaxBlocks; the last
// block may be shorter. A product over fewer than kBlockDepth terms (a weight gradient's sum over
// a batch of 32) stays whole: it mostly writes C, and two threads writing halves of it measured
// slower than one writing all.
namespace {
constexpr int64_t kBlockWork = int64_t(1) << 21, kBlockSide = 128, kMaxBlocks = 16,
                  kBlockDepth = 64;

struct Cut {
  int64_t blocks = 1, len = 0;  // blocks of len rows or columns (a multiple of 16) cover the side
  bool by_cols = true;
};

Cut gemm_cut(int64_t M, int64_t N, int64_t K) {
  Cut c;
  c.by_cols = N >= M;
  const int64_t side = c.by_cols ? N : M;
  c.len = side;
  if (K < kBlockDepth || M == 0 || N == 0) return c;
  const double work = double(M) * double(N) * double(K);
  const int64_t by_work =
      static_cast<int64_t>(std::min(work / double(kBlockWork), double(kMaxBlocks)));
  const int64_t want = std::max<int64_t>(1, std::min({by_work, side / kBlockSide, kMaxBlocks}));
  if (want == 1) return c;
  c.len = ((side + want - 1) / want + 15) / 16 * 16;
  c.blocks = (side + c.len - 1) / c.len;  // rounding len up may leave fewer than want
  return c;
}
}  // namespace

int64_t gemm_blocks(int64_t M, int64_t N, int64_t K) {
  return gemm_cut(M, N, K).blocks;
}

template <typename T>
void gemm_ref_blocks(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                     int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const Cut c = gemm_cut(M, N, K);
  if (c.blocks == 1) return gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const int64_t side = c.by_cols ? N : M;
  parallel_for(c.blocks, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * c.len, n = std::min(c.len, side - lo);
      if (c.by_cols)  // C[:, lo:lo+n] = op(A) * op(B)[:, lo:lo+n]
        gemm_ref(ta, tb, M, n, K, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb, beta, C + lo,
                 ldc);
      else  // C[lo:lo+n, :] = op(A)[lo:lo+n, :] * op(B)
        gemm_ref(ta, tb, n, N, K, alpha, ta ? A + lo : A + lo * lda, lda, B, ldb, beta,
                 C + lo * ldc, ldc);
    }
  });
}

template <typename T>
void bias_add_ref(T* y, const T* b, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] += b[c];
}

// Summed in double: a float running sum over the batch drifts with it (2.9e-4 relative at 60,000
// rows of one value, where torch's pairwise sum is within 2.4e-7).
template <typename T>
void bias_grad_ref(const T* dy, T* db, int64_t rows, int64_t cols) {
  std::vector<double> acc(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) acc[static_cast<size_t>(c)] += dy[r * cols + c];
  for (int64_t c = 0; c < cols; ++c) db[c] = static_cast<T>(acc[static_cast<size_t>(c)]);
}

#define KILN_INSTANTIATE(T)                                                                        \
  template void gemm_ref<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                            int64_t, T, T*, int64_t);                                              \
  template void gemm_loops_ref<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t,     \
                                  const T*, int64_t, T, T*, int64_t);                              \
  template void gemm_ref_blocks<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t,    \
                                   const T*, int64_t, T, T*, int64_t);                             \
  template void bias_add_ref<T>(T*, const T*, int64_t, int64_t);                                   \
  template void bias_grad_ref<T>(const T*, T*, int64_t, int64_t);
KILN_INSTANTIATE(float)
KILN_INSTANTIATE(double)
#undef KILN_INSTANTIATE

}  // namespace kiln
