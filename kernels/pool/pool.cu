// CUDA pooling: one thread per output (forward) or per input element (backward, gathering from
// the covering windows: deterministic, writes every dx element, no atomics). The window logic
// and tie rule come from pool_window.h, shared with the CPU reference.
#include "engine/cuda_check.h"
#include "kernels/pool/pool.h"
#include "kernels/pool/pool_window.h"

namespace kiln {
namespace {

using pool_detail::covering;
using pool_detail::window_max;

constexpr int kThreads = 256;

__global__ void maxpool_fwd_kernel(PoolShape s, int64_t total, const float* __restrict__ x,
                                   float* __restrict__ y, int32_t* __restrict__ argmax) {
  const int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (o >= total) return;
  const int64_t P = s.p(), Q = s.q(), q = o % Q, p = (o / Q) % P, plane = o / (P * Q);
  y[o] = window_max(s, x + plane * s.h * s.w, p, q, &argmax[o]);
}

__global__ void maxpool_bwd_kernel(PoolShape s, int64_t total, const float* __restrict__ dy,
                                   const int32_t* __restrict__ argmax, float* __restrict__ dx) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const int64_t P = s.p(), Q = s.q(), w = i % s.w, h = (i / s.w) % s.h, plane = i / (s.h * s.w);
  int64_t p0, p1, q0, q1;
  covering(h, s.kh, s.stride, s.pad, P, &p0, &p1);
  covering(w, s.kw, s.stride, s.pad, Q, &q0, &q1);
  const int32_t me = static_cast<int32_t>(h * s.w + w);
  float acc = 0.f;
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t o = (plane * P + p) * Q + q;
      if (argmax[o] == me) acc += dy[o];
    }
  dx[i] = acc;
}

__global__ void avgpool_fwd_kernel(PoolShape s, int64_t total, const float* __restrict__ x,
                                   float* __restrict__ y) {
  const int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (o >= total) return;
  const int64_t P = s.p(), Q = s.q(), q = o % Q, p = (o / Q) % P, plane = o / (P * Q);
  const float* xp = x + plane * s.h * s.w;
  float acc = 0.f;
  for (int64_t r = 0; r < s.kh; ++r) {
    const int64_t hi = p * s.stride - s.pad + r;
    if (hi < 0 || hi >= s.h) continue;
    for (int64_t t = 0; t < s.kw; ++t) {
      const int64_t wi = q * s.stride - s.pad + t;
      if (wi >= 0 && wi < s.w) acc += xp[hi * s.w + wi];
    }
  }
  y[o] = acc * (1.f / float(s.kh * s.kw));
}

__global__ void avgpool_bwd_kernel(PoolShape s, int64_t total, const float* __restrict__ dy,
                                   float* __restrict__ dx) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const int64_t P = s.p(), Q = s.q(), w = i % s.w, h = (i / s.w) % s.h, plane = i / (s.h * s.w);
  int64_t p0, p1, q0, q1;
  covering(h, s.kh, s.stride, s.pad, P, &p0, &p1);
  covering(w, s.kw, s.stride, s.pad, Q, &q0, &q1);
  float acc = 0.f;
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t q = q0; q < q1; ++q) acc += dy[(plane * P + p) * Q + q];
  dx[i] = acc * (1.f / float(s.kh * s.kw));
}

// One warp per plane; lanes stride over the plane, then a fixed shuffle tree.
__global__ void gap_fwd_kernel(int64_t planes, int64_t hw, const float* __restrict__ x,
                               float* __restrict__ y) {
  const int64_t plane = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (plane >= planes) return;  // whole warps leave together (blockDim is a multiple of 32)
  const float* xp = x + plane * hw;
  float s = 0.f;
  for (int64_t j = lane; j < hw; j += 32) s += xp[j];
  for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) y[plane] = s / float(hw);
}

__global__ void gap_bwd_kernel(int64_t planes, int64_t hw, const float* __restrict__ dy,
                               float* __restrict__ dx) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= planes * hw) return;
  dx[i] = dy[i / hw] / float(hw);
}

unsigned blocks_for(int64_t n) { return ceil_div(n, kThreads); }

}  // namespace

void maxpool2d_fwd(const PoolShape& s, const float* x, float* y, int32_t* argmax,
                   cudaStream_t stream) {
  const int64_t total = s.y_numel();
  if (total == 0) return;
  maxpool_fwd_kernel<<<blocks_for(total), kThreads, 0, stream>>>(s, total, x, y, argmax);
  KILN_LAUNCH_CHECK();
}

void maxpool2d_bwd(const PoolShape& s, const float* dy, const int32_t* argmax, float* dx,
                   cudaStream_t stream) {
  const int64_t total = s.x_numel();
  if (total == 0) return;
  maxpool_bwd_kernel<<<blocks_for(total), kThreads, 0, stream>>>(s, total, dy, argmax, dx);
  KILN_LAUNCH_CHECK();
}

void avgpool2d_fwd(const PoolShape& s, const float* x, float* y, cudaStream_t stream) {
  const int64_t total = s.y_numel();
  if (total == 0) return;
  avgpool_fwd_kernel<<<blocks_for(total), kThreads, 0, stream>>>(s, total, x, y);
  KILN_LAUNCH_CHECK();
}

void avgpool2d_bwd(const PoolShape& s, const float* dy, float* dx, cudaStream_t stream) {
  const int64_t total = s.x_numel();
  if (total == 0) return;
  avgpool_bwd_kernel<<<blocks_for(total), kThreads, 0, stream>>>(s, total, dy, dx);
  KILN_LAUNCH_CHECK();
}

void global_avgpool_fwd(int64_t planes, int64_t hw, const float* x, float* y, cudaStream_t stream) {
  if (planes == 0) return;
  gap_fwd_kernel<<<blocks_for(planes * 32), kThreads, 0, stream>>>(planes, hw, x, y);
  KILN_LAUNCH_CHECK();
}

void global_avgpool_bwd(int64_t planes, int64_t hw, const float* dy, float* dx,
                        cudaStream_t stream) {
  if (planes * hw == 0) return;
  gap_bwd_kernel<<<blocks_for(planes * hw), kThreads, 0, stream>>>(planes, hw, dy, dx);
  KILN_LAUNCH_CHECK();
}

}  // namespace kiln
