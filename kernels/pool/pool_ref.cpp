// CPU reference pooling (the oracle for pool.cu and the CPU training path). Backward passes
// gather over covering windows, like the CUDA kernels, through pool_window.h; max pooling's
// scatters through its argmax instead, adding in the same order.
#include <algorithm>

#include "engine/error.h"
#include "engine/parallel.h"
#include "kernels/pool/pool.h"
#include "kernels/pool/pool_window.h"

namespace kiln {

std::string pool_shape_error(const PoolShape& s) {
  if (s.n < 0 || s.c < 0 || s.h < 1 || s.w < 1) return "negative or empty dimensions";
  if (s.kh < 1 || s.kw < 1 || s.stride < 1 || s.pad < 0)
    return "kernel and stride must be >= 1, padding >= 0";
  // Bounded first, so nothing below overflows: the launchers narrow the window to int (torch
  // refuses such sizes too), and with padding at most half of it every padded extent stays
  // under 2^32 and every plane product under 2^63.
  if (s.kh > kPoolMaxPlane || s.kw > kPoolMaxPlane) return "a window past 2^31-1";
  if (s.pad > std::min(s.kh, s.kw) / 2) return "padding past half the window";
  if (s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw)
    return "window larger than the padded plane";
  if (s.h > kPoolMaxPlane / s.w) return "a plane of more than 2^31-1 elements";
  return "";
}

void check_pool_shape(const PoolShape& s, const char* op) {
  const std::string err = pool_shape_error(s);
  KILN_CHECK(err.empty(), op << ": unsupported shape n=" << s.n << " c=" << s.c << " h=" << s.h
                             << " w=" << s.w << " kernel " << s.kh << "x" << s.kw << " stride "
                             << s.stride << " padding " << s.pad << ": " << err);
}

using pool_detail::covering;
using pool_detail::window_max;

// One plane without padding: every window lies inside it, so there are no bounds to test. A
// row of outputs starts from its windows' first elements and takes the other taps in window
// order, the rule of window_max (a tap replaces the running maximum when greater or NaN) as a
// select, not a branch that mispredicts on every other tap, over q. ST: the stride when known
// at compile time (2, the usual one: the loop over q then vectorizes), else 0 (s.stride).
template <int64_t ST, typename T>
void maxpool_plane_unpadded(const PoolShape& s, const T* plane, int64_t P, int64_t Q, T* y,
                            int32_t* arg) {
  const int64_t W = s.w, st = ST ? ST : s.stride;
  for (int64_t p = 0; p < P; ++p, y += Q, arg += Q) {
    const int64_t h0 = p * st;
    for (int64_t q = 0; q < Q; ++q) {
      y[q] = plane[h0 * W + q * st];
      arg[q] = static_cast<int32_t>(h0 * W + q * st);
    }
    for (int64_t r = 0; r < s.kh; ++r)
      for (int64_t t = r == 0 ? 1 : 0; t < s.kw; ++t) {
        const int64_t base = (h0 + r) * W + t;
        for (int64_t q = 0; q < Q; ++q) {
          const T v = plane[base + q * st], best = y[q];
          const bool take = (v > best) | (v != v);
          y[q] = take ? v : best;
          arg[q] = take ? static_cast<int32_t>(base + q * st) : arg[q];
        }
      }
  }
}

// Planes (image, channel) are independent: threads (engine/parallel.h) take runs of them.
template <typename T>
void maxpool2d_fwd_ref(const PoolShape& s, const T* x, T* y, int32_t* argmax) {
  check_pool_shape(s, "maxpool2d_fwd_ref");
  const int64_t P = s.p(), Q = s.q();
  parallel_for(
      s.n * s.c,
      [&](int64_t pl0, int64_t pl1) {
        for (int64_t pl = pl0; pl < pl1; ++pl) {
          const T* plane = x + pl * s.h * s.w;
          if (s.pad == 0) {
            T* yp = y + pl * P * Q;
            int32_t* ap = argmax + pl * P * Q;
            if (s.stride == 2)
              maxpool_plane_unpadded<2>(s, plane, P, Q, yp, ap);
            else
              maxpool_plane_unpadded<0>(s, plane, P, Q, yp, ap);
            continue;
          }
          for (int64_t p = 0; p < P; ++p)
            for (int64_t q = 0; q < Q; ++q) {
              const int64_t o = (pl * P + p) * Q + q;
              y[o] = window_max(s, plane, p, q, &argmax[o]);
            }
        }
      },
      row_grain(s.h * s.w));
}

template <typename T>
void maxpool2d_bwd_ref(const PoolShape& s, const T* dy, const int32_t* argmax, T* dx) {
  check_pool_shape(s, "maxpool2d_bwd_ref");
  // Scattered in output order: each input receives its windows' gradients in the same row-major
  // order as the CUDA kernel's gather over covering windows, so the sums agree bit for bit, in
  // one pass over the outputs instead of a window search per input.
  const int64_t PQ = s.p() * s.q(), HW = s.h * s.w;
  parallel_for(
      s.n * s.c,
      [&](int64_t pl0, int64_t pl1) {
        std::fill(dx + pl0 * HW, dx + pl1 * HW, T(0));
        for (int64_t pl = pl0; pl < pl1; ++pl) {
          const T* g = dy + pl * PQ;
          const int32_t* a = argmax + pl * PQ;
          T* d = dx + pl * HW;
          for (int64_t o = 0; o < PQ; ++o)
            if (a[o] >= 0) d[a[o]] += g[o];  // -1: a window wholly in the padding
        }
      },
      row_grain(HW));
}

template <typename T>
void avgpool2d_fwd_ref(const PoolShape& s, const T* x, T* y) {
  check_pool_shape(s, "avgpool2d_fwd_ref");
  const int64_t P = s.p(), Q = s.q();
  const T inv = T(1) / T(s.kh * s.kw);  // count_include_pad: padding counts in the divisor
  for (int64_t pl = 0; pl < s.n * s.c; ++pl) {
    const T* plane = x + pl * s.h * s.w;
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q) {
        T acc = 0;
        for (int64_t r = 0; r < s.kh; ++r) {
          const int64_t hi = p * s.stride - s.pad + r;
          if (hi < 0 || hi >= s.h) continue;
          for (int64_t t = 0; t < s.kw; ++t) {
            const int64_t wi = q * s.stride - s.pad + t;
            if (wi >= 0 && wi < s.w) acc += plane[hi * s.w + wi];
          }
        }
        y[(pl * P + p) * Q + q] = acc * inv;
      }
  }
}

