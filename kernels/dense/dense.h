// Dense family: row-major GEMM (CPU reference through OpenBLAS when present, cuBLAS on the
// GPU) and the bias ops of the Linear layer. The row-major convention is PyTorch's:
// Linear computes y[N,out] = x[N,in] * W[out,in]^T + b.
#pragma once
#include <cstdint>
#include <string>

#include "engine/device.h"

namespace kiln {

// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, all row-major with leading dims.
template <typename T>
void gemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
              int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
// What gemm_ref runs in a build without CBLAS (KILN_BLAS=OFF): plain loops, declared here so
// every build tests them. Like BLAS, a 0 in A still multiplies B (0 * inf is NaN).
template <typename T>
void gemm_loops_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                    const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
// The same as gemm_ref, with C cut into blocks along its longer side that threads take
// (engine/parallel.h), each block one gemm_ref. The cut depends on the shape only, never on the
// thread count, so the result is the same bits on any count. For one large product (the Linear
// layer's); a GEMM inside a parallel loop (a conv's, per image) should stay one gemm_ref.
template <typename T>
void gemm_ref_blocks(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                     const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
// The number of blocks gemm_ref_blocks cuts an M x N x K product into (1: a single gemm_ref).
int64_t gemm_blocks(int64_t M, int64_t N, int64_t K);
// What multiplies the CPU path's matrices, for the apps' device lines: "OpenBLAS Cooperlake"
// (the kernels OpenBLAS runs; "OpenBLAS Haswell (OPENBLAS_CORETYPE=Haswell)" when that
// variable is set, which OpenBLAS obeys where it knows the name; gemm_kernel_note's hint in
// parentheses where OpenBLAS chose kernels older than the CPU), "loops" in a build without
// CBLAS.
std::string cpu_gemm_description();
// What the description adds in parentheses when OpenBLAS chose, by itself, kernels without
// AVX2 on a CPU with AVX2 and FMA (this OpenBLAS does not know the CPU: OpenBLAS 0.3.21 on
// 2026-12-07's Xeon ran its SSE3 Prescott kernels, and kiln's mlp trained 1.5x slower than
// with OPENBLAS_CORETYPE=SkylakeX), naming the OPENBLAS_CORETYPE that selects the CPU's own;
// "" otherwise (the variable set; an OpenBLAS built for one target, no DYNAMIC_ARCH in
// openblas_get_config(), which ignores the variable; kernels with AVX2; a CPU without AVX2 and
// FMA). `core` as openblas_get_corename() names it.
std::string gemm_kernel_note(const std::string& core, bool coretype_set, bool dynamic_arch,
                             bool avx2_fma, bool avx512f);
// The same through cuBLAS on the handle's stream (float; TF32 off: exact fp32).
void gemm_cuda(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
               float* C, int64_t ldc);

// y[r, c] += b[c] for r < rows, c < cols.
template <typename T>
void bias_add_ref(T* y, const T* b, int64_t rows, int64_t cols);
void bias_add(float* y, const float* b, int64_t rows, int64_t cols, cudaStream_t stream);
// db[c] = sum_r dy[r, c]; a fixed summation order, so the result is deterministic.
template <typename T>
void bias_grad_ref(const T* dy, T* db, int64_t rows, int64_t cols);
void bias_grad(const float* dy, float* db, int64_t rows, int64_t cols, cudaStream_t stream);
// The CUDA column sums behind bias_grad, of one or two rows x cols row-major matrices at once:
// sa[c] = sum_r a[r, c], and sb from b unless b is null; in double in a fixed order (8 row
// stripes, then the stripes in order), rounded once. Group norm's parameter gradients sum its
// per-sample terms with it.
void column_sums(const float* a, float* sa, const float* b, float* sb, int64_t rows, int64_t cols,
                 cudaStream_t stream);

}  // namespace kiln
