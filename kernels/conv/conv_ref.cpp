// CPU reference convolution: im2col + GEMM, one image at a time, through the dense family's
// gemm_ref (OpenBLAS when present), because CPU training of the MNIST cnn runs on these
// references. The 1x1/stride 1/pad 0 case skips im2col (the image is its own column matrix).
// Float stride-1 shapes take the direct convolution (conv_direct_cpu.cpp) where the CPU has
// AVX-512F or AVX2 + FMA.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <type_traits>
#include <vector>

#include "engine/error.h"
#include "engine/lanes.h"
#include "engine/numtext.h"
#include "engine/parallel.h"
#include "kernels/activation/relu_rule.h"
#include "kernels/conv/conv.h"
#include "kernels/conv/conv_direct_cpu.h"
#include "kernels/dense/dense.h"

namespace kiln {
namespace {

// Output columns q whose input column q*stride - pad + t lies inside [0, w): [*q0, *q1).
inline void valid_q(const ConvShape& s, int64_t t, int64_t Q, int64_t* q0, int64_t* q1) {
  const int64_t lo = s.pad - t;  // q*stride >= lo
  *q0 = lo <= 0 ? 0 : (lo + s.stride - 1) / s.stride;
  const int64_t hi = s.w - 1 + s.pad - t;  // q*stride <= hi
  *q1 = hi < 0 ? 0 : std::min(Q, hi / s.stride + 1);
  if (*q0 > *q1) *q0 = *q1;
}

// The rows im2col and col2im move are short (a 28x28 image's are 26 floats), so a library call
// per row (GCC turns copy and fill loops into memmove/memset) costs more than the copy: these
// loops stay loops, vectorised in place.
#if defined(__GNUC__) && !defined(__clang__)
#define KILN_INLINE_COPIES __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define KILN_INLINE_COPIES
#endif

// col[(c*kh + r)*kw + s][p*Q + q] = x[c][p*stride - pad + r][q*stride - pad + s] (0 outside).
// The valid q range of each (t) is computed once, so the inner loop is a plain (for stride 1,
// contiguous) copy with zero-filled edges: CPU training of the cnn spends most of its conv time
// here.
template <typename T>
KILN_INLINE_COPIES void im2col(const ConvShape& s, const T* __restrict x, T* __restrict col) {
  const int64_t P = s.p(), Q = s.q(), PQ = P * Q;
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t r = 0; r < s.kh; ++r)
      for (int64_t t = 0; t < s.kw; ++t) {
        int64_t q0, q1;
        valid_q(s, t, Q, &q0, &q1);
        T* out = col + ((c * s.kh + r) * s.kw + t) * PQ;
        for (int64_t p = 0; p < P; ++p, out += Q) {
          const int64_t hi = p * s.stride - s.pad + r;
          if (hi < 0 || hi >= s.h) {
            for (int64_t q = 0; q < Q; ++q) out[q] = T(0);
            continue;
          }
          for (int64_t q = 0; q < q0; ++q) out[q] = T(0);
          if (q1 > q0) {
            const T* in = x + (c * s.h + hi) * s.w + (q0 * s.stride - s.pad + t);
            if (s.stride == 1) {
              for (int64_t q = q0; q < q1; ++q) out[q] = in[q - q0];
            } else {
              for (int64_t q = q0; q < q1; ++q) out[q] = in[(q - q0) * s.stride];
            }
          }
          for (int64_t q = q1; q < Q; ++q) out[q] = T(0);
        }
      }
}

// dx[c][hi][wi] += dcol[(c*kh + r)*kw + s][p*Q + q] (the adjoint of im2col).
template <typename T>
KILN_INLINE_COPIES void col2im(const ConvShape& s, const T* __restrict dcol, T* __restrict dx) {
  const int64_t P = s.p(), Q = s.q(), PQ = P * Q;
  std::fill(dx, dx + s.c * s.h * s.w, T(0));  // one call per image: a memset is right here
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t r = 0; r < s.kh; ++r)
      for (int64_t t = 0; t < s.kw; ++t) {
        int64_t q0, q1;
        valid_q(s, t, Q, &q0, &q1);
        const T* src = dcol + ((c * s.kh + r) * s.kw + t) * PQ;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t hi = p * s.stride - s.pad + r;
          if (hi < 0 || hi >= s.h || q1 <= q0) continue;
          T* dst = dx + (c * s.h + hi) * s.w + (q0 * s.stride - s.pad + t);
          const T* row = src + p * Q;
          if (s.stride == 1) {  // contiguous: a loop the compiler vectorises
            for (int64_t q = q0; q < q1; ++q) dst[q - q0] += row[q];
          } else {
            for (int64_t q = q0; q < q1; ++q) dst[(q - q0) * s.stride] += row[q];
          }
        }
      }
}

