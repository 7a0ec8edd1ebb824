// CPU references for batch norm and group norm (float and double). Straightforward loops with
// double accumulation; the double instantiation is what the gradient checks differentiate.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/error.h"
#include "engine/lanes.h"
#include "engine/numtext.h"
#include "engine/parallel.h"
#include "kernels/activation/relu_rule.h"
#include "kernels/cpu_isa.h"
#include "kernels/norm/norm.h"

namespace kiln {

namespace {
// Element (n, c, k) of an [n, c, hw] tensor.
inline int64_t at(const NormShape& s, int64_t n, int64_t c, int64_t k) {
  return (n * s.c + c) * s.hw + k;
}
}  // namespace

std::string norm_index_range_error(const NormShape& s) {
  // Compared by division: user-sized factors could overflow the int64 product itself.
  const int64_t lim = INT_MAX;
  // An empty batch fits (torch returns an empty tensor; batch norm's training refuses it
  // elsewhere: no statistics).
  const bool fits = s.n >= 0 && s.c > 0 && s.hw > 0 &&
                    (s.n == 0 || (s.c <= lim / s.n && s.hw <= lim / (s.n * s.c)));
  ClassicOStringStream os;
  // Batch norm's kernels also keep three coefficients per channel at [c], [C + c], [2C + c].
  if (fits && s.c > lim / 3) os << "3*C = 3*" << s.c << " = " << 3 * s.c << " exceeds 2^31-1";
  if (fits) return os.str();
  os << "N*C*HW = " << s.n << "*" << s.c << "*" << s.hw;
  if (s.n > 0 && s.c > 0 && s.hw > 0 && s.c <= INT64_MAX / s.n && s.hw <= INT64_MAX / (s.n * s.c))
    os << " = " << s.n * s.c * s.hw;
  os << " exceeds 2^31-1";
  return os.str();
}

int64_t batchnorm_splits(const NormShape& s) {
  const int64_t m = s.n * s.hw;
  return std::clamp<int64_t>((m + 8191) / 8192, 1, 64);
}

size_t batchnorm_workspace_bytes(const NormShape& s) {
  // per (channel, split): two double partial sums; per channel: three float dx coefficients
  return static_cast<size_t>(s.c * batchnorm_splits(s)) * 2 * sizeof(double) +
         static_cast<size_t>(s.c) * 3 * sizeof(float);
}

bool groupnorm_splits_planes(const NormShape& s) {
  return s.groups > 0 && s.n * s.groups < 128 && s.c / s.groups >= 2 && s.hw >= 32;
}

size_t groupnorm_workspace_bytes(const NormShape& s) {
  // per (sample, channel): dweight and dbias terms (float); with planes, also two double plane
  // sums and per (sample, group) two float dx coefficients
  size_t bytes = static_cast<size_t>(s.n * s.c) * 2 * sizeof(float);
  if (groupnorm_splits_planes(s))
    bytes += static_cast<size_t>(s.n * s.c) * 2 * sizeof(double) +
             static_cast<size_t>(s.n * s.groups) * 2 * sizeof(float);
  return bytes;
}

// ---- batch and group norm ----------------------------------------------------------------------
namespace {

// One call's arguments. Each pass below runs over a range [b, e): of channels (batch norm, group
// norm's parameter gradients) or of (image, group) pairs (group norm's forward and dx).
template <typename T>
struct NormArgs {
  const T *x = nullptr, *dy = nullptr, *weight = nullptr, *bias = nullptr;
  const T *mean = nullptr, *invstd = nullptr, *relu_y = nullptr;  // backward; eval forward's
  const T *eval_mean = nullptr, *eval_var = nullptr;              // running statistics
  T *y = nullptr, *dx = nullptr, *dweight = nullptr, *dbias = nullptr;
  T *save_mean = nullptr, *save_invstd = nullptr, *running_mean = nullptr, *running_var = nullptr;
  double momentum = 0, eps = 0;
  bool train = true, relu = false;
  NormShape s;
};

template <typename T>
KILN_ALWAYS_INLINE void bn_fwd_train_channels(const NormArgs<T>& a, int64_t c0, int64_t c1) {
  const NormShape& s = a.s;
  const T* x = a.x;
  const double m = static_cast<double>(s.n * s.hw);
  for (int64_t c = c0; c < c1; ++c) {
    // (sums over Lanes, plane by plane: one dependent add per element was most of a CPU epoch
    // with batch norm)
    Lanes sum, sq_lanes;
    for (int64_t n = 0; n < s.n; ++n) {
      const T* xp = x + at(s, n, c, 0);
      sum.add(s.hw, [&](int64_t k) { return static_cast<double>(xp[k]); });
    }
    const double mean = sum.total() / m;
    for (int64_t n = 0; n < s.n; ++n) {
      const T* xp = x + at(s, n, c, 0);
      sq_lanes.add(s.hw, [&](int64_t k) {
        const double d = xp[k] - mean;
        return d * d;
      });
    }
    const double sq = sq_lanes.total();
    const double var = sq / m;
    const double invstd = 1.0 / std::sqrt(var + a.eps);
    const double w = a.weight[c], b = a.bias[c];
    for (int64_t n = 0; n < s.n; ++n) {
      const T* xp = x + at(s, n, c, 0);
      T* yp = a.y + at(s, n, c, 0);
      if (a.relu)
        for (int64_t k = 0; k < s.hw; ++k)
          yp[k] = relu_fwd(static_cast<T>((xp[k] - mean) * invstd * w + b));
      else
        for (int64_t k = 0; k < s.hw; ++k) yp[k] = static_cast<T>((xp[k] - mean) * invstd * w + b);
    }
    a.save_mean[c] = static_cast<T>(mean);
    a.save_invstd[c] = static_cast<T>(invstd);
    if (a.running_mean) {
      const double unbiased = m > 1 ? sq / (m - 1) : var;
      a.running_mean[c] = static_cast<T>((1 - a.momentum) * a.running_mean[c] + a.momentum * mean);
      a.running_var[c] =
          static_cast<T>((1 - a.momentum) * a.running_var[c] + a.momentum * unbiased);
    }
  }
}

template <typename T>
KILN_ALWAYS_INLINE void bn_fwd_eval_channels(const NormArgs<T>& a, int64_t c0, int64_t c1) {
  const NormShape& s = a.s;
  for (int64_t c = c0; c < c1; ++c) {
    const double scale = a.weight[c] / std::sqrt(static_cast<double>(a.eval_var[c]) + a.eps);
    const double shift = a.bias[c] - a.eval_mean[c] * scale;
    for (int64_t n = 0; n < s.n; ++n) {
      const T* xp = a.x + at(s, n, c, 0);
      T* yp = a.y + at(s, n, c, 0);
      if (a.relu)
        for (int64_t k = 0; k < s.hw; ++k) yp[k] = relu_fwd(static_cast<T>(xp[k] * scale + shift));
      else
        for (int64_t k = 0; k < s.hw; ++k) yp[k] = static_cast<T>(xp[k] * scale + shift);
    }
  }
}

// The backward reads each plane in chunks of dy masked by the fused ReLU's rule
// (kernels/activation/relu_rule.h) into a local buffer, in a loop of its own: a select per
// element there vectorizes, where the rule inside the sums was a branch that mispredicted on
// every other element (3-5x the backward's time behind a ReLU). Chunks are a multiple of 8
// long, so every element lands in the lane it did with the plane added whole: the same sums.
constexpr int64_t kBnChunk = 512;
static_assert(kBnChunk % 8 == 0, "a chunk must keep each element's lane");

template <typename T>
KILN_ALWAYS_INLINE const T* bn_masked_dy(const NormArgs<T>& a, int64_t i0, int64_t len, T* g) {
  if (!a.relu_y) return a.dy + i0;
  const T* d = a.dy + i0;
  const T* ry = a.relu_y + i0;
  for (int64_t k = 0; k < len; ++k) g[k] = relu_bwd(ry[k], d[k]);
  return g;
}

template <typename T>
KILN_ALWAYS_INLINE void bn_bwd_channels(const NormArgs<T>& a, int64_t c0, int64_t c1) {
  const NormShape& s = a.s;
  const double m = static_cast<double>(s.n * s.hw);
  T gbuf[kBnChunk];
  for (int64_t c = c0; c < c1; ++c) {
    const double mu = a.mean[c], is = a.invstd[c], w = a.weight[c];
    Lanes sdy_lanes, sdyx_lanes;  // (as the forward's sums)
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t k0 = 0; k0 < s.hw; k0 += kBnChunk) {
        const int64_t i0 = at(s, n, c, k0), len = std::min(kBnChunk, s.hw - k0);
        const T* g = bn_masked_dy(a, i0, len, gbuf);
        const T* xp = a.x + i0;
        sdy_lanes.add(len, [&](int64_t k) { return static_cast<double>(g[k]); });
        sdyx_lanes.add(len, [&](int64_t k) { return g[k] * (xp[k] - mu) * is; });
      }
    const double sdy = sdy_lanes.total(), sdyx = sdyx_lanes.total();
    a.dweight[c] = static_cast<T>(sdyx);
    a.dbias[c] = static_cast<T>(sdy);
    if (!a.dx) continue;
    // dx = w*is*(g - (sdy + (x - mu)*is*sdyx)/m) in training through three per-channel
    // coefficients (a division per element was most of the pass); w*is*g in eval, which reads
    // no x (an inf or NaN in x stays out of dx, as on the GPU)
    const double ca = w * is;
    const double cb = -ca * is * sdyx / m, cc = -ca * sdy / m;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t k0 = 0; k0 < s.hw; k0 += kBnChunk) {
        const int64_t i0 = at(s, n, c, k0), len = std::min(kBnChunk, s.hw - k0);
        const T* g = bn_masked_dy(a, i0, len, gbuf);
        const T* xp = a.x + i0;
        T* out = a.dx + i0;
        if (!a.train)
          for (int64_t k = 0; k < len; ++k) out[k] = static_cast<T>(ca * g[k]);
        else
          for (int64_t k = 0; k < len; ++k)
            out[k] = static_cast<T>(ca * g[k] + (cb * (xp[k] - mu) + cc));
      }
  }
}

