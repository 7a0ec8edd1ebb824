// Softmax cross-entropy: one warp per row (K is small: 10 classes), shuffles for max and sum.
// accumulate_sums: one block of 256 threads, strided partial sums in double, then a fixed tree.
#include "engine/cuda_check.h"
#include "kernels/loss/loss.h"
#include "kernels/loss/loss_math.h"

namespace kiln {

static __global__ void softmax_xent_kernel(const float* __restrict__ logits,
                                           const int32_t* __restrict__ labels, int64_t N, int64_t K,
                                           float grad_scale, float* __restrict__ dlogits,
                                           float* __restrict__ loss, float* __restrict__ correct) {
  int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* z = logits + row * K;
  // arg-max by the reference's rule (loss_math.h: first NaN, else first maximum). Lanes without
  // an element keep (-inf, INT_MAX), which loses to every real element. K < 2^31 (the layer's
  // class count), so int indices are exact.
  float m = -INFINITY;
  int arg = 0x7fffffff;
  for (int64_t k = lane; k < K; k += 32) {
    float v = z[k];
    if (argmax_better<float>(v, k, m, arg)) { m = v; arg = (int)k; }
  }
  for (int off = 16; off > 0; off >>= 1) {
    float om = __shfl_xor_sync(0xffffffffu, m, off);
    int oa = __shfl_xor_sync(0xffffffffu, arg, off);
    if (argmax_better<float>(om, oa, m, arg)) { m = om; arg = oa; }
  }
  if (isinf(m)) m = NAN;  // as the reference: a +inf logit or an all -inf row is NaN (torch)
  // As the CPU reference: the denominator is 1 + s1, s1 summing every k but the arg-max, so
  // log1pf(s1) and -s1 / (1 + s1) keep a confident row's small loss and gradient precise.
  float s1 = 0.f;
  for (int64_t k = lane; k < K; k += 32)
    if (k != arg) s1 += expf(z[k] - m);
  for (int off = 16; off > 0; off >>= 1) s1 += __shfl_xor_sync(0xffffffffu, s1, off);
  int y = labels[row];
  if (lane == 0) {
    loss[row] = log1pf(s1) - (z[y] - m);
    correct[row] = arg == y ? 1.f : 0.f;
  }
  if (dlogits) {
    const float denom = 1.f + s1;
    for (int64_t k = lane; k < K; k += 32) {
      float d = k != y     ? expf(z[k] - m) / denom
                : k == arg ? -s1 / denom
                           : expf(z[k] - m) / denom - 1.f;
      dlogits[row * K + k] = d * grad_scale;
    }
  }
}

void softmax_xent(const float* logits, const int32_t* labels, int64_t N, int64_t K, float grad_scale,
                  float* dlogits, float* loss, float* correct, cudaStream_t stream) {
  if (N == 0) return;
  softmax_xent_kernel<<<ceil_div(N, 8), 256, 0, stream>>>(logits, labels, N, K, grad_scale, dlogits,
                                                          loss, correct);
  KILN_LAUNCH_CHECK();
}

static __global__ void accumulate_sums_kernel(const float* __restrict__ a, const float* __restrict__ b,
                                              int64_t n, double* __restrict__ acc) {
  __shared__ double sa[256], sb[256];
  double pa = 0, pb = 0;
  for (int64_t i = threadIdx.x; i < n; i += 256) {
    pa += a[i];
    pb += b[i];
  }
  sa[threadIdx.x] = pa;
  sb[threadIdx.x] = pb;
  __syncthreads();
  for (int w = 128; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      sa[threadIdx.x] += sa[threadIdx.x + w];
      sb[threadIdx.x] += sb[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    acc[0] += sa[0];
    acc[1] += sb[0];
    acc[2] += (double)n;
  }
}

void accumulate_sums(const float* a, const float* b, int64_t n, double* acc, cudaStream_t stream) {
  accumulate_sums_kernel<<<1, 256, 0, stream>>>(a, b, n, acc);
  KILN_LAUNCH_CHECK();
}

}  // namespace kiln
