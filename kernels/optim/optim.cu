// Fused optimizer step: two launches per step whatever the number of tensors.
//   Pass 1 (optim_stats_kernel): one block per chunk (a chunk lies inside one tensor) sums
//   g_eff^2, w^2, |w| and counts non-finite g_eff, writing one partial (two double2) to its own
//   slot. The sums are in double, as in the CPU reference: a finite |g| above ~1.8e19 squares
//   past FLT_MAX, and a float sum turned such a finite gradient into an infinite norm: clip
//   factor c/inf = 0, a zeroed update and grad_norm = inf where the reference clips and applies
//   it. Converting the loaded floats to double costs ALU only (F2F + DFMA, far below the rate at
//   which HBM delivers g and w); each is still read once, so the pass stays memory-bound.
//   The last block to finish (threadfence + atomic ticket, reset by that block) reduces the
//   partials in a fixed order (one warp per tensor, lanes striding over the tensor's chunks, a
//   fixed butterfly, then warps in index order) into per-tensor norms, the global norm, the
//   penalty values, the per-tensor clip factors and the skip flag: deterministic, no float
//   atomics. Pass 2 (optim_update_kernel): one block per chunk applies clip, decay and update,
//   float4-vectorised, reading the clip factor and the skip flag from device memory.
// lr, momentum and the step count are kernel arguments, so a step never waits for the host;
// optim_step_device reads them from device memory instead (CUDA-graph replay).
#include "engine/cuda_check.h"
#include "kernels/optim/optim.h"
#include "kernels/optim/optim_math.h"