// One image's dy [K, PQ], masked by the fused ReLU's output when relu_y is set: the masked copy
// goes to a scratch buffer (the reference may take an extra pass; the CUDA kernels mask while
// loading).
template <typename T>
const T* masked_dy(const T* dy, const T* relu_y, int64_t len) {
  if (!relu_y) return dy;
  T* buf = conv_scratch<T>(2, len);
  for (int64_t i = 0; i < len; ++i) {
    const T g = dy[i];  // loaded unconditionally, so the select needs no branch
    buf[i] = relu_bwd(relu_y[i], g);
  }
  return buf;
}

// v[0] + ... + v[n-1] in double, as the global average pool's (a float sum drifts on big
// planes), over Lanes: one chain of dependent adds was most of the bias gradient's time, and of
// the small layers' filter passes.
template <typename T>
double sum_in_double(const T* v, int64_t n) {
  Lanes lanes;
  lanes.add(n, [&](int64_t j) { return static_cast<double>(v[j]); });
  return lanes.total();
}

}  // namespace

// Images are independent in the forward and backward-data passes: threads (engine/parallel.h)
// take contiguous runs of them, each with its own scratch, and compute each image exactly as one
// thread would.
template <typename T>
void conv2d_fwd_ref(const ConvShape& s, const T* x, const T* w, const T* b, T* y, bool relu) {
  check_conv_shape(s, "conv2d_fwd_ref");
  if constexpr (std::is_same_v<T, float>)
    if (conv_direct::forward(s, x, w, b, y, relu)) return;
  const int64_t PQ = s.p() * s.q(), CRS = s.c * s.kh * s.kw;
  parallel_for(s.n, [&](int64_t n0, int64_t n1) {
    T* col = s.is_1x1() ? nullptr : conv_scratch<T>(0, CRS * PQ);
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = x + n * s.c * s.h * s.w;
      T* yn = y + n * s.k * PQ;
      const T* cn = xn;  // a 1x1 conv's im2col is the image itself
      if (!s.is_1x1()) {
        im2col(s, xn, col);
        cn = col;
      }
      // y[K, PQ] = w[K, CRS] * col[CRS, PQ]
      gemm_ref<T>(false, false, s.k, PQ, CRS, T(1), w, CRS, cn, PQ, T(0), yn, PQ);
      if (b)
        for (int64_t m = 0; m < s.k; ++m)
          for (int64_t j = 0; j < PQ; ++j) yn[m * PQ + j] += b[m];
      if (relu)
        for (int64_t j = 0; j < s.k * PQ; ++j) yn[j] = relu_fwd(yn[j]);
    }
  });
}

