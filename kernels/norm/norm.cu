// CUDA batch norm and group norm. Deterministic by construction: every reduction runs in a fixed
// order (per-thread sums, warp butterflies, one block combine; per-split partials combined in
// split order by a second kernel), partial sums are doubles, and nothing uses float atomics.
//
// Batch norm (train): bn_partial (grid channels x splits; sums of x - shift, shift = the
// channel's first element, so the variance does not cancel when |mean| >> std) ->
// bn_finalize (one thread per channel: statistics, running stats, affine coefficients) ->
// bn_apply (element-wise). Backward: the same three steps over dy and dy * (x - mean).
// Group norm: one block per (sample, group), whose elements are contiguous in NCHW; with few
// (sample, group) pairs (groupnorm_splits_planes) one block per (sample, channel) plane, the
// planes of each group combined in order by one thread, then an element-wise pass.
// Fused ReLU (batch norm, opt-in): bn_apply clamps its output in the forward; in the backward
// bn_partial and bn_apply read dy through relu_mask, 0 where the fused forward's y <= 0.
// Indices within a channel or group are 32-bit (the launchers check sizes < 2^31).
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <mutex>

#include "engine/cooperative.h"
#include "engine/cuda_check.h"
#include "engine/fast_div.h"
#include "kernels/activation/relu_rule.h"
#include "kernels/dense/dense.h"
#include "kernels/norm/norm.h"

namespace kiln {

namespace {
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;

struct Sum2 {
  double a, b;
};

// Sum of (a, b) over the block, returned to every thread. blockDim.x must be kThreads.
__device__ __forceinline__ Sum2 block_sum2(double a, double b) {
  __shared__ double sa[kWarps + 1], sb[kWarps + 1];
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(kFull, a, o);
    b += __shfl_xor_sync(kFull, b, o);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sa[warp] = a;
    sb[warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    a = lane < kWarps ? sa[lane] : 0.0;
    b = lane < kWarps ? sb[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) {
      a += __shfl_xor_sync(kFull, a, o);
      b += __shfl_xor_sync(kFull, b, o);
    }
    if (lane == 0) {
      sa[kWarps] = a;
      sb[kWarps] = b;
    }
  }
  __syncthreads();
  const Sum2 r{sa[kWarps], sb[kWarps]};
  __syncthreads();  // the next call may overwrite the slots
  return r;
}

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void st4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }

// dy behind a fused ReLU whose output is yv (kernels/activation/relu_rule.h).
__device__ __forceinline__ float relu_mask(float g, float yv) {
  return relu_bwd(yv, g);
}
__device__ __forceinline__ float4 relu_mask4(float4 g, float4 yv) {
  return make_float4(relu_mask(g.x, yv.x), relu_mask(g.y, yv.y), relu_mask(g.z, yv.z), relu_mask(g.w, yv.w));
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The workspace holds double partial sums: a null one would be written through, and one that is
// not 8-byte aligned faults on a GPU ("misaligned address"; UBSan names it in the emulator build).
// cudaMalloc's memory is 256-byte aligned; a direct caller may pass a pointer into a larger block.
void check_workspace(const void* ws, size_t bytes, const char* op) {
  KILN_CHECK(ws, op << ": needs a workspace of " << bytes << " bytes");
  KILN_CHECK(reinterpret_cast<uintptr_t>(ws) % alignof(double) == 0,
             op << ": the workspace must be 8-byte aligned (it holds doubles)");
}

unsigned grid_for(int64_t work) {
  return static_cast<unsigned>(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, 1 << 16));
}

// A variance from shifted sums, b/m - dm^2, clamped at 0 against rounding; NaN stays NaN (fmax
// would return 0 for it, and a group with an inf would normalise with 1/sqrt(eps), not NaN as
// the reference does).
__device__ __forceinline__ double clamp_var(double v) {
  return v < 0.0 ? 0.0 : v;
}

// ---- batch norm ------------------------------------------------------------------------------
// bn_partial's sums over one float4 of x (and g, its dy): forward a += x - ctr, b += (x - ctr)^2;
// backward a += g, b += g * (x - ctr). Products in double, the fused multiply-adds spelled out
// (as ChannelOp::op: the same bits wherever this is inlined).
template <bool BWD>
__device__ __forceinline__ void bn_sum4(float4 v, float4 g, float ctr, double& a, double& b) {
  const float d0 = v.x - ctr, d1 = v.y - ctr, d2 = v.z - ctr, d3 = v.w - ctr;
  const double e0 = d0, e1 = d1, e2 = d2, e3 = d3;
  if (BWD) {
    a += (double(g.x) + g.y) + (double(g.z) + g.w);
    b += fma(double(g.x), e0, g.y * e1) + fma(double(g.z), e2, g.w * e3);
  } else {
    a += (e0 + e1) + (e2 + e3);
    b += fma(e0, e0, e1 * e1) + fma(e2, e2, e3 * e3);
  }
}

// Element j (= image * hw + position) of channel c in an NCHW tensor of C channels.
__device__ __forceinline__ int64_t bn_index(unsigned j, int C, Divisor hw, int c) {
  const unsigned n = hw.div(j), k = j - n * hw;
  return (static_cast<int64_t>(n) * C + c) * hw + k;
}

// Work item (channel c, split) of batch norm's sums: its elements j in [begin, end) of the
// channel's m, per_split each (the last split takes the rest).
struct BnItem {
  int c;
  unsigned split, begin, end;
};
__device__ __forceinline__ BnItem bn_item(int c, unsigned split, unsigned per_split, unsigned m) {
  const unsigned begin = split * per_split;
  return BnItem{c, split, begin, min(m, begin + per_split)};
}
// Item number `item` of the persistent kernel, channel-major as bn_partial's grid.
__device__ __forceinline__ BnItem bn_nth_item(unsigned item, int splits, unsigned per_split,
                                              unsigned m) {
  const int c = static_cast<int>(item / splits);
  return bn_item(c, item - static_cast<unsigned>(c) * splits, per_split, m);
}

// One (channel, split) item's sums over j in [begin, end) (j = image * hw + position, hw % 4 ==
// 0): thread t visits j = begin + 4 t + 4 kThreads r for r = 0, 1, ... in order, with U float4
// loads in flight, hands each visit to seen(q, x, g) (q = t + kThreads r, the thread's float4
// index in the item; g the masked dy, or x forward) and then adds it to (a, b) with bn_sum4.
// The statistics kernel and the persistent kernel both sum through this, so their partial
// sums are the same bits.
template <bool BWD, int U, class Seen>
__device__ __forceinline__ void bn_item_sums(const float* __restrict__ x,
                                             const float* __restrict__ dy,
                                             const float* __restrict__ ym, int C, Divisor hw, int c,
                                             unsigned begin, unsigned end, float ctr, double& a,
                                             double& b, Seen seen) {
  for (unsigned j0 = begin + 4 * threadIdx.x, q0 = threadIdx.x; j0 < end;
       j0 += U * 4 * kThreads, q0 += U * kThreads) {
    float4 v[U], g[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const unsigned j = j0 + u * 4 * kThreads;
      if (j >= end) break;
      const int64_t i = bn_index(j, C, hw, c);
      v[u] = ld4(x + i);
      g[u] = v[u];
      if (BWD) g[u] = ym ? relu_mask4(ld4(dy + i), ld4(ym + i)) : ld4(dy + i);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (j0 + u * 4 * kThreads >= end) break;
      seen(q0 + u * kThreads, v[u], g[u]);
      bn_sum4<BWD>(v[u], g[u], ctr, a, b);
    }
  }
}

// Float4 loads a thread keeps in flight in the batch-norm sums: four of x forward, two each of
// x and dy backward.
template <bool BWD>
constexpr int kSumUnroll = BWD ? 2 : 4;

// Per (split, channel) partial sums over the channel's elements j in [0, n*hw), j = n_*hw + k.
// Forward (BWD = false): a = sum(x - shift), b = sum((x - shift)^2), shift = x[0, c, 0].
// Backward: a = sum(dy), b = sum(dy * (x - mean[c])), dy masked by ym when ym is not null.
// Products are formed in double, as the CPU reference does: a float square overflows once
// |x - shift| passes 1.8e19, and the layer then output its bias alone with zero gradients.
template <bool BWD, bool VEC>
__global__ void __launch_bounds__(kThreads)
    bn_partial_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                      const float* __restrict__ ym, const float* __restrict__ mean, int C,
                      Divisor hw, unsigned m, unsigned per_split, double* __restrict__ pa,
                      double* __restrict__ pb) {
  // channels on x: up to 2^31 - 1 of them (y stops at 65535)
  const BnItem it = bn_item(static_cast<int>(blockIdx.x), blockIdx.y, per_split, m);
  const int c = it.c;
  const float ctr = BWD ? mean[c] : x[static_cast<int64_t>(c) * hw];
  double a = 0, b = 0;
  if (VEC) {  // hw % 4 == 0: four consecutive j lie in one row
    bn_item_sums<BWD, kSumUnroll<BWD>>(x, dy, ym, C, hw, c, it.begin, it.end, ctr, a, b,
                                       [](unsigned, float4, float4) {});
  } else {
    for (unsigned j = it.begin + threadIdx.x; j < it.end; j += kThreads) {
      const unsigned n = hw.div(j), k = j - n * hw;
      const int64_t i = (static_cast<int64_t>(n) * C + c) * hw + k;
      const double d = x[i] - ctr;
      if (BWD) {
        const double g = ym ? relu_mask(dy[i], ym[i]) : dy[i];
        a += g;
        b += g * d;
      } else {
        a += d;
        b += d * d;
      }
    }
  }
  const Sum2 r = block_sum2(a, b);
  if (threadIdx.x == 0) {
    pa[static_cast<int64_t>(c) * gridDim.y + it.split] = r.a;
    pb[static_cast<int64_t>(c) * gridDim.y + it.split] = r.b;
  }
}

