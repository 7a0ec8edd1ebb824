// CUDA pooling: one thread per output (forward) or per input element (backward, gathering from
// the covering windows: deterministic, writes every dx element, no atomics). The window logic
// and tie rule come from pool_window.h, shared with the CPU reference.
#include <atomic>

#include "engine/cuda_check.h"
#include "kernels/pool/pool.h"
#include "kernels/pool/pool_window.h"

namespace kiln {
namespace {

using pool_detail::covering;
using pool_detail::window_max;

constexpr int kThreads = 256;

// The shape in the kernels' index type I: int where every index of the call fits (use_int32),
// else int64_t. A GPU divides 32-bit integers in a few instructions and 64-bit ones in dozens;
// each thread divides several times (its position, the covering windows).
template <typename I>
struct PoolIdx {
  I h, w, kh, kw, stride, pad, P, Q;
  explicit PoolIdx(const PoolShape& s)
      : h(I(s.h)),
        w(I(s.w)),
        kh(I(s.kh)),
        kw(I(s.kw)),
        stride(I(s.stride)),
        pad(I(s.pad)),
        P(I(s.p())),
        Q(I(s.q())) {}
};

template <typename I>
__global__ void maxpool_fwd_kernel(PoolIdx<I> s, I total, const float* __restrict__ x,
                                   float* __restrict__ y, int32_t* __restrict__ argmax) {
  const I o = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x);
  if (o >= total) return;
  const I q = o % s.Q, p = (o / s.Q) % s.P, plane = o / (s.P * s.Q);
  y[o] = window_max(s, x + plane * s.h * s.w, p, q, &argmax[o]);
}

template <typename I>
__global__ void maxpool_bwd_kernel(PoolIdx<I> s, I total, const float* __restrict__ dy,
                                   const int32_t* __restrict__ argmax, float* __restrict__ dx) {
  const I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x);
  if (i >= total) return;
  const I w = i % s.w, h = (i / s.w) % s.h, plane = i / (s.h * s.w);
  I p0, p1, q0, q1;
  covering(h, s.kh, s.stride, s.pad, s.P, &p0, &p1);
  covering(w, s.kw, s.stride, s.pad, s.Q, &q0, &q1);
  const int32_t me = static_cast<int32_t>(h * s.w + w);
  float acc = 0.f;
  for (I p = p0; p < p1; ++p)
    for (I q = q0; q < q1; ++q) {
      const I o = (plane * s.P + p) * s.Q + q;
      if (argmax[o] == me) acc += dy[o];
    }
  dx[i] = acc;
}

template <typename I>
__global__ void avgpool_fwd_kernel(PoolIdx<I> s, I total, const float* __restrict__ x,
                                   float* __restrict__ y) {
  const I o = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x);
  if (o >= total) return;
  const I q = o % s.Q, p = (o / s.Q) % s.P, plane = o / (s.P * s.Q);
  const float* xp = x + plane * s.h * s.w;
  float acc = 0.f;
  for (I r = 0; r < s.kh; ++r) {
    const I hi = p * s.stride - s.pad + r;
    if (hi < 0 || hi >= s.h) continue;
    for (I t = 0; t < s.kw; ++t) {
      const I wi = q * s.stride - s.pad + t;
      if (wi >= 0 && wi < s.w) acc += xp[hi * s.w + wi];
    }
  }
  y[o] = acc * (1.f / float(s.kh * s.kw));
}

template <typename I>
__global__ void avgpool_bwd_kernel(PoolIdx<I> s, I total, const float* __restrict__ dy,
                                   float* __restrict__ dx) {
  const I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x);
  if (i >= total) return;
  const I w = i % s.w, h = (i / s.w) % s.h, plane = i / (s.h * s.w);
  I p0, p1, q0, q1;
  covering(h, s.kh, s.stride, s.pad, s.P, &p0, &p1);
  covering(w, s.kw, s.stride, s.pad, s.Q, &q0, &q1);
  float acc = 0.f;
  for (I p = p0; p < p1; ++p)
    for (I q = q0; q < q1; ++q) acc += dy[(plane * s.P + p) * s.Q + q];
  dx[i] = acc * (1.f / float(s.kh * s.kw));
}

std::atomic<bool> g_index64{false};

// 32-bit indices when both tensors (and the threads past their end) stay below 2^31; windows
// step at most kh/kw past a row and padding stays under a window, so a plane's indices do too.
// The stride is checked as well: a layer accepts any positive one (a stride past the padded
// plane gives one output row), and narrowed to int it would turn negative or zero.
bool use_int32(const PoolShape& s) {
  constexpr int64_t kLimit = (int64_t(1) << 31) - kThreads - 1;
  return !g_index64.load(std::memory_order_relaxed) && s.x_numel() < kLimit &&
         s.y_numel() < kLimit && (s.h + 2 * s.pad) * (s.w + 2 * s.pad) < kLimit &&
         s.stride < kLimit;
}