template <typename T>
void avgpool2d_bwd_ref(const PoolShape& s, const T* dy, T* dx) {
  check_pool_shape(s, "avgpool2d_bwd_ref");
  const int64_t P = s.p(), Q = s.q();
  const T inv = T(1) / T(s.kh * s.kw);
  for (int64_t pl = 0; pl < s.n * s.c; ++pl)
    for (int64_t h = 0; h < s.h; ++h)
      for (int64_t w = 0; w < s.w; ++w) {
        int64_t p0, p1, q0, q1;
        covering(h, s.kh, s.stride, s.pad, P, &p0, &p1);
        covering(w, s.kw, s.stride, s.pad, Q, &q0, &q1);
        T acc = 0;
        for (int64_t p = p0; p < p1; ++p)
          for (int64_t q = q0; q < q1; ++q) acc += dy[(pl * P + p) * Q + q];
        dx[(pl * s.h + h) * s.w + w] = acc * inv;
      }
}

template <typename T>
void global_avgpool_fwd_ref(int64_t planes, int64_t hw, const T* x, T* y) {
  // Summed in double: a float sum drifts with the plane's size and stops growing at 2^24 (a
  // plane of 2^24 + 2^22 ones averaged 0.8).
  for (int64_t i = 0; i < planes; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < hw; ++j) acc += x[i * hw + j];
    y[i] = static_cast<T>(acc / static_cast<double>(hw));
  }
}

template <typename T>
void global_avgpool_bwd_ref(int64_t planes, int64_t hw, const T* dy, T* dx) {
  for (int64_t i = 0; i < planes; ++i) std::fill(dx + i * hw, dx + (i + 1) * hw, dy[i] / T(hw));
}

#define KILN_POOL_REF(T)                                                              \
  template void maxpool2d_fwd_ref<T>(const PoolShape&, const T*, T*, int32_t*);       \
  template void maxpool2d_bwd_ref<T>(const PoolShape&, const T*, const int32_t*, T*); \
  template void avgpool2d_fwd_ref<T>(const PoolShape&, const T*, T*);                 \
  template void avgpool2d_bwd_ref<T>(const PoolShape&, const T*, T*);                 \
  template void global_avgpool_fwd_ref<T>(int64_t, int64_t, const T*, T*);            \
  template void global_avgpool_bwd_ref<T>(int64_t, int64_t, const T*, T*);
KILN_POOL_REF(float)
KILN_POOL_REF(double)
#undef KILN_POOL_REF

}  // namespace kiln
