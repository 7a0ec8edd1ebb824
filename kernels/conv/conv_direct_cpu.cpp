// Direct convolution for the float CPU references, on x86-64 CPUs with AVX-512F: stride-1
// shapes with a kernel larger than 1x1 (the cnn's and the cifar net's 3x3 layers), where
// im2col + OpenBLAS spent most of a CPU epoch (16 or 24 output channels make a GEMM too thin to
// run near the FMA units' rate, and im2col writes and reads kh*kw copies of the image).
//
// The "wide row" form: an image padded to [ch, hp, wp] is read as one long row per channel, and
// the output is computed at j = p*wp + q for every j in [0, L), L = (P-1)*wp + Q, so that each
// kernel tap (c, r, s) is the same shifted run of the row (offset c*hp*wp + r*wp + s) for every
// output. Positions with q >= Q straddle a row's end and are dropped when the result is copied
// out (kw-1 of every wp columns: 2 of 28 on the cnn's first layer). Tiles of 8 output channels x
// 48 positions keep 24 sums in registers; each tap is 3 loads, 8 broadcasts and 24 FMAs.
// Backward-data is the same forward pass over dy padded by kh-1-pad with the kernel flipped and
// its channel axes swapped; backward-filter sums dy * shifted rows over positions and images,
// 2 output channels x 9 taps at a time, each sum a register of 16 partial sums reduced at the end.
//
// Every output is a fixed sequence of float FMAs (taps in order; for the filter gradient
// positions and images in order, then a fixed pairwise tree over 16 lanes), so a result depends on
// the shape alone, not on the thread count. It is not the im2col path's order: the two agree to
// rounding (tests/test_conv.cpp compares both with the double reference).
#include "kernels/conv/conv_direct_cpu.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "engine/parallel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KILN_CONV_DIRECT 1
#include <immintrin.h>
#define KILN_AVX512 __attribute__((target("avx512f")))
#endif