template <typename T>
void conv2d_bwd_data_ref(const ConvShape& s, const T* dy, const T* w, T* dx, const T* relu_y) {
  check_conv_shape(s, "conv2d_bwd_data_ref");
  if constexpr (std::is_same_v<T, float>)
    if (conv_direct::backward_data(s, dy, w, dx, relu_y)) return;
  const int64_t PQ = s.p() * s.q(), CRS = s.c * s.kh * s.kw;
  parallel_for(s.n, [&](int64_t n0, int64_t n1) {
    T* dcol = s.is_1x1() ? nullptr : conv_scratch<T>(1, CRS * PQ);
    for (int64_t n = n0; n < n1; ++n) {
      T* dxn = dx + n * s.c * s.h * s.w;
      T* dc = s.is_1x1() ? dxn : dcol;
      const int64_t off = n * s.k * PQ;
      const T* dyn = masked_dy(dy + off, relu_y ? relu_y + off : nullptr, s.k * PQ);
      // dcol[CRS, PQ] = w[K, CRS]^T * dy[K, PQ]
      gemm_ref<T>(true, false, CRS, PQ, s.k, T(1), w, CRS, dyn, PQ, T(0), dc, PQ);
      if (!s.is_1x1()) col2im(s, dcol, dxn);
    }
  });
}

// The filter and bias gradients sum over images. So that the sum does not depend on the thread
// count, the batch is cut into at most 16 groups of consecutive images whatever the count (at
// least 4 images a group): each group's sum is formed in image order, by whichever thread takes
// it, then the groups are added in order. One thread runs the same groups.
template <typename T>
void conv2d_bwd_filter_ref(const ConvShape& s, const T* x, const T* dy, T* dw, T* db,
                           const T* relu_y) {
  check_conv_shape(s, "conv2d_bwd_filter_ref");
  const int64_t PQ = s.p() * s.q(), CRS = s.c * s.kh * s.kw, WN = s.w_numel();
  if (s.n == 0) {  // an empty batch: no image writes
    std::fill(dw, dw + WN, T(0));
    if (db) std::fill(db, db + s.k, T(0));
    return;
  }
  const int64_t per = std::max<int64_t>(4, (s.n + 15) / 16);
  const int64_t groups = (s.n + per - 1) / per;
  const conv_direct::Isa* isa = nullptr;  // the filter gradient by direct convolution (float only)
  if constexpr (std::is_same_v<T, float>) isa = conv_direct::filter_isa(s);
  const bool direct = isa != nullptr;
  // Group 0 sums into dw/db themselves, group g > 0 into partial g - 1.
  std::vector<T> partial(static_cast<size_t>((groups - 1) * (WN + s.k)));
  parallel_for(groups, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      T* gw = g == 0 ? dw : partial.data() + (g - 1) * (WN + s.k);
      T* gb = !db ? nullptr : g == 0 ? db : gw + WN;  // (no bias: no partial sums of one)
      if (gb) std::fill(gb, gb + s.k, T(0));
      const int64_t first = g * per, last = std::min(s.n, first + per);
      // The direct sums also multiply dy's zeros past each row's end by the x there: a
      // non-finite x makes NaN where im2col (and CUDA) sum the real terms only. A group whose
      // direct sums are not all finite is summed again by im2col (a cost of diverged runs only).
      bool by_direct = false;
      if constexpr (std::is_same_v<T, float>)
        if (direct) {
          conv_direct::backward_filter_group(isa, s, x, dy, relu_y, first, last, gw);
          by_direct = std::all_of(gw, gw + WN, [](float v) { return std::isfinite(v); });
        }
      // (after the direct sums: they take slot 0 too, and may grow it)
      T* col = s.is_1x1() || by_direct ? nullptr : conv_scratch<T>(0, CRS * PQ);
      for (int64_t n = first; n < last; ++n) {
        const int64_t off = n * s.k * PQ;
        if (by_direct && !gb) continue;  // nothing more for this image
        const T* dyn = masked_dy(dy + off, relu_y ? relu_y + off : nullptr, s.k * PQ);
        if (!by_direct) {
          const T* cn = x + n * s.c * s.h * s.w;
          if (!s.is_1x1()) {
            im2col(s, cn, col);
            cn = col;
          }
          // gw[K, CRS] (+)= dy[K, PQ] * col[CRS, PQ]^T; the group's first image overwrites
          gemm_ref<T>(false, true, s.k, CRS, PQ, T(1), dyn, PQ, cn, PQ, n == first ? T(0) : T(1),
                      gw, CRS);
        }
        if (gb)
          for (int64_t m = 0; m < s.k; ++m)
            gb[m] += static_cast<T>(sum_in_double(dyn + m * PQ, PQ));
      }
    }
  });
  for (int64_t g = 1; g < groups; ++g) {
    const T* pw = partial.data() + (g - 1) * (WN + s.k);
    for (int64_t i = 0; i < WN; ++i) dw[i] += pw[i];
    if (db)
      for (int64_t m = 0; m < s.k; ++m) db[m] += pw[WN + m];
  }
}