// One warp per plane; lanes stride over the plane, then a fixed shuffle tree.
__global__ void gap_fwd_kernel(int64_t planes, int64_t hw, const float* __restrict__ x,
                               float* __restrict__ y) {
  const int64_t plane = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (plane >= planes) return;  // whole warps leave together (blockDim is a multiple of 32)
  const float* xp = x + plane * hw;
  // In double, as the reference: a lane's float sum drifted with the plane (2.6e-4 relative on
  // a 1024 x 1024 plane of 0.1; torch's tree sum 1.5e-7).
  double s = 0;
  for (int64_t j = lane; j < hw; j += 32) s += xp[j];
  for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) y[plane] = float(s / double(hw));
}

template <typename I>  // int where planes * hw stays below 2^31 (as for the kernels above)
__global__ void gap_bwd_kernel(I total, I hw, const float* __restrict__ dy,
                               float* __restrict__ dx) {
  const I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x);
  if (i >= total) return;
  dx[i] = dy[i / hw] / float(hw);
}

unsigned blocks_for(int64_t n) { return ceil_div(n, kThreads); }

// launch(PoolIdx<I>, I total) with I = int where use_int32(s), else int64_t.
template <class F>
void with_index(const PoolShape& s, int64_t total, F launch) {
  if (use_int32(s))
    launch(PoolIdx<int>(s), static_cast<int>(total));
  else
    launch(PoolIdx<int64_t>(s), total);
  KILN_LAUNCH_CHECK();
}

}  // namespace

void maxpool2d_fwd(const PoolShape& s, const float* x, float* y, int32_t* argmax,
                   cudaStream_t stream) {
  check_pool_shape(s, "maxpool2d_fwd");
  const int64_t total = s.y_numel();
  if (total == 0) return;
  with_index(s, total, [&](auto idx, auto n) {
    maxpool_fwd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(idx, n, x, y, argmax);
  });
}

void maxpool2d_bwd(const PoolShape& s, const float* dy, const int32_t* argmax, float* dx,
                   cudaStream_t stream) {
  check_pool_shape(s, "maxpool2d_bwd");
  const int64_t total = s.x_numel();
  if (total == 0) return;
  with_index(s, total, [&](auto idx, auto n) {
    maxpool_bwd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(idx, n, dy, argmax, dx);
  });
}

void avgpool2d_fwd(const PoolShape& s, const float* x, float* y, cudaStream_t stream) {
  check_pool_shape(s, "avgpool2d_fwd");
  const int64_t total = s.y_numel();
  if (total == 0) return;
  with_index(s, total, [&](auto idx, auto n) {
    avgpool_fwd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(idx, n, x, y);
  });
}

void avgpool2d_bwd(const PoolShape& s, const float* dy, float* dx, cudaStream_t stream) {
  check_pool_shape(s, "avgpool2d_bwd");
  const int64_t total = s.x_numel();
  if (total == 0) return;
  with_index(s, total, [&](auto idx, auto n) {
    avgpool_bwd_kernel<<<blocks_for(n), kThreads, 0, stream>>>(idx, n, dy, dx);
  });
}

void pool_set_index64(bool on) {
  g_index64.store(on, std::memory_order_relaxed);
}
int pool_index_bits(const PoolShape& s) {
  return use_int32(s) ? 32 : 64;
}

void global_avgpool_fwd(int64_t planes, int64_t hw, const float* x, float* y, cudaStream_t stream) {
  if (planes == 0) return;
  gap_fwd_kernel<<<blocks_for(planes * 32), kThreads, 0, stream>>>(planes, hw, x, y);
  KILN_LAUNCH_CHECK();
}

void global_avgpool_bwd(int64_t planes, int64_t hw, const float* dy, float* dx,
                        cudaStream_t stream) {
  if (planes * hw == 0) return;
  const int64_t total = planes * hw;
  if (!g_index64.load(std::memory_order_relaxed) && total < (int64_t(1) << 31) - kThreads - 1)
    gap_bwd_kernel<<<blocks_for(total), kThreads, 0, stream>>>(static_cast<int>(total),
                                                               static_cast<int>(hw), dy, dx);
  else
    gap_bwd_kernel<<<blocks_for(total), kThreads, 0, stream>>>(total, hw, dy, dx);
  KILN_LAUNCH_CHECK();
}

}  // namespace kiln