namespace kiln {
namespace {

std::atomic<bool> g_direct{true};

#ifdef KILN_CONV_DIRECT
// Per-thread scratch that only grows (as conv_ref.cpp's).
float* scratch(int slot, int64_t n) {
  thread_local std::vector<float> bufs[2];
  std::vector<float>& b = bufs[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

constexpr int kFwdKb = 8;  // forward tile: output channels (one broadcast weight each) ...
constexpr int kFwdJv = 3;  // ... by 16-float vectors of positions
constexpr int kFltKb = 2;  // filter-gradient tile: output channels ...
constexpr int kFltRs = 9;  // ... by kernel taps (r, s) of one input channel

// An image [ch, hp, wp], already padded, convolved with a kh x kw kernel at stride 1.
struct Wide {
  int64_t ch, hp, wp, kh, kw;
  int64_t p() const { return hp - kh + 1; }
  int64_t q() const { return wp - kw + 1; }
  int64_t len() const { return (p() - 1) * wp + q(); }
  int64_t plane() const { return hp * wp; }
  int64_t taps() const { return ch * kh * kw; }
};

inline __mmask16 tail_mask(int64_t rem) {
  return rem >= 16  ? static_cast<__mmask16>(0xFFFF)
         : rem <= 0 ? static_cast<__mmask16>(0)
                    : static_cast<__mmask16>((1u << rem) - 1);
}

// out[kk, j] (rows of L) for kk < KB and j in [j0, j0 + 16*JV) ∩ [0, L) = sum over taps t =
// (c, r, s) in order of wt[t*KB + kk] * in[c*plane + r*wp + s + j].
template <int KB, int JV>
KILN_AVX512 void fwd_tile(const Wide& g, const float* in, const float* wt, float* out, int64_t j0) {
  const int64_t L = g.len(), plane = g.plane();
  __mmask16 m[JV];
  for (int v = 0; v < JV; ++v) m[v] = tail_mask(L - j0 - 16 * v);
  __m512 acc[KB][JV];
#pragma GCC unroll 8
  for (int kk = 0; kk < KB; ++kk)
#pragma GCC unroll 3
    for (int v = 0; v < JV; ++v) acc[kk][v] = _mm512_setzero_ps();
  const float* w = wt;
  for (int64_t c = 0; c < g.ch; ++c)
    for (int64_t r = 0; r < g.kh; ++r) {
      const float* row = in + c * plane + r * g.wp + j0;
      for (int64_t s = 0; s < g.kw; ++s, w += KB) {
        __m512 x[JV];
#pragma GCC unroll 3
        for (int v = 0; v < JV; ++v) x[v] = _mm512_maskz_loadu_ps(m[v], row + s + 16 * v);
#pragma GCC unroll 8
        for (int kk = 0; kk < KB; ++kk) {
          const __m512 wv = _mm512_set1_ps(w[kk]);
#pragma GCC unroll 3
          for (int v = 0; v < JV; ++v) acc[kk][v] = _mm512_fmadd_ps(wv, x[v], acc[kk][v]);
        }
      }
    }
#pragma GCC unroll 8
  for (int kk = 0; kk < KB; ++kk)
#pragma GCC unroll 3
    for (int v = 0; v < JV; ++v)
      _mm512_mask_storeu_ps(out + kk * L + j0 + 16 * v, m[v], acc[kk][v]);
}

using FwdTile = void (*)(const Wide&, const float*, const float*, float*, int64_t);
#define KILN_FWD_ROW(KB) \
  { fwd_tile<KB, 1>, fwd_tile<KB, 2>, fwd_tile<KB, 3> }
const FwdTile kFwdTiles[kFwdKb][kFwdJv] = {KILN_FWD_ROW(1), KILN_FWD_ROW(2), KILN_FWD_ROW(3),
                                           KILN_FWD_ROW(4), KILN_FWD_ROW(5), KILN_FWD_ROW(6),
                                           KILN_FWD_ROW(7), KILN_FWD_ROW(8)};
#undef KILN_FWD_ROW

// Weights packed for fwd_tile: the block of output channels [k0, k0 + kb) at wt + k0*taps, tap
// t of channel k0 + kk at t*kb + kk; get(k, t) gives the value.
template <typename Get>
std::vector<float> pack(int64_t K, int64_t taps, Get get) {
  std::vector<float> wt(static_cast<size_t>(K * taps));
  for (int64_t k0 = 0; k0 < K; k0 += kFwdKb) {
    const int64_t kb = std::min<int64_t>(kFwdKb, K - k0);
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t kk = 0; kk < kb; ++kk) wt[k0 * taps + t * kb + kk] = get(k0 + kk, t);
  }
  return wt;
}

// out [K, L] = the wide convolution of one image with K packed filters.
void fwd_image(const Wide& g, int64_t K, const float* in, const float* wt, float* out) {
  const int64_t L = g.len(), taps = g.taps();
  const int64_t jv = std::min<int64_t>(kFwdJv, (L + 15) / 16);
  for (int64_t k0 = 0; k0 < K; k0 += kFwdKb) {
    const int64_t kb = std::min<int64_t>(kFwdKb, K - k0);
    const FwdTile tile = kFwdTiles[kb - 1][jv - 1];
    for (int64_t j0 = 0; j0 < L; j0 += 16 * jv) tile(g, in, wt + k0 * taps, out + k0 * L, j0);
  }
}

// dst [ch, h + 2*ph, w + 2*pw] = src [ch, h, w] zero-padded by ph rows above and below and pw
// columns left and right, each element masked by relu_y's when set (relu_y <= 0 gives 0).
void pad_into(const float* src, const float* relu_y, int64_t ch, int64_t h, int64_t w, int64_t ph,
              int64_t pw, float* dst) {
  const int64_t hp = h + 2 * ph, wp = w + 2 * pw;
  if (ph || pw) std::fill(dst, dst + ch * hp * wp, 0.f);
  for (int64_t c = 0; c < ch; ++c)
    for (int64_t i = 0; i < h; ++i) {
      const int64_t o = (c * h + i) * w;
      float* d = dst + (c * hp + i + ph) * wp + pw;
      if (relu_y) {
        for (int64_t j = 0; j < w; ++j) {
          const float v = src[o + j];  // loaded first: a select, not a branch
          d[j] = relu_y[o + j] <= 0.f ? 0.f : v;
        }
      } else {
        std::copy(src + o, src + o + w, d);
      }
    }
}

// pad_into slot's scratch; src itself when there is nothing to pad or mask.
const float* padded(const float* src, const float* relu_y, int64_t ch, int64_t h, int64_t w,
                    int64_t ph, int64_t pw, int slot) {
  if (ph == 0 && pw == 0 && !relu_y) return src;
  float* dst = scratch(slot, ch * (h + 2 * ph) * (w + 2 * pw));
  pad_into(src, relu_y, ch, h, w, ph, pw, dst);
  return dst;
}

// dst [K, P, Q] = wide [K, L] without its straddling positions, plus b, then ReLU (as options).
void narrow(const Wide& g, int64_t K, const float* wide, const float* b, bool relu, float* dst) {
  const int64_t P = g.p(), Q = g.q(), L = g.len();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t p = 0; p < P; ++p) {
      const float* src = wide + k * L + p * g.wp;
      float* d = dst + (k * P + p) * Q;
      for (int64_t q = 0; q < Q; ++q) {
        float v = src[q];
        if (b) v += b[k];
        if (relu) v = v <= 0.f ? 0.f : v;
        d[q] = v;
      }
    }
}

bool direct_on(const ConvShape& s) {
  return g_direct.load(std::memory_order_relaxed) && cpu_has_avx512() && s.stride == 1 &&
         !s.is_1x1() && s.n > 0;
}

// ---- filter gradient ----------------------------------------------------------------------------

// The 16 lanes' sum as a fixed pairwise tree: lane i plus lane i + 8, then i + 4, i + 2, i + 1
// (a store and scalar adds cost more than the sums themselves on the small layers). The masked
// forms name every input: GCC 12's unmasked shuffles, extracts and _mm512_reduce_add_ps start
// from an "undefined" register that -Wuninitialized reports.
KILN_AVX512 inline float lane_sum(__m512 v) {
  const __mmask16 all = 0xFFFF;
  v = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, all, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, all, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_mask_permute_ps(v, all, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_mask_permute_ps(v, all, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// dw[k0 + kk, c, rs0 + i] for kk < KB, i < RS = sum over images n and positions j of
// dys[n, k0 + kk, j] * xs[n, c, j + off(rs0 + i)]. xs: images of [ch, hp, wp]; dys: images of
// [K, L] (zero at the straddling positions).
template <int KB, int RS>
KILN_AVX512 void flt_tile(const Wide& g, int64_t images, const float* xs, const float* dys,
                          int64_t K, int64_t k0, int64_t c, int64_t rs0, float* dw) {
  const int64_t L = g.len(), plane = g.plane(), rs_n = g.kh * g.kw;
  int64_t off[RS];
  for (int64_t i = 0, r = rs0 / g.kw, t = rs0 % g.kw; i < RS; ++i) {
    off[i] = r * g.wp + t;
    if (++t == g.kw) t = 0, ++r;
  }
  __m512 acc[KB][RS];
#pragma GCC unroll 2
  for (int kk = 0; kk < KB; ++kk)
#pragma GCC unroll 9
    for (int i = 0; i < RS; ++i) acc[kk][i] = _mm512_setzero_ps();
  for (int64_t n = 0; n < images; ++n) {
    const float* x = xs + (n * g.ch + c) * plane;
    const float* d = dys + (n * K + k0) * L;
    // (one loop with the mask computed per vector: the sums stay in registers, where a helper
    // taking them by reference had GCC store all 18 back every iteration)
    for (int64_t j = 0; j < L; j += 16) {
      const __mmask16 m = tail_mask(L - j);
      __m512 dv[KB];
#pragma GCC unroll 2
      for (int kk = 0; kk < KB; ++kk) dv[kk] = _mm512_maskz_loadu_ps(m, d + kk * L + j);
#pragma GCC unroll 9
      for (int i = 0; i < RS; ++i) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + j + off[i]);
#pragma GCC unroll 2
        for (int kk = 0; kk < KB; ++kk) acc[kk][i] = _mm512_fmadd_ps(dv[kk], xv, acc[kk][i]);
      }
    }
  }
#pragma GCC unroll 2
  for (int kk = 0; kk < KB; ++kk)
#pragma GCC unroll 9  // (every index constant: a loop here kept the sums in memory throughout)
    for (int i = 0; i < RS; ++i) dw[((k0 + kk) * g.ch + c) * rs_n + rs0 + i] = lane_sum(acc[kk][i]);
}

using FltTile = void (*)(const Wide&, int64_t, const float*, const float*, int64_t, int64_t,
                         int64_t, int64_t, float*);
#define KILN_FLT_ROW(KB)                                                                 \
  {                                                                                      \
    flt_tile<KB, 1>, flt_tile<KB, 2>, flt_tile<KB, 3>, flt_tile<KB, 4>, flt_tile<KB, 5>, \
        flt_tile<KB, 6>, flt_tile<KB, 7>, flt_tile<KB, 8>, flt_tile<KB, 9>               \
  }
const FltTile kFltTiles[kFltKb][kFltRs] = {KILN_FLT_ROW(1), KILN_FLT_ROW(2)};
#undef KILN_FLT_ROW
#endif  // KILN_CONV_DIRECT

}  // namespace

bool conv_ref_direct_available() {
#ifdef KILN_CONV_DIRECT
  return cpu_has_avx512();
#else
  return false;
#endif
}

void set_conv_ref_direct(bool on) {
  g_direct.store(on, std::memory_order_relaxed);
}

namespace conv_direct {

#ifdef KILN_CONV_DIRECT
bool forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
             bool relu) {
  if (!direct_on(s)) return false;
  const Wide g{s.c, s.h + 2 * s.pad, s.w + 2 * s.pad, s.kh, s.kw};
  const int64_t taps = g.taps(), in_n = s.c * s.h * s.w, out_n = s.k * g.p() * g.q();
  const std::vector<float> wt =
      pack(s.k, taps, [&](int64_t k, int64_t t) { return w[k * taps + t]; });
  parallel_for(s.n, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* in = padded(x + n * in_n, nullptr, s.c, s.h, s.w, s.pad, s.pad, 0);
      float* wide = scratch(1, s.k * g.len());
      fwd_image(g, s.k, in, wt.data(), wide);
      narrow(g, s.k, wide, b, relu, y + n * out_n);
    }
  });
  return true;
}