namespace kiln {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

struct WsPtrs {
  double2* partials;  // per chunk: [2k] = (sum g^2, sum w^2), [2k+1] = (sum |w|, non-finite count)
  float* stats;  // G, l1_penalty, l2_penalty, ||g||_t (T), ||w||_t (T)
  int* skip;
  int* sticky;
  unsigned* ticket;
  float* factors;
};

WsPtrs ws_ptrs(void* ws, int nchunks, int ntensors) {
  OptimWorkspaceLayout l = optim_workspace_layout(nchunks, ntensors);
  char* b = static_cast<char*>(ws);
  return {reinterpret_cast<double2*>(b + l.partials), reinterpret_cast<float*>(b + l.stats),
          reinterpret_cast<int*>(b + l.skip), reinterpret_cast<int*>(b + l.sticky),
          reinterpret_cast<unsigned*>(b + l.ticket), reinterpret_cast<float*>(b + l.factors)};
}

__device__ __forceinline__ void accumulate(float w, float g, int pen, float l1, float l2, double& sg, double& sw,
                                           double& sa, int& bad) {
  float ge = optim_penalised_grad(g, w, pen, l1, l2);  // g_eff in float, as pass 2 and the reference form it
  bad |= !isfinite(ge);
  const double gd = ge, wd = w;  // square in double: finite float g never gives an infinite sum
  sg = fma(gd, gd, sg);
  sw = fma(wd, wd, sw);
  sa += fabs(wd);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

static __global__ void __launch_bounds__(kThreads)
    optim_stats_kernel(const float* __restrict__ w, const float* __restrict__ g, const OptimChunk* __restrict__ chunks,
                       const OptimTensor* __restrict__ tensors, int ntensors, float l1, float l2, ClipMode clip,
                       float clip_value, WsPtrs ws) {
  __shared__ double dred[4][kWarps];
  __shared__ bool is_last;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // ---- this block's chunk
  const OptimChunk c = chunks[blockIdx.x];
  const int pen = tensors[c.tensor].penalize;
  double sg = 0, sw = 0, sa = 0;
  int bad = 0;
  const int nvec = c.len / 4;  // c.begin is a multiple of 4: tensors are 64-byte aligned
  const float4* w4 = reinterpret_cast<const float4*>(w + c.begin);
  const float4* g4 = reinterpret_cast<const float4*>(g + c.begin);
  for (int i = tid; i < nvec; i += kThreads) {
    float4 a = w4[i], b = g4[i];
    accumulate(a.x, b.x, pen, l1, l2, sg, sw, sa, bad);
    accumulate(a.y, b.y, pen, l1, l2, sg, sw, sa, bad);
    accumulate(a.z, b.z, pen, l1, l2, sg, sw, sa, bad);
    accumulate(a.w, b.w, pen, l1, l2, sg, sw, sa, bad);
  }
  for (int i = nvec * 4 + tid; i < c.len; i += kThreads)
    accumulate(w[c.begin + i], g[c.begin + i], pen, l1, l2, sg, sw, sa, bad);
  sg = warp_sum(sg);
  sw = warp_sum(sw);
  sa = warp_sum(sa);
  bad = __any_sync(0xffffffffu, bad);
  if (lane == 0) {
    dred[0][warp] = sg;
    dred[1][warp] = sw;
    dred[2][warp] = sa;
    dred[3][warp] = static_cast<double>(bad);
  }
  __syncthreads();
  if (tid == 0) {
    double2 p = make_double2(0, 0), q = make_double2(0, 0);
    for (int k = 0; k < kWarps; ++k) {
      p.x += dred[0][k];
      p.y += dred[1][k];
      q.x += dred[2][k];
      q.y += dred[3][k];
    }
    ws.partials[2 * static_cast<int64_t>(blockIdx.x)] = p;
    ws.partials[2 * static_cast<int64_t>(blockIdx.x) + 1] = q;
    __threadfence();  // the partial is visible device-wide before the ticket is taken
    unsigned t = atomicAdd(ws.ticket, 1u);
    is_last = (t == gridDim.x - 1);
  }
  __syncthreads();
  if (!is_last) return;

  // ---- the last block: per-tensor sums, one warp per tensor, lanes over its chunks. dred is
  // reused below; every thread passed the __syncthreads() after tid 0 last read it.
  __threadfence();
  double tot_g = 0, tot_l1 = 0, tot_l2 = 0, tot_bad = 0;  // meaningful on lane 0
  for (int t = warp; t < ntensors; t += kWarps) {
    const OptimTensor ts = tensors[t];
    double a = 0, b = 0, s = 0, n = 0;
    for (int k = ts.chunk_begin + lane; k < ts.chunk_end; k += 32) {
      const double2 p = __ldcg(&ws.partials[2 * static_cast<int64_t>(k)]);  // other blocks' writes: from L2
      const double2 q = __ldcg(&ws.partials[2 * static_cast<int64_t>(k) + 1]);
      a += p.x;
      b += p.y;
      s += q.x;
      n += q.y;
    }
    a = warp_sum(a);
    b = warp_sum(b);
    s = warp_sum(s);
    n = warp_sum(n);
    if (lane == 0) {
      ws.stats[3 + t] = static_cast<float>(sqrt(a));
      ws.stats[3 + ntensors + t] = static_cast<float>(sqrt(b));
      ws.factors[t] = static_cast<float>(optim_clip_factor(clip, clip_value, a, 0.0));
      tot_g += a;
      tot_bad += n;
      if (ts.penalize) {
        tot_l1 += s;
        tot_l2 += b;
      }
    }
  }
  if (lane == 0) {
    dred[0][warp] = tot_g;
    dred[1][warp] = tot_l1;
    dred[2][warp] = tot_l2;
    dred[3][warp] = tot_bad;
  }
  __syncthreads();
  __shared__ double global_norm;
  if (tid == 0) {
    double G = 0, L1 = 0, L2 = 0, B = 0;
    for (int k = 0; k < kWarps; ++k) {
      G += dred[0][k];
      L1 += dred[1][k];
      L2 += dred[2][k];
      B += dred[3][k];
    }
    G = sqrt(G);
    global_norm = G;
    ws.stats[0] = static_cast<float>(G);
    ws.stats[1] = static_cast<float>(double(l1) * L1);
    ws.stats[2] = static_cast<float>(double(l2) * L2);
    *ws.skip = B > 0 ? 1 : 0;
    *ws.ticket = 0u;  // ready for the next step
  }
  __syncthreads();
  if (clip == ClipMode::GlobalNorm)
    for (int t = tid; t < ntensors; t += kThreads)
      ws.factors[t] = static_cast<float>(optim_clip_factor(clip, clip_value, 0.0, global_norm));
}

__device__ __forceinline__ void update_one(float& w, float g, float* s1, float* s2, int pen, int decay, float factor,
                                           const OptimHyper& h, const OptimScalars& sc) {
  float ge = optim_penalised_grad(g, w, pen, h.l1, h.l2);
  ge = optim_clip(ge, h.clip, h.clip_value, factor);
  optim_update(w, ge, s1, s2, decay, h, sc);
}

static __global__ void __launch_bounds__(kThreads)
    optim_update_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ s1,
                        float* __restrict__ s2, const OptimChunk* __restrict__ chunks,
                        const OptimTensor* __restrict__ tensors, const float* __restrict__ factors,
                        const int* __restrict__ skip, int* __restrict__ sticky, OptimHyper h,
                        OptimScalars sc, int use1, int use2,
                        const OptimStepArgs* __restrict__ dev) {
  if (dev) {  // CUDA-graph path: this step's values were written to device memory
    h = dev->h;
    sc = dev->sc;
    optim_uses_state(h, s1 != nullptr, s2 != nullptr, use1, use2);
  }
  if (*skip) {  // the first skipped step since the last reset names itself
    if (blockIdx.x == 0 && threadIdx.x == 0 && *sticky == 0) *sticky = optim_sticky_step(h.step);
    return;
  }
  const OptimChunk c = chunks[blockIdx.x];
  const OptimTensor ts = tensors[c.tensor];
  const float f = factors[c.tensor];
  const int nvec = c.len / 4;
  float4* w4 = reinterpret_cast<float4*>(w + c.begin);
  const float4* g4 = reinterpret_cast<const float4*>(g + c.begin);
  float4* a4 = use1 ? reinterpret_cast<float4*>(s1 + c.begin) : nullptr;
  float4* b4 = use2 ? reinterpret_cast<float4*>(s2 + c.begin) : nullptr;
  for (int i = threadIdx.x; i < nvec; i += kThreads) {
    float4 wv = w4[i], gv = g4[i];
    float4 av = use1 ? a4[i] : make_float4(0, 0, 0, 0);
    float4 bv = use2 ? b4[i] : make_float4(0, 0, 0, 0);
    update_one(wv.x, gv.x, &av.x, &bv.x, ts.penalize, ts.decay, f, h, sc);
    update_one(wv.y, gv.y, &av.y, &bv.y, ts.penalize, ts.decay, f, h, sc);
    update_one(wv.z, gv.z, &av.z, &bv.z, ts.penalize, ts.decay, f, h, sc);
    update_one(wv.w, gv.w, &av.w, &bv.w, ts.penalize, ts.decay, f, h, sc);
    w4[i] = wv;
    if (use1) a4[i] = av;
    if (use2) b4[i] = bv;
  }
  for (int i = nvec * 4 + threadIdx.x; i < c.len; i += kThreads) {
    const int64_t k = c.begin + i;
    float wv = w[k], av = use1 ? s1[k] : 0.0f, bv = use2 ? s2[k] : 0.0f;
    update_one(wv, g[k], &av, &bv, ts.penalize, ts.decay, f, h, sc);
    w[k] = wv;
    if (use1) s1[k] = av;
    if (use2) s2[k] = bv;
  }
}

}  // namespace

