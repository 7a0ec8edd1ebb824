// The arg-max rule of the loss family, shared by the CPU reference (loss_ref.cpp) and the CUDA
// kernel (loss.cu) so accuracy counts the same on both: torch.argmax semantics, where NaN
// compares greater than every number (the first NaN wins when a row has one), otherwise the
// largest value, and ties go to the lowest index.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define KILN_LOSS_HD __host__ __device__ __forceinline__
#else
#define KILN_LOSS_HD inline
#endif

namespace kiln {

// Whether candidate (v, k) beats the current best (m, arg). Order-independent: any scan or
// reduction tree that starts from (-inf, any index) and keeps the winner of each pair ends at
// the same (value, index), which is what makes the warp butterfly agree with the serial scan.
template <typename T>
KILN_LOSS_HD bool argmax_better(T v, int64_t k, T m, int64_t arg) {
  const bool vnan = v != v, mnan = m != m;
  if (vnan || mnan) return vnan && (!mnan || k < arg);
  return v > m || (v == m && k < arg);
}

}  // namespace kiln