// Channel c's forward statistics from its split partial sums (summed in split order). With
// `write`: saves mean and 1/sqrt(var + eps), updates the running statistics (when running_mean is
// not null) and num_batches_tracked (channel 0, when nbt is not null); returns bn_apply's
// coefficients (mean, scale, bias) in u, s, t.
__device__ __forceinline__ void bn_finalize_fwd_channel(
    int c, const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    unsigned hw, unsigned m, int splits, const double* pa, const double* pb, float* save_mean,
    float* save_invstd, float* running_mean, float* running_var, float* nbt, double momentum,
    double eps, bool write, float& u, float& s, float& t) {
  // pa, pb: not __restrict__, and read through L2 (__ldcg): the persistent kernel wrote them in
  // the same launch, on other SMs, before its grid barrier (a read-only load, ld.global.nc,
  // would be allowed to serve a stale copy).
  double a = 0, b = 0;
  for (int sp = 0; sp < splits; ++sp) {
    a += __ldcg(pa + static_cast<int64_t>(c) * splits + sp);
    b += __ldcg(pb + static_cast<int64_t>(c) * splits + sp);
  }
  const double dm = a / m;
  const double mean = static_cast<double>(x[static_cast<int64_t>(c) * hw]) + dm;
  const double var = clamp_var(b / m - dm * dm);
  const double invstd = 1.0 / sqrt(var + eps);
  u = static_cast<float>(mean);
  s = static_cast<float>(w[c] * invstd);
  t = bias[c];
  if (!write) return;
  save_mean[c] = static_cast<float>(mean);
  save_invstd[c] = static_cast<float>(invstd);
  if (running_mean) {
    const double unbiased = m > 1 ? var * m / (m - 1) : var;
    running_mean[c] = static_cast<float>((1 - momentum) * running_mean[c] + momentum * mean);
    running_var[c] = static_cast<float>((1 - momentum) * running_var[c] + momentum * unbiased);
  }
  if (nbt && c == 0) {  // [count mod 2^24, count / 2^24]: a float counts exactly to 2^24 only
    const float lo = nbt[0] + 1.0f;
    nbt[0] = lo < 16777216.0f ? lo : 0.0f;
    if (lo >= 16777216.0f) nbt[1] += 1.0f;
  }
}

// One thread per channel: batch statistics, running statistics, and coef = (mean, scale, bias)
// for bn_apply.
__global__ void bn_finalize_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                       const float* __restrict__ bias, int C, unsigned hw,
                                       unsigned m, int splits, const double* __restrict__ pa,
                                       const double* __restrict__ pb, float* save_mean,
                                       float* save_invstd, float* coef, float* running_mean,
                                       float* running_var, float* nbt, double momentum,
                                       double eps) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float u, s, t;
  bn_finalize_fwd_channel(c, x, w, bias, hw, m, splits, pa, pb, save_mean, save_invstd,
                          running_mean, running_var, nbt, momentum, eps, true, u, s, t);
  coef[c] = u;
  coef[C + c] = s;
  coef[2 * C + c] = t;
}

// Channel c's backward sums (in split order): writes dweight and dbias (when dweight is not
// null) and returns (k1, k2, k3) with dx = k1 * dy + k2 * (x - mean) + k3.
__device__ __forceinline__ void bn_finalize_bwd_channel(int c, const float* __restrict__ w,
                                                        const float* __restrict__ invstd,
                                                        unsigned m, int splits, const double* pa,
                                                        const double* pb, float* dweight,
                                                        float* dbias, bool train, float& k1f,
                                                        float& k2f, float& k3f) {
  double sdy = 0, sdyx = 0;
  for (int sp = 0; sp < splits; ++sp) {  // (through L2, as bn_finalize_fwd_channel's)
    sdy += __ldcg(pa + static_cast<int64_t>(c) * splits + sp);
    sdyx += __ldcg(pb + static_cast<int64_t>(c) * splits + sp);
  }
  const double is = invstd[c];
  const double dw = sdyx * is;
  if (dweight) {
    dweight[c] = static_cast<float>(dw);
    dbias[c] = static_cast<float>(sdy);
  }
  const double k1 = w[c] * is;
  k1f = static_cast<float>(k1);
  k2f = train ? static_cast<float>(-k1 * is * dw / m) : 0.0f;
  k3f = train ? static_cast<float>(-k1 * sdy / m) : 0.0f;
}

// One thread per channel: dweight, dbias and coef = (k1, k2, k3) with
// dx = k1 * dy + k2 * (x - mean) + k3.
__global__ void bn_finalize_bwd_kernel(const float* __restrict__ w, const float* __restrict__ invstd,
                                       int C, unsigned m, int splits, const double* __restrict__ pa,
                                       const double* __restrict__ pb, float* dweight, float* dbias,
                                       float* coef, bool train) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  bn_finalize_bwd_channel(c, w, invstd, m, splits, pa, pb, dweight, dbias, train, coef[c],
                          coef[C + c], coef[2 * C + c]);
}

enum class Apply { Norm, Eval, Dx };

// Element-wise pass. Norm: y = (x - p0[c]) * p0[C+c] + p0[2C+c] (p0 = forward coef).
// Eval: y = (x - p0[c]) * p2[c] / sqrt(p1[c] + eps) + p3[c] (running mean/var, weight, bias).
// Dx: out = p0[c] * dy + p0[C+c] * (x - p1[c]) + p0[2C+c] (p0 = backward coef, p1 = mean);
// out = p0[c] * dy for a forward in eval mode (the reference's: x does not enter, so an
// infinite x, or one whose x - mean overflows, gives no 0 * inf NaN).
template <Apply MODE>
struct ChannelOp {
  const float *p0, *p1, *p2, *p3;
  int C;
  float eps;
  bool relu = false;  // Norm/Eval: fused ReLU on the output
  bool train = true;  // Dx: the forward normalized with batch statistics
  __device__ __forceinline__ void coef(int c, float& u, float& s, float& t, float& v) const {
    if (MODE == Apply::Norm) {
      u = p0[c], s = p0[C + c], t = p0[2 * C + c], v = 0;
    } else if (MODE == Apply::Eval) {
      u = p0[c], s = p2[c] / sqrtf(p1[c] + eps), t = p3[c], v = 0;
    } else {
      v = p0[c], s = p0[C + c], t = p0[2 * C + c], u = p1[c];
    }
  }
  // Norm/Eval: (x - u) * s + t.  Dx: v * g + s * (x - u) + t. The fused multiply-adds are
  // spelled out (nvcc's own contraction of these expressions): a compiler free to contract
  // `v * g + s * (x - u)` may fuse either product, differently at two call sites, and the
  // persistent kernel must give the three-kernel path's bits.
  __device__ __forceinline__ float op(float xv, float g, float u, float s, float t, float v) const {
    if (MODE == Apply::Dx) return train ? fmaf(s, xv - u, v * g) + t : v * g;
    const float r = fmaf(xv - u, s, t);
    return relu ? relu_fwd(r) : r;
  }
};