namespace {
// Both public launchers: dev == nullptr takes lr/momentum/step from h (kernel arguments).
void launch_step(float* w, const float* g, float* s1, float* s2, const OptimPlan& plan, const OptimHyper& h,
                 const OptimStepArgs* dev, cudaStream_t stream) {
  if (plan.nchunks == 0) return;  // no parameters: nothing to launch
  WsPtrs ws = ws_ptrs(plan.workspace, plan.nchunks, plan.ntensors);
  optim_stats_kernel<<<plan.nchunks, kThreads, 0, stream>>>(w, g, plan.chunks, plan.tensors, plan.ntensors, h.l1,
                                                            h.l2, h.clip, h.clip_value, ws);
  KILN_LAUNCH_CHECK();
  optim_count_launch();
  int use1 = 0, use2 = 0;
  optim_uses_state(h, s1 != nullptr, s2 != nullptr, use1, use2);
  optim_update_kernel<<<plan.nchunks, kThreads, 0, stream>>>(
      w, g, s1, s2, plan.chunks, plan.tensors, ws.factors, ws.skip, ws.sticky, h, optim_scalars(h),
      use1, use2, dev);
  KILN_LAUNCH_CHECK();
  optim_count_launch();
}
}  // namespace

void optim_step(float* w, const float* g, float* s1, float* s2, const OptimPlan& plan, const OptimHyper& h,
                cudaStream_t stream) {
  launch_step(w, g, s1, s2, plan, h, nullptr, stream);
}

void optim_step_device(float* w, const float* g, float* s1, float* s2, const OptimPlan& plan,
                       const OptimHyper& fixed, const OptimStepArgs* dev, cudaStream_t stream) {
  KILN_CHECK(dev != nullptr, "optim_step_device: no device argument block");
  launch_step(w, g, s1, s2, plan, fixed, dev, stream);
}

}  // namespace kiln