// dx[c, h, w] = sum over k, r, s of w[k, c, r, s] * dy[k, h + pad - r, w + pad - s]: the
// forward pass over dy padded by kh-1-pad (kw-1-pad) with w'[c, k, r', s'] = w[k, c, kh-1-r',
// kw-1-s']; a padding past kh-1 would need a negative one, and takes im2col.
bool backward_data(const ConvShape& s, const float* dy, const float* w, float* dx,
                   const float* relu_y) {
  if (!direct_on(s) || s.pad > s.kh - 1 || s.pad > s.kw - 1) return false;
  const int64_t P = s.p(), Q = s.q(), ph = s.kh - 1 - s.pad, pw = s.kw - 1 - s.pad;
  const Wide g{s.k, P + 2 * ph, Q + 2 * pw, s.kh, s.kw};  // g.p() == h, g.q() == w
  const int64_t taps = g.taps(), rs = s.kh * s.kw, dy_n = s.k * P * Q, dx_n = s.c * s.h * s.w;
  const std::vector<float> wt = pack(s.c, taps, [&](int64_t c, int64_t t) {
    const int64_t k = t / rs, r = t % rs / s.kw, q = t % s.kw;
    return w[((k * s.c + c) * s.kh + (s.kh - 1 - r)) * s.kw + (s.kw - 1 - q)];
  });
  parallel_for(s.n, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* in =
          padded(dy + n * dy_n, relu_y ? relu_y + n * dy_n : nullptr, s.k, P, Q, ph, pw, 0);
      float* wide = scratch(1, s.c * g.len());
      fwd_image(g, s.c, in, wt.data(), wide);
      narrow(g, s.c, wide, nullptr, false, dx + n * dx_n);
    }
  });
  return true;
}

