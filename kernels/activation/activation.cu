// Element-wise activations, grid-stride, templated on the activation so the switch is
// resolved at compile time.
#include "engine/cuda_check.h"
#include "kernels/activation/activation.h"
#include "kernels/activation/relu_rule.h"

namespace kiln {

template <Act A>
static __global__ void act_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = x[i];
    if (A == Act::ReLU) y[i] = relu_fwd(v);
    if (A == Act::Sigmoid) y[i] = 1.f / (1.f + expf(-v));
    if (A == Act::Tanh) y[i] = tanhf(v);
  }
}

template <Act A>
static __global__ void act_bwd_kernel(const float* __restrict__ y, const float* __restrict__ dy,
                                      float* __restrict__ dx, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = y[i], g = dy[i];
    if (A == Act::ReLU) dx[i] = relu_bwd(v, g);
    if (A == Act::Sigmoid) dx[i] = g * v * (1.f - v);
    if (A == Act::Tanh) dx[i] = g * (1.f - v * v);
  }
}

static unsigned grid_for(int64_t n) { return std::min<unsigned>(ceil_div(n, 256), 4096u); }

void activation_fwd(Act a, const float* x, float* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  switch (a) {
    case Act::ReLU: act_fwd_kernel<Act::ReLU><<<grid_for(n), 256, 0, s>>>(x, y, n); break;
    case Act::Sigmoid: act_fwd_kernel<Act::Sigmoid><<<grid_for(n), 256, 0, s>>>(x, y, n); break;
    case Act::Tanh: act_fwd_kernel<Act::Tanh><<<grid_for(n), 256, 0, s>>>(x, y, n); break;
  }
  KILN_LAUNCH_CHECK();
}

void activation_bwd(Act a, const float* y, const float* dy, float* dx, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  switch (a) {
    case Act::ReLU: act_bwd_kernel<Act::ReLU><<<grid_for(n), 256, 0, s>>>(y, dy, dx, n); break;
    case Act::Sigmoid: act_bwd_kernel<Act::Sigmoid><<<grid_for(n), 256, 0, s>>>(y, dy, dx, n); break;
    case Act::Tanh: act_bwd_kernel<Act::Tanh><<<grid_for(n), 256, 0, s>>>(y, dy, dx, n); break;
  }
  KILN_LAUNCH_CHECK();
}

}  // namespace kiln