// Walks the tensor back to front: the statistics pass (grid channels x splits, so it reads
// roughly front to back) has just left the tail of x (and dy) in L2, so this pass starts there.
// Dx with ym not null: dy is masked by the fused ReLU's output ym.
template <Apply MODE, bool VEC>
__global__ void __launch_bounds__(kThreads)
    bn_apply_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                    const float* __restrict__ ym, float* __restrict__ out, ChannelOp<MODE> f,
                    Divisor hw, Divisor C, unsigned total) {
  const unsigned stride = gridDim.x * kThreads;
  const unsigned items = VEC ? total / 4 : total;
  for (unsigned t = blockIdx.x * kThreads + threadIdx.x; t < items; t += stride) {
    const unsigned q = items - 1 - t;
    if (VEC) {
      const unsigned i = 4 * q;
      const unsigned p = hw.div(i);
      const int c = static_cast<int>(p - C.div(p) * C);
      float u, s, tt, v;
      f.coef(c, u, s, tt, v);
      const float4 xv = ld4(x + i);
      float4 g = make_float4(0.f, 0.f, 0.f, 0.f);
      if (MODE == Apply::Dx) g = ym ? relu_mask4(ld4(dy + i), ld4(ym + i)) : ld4(dy + i);
      st4(out + i, make_float4(f.op(xv.x, g.x, u, s, tt, v), f.op(xv.y, g.y, u, s, tt, v),
                               f.op(xv.z, g.z, u, s, tt, v), f.op(xv.w, g.w, u, s, tt, v)));
    } else {
      const unsigned p = hw.div(q);
      const int c = static_cast<int>(p - C.div(p) * C);
      float u, s, tt, v;
      f.coef(c, u, s, tt, v);
      float g = 0.f;
      if (MODE == Apply::Dx) g = ym ? relu_mask(dy[q], ym[q]) : dy[q];
      out[q] = f.op(x[q], g, u, s, tt, v);
    }
  }
}

template <Apply MODE>
void launch_apply(const float* x, const float* dy, const float* ym, float* out, ChannelOp<MODE> f,
                  const NormShape& s, cudaStream_t stream) {
  const unsigned hw = static_cast<unsigned>(s.hw), total = static_cast<unsigned>(s.numel());
  const unsigned C = static_cast<unsigned>(s.c);
  const bool vec = s.hw % 4 == 0 && aligned16(x) && aligned16(dy) && aligned16(ym) && aligned16(out);
  if (vec) {
    bn_apply_kernel<MODE, true>
        <<<grid_for(total / 4), kThreads, 0, stream>>>(x, dy, ym, out, f, hw, C, total);
  } else {
    bn_apply_kernel<MODE, false>
        <<<grid_for(total), kThreads, 0, stream>>>(x, dy, ym, out, f, hw, C, total);
  }
  KILN_LAUNCH_CHECK();
}

// Layers reject these shapes with a usage error first; this guards direct callers. Below 2^31
// elements the unsigned loop indices (at most 4*kThreads past the end) cannot wrap.
void check_shape(const NormShape& s, const char* op) {
  const std::string err = norm_index_range_error(s);
  KILN_CHECK(err.empty(), op << ": unsupported shape n=" << s.n << " c=" << s.c << " hw=" << s.hw
                             << " (n >= 0, c and hw >= 1): " << err);
}

struct BnWorkspace {
  double *pa, *pb;
  float* coef;
  int splits;
  unsigned per_split;
};

BnWorkspace bn_workspace(void* ws, const NormShape& s) {
  BnWorkspace w;
  w.splits = static_cast<int>(batchnorm_splits(s));
  const int64_t m = s.n * s.hw;
  w.per_split = static_cast<unsigned>(((m + w.splits - 1) / w.splits + 3) / 4 * 4);
  w.pa = static_cast<double*>(ws);
  w.pb = w.pa + s.c * w.splits;
  w.coef = reinterpret_cast<float*>(w.pb + s.c * w.splits);
  return w;
}

// Whether batch norm's sums can read x, dy and ym (null counts as aligned) a float4 at a time.
bool bn_sums_vec(const NormShape& s, const float* x, const float* dy, const float* ym) {
  return s.hw % 4 == 0 && aligned16(x) && aligned16(dy) && aligned16(ym);
}

template <bool BWD>
void launch_partial(const float* x, const float* dy, const float* ym, const float* mean,
                    const NormShape& s, const BnWorkspace& w, bool vec, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(s.c), w.splits);
  const unsigned hw = static_cast<unsigned>(s.hw), m = static_cast<unsigned>(s.n * s.hw);
  const int C = static_cast<int>(s.c);
  if (vec) {
    bn_partial_kernel<BWD, true><<<grid, kThreads, 0, stream>>>(x, dy, ym, mean, C, hw, m, w.per_split, w.pa, w.pb);
  } else {
    bn_partial_kernel<BWD, false><<<grid, kThreads, 0, stream>>>(x, dy, ym, mean, C, hw, m, w.per_split, w.pa, w.pb);
  }
  KILN_LAUNCH_CHECK();
}

// ---- batch norm, persistent (one cooperative launch) ----------------------------------------
// The same (channel, split) items as bn_partial, in one kernel whose blocks are all resident:
// phase 1 sums each item exactly as bn_partial does (same thread mapping, same block_sum2, so
// the same partial sums) and keeps what fits of x (and the masked dy) in dynamic shared memory;
// after a grid barrier, phase 2 takes each item's channel coefficients from the partial sums
// as the finalize kernels do (the block holding split 0 writes the per-channel outputs) and
// writes y (dx) as bn_apply does, reading the cached values from shared memory and the rest
// from memory. A block's items are blockIdx.x + k * gridDim.x; the cache holds its first items
// and phase 2 walks them last to first, so what it reads from memory is what phase 1 read
// last (likely still in L2). Same bits as the three-kernel path.
struct BnPersistArgs {
  const float *x, *dy, *ym;  // dy, ym: backward (ym: the fused ReLU's output, or null)
  float* out;                // y or dx
  const float *w, *bias;     // forward: weight, bias; backward: weight
  float *save_mean, *save_invstd, *running_mean, *running_var, *nbt;  // forward outputs
  const float *mean, *invstd;                                         // backward inputs
  float *dweight, *dbias;                                             // backward outputs
  double momentum, eps;
  bool relu, train;
  int C, splits;
  Divisor hw;
  unsigned m, per_split;
  double *pa, *pb;
  unsigned cache4;  // float4 slots of the cache per tensor
};

#ifdef KILN_CUDA_EMU
// The emulator checks these like pointer arguments (each in a device allocation, or null).
void kiln_emu_pointers(const BnPersistArgs& a, kiln_emu::PointerList& out) {
  for (const void* p :
       {static_cast<const void*>(a.x), static_cast<const void*>(a.dy),
        static_cast<const void*>(a.ym), static_cast<const void*>(a.out),
        static_cast<const void*>(a.w), static_cast<const void*>(a.bias),
        static_cast<const void*>(a.save_mean), static_cast<const void*>(a.save_invstd),
        static_cast<const void*>(a.running_mean), static_cast<const void*>(a.running_var),
        static_cast<const void*>(a.nbt), static_cast<const void*>(a.mean),
        static_cast<const void*>(a.invstd), static_cast<const void*>(a.dweight),
        static_cast<const void*>(a.dbias), static_cast<const void*>(a.pa),
        static_cast<const void*>(a.pb)})
    out.add(p);
}
#endif