bool takes_filter(const ConvShape& s) {
  return direct_on(s);
}

void backward_filter_group(const ConvShape& s, const float* x, const float* dy, const float* relu_y,
                           int64_t first, int64_t last, float* dw) {
  const Wide g{s.c, s.h + 2 * s.pad, s.w + 2 * s.pad, s.kh, s.kw};
  const int64_t images = last - first, P = g.p(), Q = g.q(), L = g.len();
  const int64_t in_n = s.c * s.h * s.w, dy_n = s.k * P * Q, rs_n = s.kh * s.kw;
  // The group's images padded, and its dy in wide rows (masked by the ReLU's output, zero at
  // the straddling positions).
  float* xs = scratch(0, images * s.c * g.plane());
  float* dys = scratch(1, images * s.k * L);
  for (int64_t i = 0; i < images; ++i) {
    const int64_t n = first + i;
    pad_into(x + n * in_n, nullptr, s.c, s.h, s.w, s.pad, s.pad, xs + i * s.c * g.plane());
    float* d = dys + i * s.k * L;
    const float* src = dy + n * dy_n;
    const float* ry = relu_y ? relu_y + n * dy_n : nullptr;
    std::fill(d, d + s.k * L, 0.f);
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          const int64_t o = (k * P + p) * Q + q;
          const float v = src[o];
          d[k * L + p * g.wp + q] = ry && ry[o] <= 0.f ? 0.f : v;
        }
  }
  for (int64_t k0 = 0; k0 < s.k; k0 += kFltKb) {
    const int64_t kb = std::min<int64_t>(kFltKb, s.k - k0);
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t rs0 = 0; rs0 < rs_n; rs0 += kFltRs) {
        const int64_t rb = std::min<int64_t>(kFltRs, rs_n - rs0);
        kFltTiles[kb - 1][rb - 1](g, images, xs, dys, s.k, k0, c, rs0, dw);
      }
  }
}
#else
bool forward(const ConvShape&, const float*, const float*, const float*, float*, bool) {
  return false;
}
bool backward_data(const ConvShape&, const float*, const float*, float*, const float*) {
  return false;
}
bool takes_filter(const ConvShape&) {
  return false;
}
void backward_filter_group(const ConvShape&, const float*, const float*, const float*, int64_t,
                           int64_t, float*) {}
#endif

}  // namespace conv_direct
}  // namespace kiln