// ---- group norm passes: the forward and dx over (image, group) pairs [b, e), the parameter
// gradients over channels [b, e)
template <typename T>
KILN_ALWAYS_INLINE void gn_fwd_groups(const NormArgs<T>& a, int64_t ng0, int64_t ng1) {
  const NormShape& s = a.s;
  const int64_t cpg = s.c / s.groups, len = cpg * s.hw;
  for (int64_t ng = ng0; ng < ng1; ++ng) {
    const int64_t g = ng % s.groups;
    const int64_t base = ng * len;  // a group is contiguous in NCHW
    const T* xg = a.x + base;
    Lanes sum, sq;  // (as batch norm's)
    sum.add(len, [&](int64_t i) { return static_cast<double>(xg[i]); });
    const double mean = sum.total() / len;
    sq.add(len, [&](int64_t i) {
      const double d = xg[i] - mean;
      return d * d;
    });
    const double invstd = 1.0 / std::sqrt(sq.total() / len + a.eps);
    for (int64_t ci = 0; ci < cpg; ++ci) {  // (a channel a row: no division per element)
      const int64_t c = g * cpg + ci;
      const double w = a.weight[c], b = a.bias[c];
      const T* xp = xg + ci * s.hw;
      T* yp = a.y + base + ci * s.hw;
      for (int64_t k = 0; k < s.hw; ++k) yp[k] = static_cast<T>((xp[k] - mean) * invstd * w + b);
    }
    a.save_mean[ng] = static_cast<T>(mean);
    a.save_invstd[ng] = static_cast<T>(invstd);
  }
}

