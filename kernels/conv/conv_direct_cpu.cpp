// Direct convolution for the float CPU references, on x86-64 CPUs with AVX-512F or AVX2 + FMA:
// stride-1 shapes but the 1x1 GEMM (1x1 without padding): the cnn's and the cifar net's 3x3 layers,
// where im2col + OpenBLAS spent most of a CPU epoch (16 or 24 output channels make a GEMM too
// thin to run near the FMA units' rate, and im2col writes and reads kh*kw copies of the image).
// The tiles are conv_direct_tiles.inc, compiled once per instruction set; the best one the CPU
// runs is the default (conv_ref_paths() in conv.h).
//
// The "wide row" form: an image padded to [ch, hp, wp] is read as one long row per channel, and
// the output is computed at j = p*wp + q for every j in [0, L), L = (P-1)*wp + Q, so that each
// kernel tap (c, r, s) is the same shifted run of the row (offset c*hp*wp + r*wp + s) for every
// output. Positions with q >= Q straddle a row's end and are dropped when the result is copied
// out (kw-1 of every wp columns: 2 of 28 on the cnn's first layer). AVX-512's tiles of 8 output
// channels x 48 positions keep 24 sums in registers; each tap is 3 loads, 8 broadcasts and 24
// FMAs.
// Backward-data is the same forward pass over dy padded by kh-1-pad with the kernel flipped and
// its channel axes swapped; backward-filter sums dy * shifted rows over positions and images,
// 2 output channels x 9 taps at a time (AVX-512), each sum a vector of 16 partial sums reduced
// at the end.
//
// Every output is a fixed sequence of float FMAs (taps in order; for the filter gradient
// positions and images in order, then a fixed pairwise tree over 16 lanes), so a result depends on
// the shape alone: not on the thread count, nor on the instruction set. It is not the im2col path's
// order: the two agree to rounding (tests/test_conv.cpp compares both with the double reference).
#include "kernels/conv/conv_direct_cpu.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <string>
#include <utility>
#include <vector>

#include "engine/error.h"
#include "engine/parallel.h"
#include "kernels/activation/relu_rule.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KILN_CONV_DIRECT 1
#include <immintrin.h>
#endif

namespace kiln {
namespace {

#ifdef KILN_CONV_DIRECT
// An image [ch, hp, wp], already padded, convolved with a kh x kw kernel at stride 1.
struct Wide {
  int64_t ch, hp, wp, kh, kw;
  int64_t p() const { return hp - kh + 1; }
  int64_t q() const { return wp - kw + 1; }
  int64_t len() const { return (p() - 1) * wp + q(); }
  int64_t plane() const { return hp * wp; }
  int64_t taps() const { return ch * kh * kw; }
};

#define KILN_ISA_NS avx512
#define KILN_ISA_TARGET "avx512f"
#define KILN_ISA_AVX512 1
#include "kernels/conv/conv_direct_tiles.inc"
#undef KILN_ISA_AVX512
#undef KILN_ISA_TARGET
#undef KILN_ISA_NS
#define KILN_ISA_NS avx2
#define KILN_ISA_TARGET "avx2,fma"
#include "kernels/conv/conv_direct_tiles.inc"
#undef KILN_ISA_TARGET
#undef KILN_ISA_NS

}  // namespace
namespace conv_direct {
struct Isa {
  const char* name;
  bool (*runs)();
  int64_t fwd_kb;  // the forward tile's output channels: the weights' packing
  void (*fwd_image)(const Wide&, int64_t, const float*, const float*, float*);
  void (*flt_group)(const Wide&, int64_t, const float*, const float*, int64_t, float*);
};
}  // namespace conv_direct
namespace {
using conv_direct::Isa;
// Best first. A constant table: nothing to construct or destroy.
const Isa kIsas[] = {
    {"avx512", [] { return static_cast<bool>(__builtin_cpu_supports("avx512f")); }, avx512::kFwdKb,
     avx512::fwd_image, avx512::flt_group},
    {"avx2", [] { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); },
     avx2::kFwdKb, avx2::fwd_image, avx2::flt_group},
};
constexpr int kNumIsas = static_cast<int>(sizeof(kIsas) / sizeof(kIsas[0]));
#else
}  // namespace
namespace conv_direct {
struct Isa {};
}  // namespace conv_direct
namespace {
constexpr int kNumIsas = 0;
#endif

// The path set_conv_ref_path chose: an index into kIsas, kNumIsas for im2col, -1 for the default
// (the first set this CPU runs).
std::atomic<int> g_path{-1};

#ifdef KILN_CONV_DIRECT
int best_path() {
  static const int best = [] {
    int i = 0;
    while (i < kNumIsas && !kIsas[i].runs()) ++i;
    return i;
  }();
  return best;
}

int path_index() {
  const int p = g_path.load(std::memory_order_relaxed);
  return p < 0 ? best_path() : p;
}

// The instruction set a float call of shape s takes, or null for im2col.
const Isa* direct_isa(const ConvShape& s) {
  const int p = path_index();
  if (p >= kNumIsas || s.stride != 1 || s.is_1x1() || s.n == 0) return nullptr;
  return &kIsas[p];
}

// Weights packed for the forward tiles: the block of output channels [k0, k0 + kb) (blocks of
// block_kb) at wt + k0*taps, tap t of channel k0 + kk at t*kb + kk; get(k, t) gives the value.
template <typename Get>
std::vector<float> pack(int64_t K, int64_t taps, int64_t block_kb, Get get) {
  std::vector<float> wt(static_cast<size_t>(K * taps));
  for (int64_t k0 = 0; k0 < K; k0 += block_kb) {
    const int64_t kb = std::min<int64_t>(block_kb, K - k0);
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t kk = 0; kk < kb; ++kk) wt[k0 * taps + t * kb + kk] = get(k0 + kk, t);
  }
  return wt;
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
          d[j] = relu_bwd(relu_y[o + j], v);
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
  float* dst = conv_scratch<float>(slot, ch * (h + 2 * ph) * (w + 2 * pw));
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
        if (relu) v = relu_fwd(v);
        d[q] = v;
      }
    }
}