// Four blocks of kThreads an SM (64 registers a thread); each thread has four float4 loads in
// flight: four of x forward, two each of x and dy backward.
template <bool BWD>
__global__ void __launch_bounds__(kThreads, 4) bn_persistent_kernel(BnPersistArgs a) {
  constexpr int kUnroll = kSumUnroll<BWD>;
  KILN_DYNAMIC_SMEM(float4, cache);  // forward: x; backward: x and g interleaved
  __shared__ float coef_s[4];
  const unsigned items = static_cast<unsigned>(a.C) * static_cast<unsigned>(a.splits);
  const unsigned nk = blockIdx.x < items ? (items - 1 - blockIdx.x) / gridDim.x + 1 : 0;
  const unsigned per4 = a.per_split / 4;
  for (unsigned k = 0; k < nk; ++k) {
    const BnItem it = bn_nth_item(blockIdx.x + k * gridDim.x, a.splits, a.per_split, a.m);
    const int c = it.c;
    const float ctr = BWD ? a.mean[c] : a.x[static_cast<int64_t>(c) * a.hw];
    double sa = 0, sb = 0;
    bn_item_sums<BWD, kUnroll>(a.x, a.dy, a.ym, a.C, a.hw, c, it.begin, it.end, ctr, sa, sb,
                               [&](unsigned q, float4 v, float4 g) {
                                 const unsigned slot = k * per4 + q;
                                 if (slot < a.cache4) {
                                   cache[BWD ? 2 * slot : slot] = v;
                                   if (BWD) cache[2 * slot + 1] = g;
                                 }
                               });
    const Sum2 r = block_sum2(sa, sb);
    if (threadIdx.x == 0) {
      a.pa[static_cast<int64_t>(c) * a.splits + it.split] = r.a;
      a.pb[static_cast<int64_t>(c) * a.splits + it.split] = r.b;
    }
  }
  grid_sync();
  for (unsigned k = nk; k-- > 0;) {
    const BnItem it = bn_nth_item(blockIdx.x + k * gridDim.x, a.splits, a.per_split, a.m);
    const int c = it.c;
    if (threadIdx.x == 0) {
      float u, s, t, v = 0.f;
      if (BWD) {
        bn_finalize_bwd_channel(c, a.w, a.invstd, a.m, a.splits, a.pa, a.pb,
                                it.split == 0 ? a.dweight : nullptr, a.dbias, a.train, v, s, t);
        u = a.mean[c];
      } else {
        bn_finalize_fwd_channel(c, a.x, a.w, a.bias, a.hw, a.m, a.splits, a.pa, a.pb, a.save_mean,
                                a.save_invstd, a.running_mean, a.running_var, a.nbt, a.momentum,
                                a.eps, it.split == 0, u, s, t);
      }
      coef_s[0] = u, coef_s[1] = s, coef_s[2] = t, coef_s[3] = v;
    }
    __syncthreads();
    const float u0 = coef_s[0], s = coef_s[1], t = coef_s[2], v = coef_s[3];
    __syncthreads();  // the next item's thread 0 overwrites coef_s
    const ChannelOp<BWD ? Apply::Dx : Apply::Norm> f{nullptr, nullptr, nullptr, nullptr,
                                                     a.C,     0.f,     a.relu,  a.train};
    for (unsigned j0 = it.begin + 4 * threadIdx.x, q0 = threadIdx.x; j0 < it.end;
         j0 += kUnroll * 4 * kThreads, q0 += kUnroll * kThreads) {
      float4 xv[kUnroll], g[kUnroll];
      int64_t i[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const unsigned j = j0 + u * 4 * kThreads;
        if (j >= it.end) break;
        i[u] = bn_index(j, a.C, a.hw, c);
        const unsigned slot = k * per4 + q0 + u * kThreads;
        g[u] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (slot < a.cache4) {
          xv[u] = cache[BWD ? 2 * slot : slot];
          if (BWD) g[u] = cache[2 * slot + 1];
        } else {
          xv[u] = ld4(a.x + i[u]);
          if (BWD) g[u] = a.ym ? relu_mask4(ld4(a.dy + i[u]), ld4(a.ym + i[u])) : ld4(a.dy + i[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        if (j0 + u * 4 * kThreads >= it.end) break;
        st4(a.out + i[u],
            make_float4(f.op(xv[u].x, g[u].x, u0, s, t, v), f.op(xv[u].y, g[u].y, u0, s, t, v),
                        f.op(xv[u].z, g[u].z, u0, s, t, v), f.op(xv[u].w, g[u].w, u0, s, t, v)));
      }
    }
  }
}

std::atomic<bool> g_bn_persistent{false};
std::atomic<int> g_bn_max_blocks{0};  // < 0: launch exactly -g_bn_max_blocks blocks (a test hook)
std::atomic<size_t> g_bn_cache_limit{SIZE_MAX};
// Set when a cooperative launch did not fit after all: later calls plan the three kernels (no
// retry every step, nothing cooperative captured into a graph). Cleared by the limits hook.
std::atomic<bool> g_bn_too_large{false};
std::atomic<int64_t> g_bn_launches{0}, g_bn_fallbacks{0};

struct BnPersistPlan {
  unsigned grid = 0;  // 0: not used
  size_t smem = 0;
  unsigned cache4 = 0;
};

struct CoopDevice {
  bool ok = false;
  int sms = 0, smem_per_sm = 0, smem_optin = 0;
};
const CoopDevice& coop_device() {
  static const CoopDevice d = [] {
    CoopDevice r;
    int dev = 0, coop = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&r.sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&r.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) !=
            cudaSuccess ||
        cudaDeviceGetAttribute(&r.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
            cudaSuccess) {
      cudaGetLastError();
      return r;
    }
    r.ok = coop != 0;
    return r;
  }();
  return d;
}

// The persistent kernel's grid and cache for shape s, or grid 0 (three-kernel path): when it
// is switched on, the tensors take float4 loads, and the device launches cooperatively. Aims at
// four blocks (1,024 threads) per SM, each with a quarter of the SM's shared memory, and the
// fewest blocks that keep each block's item count equal to the busiest block's.
template <bool BWD>
BnPersistPlan bn_persistent_plan(const NormShape& s, const BnWorkspace& w, bool vec) {
  BnPersistPlan p;
  if (!g_bn_persistent || g_bn_too_large || !vec) return p;
  const CoopDevice& d = coop_device();
  if (!d.ok) return p;
  const size_t per_slot = BWD ? 32 : 16;  // bytes cached per float4 position
  // a quarter of the SM's shared memory, less the 1 KiB the runtime reserves per block and 1 KiB
  // for the kernel's static shared memory (block_sum2's and coef_s, 160 bytes)
  size_t cap = std::min<size_t>(static_cast<size_t>(d.smem_optin),
                                static_cast<size_t>(d.smem_per_sm) / 4 - 2048);
  cap = std::min(cap, g_bn_cache_limit.load()) / per_slot * per_slot;
  int per_sm = 0;
  {
    // Per BWD: the dynamic shared memory the kernel is allowed, and the occupancy last queried
    // (it depends on the cache size alone, which changes only with the limits hook).
    static std::mutex mu;
    static size_t attr_set = 0, queried_cap = SIZE_MAX;
    static int queried_per_sm = 0;
    const std::lock_guard<std::mutex> lock(mu);
    if (cap > 48 * 1024 && attr_set < cap) {
      KILN_CUDA_CHECK(cudaFuncSetAttribute(bn_persistent_kernel<BWD>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(cap)));
      attr_set = cap;
    }
    if (queried_cap != cap) {
      KILN_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &queried_per_sm, bn_persistent_kernel<BWD>, kThreads, cap));
      queried_cap = cap;
    }
    per_sm = queried_per_sm;
  }
  if (per_sm <= 0) return p;
  int64_t max_grid = static_cast<int64_t>(per_sm) * d.sms;
  const int limit = g_bn_max_blocks;
  if (limit > 0) max_grid = std::min<int64_t>(max_grid, limit);
  const int64_t items = s.c * w.splits;
  const int64_t nk = (items + max_grid - 1) / max_grid;
  p.grid = static_cast<unsigned>((items + nk - 1) / nk);
  if (limit < 0) p.grid = static_cast<unsigned>(-limit);  // blocks past `items` have none
  const size_t needed = static_cast<size_t>(nk) * (w.per_split / 4) * per_slot;
  p.smem = std::min(cap, needed);
  p.cache4 = static_cast<unsigned>(p.smem / per_slot);
  return p;
}