template <typename T>
KILN_ALWAYS_INLINE void gn_bwd_dx_groups(const NormArgs<T>& a, int64_t ng0, int64_t ng1) {
  const NormShape& s = a.s;
  const int64_t cpg = s.c / s.groups;
  const double len = static_cast<double>(cpg * s.hw);
  for (int64_t ng = ng0; ng < ng1; ++ng) {
    const int64_t n = ng / s.groups, g = ng % s.groups;
    const double mu = a.mean[ng], is = a.invstd[ng];
    // sums over the group of dxhat = dy * weight and of dxhat * xhat
    Lanes sg_lanes, sgx_lanes;
    for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
      const int64_t i0 = at(s, n, c, 0);
      const T *dyp = a.dy + i0, *xp = a.x + i0;
      const double w = a.weight[c];
      sg_lanes.add(s.hw, [&](int64_t k) { return dyp[k] * w; });
      sgx_lanes.add(s.hw, [&](int64_t k) { return dyp[k] * w * ((xp[k] - mu) * is); });
    }
    const double sg = sg_lanes.total(), sgx = sgx_lanes.total();
    // dx = is*(dy*w - (sg + xhat*sgx)/len) through per-group coefficients (no division per
    // element)
    const double ca = -is * sg / len, cb = -is * is * sgx / len;
    for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
      const int64_t i0 = at(s, n, c, 0);
      const T *dyp = a.dy + i0, *xp = a.x + i0;
      T* out = a.dx + i0;
      const double iw = is * a.weight[c];
      for (int64_t k = 0; k < s.hw; ++k)
        out[k] = static_cast<T>(iw * dyp[k] + (cb * (xp[k] - mu) + ca));
    }
  }
}

