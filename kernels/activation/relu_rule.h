// The ReLU rule, in one place for every kernel that applies it: the ReLU layer (CPU and CUDA)
// and the ReLUs fused into a conv or a batch norm (CPU and CUDA). Fused and unfused models give
// the same bits only because all of them apply this rule (FusionModel tests it).
//   forward   y = v <= 0 ? 0 : v     (torch.relu: a NaN stays NaN, -0 becomes +0)
//   backward  dx = y <= 0 ? 0 : dy   (torch's threshold_backward on the saved output: where y is
//                                     NaN the gradient passes)
#pragma once

#ifdef __CUDACC__
#define KILN_RELU_HD __host__ __device__ __forceinline__
#else
#define KILN_RELU_HD inline
#endif

namespace kiln {

// True where the ReLU's output is 0 and its gradient is stopped (false for NaN).
template <typename T>
KILN_RELU_HD bool relu_stops(T y) {
  return y <= T(0);
}

template <typename T>
KILN_RELU_HD T relu_fwd(T v) {
  return relu_stops(v) ? T(0) : v;
}

// The gradient behind a ReLU whose output was y.
template <typename T>
KILN_RELU_HD T relu_bwd(T y, T dy) {
  return relu_stops(y) ? T(0) : dy;
}

}  // namespace kiln