// Fills in the shape, workspace and cache fields of `a` and launches the persistent kernel.
// Returns false, with nothing launched, when the grid does not fit at once after all (fewer SMs
// than the device reported, as under MPS): the caller takes the three-kernel path.
template <bool BWD>
bool launch_persistent(BnPersistArgs a, const NormShape& s, const BnWorkspace& w,
                       const BnPersistPlan& plan, cudaStream_t stream) {
  a.C = static_cast<int>(s.c), a.splits = w.splits, a.hw = static_cast<unsigned>(s.hw);
  a.m = static_cast<unsigned>(s.n * s.hw), a.per_split = w.per_split, a.pa = w.pa, a.pb = w.pb;
  a.cache4 = plan.cache4;
  const cudaError_t err =
      launch_cooperative(bn_persistent_kernel<BWD>, plan.grid, kThreads, plan.smem, stream, a);
  if (err == cudaErrorCooperativeLaunchTooLarge) {
    cudaGetLastError();  // not sticky: clear it
    g_bn_too_large = true;
    ++g_bn_fallbacks;
    return false;
  }
  KILN_CUDA_CHECK(err);
  ++g_bn_launches;
  return true;
}

// ---- group norm
// ---------------------------------------------------------------------------------- One block per
// (sample, group): shifted sums, statistics, then the normalised output. The shifted sums of one
// float4 (products in double, as in bn_partial_kernel).
__device__ __forceinline__ void gn_sum4(float4 v, float shift, double& a, double& b) {
  const double d0 = v.x - shift, d1 = v.y - shift, d2 = v.z - shift, d3 = v.w - shift;
  a += (d0 + d1) + (d2 + d3);
  b += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
}
// The group's statistics from its block sums (every thread gets them); thread 0 stores them.
__device__ __forceinline__ void gn_stats(double a, double b, unsigned len, float shift, double eps,
                                         unsigned ng, float* mean_out, float* invstd_out, float& fm,
                                         float& fi) {
  const Sum2 r = block_sum2(a, b);
  const double dm = r.a / len;
  const double mean = shift + dm;
  const double invstd = 1.0 / sqrt(clamp_var(r.b / len - dm * dm) + eps);
  if (threadIdx.x == 0) {
    mean_out[ng] = static_cast<float>(mean);
    invstd_out[ng] = static_cast<float>(invstd);
  }
  fm = static_cast<float>(mean);
  fi = static_cast<float>(invstd);
}
// The output of the float4 at j of a group whose first channel is c0.
__device__ __forceinline__ float4 gn_out4(float4 v, unsigned j, unsigned c0, Divisor hw, float fm,
                                          float fi, const float* __restrict__ w,
                                          const float* __restrict__ bias) {
  float o[4];
  const float in[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const unsigned c = c0 + hw.div(j + e);
    o[e] = (in[e] - fm) * (fi * w[c]) + bias[c];
  }
  return make_float4(o[0], o[1], o[2], o[3]);
}

template <bool VEC>
__global__ void __launch_bounds__(kThreads)
    gn_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w,
                  const float* __restrict__ bias, float* __restrict__ y, float* mean_out,
                  float* invstd_out, int groups, Divisor hw, unsigned cpg, double eps) {
  const unsigned ng = blockIdx.x, g = ng % groups, len = cpg * hw;
  const int64_t base = static_cast<int64_t>(ng) * len;  // (n*C + g*cpg)*hw
  const float* xr = x + base;
  const float shift = xr[0];
  double a = 0, b = 0;
  if (VEC) {
    for (unsigned j = 4 * threadIdx.x; j < len; j += 4 * kThreads)
      gn_sum4(ld4(xr + j), shift, a, b);
  } else {
    for (unsigned j = threadIdx.x; j < len; j += kThreads) {
      const double d = xr[j] - shift;
      a += d;
      b += d * d;
    }
  }
  float fm, fi;
  gn_stats(a, b, len, shift, eps, ng, mean_out, invstd_out, fm, fi);
  const unsigned c0 = g * cpg;
  float* yr = y + base;
  if (VEC) {
    for (unsigned j = 4 * threadIdx.x; j < len; j += 4 * kThreads)
      st4(yr + j, gn_out4(ld4(xr + j), j, c0, hw, fm, fi, w, bias));
  } else {
    for (unsigned j = threadIdx.x; j < len; j += kThreads) {
      const unsigned c = c0 + hw.div(j);
      yr[j] = (xr[j] - fm) * (fi * w[c]) + bias[c];
    }
  }
}

// gn_fwd_kernel<true> with the group held in registers (len <= 4 * kThreads * NV): x is read
// from memory once, where the kernel above reads it again for the output (from L2 at best).
// The same elements in the same order: the same bits.
template <int NV>
__global__ void __launch_bounds__(kThreads)
    gn_fwd_cached_kernel(const float* __restrict__ x, const float* __restrict__ w,
                         const float* __restrict__ bias, float* __restrict__ y, float* mean_out,
                         float* invstd_out, int groups, Divisor hw, unsigned cpg, double eps) {
  const unsigned ng = blockIdx.x, g = ng % groups, len = cpg * hw;
  const int64_t base = static_cast<int64_t>(ng) * len;
  const float* xr = x + base;
  const float shift = xr[0];
  float4 v[NV];
#pragma unroll
  for (int i = 0; i < NV; ++i) {  // every load issued before the first is used
    const unsigned j = 4 * (threadIdx.x + i * kThreads);
    v[i] = j < len ? ld4(xr + j) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  double a = 0, b = 0;
#pragma unroll
  for (int i = 0; i < NV; ++i)
    if (4 * (threadIdx.x + i * kThreads) < len) gn_sum4(v[i], shift, a, b);
  float fm, fi;
  gn_stats(a, b, len, shift, eps, ng, mean_out, invstd_out, fm, fi);
  float* yr = y + base;
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const unsigned j = 4 * (threadIdx.x + i * kThreads);
    if (j < len) st4(yr + j, gn_out4(v[i], j, g * cpg, hw, fm, fi, w, bias));
  }
}

// Channel c's backward sums (ra = sum dy, rb = sum dy * (x - mean)): sample n's share of dbias
// and dweight to the workspace (when store), and its weighted terms of the group totals.
__device__ __forceinline__ void gn_bwd_channel(double ra, double rb, double is,
                                               const float* __restrict__ w, unsigned c, unsigned n,
                                               int C, bool store, float* ws_dw, float* ws_db,
                                               double& sg, double& sgx) {
  const double dwc = rb * is;
  if (store) {
    ws_db[static_cast<int64_t>(n) * C + c] = static_cast<float>(ra);
    ws_dw[static_cast<int64_t>(n) * C + c] = static_cast<float>(dwc);
  }
  sg += w[c] * ra;
  sgx += w[c] * dwc;
}
// dx of one element from the group totals (fsg, fsgx: per element).
__device__ __forceinline__ float gn_dx(float xv, float gv, float wc, float mu, float is, float fsg,
                                       float fsgx) {
  const float xh = (xv - mu) * is;
  return is * (wc * gv - fsg - xh * fsgx);
}

// This block's group in the backward: (sample, group) ng = (n, g), its first element (base) and
// channel (c0), its len values, and its saved statistics.
struct GnBwdGroup {
  unsigned ng, n, g, len, c0;
  int64_t base;
  float mu, is;
};
__device__ __forceinline__ GnBwdGroup gn_bwd_group(int groups, unsigned hw, unsigned cpg,
                                                   const float* __restrict__ mean,
                                                   const float* __restrict__ invstd) {
  GnBwdGroup q;
  q.ng = blockIdx.x, q.n = q.ng / groups, q.g = q.ng % groups, q.len = cpg * hw, q.c0 = q.g * cpg;
  q.base = static_cast<int64_t>(q.ng) * q.len;
  q.mu = mean[q.ng], q.is = invstd[q.ng];
  return q;
}