template <typename T>
KILN_ALWAYS_INLINE void gn_bwd_params_channels(const NormArgs<T>& a, int64_t c0, int64_t c1) {
  const NormShape& s = a.s;
  const int64_t cpg = s.c / s.groups;
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t g = c / cpg;
    Lanes dw, db;
    for (int64_t n = 0; n < s.n; ++n) {
      const double mu = a.mean[n * s.groups + g], is = a.invstd[n * s.groups + g];
      const int64_t i0 = at(s, n, c, 0);
      const T *dyp = a.dy + i0, *xp = a.x + i0;
      dw.add(s.hw, [&](int64_t k) { return dyp[k] * ((xp[k] - mu) * is); });
      db.add(s.hw, [&](int64_t k) { return static_cast<double>(dyp[k]); });
    }
    a.dweight[c] = static_cast<T>(dw.total());
    a.dbias[c] = static_cast<T>(db.total());
  }
}

// The float passes (batch and group norm) are also compiled for AVX2 and AVX-512 (4 or 8 of the
// Lanes' double sums per instruction instead of 2), picked once at run time as dropout's mask loop
// is. This file is compiled with -ffp-contract=off (CMakeLists.txt): no multiply-add is fused, so
// each version does the same double operations in the same order and writes the same bits. (GCC
// fuses inside target("avx512f") functions even under -std=c++17; then
// NormRef.EveryInstructionSetWritesTheSameBits fails on group norm's dx of one-element groups,
// where the terms cancel to 0 exactly and a fused one leaves about 1e-14: the mutant
// norm-ref-fp-contract.)
template <typename T>
using NormPass = void (*)(const NormArgs<T>&, int64_t, int64_t);

// Every pass, as X(name, body): one generic instantiation and, on x86-64, one per instruction set.
#define KILN_NORM_PASSES(X)              \
  X(bn_fwd_train, bn_fwd_train_channels) \
  X(bn_fwd_eval, bn_fwd_eval_channels)   \
  X(bn_bwd, bn_bwd_channels)             \
  X(gn_fwd, gn_fwd_groups)               \
  X(gn_bwd_dx, gn_bwd_dx_groups)         \
  X(gn_bwd_params, gn_bwd_params_channels)

struct NormIsa {
  const char* name;
  bool (*runs)();
#define KILN_NORM_FIELD(pass, body) NormPass<float> pass;
  KILN_NORM_PASSES(KILN_NORM_FIELD)
#undef KILN_NORM_FIELD
};

#define KILN_NORM_GENERIC(pass, body)                               \
  template <typename T>                                             \
  void pass##_generic(const NormArgs<T>& a, int64_t b, int64_t e) { \
    body(a, b, e);                                                  \
  }
KILN_NORM_PASSES(KILN_NORM_GENERIC)
#undef KILN_NORM_GENERIC

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KILN_NORM_X86 1
#define KILN_NORM_AVX512(pass, body)                                                         \
  __attribute__((target("avx512f"))) void pass##_avx512(const NormArgs<float>& a, int64_t b, \
                                                        int64_t e) {                         \
    body(a, b, e);                                                                           \
  }