#endif  // KILN_CONV_DIRECT

}  // namespace

std::vector<std::string> conv_ref_paths() {
  std::vector<std::string> names;
#ifdef KILN_CONV_DIRECT
  for (const Isa& isa : kIsas)
    if (isa.runs()) names.emplace_back(isa.name);
#endif
  names.emplace_back("im2col");
  return names;
}

void set_conv_ref_path(const std::string& name) {
  if (name.empty()) return g_path.store(-1, std::memory_order_relaxed);
  if (name == "im2col") return g_path.store(kNumIsas, std::memory_order_relaxed);
#ifdef KILN_CONV_DIRECT
  for (int i = 0; i < kNumIsas; ++i)
    if (name == kIsas[i].name && kIsas[i].runs()) return g_path.store(i, std::memory_order_relaxed);
#endif
  KILN_FAIL("set_conv_ref_path: no conv path '" << name << "' on this CPU (it runs: " << [] {
    std::string all;
    for (const auto& n : conv_ref_paths()) all += (all.empty() ? "" : ", ") + n;
    return all;
  }() << ")");
}

std::string conv_ref_path() {
#ifdef KILN_CONV_DIRECT
  const int p = path_index();
  if (p < kNumIsas) return kIsas[p].name;
#endif
  return "im2col";
}

namespace conv_direct {

#ifdef KILN_CONV_DIRECT
bool forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
             bool relu) {
  const Isa* isa = direct_isa(s);
  if (!isa) return false;
  const Wide g{s.c, s.h + 2 * s.pad, s.w + 2 * s.pad, s.kh, s.kw};
  const int64_t taps = g.taps(), in_n = s.c * s.h * s.w, out_n = s.k * g.p() * g.q();
  const std::vector<float> wt =
      pack(s.k, taps, isa->fwd_kb, [&](int64_t k, int64_t t) { return w[k * taps + t]; });
  parallel_for(s.n, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* in = padded(x + n * in_n, nullptr, s.c, s.h, s.w, s.pad, s.pad, 0);
      float* wide = conv_scratch<float>(1, s.k * g.len());
      isa->fwd_image(g, s.k, in, wt.data(), wide);
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
  const Isa* isa = direct_isa(s);
  if (!isa || s.pad > s.kh - 1 || s.pad > s.kw - 1) return false;
  const int64_t P = s.p(), Q = s.q(), ph = s.kh - 1 - s.pad, pw = s.kw - 1 - s.pad;
  const Wide g{s.k, P + 2 * ph, Q + 2 * pw, s.kh, s.kw};  // g.p() == h, g.q() == w
  const int64_t taps = g.taps(), rs = s.kh * s.kw, dy_n = s.k * P * Q, dx_n = s.c * s.h * s.w;
  const std::vector<float> wt = pack(s.c, taps, isa->fwd_kb, [&](int64_t c, int64_t t) {
    const int64_t k = t / rs, r = t % rs / s.kw, q = t % s.kw;
    return w[((k * s.c + c) * s.kh + (s.kh - 1 - r)) * s.kw + (s.kw - 1 - q)];
  });
  parallel_for(s.n, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* in =
          padded(dy + n * dy_n, relu_y ? relu_y + n * dy_n : nullptr, s.k, P, Q, ph, pw, 0);
      float* wide = conv_scratch<float>(1, s.c * g.len());
      isa->fwd_image(g, s.c, in, wt.data(), wide);
      narrow(g, s.c, wide, nullptr, false, dx + n * dx_n);
    }
  });
  return true;
}

const Isa* filter_isa(const ConvShape& s) {
  return direct_isa(s);
}

void backward_filter_group(const Isa* isa, const ConvShape& s, const float* x, const float* dy,
                           const float* relu_y, int64_t first, int64_t last, float* dw) {
  KILN_CHECK(isa, "conv_direct::backward_filter_group: no instruction set (filter_isa)");
  const Wide g{s.c, s.h + 2 * s.pad, s.w + 2 * s.pad, s.kh, s.kw};
  const int64_t images = last - first, P = g.p(), Q = g.q(), L = g.len();
  const int64_t in_n = s.c * s.h * s.w, dy_n = s.k * P * Q;
  // The group's images padded, and its dy in wide rows (masked by the ReLU's output, zero at
  // the straddling positions).
  float* xs = conv_scratch<float>(0, images * s.c * g.plane());
  float* dys = conv_scratch<float>(1, images * s.k * L);
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
          d[k * L + p * g.wp + q] = ry ? relu_bwd(ry[o], v) : v;
        }
  }
  isa->flt_group(g, images, xs, dys, s.k, dw);
}
#else
bool forward(const ConvShape&, const float*, const float*, const float*, float*, bool) {
  return false;
}
bool backward_data(const ConvShape&, const float*, const float*, float*, const float*) {
  return false;
}
const Isa* filter_isa(const ConvShape&) {
  return nullptr;
}
void backward_filter_group(const Isa*, const ConvShape&, const float*, const float*, const float*,
                           int64_t, int64_t, float*) {}
#endif

}  // namespace conv_direct
}  // namespace kiln