// One block per (sample, group): per-channel sums of dy and dy * xhat (to the workspace, for
// dweight/dbias), their weighted group totals, then dx.
__global__ void __launch_bounds__(kThreads)
    gn_bwd_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                  const float* __restrict__ w, const float* __restrict__ mean,
                  const float* __restrict__ invstd, float* __restrict__ dx, float* ws_dw,
                  float* ws_db, int C, int groups, Divisor hw, unsigned cpg) {
  const GnBwdGroup q = gn_bwd_group(groups, hw, cpg, mean, invstd);
  const unsigned n = q.n, len = q.len, c0 = q.c0;
  const float mu = q.mu, is = q.is;
  const float* xr = x + q.base;
  const float* gr = dy + q.base;
  double sg = 0, sgx = 0;  // sum over the group of dy*w and dy*w*xhat
  if (hw >= 32) {
    // a whole block per channel
    for (unsigned ci = 0; ci < cpg; ++ci) {
      double a = 0, b = 0;
      for (unsigned k = threadIdx.x; k < hw; k += kThreads) {
        const float gv = gr[ci * hw + k];
        a += gv;
        b += gv * static_cast<double>(xr[ci * hw + k] - mu);
      }
      const Sum2 r = block_sum2(a, b);
      gn_bwd_channel(r.a, r.b, is, w, c0 + ci, n, C, threadIdx.x == 0, ws_dw, ws_db, sg, sgx);
    }
  } else {
    // a thread per channel, then one block sum
    for (unsigned ci = threadIdx.x; ci < cpg; ci += kThreads) {
      double a = 0, b = 0;
      for (unsigned k = 0; k < hw; ++k) {
        const float gv = gr[ci * hw + k];
        a += gv;
        b += gv * static_cast<double>(xr[ci * hw + k] - mu);
      }
      gn_bwd_channel(a, b, is, w, c0 + ci, n, C, true, ws_dw, ws_db, sg, sgx);
    }
    const Sum2 r = block_sum2(sg, sgx);
    sg = r.a;
    sgx = r.b;
  }
  if (!dx) return;
  const float fsg = static_cast<float>(sg / len), fsgx = static_cast<float>(sgx / len);
  float* dr = dx + q.base;
  for (unsigned j = threadIdx.x; j < len; j += kThreads)
    dr[j] = gn_dx(xr[j], gr[j], w[c0 + hw.div(j)], mu, is, fsg, fsgx);
}

// gn_bwd_kernel with the group's x and dy held in registers as float4s (hw % 4 == 0, so each
// lies in one channel; len <= 4 * kThreads * NV): both are read from memory once, where the
// kernel above reads them again for dx. A thread's share of a channel is summed a float4 at a
// time, so the sums round differently from gn_bwd_kernel's (both are deterministic).
template <int NV>
__global__ void __launch_bounds__(kThreads)
    gn_bwd_cached_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                         const float* __restrict__ w, const float* __restrict__ mean,
                         const float* __restrict__ invstd, float* __restrict__ dx, float* ws_dw,
                         float* ws_db, int C, int groups, Divisor hw, unsigned cpg) {
  const GnBwdGroup q = gn_bwd_group(groups, hw, cpg, mean, invstd);
  const unsigned n = q.n, len = q.len, c0 = q.c0;
  const float mu = q.mu, is = q.is;
  const int64_t base = q.base;
  float4 xv[NV], gv[NV];
#pragma unroll
  for (int i = 0; i < NV; ++i) {  // every load issued before the first is used
    const unsigned j = 4 * (threadIdx.x + i * kThreads);
    const bool in = j < len;
    xv[i] = in ? ld4(x + base + j) : make_float4(0.f, 0.f, 0.f, 0.f);
    gv[i] = in ? ld4(dy + base + j) : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  double sg = 0, sgx = 0;
  for (unsigned ci = 0; ci < cpg; ++ci) {
    const unsigned lo = ci * hw, hi = lo + hw;
    double a = 0, b = 0;
#pragma unroll
    for (int i = 0; i < NV; ++i) {
      const unsigned j = 4 * (threadIdx.x + i * kThreads);
      if (j >= lo && j < hi) {
        const float4 q = gv[i], v = xv[i];
        a += (static_cast<double>(q.x) + q.y) + (static_cast<double>(q.z) + q.w);
        b += (q.x * static_cast<double>(v.x - mu) + q.y * static_cast<double>(v.y - mu)) +
             (q.z * static_cast<double>(v.z - mu) + q.w * static_cast<double>(v.w - mu));
      }
    }
    const Sum2 r = block_sum2(a, b);
    gn_bwd_channel(r.a, r.b, is, w, c0 + ci, n, C, threadIdx.x == 0, ws_dw, ws_db, sg, sgx);
  }
  if (!dx) return;
  const float fsg = static_cast<float>(sg / len), fsgx = static_cast<float>(sgx / len);
#pragma unroll
  for (int i = 0; i < NV; ++i) {
    const unsigned j = 4 * (threadIdx.x + i * kThreads);
    if (j >= len) continue;
    const float wc = w[c0 + hw.div(j)];
    const float4 q = gv[i], v = xv[i];
    st4(dx + base + j,
        make_float4(gn_dx(v.x, q.x, wc, mu, is, fsg, fsgx), gn_dx(v.y, q.y, wc, mu, is, fsg, fsgx),
                    gn_dx(v.z, q.z, wc, mu, is, fsg, fsgx),
                    gn_dx(v.w, q.w, wc, mu, is, fsg, fsgx)));
  }
}

// ---- group norm over planes (few samples x groups: groupnorm_splits_planes) -------------------
// One block per (sample, channel) plane: forward (BWD = false) a = sum(x - shift),
// b = sum((x - shift)^2) with shift = the group's first element; backward a = sum(dy),
// b = sum(dy * (x - mean[ng])). The backward's loop is gn_bwd_kernel's per channel, so the two
// paths give the same bits there.
template <bool BWD>
__global__ void __launch_bounds__(kThreads)
    gn_plane_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                    const float* __restrict__ mean, int C, int groups, unsigned hw, unsigned cpg,
                    double* __restrict__ pa, double* __restrict__ pb) {
  const unsigned nc = blockIdx.x, n = nc / C, c = nc % C;
  const unsigned ng = n * groups + c / cpg;
  const int64_t base = static_cast<int64_t>(nc) * hw;
  const float ctr = BWD ? mean[ng] : x[static_cast<int64_t>(ng) * cpg * hw];
  double a = 0, b = 0;
  for (unsigned k = threadIdx.x; k < hw; k += kThreads) {
    if (BWD) {
      const float gv = dy[base + k];
      a += gv;
      b += gv * static_cast<double>(x[base + k] - ctr);
    } else {
      const double d = x[base + k] - ctr;
      a += d;
      b += d * d;
    }
  }
  const Sum2 r = block_sum2(a, b);
  if (threadIdx.x == 0) {
    pa[nc] = r.a;
    pb[nc] = r.b;
  }
}

// The plane index of group ng's first channel (planes are (sample, channel), n*C + c).
__device__ __forceinline__ int64_t gn_first_plane(int ng, int C, int groups, unsigned cpg) {
  return static_cast<int64_t>(ng / groups) * C + static_cast<int64_t>(ng % groups) * cpg;
}

// One thread per (sample, group): its planes' sums in channel order -> mean and invstd.
__global__ void gn_plane_finalize_fwd_kernel(const float* __restrict__ x,
                                             const double* __restrict__ pa,
                                             const double* __restrict__ pb, int NG, int C,
                                             int groups, unsigned hw, unsigned cpg, double eps,
                                             float* mean_out, float* invstd_out) {
  const int ng = blockIdx.x * blockDim.x + threadIdx.x;
  if (ng >= NG) return;
  const int64_t p0 = gn_first_plane(ng, C, groups, cpg);
  double a = 0, b = 0;
  for (unsigned ci = 0; ci < cpg; ++ci) {
    a += pa[p0 + ci];
    b += pb[p0 + ci];
  }
  const double len = static_cast<double>(cpg) * hw;
  const double dm = a / len;
  mean_out[ng] = static_cast<float>(x[static_cast<int64_t>(ng) * cpg * hw] + dm);
  invstd_out[ng] = static_cast<float>(1.0 / sqrt(clamp_var(b / len - dm * dm) + eps));
}