#define KILN_CONV_REF(T)                                                                   \
  template void conv2d_fwd_ref<T>(const ConvShape&, const T*, const T*, const T*, T*, bool); \
  template void conv2d_bwd_data_ref<T>(const ConvShape&, const T*, const T*, T*, const T*);  \
  template void conv2d_bwd_filter_ref<T>(const ConvShape&, const T*, const T*, T*, T*, const T*);
KILN_CONV_REF(float)
KILN_CONV_REF(double)
#undef KILN_CONV_REF

namespace {
// a * b saturating at INT64_MAX (user-supplied dimensions could overflow int64 itself).
int64_t mul_sat(int64_t a, int64_t b) {
  if (a != 0 && b > INT64_MAX / a) return INT64_MAX;
  return a * b;
}
}  // namespace

std::string conv_shape_error(const ConvShape& s) {
  if (s.n < 0 || s.c < 1 || s.k < 1 || s.h < 1 || s.w < 1) return "negative or empty dimensions";
  if (s.kh < 1 || s.kw < 1 || s.stride < 1 || s.pad < 0)
    return "kernel and stride must be >= 1, padding >= 0";
  for (int64_t d : {s.n, s.c, s.k, s.h, s.w, s.kh, s.kw, s.pad})  // (a stride past it is 1 output)
    if (d > kConvIndexLimit) return "a dimension past 2^31-64";
  if (s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw)
    return "window larger than the padded input";
  return "";
}

void check_conv_shape(const ConvShape& s, const char* op) {
  const std::string err = conv_shape_error(s);
  KILN_CHECK(err.empty(), op << ": unsupported shape n=" << s.n << " c=" << s.c << " h=" << s.h
                             << " w=" << s.w << " k=" << s.k << " kernel " << s.kh << "x" << s.kw
                             << " stride " << s.stride << " padding " << s.pad << ": " << err);
}

std::string conv_index_range_error(const ConvShape& s) {
  const std::string shape = conv_shape_error(s);
  if (!shape.empty()) return shape;
  struct Product {
    const char* what;
    const char* names;
    std::initializer_list<int64_t> f;
  };
  const int64_t P = s.p(), Q = s.q();
  const Product products[] = {
      {"input", "N*C*H*W", {s.n, s.c, s.h, s.w}},
      {"output", "N*K*P*Q", {s.n, s.k, P, Q}},  // also bounds N*P*Q, the GEMM's long axis
      {"weight", "K*C*kh*kw", {s.k, s.c, s.kh, s.kw}},
  };
  ClassicOStringStream os;
  for (const Product& p : products) {
    int64_t v = 1;
    for (int64_t x : p.f) v = mul_sat(v, x);
    if (v <= kConvIndexLimit) continue;
    os << p.what << " " << p.names << " = ";
    const char* sep = "";
    for (int64_t x : p.f) os << sep << x, sep = "*";
    os << " = ";
    if (v == INT64_MAX) os << "more than 2^63"; else os << v;
    os << " exceeds 2^31-64";
    return os.str();
  }
  if (s.h + 2 * s.pad > kConvIndexLimit || s.w + 2 * s.pad > kConvIndexLimit) {
    os << "padded input " << s.h << "+2*" << s.pad << " x " << s.w << "+2*" << s.pad << " exceeds 2^31-64";
    return os.str();
  }
  if (s.k > kConvMaxChannels || s.c > kConvMaxChannels) {
    os << "channels C = " << s.c << ", K = " << s.k << ": more than 65535*64 = " << kConvMaxChannels
       << " (CUDA grid limit)";
    return os.str();
  }
  return "";
}

}  // namespace kiln
