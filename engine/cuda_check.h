// Error checks for CUDA, cuBLAS and kernel launches. Include only from .cu files or from .cpp
// files guarded by KILN_WITH_CUDA: it pulls in the CUDA headers.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "engine/error.h"

namespace kiln {
const char* cublas_status_string(cublasStatus_t s);
}

#define KILN_CUDA_CHECK(expr)                                                    \
  do {                                                                           \
    cudaError_t kiln_e_ = (expr);                                                \
    KILN_CHECK(kiln_e_ == cudaSuccess, "CUDA error in " #expr ": "               \
                                           << cudaGetErrorString(kiln_e_));      \
  } while (0)

#define KILN_CUBLAS_CHECK(expr)                                                  \
  do {                                                                           \
    cublasStatus_t kiln_s_ = (expr);                                             \
    KILN_CHECK(kiln_s_ == CUBLAS_STATUS_SUCCESS,                                 \
               "cuBLAS error in " #expr ": " << ::kiln::cublas_status_string(kiln_s_)); \
  } while (0)

// After every kernel launch: catches bad launch configurations at once.
#define KILN_LAUNCH_CHECK() KILN_CUDA_CHECK(cudaGetLastError())

namespace kiln {
inline unsigned ceil_div(long long a, long long b) { return static_cast<unsigned>((a + b - 1) / b); }
}