// One thread per (sample, group): per-channel dbias and dweight terms to the workspace (for
// column_sums), and the group's dx coefficients sum(w dy)/len, sum(w dy xhat)/len.
__global__ void gn_plane_finalize_bwd_kernel(const float* __restrict__ w,
                                             const float* __restrict__ invstd,
                                             const double* __restrict__ pa,
                                             const double* __restrict__ pb, int NG, int C,
                                             int groups, unsigned hw, unsigned cpg, float* ws_dw,
                                             float* ws_db, float* gcoef) {
  const int ng = blockIdx.x * blockDim.x + threadIdx.x;
  if (ng >= NG) return;
  const int64_t p0 = gn_first_plane(ng, C, groups, cpg);
  const double is = invstd[ng];
  double sg = 0, sgx = 0;
  for (unsigned ci = 0; ci < cpg; ++ci) {
    const double dwc = pb[p0 + ci] * is;
    ws_db[p0 + ci] = static_cast<float>(pa[p0 + ci]);
    ws_dw[p0 + ci] = static_cast<float>(dwc);
    const float wc = w[(ng % groups) * cpg + ci];
    sg += wc * pa[p0 + ci];
    sgx += wc * dwc;
  }
  const double len = static_cast<double>(cpg) * hw;
  gcoef[2 * ng] = static_cast<float>(sg / len);
  gcoef[2 * ng + 1] = static_cast<float>(sgx / len);
}

// Element-wise over the tensor. Forward: y = (x - mean) * (invstd * w[c]) + bias[c]; backward
// (gcoef not null): dx = invstd * (w[c] dy - gcoef[0] - xhat gcoef[1]), as gn_fwd/gn_bwd_kernel.
__global__ void __launch_bounds__(kThreads)
    gn_plane_apply_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                          const float* __restrict__ w, const float* __restrict__ bias,
                          const float* __restrict__ mean, const float* __restrict__ invstd,
                          const float* __restrict__ gcoef, float* __restrict__ out, Divisor C,
                          int groups, Divisor hw, Divisor cpg, unsigned total) {
  const unsigned stride = gridDim.x * kThreads;
  for (unsigned i = blockIdx.x * kThreads + threadIdx.x; i < total; i += stride) {
    const unsigned p = hw.div(i), pc = C.div(p), c = p - pc * C, ng = pc * groups + cpg.div(c);
    const float mu = mean[ng], is = invstd[ng];
    if (gcoef) {
      const float xh = (x[i] - mu) * is;
      out[i] = is * (w[c] * dy[i] - gcoef[2 * ng] - xh * gcoef[2 * ng + 1]);
    } else {
      out[i] = (x[i] - mu) * (is * w[c]) + bias[c];
    }
  }
}

// Group norm's workspace (groupnorm_workspace_bytes): per (sample, channel) the dweight and
// dbias terms; with planes also the two double plane sums and per (sample, group) the two dx
// coefficients.
struct GnWorkspace {
  float *ws_dw, *ws_db, *gcoef;
  double *pa, *pb;
};
GnWorkspace gn_workspace(void* ws, const NormShape& s) {
  GnWorkspace w;
  w.ws_dw = static_cast<float*>(ws);
  w.ws_db = w.ws_dw + s.n * s.c;
  w.pa = reinterpret_cast<double*>(w.ws_db + s.n * s.c);  // 8-byte aligned: 2*n*c floats before
  w.pb = w.pa + s.n * s.c;
  w.gcoef = reinterpret_cast<float*>(w.pb + s.n * s.c);
  return w;
}

__global__ void bn_invstd_kernel(const float* var, float* invstd, double eps, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < C) invstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(var[c]) + eps));
}

unsigned channel_blocks(int64_t c) { return static_cast<unsigned>((c + 127) / 128); }

std::atomic<bool> g_gn_cached{true};

// float4s per thread of the register-cached group norm kernels (4 or 8), 0 for the others: the
// cache is on, a group is whole float4s in every channel (hw % 4 == 0), both pointers are
// 16-byte aligned (null counts as aligned) and a group holds at most 8 per thread.
int gn_cached_float4s(const NormShape& s, const float* a, const float* b) {
  if (!g_gn_cached.load(std::memory_order_relaxed) || s.hw % 4 != 0 || !aligned16(a) ||
      !aligned16(b))
    return 0;
  const int64_t len = s.c / s.groups * s.hw;
  return len <= 4 * kThreads * 4 ? 4 : len <= 4 * kThreads * 8 ? 8 : 0;
}
}  // namespace

void groupnorm_set_cached(bool on) {
  g_gn_cached.store(on, std::memory_order_relaxed);
}

// ---- launchers -----------------------------------------------------------------------------------

// dweight and dbias (where given) set to 0 on `stream`: an empty batch's gradients.
static void zero_channels(float* dweight, float* dbias, int64_t c, cudaStream_t stream) {
  for (float* p : {dweight, dbias})
    if (p) KILN_CUDA_CHECK(cudaMemsetAsync(p, 0, static_cast<size_t>(c) * sizeof(float), stream));
}

void batchnorm_fwd_train(const float* x, const float* weight, const float* bias, float* y,
                         float* save_mean, float* save_invstd, float* running_mean,
                         float* running_var, float* num_batches_tracked, double momentum,
                         double eps, const NormShape& s, void* workspace, cudaStream_t stream,
                         bool relu) {
  check_shape(s, "batchnorm_fwd_train");
  KILN_CHECK(s.n > 0, "batchnorm_fwd_train: an empty batch (n=0) has no batch statistics");
  check_workspace(workspace, batchnorm_workspace_bytes(s), "batchnorm_fwd_train");
  const BnWorkspace w = bn_workspace(workspace, s);
  const bool vec = bn_sums_vec(s, x, nullptr, nullptr);
  const BnPersistPlan plan = bn_persistent_plan<false>(s, w, vec && aligned16(y));
  if (plan.grid) {
    BnPersistArgs a{};
    a.x = x, a.out = y, a.w = weight, a.bias = bias, a.save_mean = save_mean,
    a.save_invstd = save_invstd;
    a.running_mean = running_mean, a.running_var = running_var, a.nbt = num_batches_tracked;
    a.momentum = momentum, a.eps = eps, a.relu = relu;
    if (launch_persistent<false>(a, s, w, plan, stream)) return;
  }
  launch_partial<false>(x, nullptr, nullptr, nullptr, s, w, vec, stream);
  bn_finalize_fwd_kernel<<<channel_blocks(s.c), 128, 0, stream>>>(
      x, weight, bias, static_cast<int>(s.c), static_cast<unsigned>(s.hw),
      static_cast<unsigned>(s.n * s.hw), w.splits, w.pa, w.pb, save_mean, save_invstd, w.coef,
      running_mean, running_var, num_batches_tracked, momentum, eps);
  KILN_LAUNCH_CHECK();
  launch_apply<Apply::Norm>(x, nullptr, nullptr, y,
                            {w.coef, nullptr, nullptr, nullptr, static_cast<int>(s.c), 0.f, relu}, s,
                            stream);
}

void batchnorm_fwd_eval(const float* x, const float* weight, const float* bias,
                        const float* running_mean, const float* running_var, float* y, double eps,
                        const NormShape& s, cudaStream_t stream, bool relu) {
  check_shape(s, "batchnorm_fwd_eval");
  if (s.n == 0) return;  // an empty batch: nothing to write (a grid of 0 blocks is an error)
  launch_apply<Apply::Eval>(
      x, nullptr, nullptr, y,
      {running_mean, running_var, weight, bias, static_cast<int>(s.c), static_cast<float>(eps), relu},
      s, stream);
}

void batchnorm_bwd(const float* x, const float* dy, const float* weight, const float* mean,
                   const float* invstd, float* dx, float* dweight, float* dbias, bool train,
                   const NormShape& s, void* workspace, cudaStream_t stream,
                   const float* relu_y) {
  check_shape(s, "batchnorm_bwd");
  if (s.n == 0) {  // an empty batch: the parameter gradients are sums over nothing
    zero_channels(dweight, dbias, s.c, stream);
    return;
  }
  check_workspace(workspace, batchnorm_workspace_bytes(s), "batchnorm_bwd");
  const BnWorkspace w = bn_workspace(workspace, s);
  const bool vec = bn_sums_vec(s, x, dy, relu_y);
  const BnPersistPlan plan = bn_persistent_plan<true>(s, w, vec && dx && aligned16(dx));
  if (plan.grid) {
    BnPersistArgs a{};
    a.x = x, a.dy = dy, a.ym = relu_y, a.out = dx, a.w = weight, a.mean = mean, a.invstd = invstd;
    a.dweight = dweight, a.dbias = dbias, a.train = train;
    if (launch_persistent<true>(a, s, w, plan, stream)) return;
  }
  launch_partial<true>(x, dy, relu_y, mean, s, w, vec, stream);
  bn_finalize_bwd_kernel<<<channel_blocks(s.c), 128, 0, stream>>>(
      weight, invstd, static_cast<int>(s.c), static_cast<unsigned>(s.n * s.hw), w.splits, w.pa,
      w.pb, dweight, dbias, w.coef, train);
  KILN_LAUNCH_CHECK();
  if (dx)
    launch_apply<Apply::Dx>(
        x, dy, relu_y, dx,
        {w.coef, mean, nullptr, nullptr, static_cast<int>(s.c), 0.f, false, train}, s, stream);
}