#define KILN_NORM_AVX2(pass, body)                                                      \
  __attribute__((target("avx2"))) void pass##_avx2(const NormArgs<float>& a, int64_t b, \
                                                   int64_t e) {                         \
    body(a, b, e);                                                                      \
  }
KILN_NORM_PASSES(KILN_NORM_AVX512)
KILN_NORM_PASSES(KILN_NORM_AVX2)
#undef KILN_NORM_AVX512
#undef KILN_NORM_AVX2
#endif

#define KILN_NORM_ENTRY_AVX512(pass, body) pass##_avx512,
#define KILN_NORM_ENTRY_AVX2(pass, body) pass##_avx2,
#define KILN_NORM_ENTRY_GENERIC(pass, body) pass##_generic<float>,
// Best first; a constant table, as dropout's.
const NormIsa kNormIsas[] = {
#ifdef KILN_NORM_X86
    {"avx512", [] { return static_cast<bool>(__builtin_cpu_supports("avx512f")); },
     KILN_NORM_PASSES(KILN_NORM_ENTRY_AVX512)},
    {"avx2", [] { return static_cast<bool>(__builtin_cpu_supports("avx2")); },
     KILN_NORM_PASSES(KILN_NORM_ENTRY_AVX2)},
#endif
    {"generic", [] { return true; }, KILN_NORM_PASSES(KILN_NORM_ENTRY_GENERIC)},
};
#undef KILN_NORM_ENTRY_AVX512
#undef KILN_NORM_ENTRY_AVX2
#undef KILN_NORM_ENTRY_GENERIC
#undef KILN_NORM_PASSES

const NormIsa& find_norm_isa(const std::string& name) {
  return find_isa(kNormIsas, name, "batch/group norm: no CPU loop");
}

std::atomic<const NormIsa*> g_norm_isa{nullptr};  // set_norm_ref_isa's choice; null: the best

const NormIsa& norm_isa() {
  static const NormIsa& best = find_norm_isa("");
  const NormIsa* chosen = g_norm_isa.load(std::memory_order_relaxed);
  return chosen ? *chosen : best;
}

// The pass for T: float takes the chosen instruction set's, double (the gradient checks') the
// generic loop.
template <typename T>
NormPass<T> norm_pass(NormPass<float> NormIsa::*which, NormPass<T> generic) {
  if constexpr (std::is_same_v<T, float>)
    return norm_isa().*which;
  else
    return generic;
}

// pass over [0, count) split over threads in pieces of at least `grain` elements' work
template <typename T>
void run_pass(NormPass<T> pass, const NormArgs<T>& a, int64_t count, int64_t grain) {
  parallel_for(
      count, [&](int64_t b, int64_t e) { pass(a, b, e); }, grain);
}

template <typename T>
void run_channels(NormPass<T> pass, const NormArgs<T>& a) {
  run_pass(pass, a, a.s.c, row_grain(a.s.n * a.s.hw));
}

}  // namespace

std::vector<std::string> norm_ref_isas() {
  return isa_names(kNormIsas);
}

void set_norm_ref_isa(const std::string& name) {
  g_norm_isa.store(name.empty() ? nullptr : &find_norm_isa(name), std::memory_order_relaxed);
}

std::string norm_ref_isa() {
  return norm_isa().name;
}

template <typename T>
void batchnorm_fwd_train_ref(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                             T* save_invstd, T* running_mean, T* running_var,
                             T* num_batches_tracked, double momentum, double eps,
                             const NormShape& s, void* /*workspace*/, bool relu) {
  KILN_CHECK(s.n > 0, "batchnorm_fwd_train_ref: an empty batch (n=0) has no batch statistics");
  NormArgs<T> a;
  a.x = x, a.weight = weight, a.bias = bias, a.y = y, a.save_mean = save_mean;
  a.save_invstd = save_invstd, a.running_mean = running_mean, a.running_var = running_var;
  a.momentum = momentum, a.eps = eps, a.relu = relu, a.s = s;
  run_channels(norm_pass<T>(&NormIsa::bn_fwd_train, bn_fwd_train_generic<T>), a);
  if (num_batches_tracked) {  // [count mod 2^24, count / 2^24], as the CUDA kernel keeps it
    const T lo = num_batches_tracked[0] + T(1);
    num_batches_tracked[0] = lo < T(16777216) ? lo : T(0);
    if (lo >= T(16777216)) num_batches_tracked[1] += T(1);
  }
}

