// CPU reference convolution: im2col + GEMM, one image at a time. The loops are ordered so the
// innermost one runs over contiguous memory with no reduction (it vectorises without
// -ffast-math), because CPU training of the MNIST cnn runs on these references.
#include <algorithm>
#include <vector>

#include "kernels/conv/conv.h"

namespace kiln {
namespace {

// col[(c*kh + r)*kw + s][p*Q + q] = x[c][p*stride - pad + r][q*stride - pad + s] (0 outside).
// transposed: colT[p*Q + q][(c*kh + r)*kw + s] instead (what backward-filter streams over).
template <typename T>
void im2col(const ConvShape& s, const T* x, T* col, bool transposed) {
  const int64_t P = s.p(), Q = s.q(), PQ = P * Q, CRS = s.c * s.kh * s.kw;
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t r = 0; r < s.kh; ++r)
      for (int64_t t = 0; t < s.kw; ++t) {
        const int64_t row = (c * s.kh + r) * s.kw + t;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t hi = p * s.stride - s.pad + r;
          for (int64_t q = 0; q < Q; ++q) {
            const int64_t wi = q * s.stride - s.pad + t;
            T v = (hi >= 0 && hi < s.h && wi >= 0 && wi < s.w) ? x[(c * s.h + hi) * s.w + wi] : T(0);
            if (transposed)
              col[(p * Q + q) * CRS + row] = v;
            else
              col[row * PQ + p * Q + q] = v;
          }
        }
      }
}

// dx[c][hi][wi] += dcol[(c*kh + r)*kw + s][p*Q + q] (the adjoint of im2col).
template <typename T>
void col2im(const ConvShape& s, const T* dcol, T* dx) {
  const int64_t P = s.p(), Q = s.q(), PQ = P * Q;
  std::fill(dx, dx + s.c * s.h * s.w, T(0));
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t r = 0; r < s.kh; ++r)
      for (int64_t t = 0; t < s.kw; ++t) {
        const T* src = dcol + ((c * s.kh + r) * s.kw + t) * PQ;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t hi = p * s.stride - s.pad + r;
          if (hi < 0 || hi >= s.h) continue;
          for (int64_t q = 0; q < Q; ++q) {
            const int64_t wi = q * s.stride - s.pad + t;
            if (wi >= 0 && wi < s.w) dx[(c * s.h + hi) * s.w + wi] += src[p * Q + q];
          }
        }
      }
}

}  // namespace

template <typename T>
void conv2d_fwd_ref(const ConvShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t PQ = s.p() * s.q(), CRS = s.c * s.kh * s.kw;
  std::vector<T> col(s.is_1x1() ? 0 : static_cast<size_t>(CRS * PQ));
  for (int64_t n = 0; n < s.n; ++n) {
    const T* xn = x + n * s.c * s.h * s.w;
    T* yn = y + n * s.k * PQ;
    const T* cn = xn;  // a 1x1 conv's im2col is the image itself
    if (!s.is_1x1()) {
      im2col(s, xn, col.data(), false);
      cn = col.data();
    }
    for (int64_t m = 0; m < s.k; ++m) {
      T* ym = yn + m * PQ;
      std::fill(ym, ym + PQ, b ? b[m] : T(0));
      for (int64_t kk = 0; kk < CRS; ++kk) {
        const T a = w[m * CRS + kk];
        const T* src = cn + kk * PQ;
        for (int64_t j = 0; j < PQ; ++j) ym[j] += a * src[j];
      }
    }
  }
}

template <typename T>
void conv2d_bwd_data_ref(const ConvShape& s, const T* dy, const T* w, T* dx) {
  const int64_t PQ = s.p() * s.q(), CRS = s.c * s.kh * s.kw;
  std::vector<T> dcol(static_cast<size_t>(CRS * PQ));
  for (int64_t n = 0; n < s.n; ++n) {
    const T* dyn = dy + n * s.k * PQ;
    T* dxn = dx + n * s.c * s.h * s.w;
    T* dc = s.is_1x1() ? dxn : dcol.data();
    std::fill(dc, dc + CRS * PQ, T(0));
    for (int64_t m = 0; m < s.k; ++m) {
      const T* g = dyn + m * PQ;
      for (int64_t kk = 0; kk < CRS; ++kk) {
        const T a = w[m * CRS + kk];
        T* dst = dc + kk * PQ;
        for (int64_t j = 0; j < PQ; ++j) dst[j] += a * g[j];
      }
    }
    if (!s.is_1x1()) col2im(s, dcol.data(), dxn);
  }
}

template <typename T>
void conv2d_bwd_filter_ref(const ConvShape& s, const T* x, const T* dy, T* dw, T* db) {
  const int64_t PQ = s.p() * s.q(), CRS = s.c * s.kh * s.kw;
  std::vector<T> colT(static_cast<size_t>(CRS * PQ));
  std::fill(dw, dw + s.k * CRS, T(0));
  if (db) std::fill(db, db + s.k, T(0));
  for (int64_t n = 0; n < s.n; ++n) {
    im2col(s, x + n * s.c * s.h * s.w, colT.data(), true);
    const T* dyn = dy + n * s.k * PQ;
    for (int64_t m = 0; m < s.k; ++m) {
      T* dwm = dw + m * CRS;
      const T* g = dyn + m * PQ;
      for (int64_t j = 0; j < PQ; ++j) {
        const T a = g[j];
        const T* src = colT.data() + j * CRS;
        for (int64_t kk = 0; kk < CRS; ++kk) dwm[kk] += a * src[kk];
      }
      if (db) {
        T acc = 0;
        for (int64_t j = 0; j < PQ; ++j) acc += g[j];
        db[m] += acc;
      }
    }
  }
}

#define KILN_CONV_REF(T)                                                                   \
  template void conv2d_fwd_ref<T>(const ConvShape&, const T*, const T*, const T*, T*);    \
  template void conv2d_bwd_data_ref<T>(const ConvShape&, const T*, const T*, T*);         \
  template void conv2d_bwd_filter_ref<T>(const ConvShape&, const T*, const T*, T*, T*);
KILN_CONV_REF(float)
KILN_CONV_REF(double)
#undef KILN_CONV_REF

}  // namespace kiln