void batchnorm_set_persistent(bool on) {
  g_bn_persistent = on;
}
bool batchnorm_persistent() {
  return g_bn_persistent;
}
void batchnorm_persistent_limits(int max_blocks, size_t cache_bytes) {
  g_bn_max_blocks = max_blocks;
  g_bn_cache_limit = cache_bytes;
  g_bn_too_large = false;
}
BnPersistentCounts batchnorm_persistent_counts() {
  return BnPersistentCounts{g_bn_launches.load(), g_bn_fallbacks.load()};
}
int64_t batchnorm_persistent_grid(const NormShape& s, bool backward) {
  const BnWorkspace w = bn_workspace(nullptr, s);
  return backward ? bn_persistent_plan<true>(s, w, s.hw % 4 == 0).grid
                  : bn_persistent_plan<false>(s, w, s.hw % 4 == 0).grid;
}

void batchnorm_invstd(const float* var, float* invstd, double eps, int64_t c, cudaStream_t stream) {
  if (c == 0) return;
  bn_invstd_kernel<<<channel_blocks(c), 128, 0, stream>>>(var, invstd, eps, static_cast<int>(c));
  KILN_LAUNCH_CHECK();
}

void groupnorm_fwd(const float* x, const float* weight, const float* bias, float* y,
                   float* save_mean, float* save_invstd, double eps, const NormShape& s,
                   void* workspace, cudaStream_t stream) {
  check_shape(s, "groupnorm_fwd");
  KILN_CHECK(s.groups > 0 && s.c % s.groups == 0,
             "groupnorm_fwd: " << s.c << " channels are not divisible by " << s.groups << " groups");
  if (s.n == 0) return;  // an empty batch: nothing to write
  const unsigned cpg = static_cast<unsigned>(s.c / s.groups), hw = static_cast<unsigned>(s.hw);
  if (groupnorm_splits_planes(s)) {
    check_workspace(workspace, groupnorm_workspace_bytes(s), "groupnorm_fwd");
    const GnWorkspace w = gn_workspace(workspace, s);
    const int C = static_cast<int>(s.c), G = static_cast<int>(s.groups),
              NG = static_cast<int>(s.n * s.groups);
    gn_plane_kernel<false><<<static_cast<unsigned>(s.n * s.c), kThreads, 0, stream>>>(
        x, nullptr, nullptr, C, G, hw, cpg, w.pa, w.pb);
    KILN_LAUNCH_CHECK();
    gn_plane_finalize_fwd_kernel<<<channel_blocks(NG), 128, 0, stream>>>(
        x, w.pa, w.pb, NG, C, G, hw, cpg, eps, save_mean, save_invstd);
    KILN_LAUNCH_CHECK();
    const unsigned total = static_cast<unsigned>(s.numel());
    gn_plane_apply_kernel<<<grid_for(total), kThreads, 0, stream>>>(
        x, nullptr, weight, bias, save_mean, save_invstd, nullptr, y, C, G, hw, cpg, total);
    KILN_LAUNCH_CHECK();
    return;
  }
  const unsigned blocks = static_cast<unsigned>(s.n * s.groups);
  const int nv = gn_cached_float4s(s, x, y);
  if (nv == 4) {
    gn_fwd_cached_kernel<4><<<blocks, kThreads, 0, stream>>>(
        x, weight, bias, y, save_mean, save_invstd, static_cast<int>(s.groups), hw, cpg, eps);
  } else if (nv == 8) {
    gn_fwd_cached_kernel<8><<<blocks, kThreads, 0, stream>>>(
        x, weight, bias, y, save_mean, save_invstd, static_cast<int>(s.groups), hw, cpg, eps);
  } else if ((cpg * hw) % 4 == 0 && aligned16(x) && aligned16(y)) {
    gn_fwd_kernel<true><<<blocks, kThreads, 0, stream>>>(x, weight, bias, y, save_mean, save_invstd,
                                                         static_cast<int>(s.groups), hw, cpg, eps);
  } else {
    gn_fwd_kernel<false><<<blocks, kThreads, 0, stream>>>(x, weight, bias, y, save_mean, save_invstd,
                                                          static_cast<int>(s.groups), hw, cpg, eps);
  }
  KILN_LAUNCH_CHECK();
}

void groupnorm_bwd(const float* x, const float* dy, const float* weight, const float* mean,
                   const float* invstd, float* dx, float* dweight, float* dbias,
                   const NormShape& s, void* workspace, cudaStream_t stream) {
  check_shape(s, "groupnorm_bwd");
  KILN_CHECK(s.groups > 0 && s.c % s.groups == 0,
             "groupnorm_bwd: " << s.c << " channels are not divisible by " << s.groups << " groups");
  if (s.n == 0) {  // an empty batch: the parameter gradients are sums over nothing
    zero_channels(dweight, dbias, s.c, stream);
    return;
  }
  check_workspace(workspace, groupnorm_workspace_bytes(s), "groupnorm_bwd");
  const GnWorkspace w = gn_workspace(workspace, s);
  if (groupnorm_splits_planes(s)) {
    const int C = static_cast<int>(s.c), G = static_cast<int>(s.groups),
              NG = static_cast<int>(s.n * s.groups);
    const unsigned cpg = static_cast<unsigned>(s.c / s.groups), hw = static_cast<unsigned>(s.hw);
    gn_plane_kernel<true><<<static_cast<unsigned>(s.n * s.c), kThreads, 0, stream>>>(
        x, dy, mean, C, G, hw, cpg, w.pa, w.pb);
    KILN_LAUNCH_CHECK();
    gn_plane_finalize_bwd_kernel<<<channel_blocks(NG), 128, 0, stream>>>(
        weight, invstd, w.pa, w.pb, NG, C, G, hw, cpg, w.ws_dw, w.ws_db, w.gcoef);
    KILN_LAUNCH_CHECK();
    if (dx) {
      const unsigned total = static_cast<unsigned>(s.numel());
      gn_plane_apply_kernel<<<grid_for(total), kThreads, 0, stream>>>(
          x, dy, weight, nullptr, mean, invstd, w.gcoef, dx, C, G, hw, cpg, total);
      KILN_LAUNCH_CHECK();
    }
    column_sums(w.ws_dw, dweight, w.ws_db, dbias, s.n, s.c, stream);
    return;
  }
  // The cached kernel reduces each channel with the whole block, as gn_bwd_kernel does from 32
  // values a channel.
  const int nv = s.hw >= 32 && aligned16(dy) ? gn_cached_float4s(s, x, dx) : 0;
  const unsigned blocks = static_cast<unsigned>(s.n * s.groups), hw = static_cast<unsigned>(s.hw),
                 cpg = static_cast<unsigned>(s.c / s.groups);
  const int C = static_cast<int>(s.c), G = static_cast<int>(s.groups);
  if (nv == 4)
    gn_bwd_cached_kernel<4><<<blocks, kThreads, 0, stream>>>(x, dy, weight, mean, invstd, dx,
                                                             w.ws_dw, w.ws_db, C, G, hw, cpg);
  else if (nv == 8)
    gn_bwd_cached_kernel<8><<<blocks, kThreads, 0, stream>>>(x, dy, weight, mean, invstd, dx,
                                                             w.ws_dw, w.ws_db, C, G, hw, cpg);
  else
    gn_bwd_kernel<<<blocks, kThreads, 0, stream>>>(x, dy, weight, mean, invstd, dx, w.ws_dw,
                                                   w.ws_db, C, G, hw, cpg);
  KILN_LAUNCH_CHECK();
  // dweight/dbias: the per-sample terms summed over the samples (the dense bias gradient's
  // column sums: a stripe of samples a thread, then the stripes in order).
  column_sums(w.ws_dw, dweight, w.ws_db, dbias, s.n, s.c, stream);
}

}  // namespace kiln