template <typename T>
void batchnorm_fwd_eval_ref(const T* x, const T* weight, const T* bias, const T* running_mean,
                            const T* running_var, T* y, double eps, const NormShape& s, bool relu) {
  NormArgs<T> a;
  a.x = x, a.weight = weight, a.bias = bias, a.eval_mean = running_mean;
  a.eval_var = running_var, a.y = y, a.eps = eps, a.relu = relu, a.s = s;
  run_channels(norm_pass<T>(&NormIsa::bn_fwd_eval, bn_fwd_eval_generic<T>), a);
}

template <typename T>
void batchnorm_bwd_ref(const T* x, const T* dy, const T* weight, const T* mean, const T* invstd,
                       T* dx, T* dweight, T* dbias, bool train, const NormShape& s,
                       void* /*workspace*/, const T* relu_y) {
  NormArgs<T> a;
  a.x = x, a.dy = dy, a.weight = weight, a.mean = mean, a.invstd = invstd, a.relu_y = relu_y;
  a.dx = dx, a.dweight = dweight, a.dbias = dbias, a.train = train, a.s = s;
  run_channels(norm_pass<T>(&NormIsa::bn_bwd, bn_bwd_generic<T>), a);
}

template <typename T>
void batchnorm_invstd_ref(const T* var, T* invstd, double eps, int64_t c) {
  for (int64_t i = 0; i < c; ++i)
    invstd[i] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(var[i]) + eps));
}

template <typename T>
void groupnorm_fwd_ref(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                       T* save_invstd, double eps, const NormShape& s) {
  NormArgs<T> a;
  a.x = x, a.weight = weight, a.bias = bias, a.y = y, a.save_mean = save_mean;
  a.save_invstd = save_invstd, a.eps = eps, a.s = s;
  run_pass(norm_pass<T>(&NormIsa::gn_fwd, gn_fwd_generic<T>), a, s.n * s.groups,
           row_grain(s.c / s.groups * s.hw));
}

template <typename T>
void groupnorm_bwd_ref(const T* x, const T* dy, const T* weight, const T* mean, const T* invstd,
                       T* dx, T* dweight, T* dbias, const NormShape& s, void* /*workspace*/) {
  NormArgs<T> a;
  a.x = x, a.dy = dy, a.weight = weight, a.mean = mean, a.invstd = invstd, a.dx = dx;
  a.dweight = dweight, a.dbias = dbias, a.s = s;
  // dx: each (image, group) on its own; the parameter gradients: each channel over the images
  // in order. Both split over threads without changing a sum.
  if (dx)
    run_pass(norm_pass<T>(&NormIsa::gn_bwd_dx, gn_bwd_dx_generic<T>), a, s.n * s.groups,
             row_grain(s.c / s.groups * s.hw));
  run_channels(norm_pass<T>(&NormIsa::gn_bwd_params, gn_bwd_params_generic<T>), a);
}

#define KILN_NORM_INSTANTIATE(T)                                                                   \
  template void batchnorm_fwd_train_ref<T>(const T*, const T*, const T*, T*, T*, T*, T*, T*, T*,   \
                                           double, double, const NormShape&, void*, bool);         \
  template void batchnorm_fwd_eval_ref<T>(const T*, const T*, const T*, const T*, const T*, T*,    \
                                          double, const NormShape&, bool);                         \
  template void batchnorm_bwd_ref<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                     bool, const NormShape&, void*, const T*);                     \
  template void batchnorm_invstd_ref<T>(const T*, T*, double, int64_t);                            \
  template void groupnorm_fwd_ref<T>(const T*, const T*, const T*, T*, T*, T*, double,             \
                                     const NormShape&);                                            \
  template void groupnorm_bwd_ref<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                     const NormShape&, void*);
KILN_NORM_INSTANTIATE(float)
KILN_NORM_INSTANTIATE(double)

}  // namespace kiln
