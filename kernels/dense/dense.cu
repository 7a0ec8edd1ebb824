// CUDA side of the dense family: cuBLAS GEMM in row-major form, bias add and a deterministic
// bias gradient (column sums with a fixed order: 8 row stripes per column, then the stripes
// added in order; column_sums, which group norm's parameter gradients use too).
#include <climits>

#include "engine/cublas_api.h"
#include "engine/cuda_check.h"
#include "kernels/dense/dense.h"

namespace kiln {

void gemm_cuda(cublasHandle_t handle, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  if (M == 0 || N == 0) return;
  // cublasSgemm takes int sizes: a value past 2^31-1 would wrap (2^32 + 5 rows: a 5-row GEMM).
  for (int64_t v : {M, N, K, lda, ldb, ldc})
    KILN_CHECK(v <= INT_MAX, "GEMM "
                                 << M << "x" << N << "x" << K << " (leading dimensions " << lda
                                 << ", " << ldb << ", " << ldc
                                 << ") exceeds cuBLAS's int range (2^31-1): use a smaller batch");
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  KILN_CUBLAS_CHECK(cublas_api().sgemm(
      handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(N),
      static_cast<int>(M), static_cast<int>(K), &alpha, B, static_cast<int>(ldb), A,
      static_cast<int>(lda), &beta, C, static_cast<int>(ldc)));
}

static __global__ void bias_add_kernel(float* __restrict__ y, const float* __restrict__ b,
                                       int64_t rows, int64_t cols) {
  int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] += b[i % cols];
}

void bias_add(float* y, const float* b, int64_t rows, int64_t cols, cudaStream_t stream) {
  int64_t n = rows * cols;
  if (n == 0) return;
  unsigned blocks = std::min<unsigned>(ceil_div(n, 256), 65535u);
  bias_add_kernel<<<blocks, 256, 0, stream>>>(y, b, rows, cols);
  KILN_LAUNCH_CHECK();
}

// Block of 32x8 threads per 32 columns: thread (x, y) sums rows y, y+8, ... of column x (of a,
// and of b when given), then the 8 partials are added in a fixed order. Reads are coalesced along
// the columns. Sums in double, as the reference: a float running sum over the batch drifted
// (7e-5 relative at 60,000 rows of one value; torch's pairwise sum 2e-7).
static __global__ void column_sums_kernel(const float* __restrict__ a, float* __restrict__ sa,
                                          const float* __restrict__ b, float* __restrict__ sb,
                                          int64_t rows, int64_t cols) {
  __shared__ double part[2][8][33];
  const int64_t c = blockIdx.x * 32 + threadIdx.x;
  double s = 0, t = 0;
  if (c < cols)
    for (int64_t r = threadIdx.y; r < rows; r += 8) {
      s += a[r * cols + c];
      if (b) t += b[r * cols + c];
    }
  part[0][threadIdx.y][threadIdx.x] = s;
  part[1][threadIdx.y][threadIdx.x] = t;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double u = 0, v = 0;
    for (int k = 0; k < 8; ++k) u += part[0][k][threadIdx.x], v += part[1][k][threadIdx.x];
    sa[c] = float(u);
    if (b) sb[c] = float(v);
  }
}

void column_sums(const float* a, float* sa, const float* b, float* sb, int64_t rows, int64_t cols,
                 cudaStream_t stream) {
  if (cols == 0) return;
  column_sums_kernel<<<ceil_div(cols, 32), dim3(32, 8), 0, stream>>>(a, sa, b, sb, rows, cols);
  KILN_LAUNCH_CHECK();
}

void bias_grad(const float* dy, float* db, int64_t rows, int64_t cols, cudaStream_t stream) {
  column_sums(dy, db, nullptr, nullptr, rows, cols, stream);
}

}  // namespace kiln
