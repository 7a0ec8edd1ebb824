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
template <typename T>
KILN_HD T window_max(const PoolShape& s, const T* plane, int64_t p, int64_t q, int32_t* arg) {
  const int64_t h0 = p * s.stride - s.pad, w0 = q * s.stride - s.pad;
  T best = T(0);
  int32_t besti = -1;
  for (int64_t r = 0; r < s.kh; ++r) {
    const int64_t hi = h0 + r;
    if (hi < 0 || hi >= s.h) continue;
    for (int64_t t = 0; t < s.kw; ++t) {
      const int64_t wi = w0 + t;
      if (wi < 0 || wi >= s.w) continue;
      const T v = plane[hi * s.w + wi];
      if (besti < 0 || v > best || !(v == v)) {
        best = v;
        besti = static_cast<int32_t>(hi * s.w + wi);
      }
    }
  }
  *arg = besti;
  return best;
}

// Output rows [*lo, *hi) whose windows cover input row i (the same for columns).
KILN_HD void covering(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t out,
                      int64_t* lo, int64_t* hi) {
  const int64_t ip = i + pad;
  *lo = ip < k ? 0 : (ip - k) / stride + 1;
  const int64_t e = ip / stride + 1;
  *hi = e < out ? e : out;
}

}  // namespace kiln::pool_detail
