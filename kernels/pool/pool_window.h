// Window arithmetic shared by the CPU reference and the CUDA kernels, so both apply the same
// tie rule (first maximum in row-major window order, the last NaN) and the same backward ranges.
#pragma once
#include <cstdint>

#include "kernels/pool/pool.h"

#ifdef __CUDACC__
#define KILN_HD __host__ __device__ __forceinline__
#else
#define KILN_HD inline
#endif

namespace kiln::pool_detail {

// Max over the window of output (p, q) in one plane; writes the winner's index h*W + w.
// NaN propagates as in PyTorch's max_pool2d (CPU and CUDA): a NaN always takes over, so the
// window's last NaN is the argmax and receives the gradient; no number compares greater than it.
// S: PoolShape, or the CUDA kernels' copy of it in their index type I (32-bit where the tensors
// allow: 64-bit integer division is many times slower on a GPU).
template <typename T, typename S, typename I>
KILN_HD T window_max(const S& s, const T* plane, I p, I q, int32_t* arg) {
  const I h0 = p * I(s.stride) - I(s.pad), w0 = q * I(s.stride) - I(s.pad);
  T best = T(0);
  int32_t besti = -1;
  for (I r = 0; r < I(s.kh); ++r) {
    const I hi = h0 + r;
    if (hi < 0 || hi >= I(s.h)) continue;
    for (I t = 0; t < I(s.kw); ++t) {
      const I wi = w0 + t;
      if (wi < 0 || wi >= I(s.w)) continue;
      const T v = plane[hi * I(s.w) + wi];
      if (besti < 0 || v > best || !(v == v)) {
        best = v;
        besti = static_cast<int32_t>(hi * I(s.w) + wi);
      }
    }
  }
  *arg = besti;
  return best;
}

// Output rows [*lo, *hi) whose windows cover input row i (the same for columns).
template <typename I>
KILN_HD void covering(I i, I k, I stride, I pad, I out, I* lo, I* hi) {
  const I ip = i + pad;
  *lo = ip < k ? 0 : (ip - k) / stride + 1;
  const I e = ip / stride + 1;
  *hi = e < out ? e : out;
}

}  // namespace kiln::pool_detail
