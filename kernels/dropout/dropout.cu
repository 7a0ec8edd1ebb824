// CUDA dropout: one pass that reads x and writes y, the keep bit recomputed from the counter
// hash (hash.h) for every element, so no mask is stored and backward is the same kernel on dy.
// float4 loads/stores when both pointers are 16-byte aligned; a scalar loop otherwise.
#include <cstdint>

#include "engine/cuda_check.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"

namespace kiln {

namespace {
constexpr int kThreads = 256;

// Where the key comes from under CUDA graphs (DropoutParams::step_ptr); step == null: the key
// argument as computed on the host.
struct KeySource {
  const uint64_t* step;
  uint64_t seed, salt;
};

__device__ __forceinline__ uint64_t resolve_key(uint64_t key, const KeySource& ks) {
  return ks.step ? dropout_key(ks.seed, *ks.step, ks.salt) : key;
}

template <bool CHANNEL>
__device__ __forceinline__ float drop_one(float v, uint64_t i, uint64_t hw, uint64_t key,
                                          uint32_t thr, float scale) {
  const uint64_t ctr = CHANNEL ? i / hw : i;
  return v * (dropout_keep(key, ctr, thr) ? scale : 0.0f);  // NaN/inf dropped stay NaN (torch)
}

template <bool CHANNEL>
__global__ void __launch_bounds__(kThreads)
    dropout_vec_kernel(const float* __restrict__ in, float* __restrict__ out, uint64_t n,
                       uint64_t hw, uint64_t key, uint32_t thr, float scale, KeySource ks) {
  key = resolve_key(key, ks);
  const uint64_t n4 = n / 4;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * kThreads;
  for (uint64_t q = blockIdx.x * static_cast<uint64_t>(kThreads) + threadIdx.x; q < n4; q += stride) {
    const float4 v = reinterpret_cast<const float4*>(in)[q];
    const uint64_t i = 4 * q;
    float4 r;
    if (CHANNEL && hw % 4 == 0) {  // the four elements lie in one plane: one draw
      const float f = dropout_keep(key, i / hw, thr) ? scale : 0.f;
      r = make_float4(v.x * f, v.y * f, v.z * f, v.w * f);
    } else {
      r.x = drop_one<CHANNEL>(v.x, i, hw, key, thr, scale);
      r.y = drop_one<CHANNEL>(v.y, i + 1, hw, key, thr, scale);
      r.z = drop_one<CHANNEL>(v.z, i + 2, hw, key, thr, scale);
      r.w = drop_one<CHANNEL>(v.w, i + 3, hw, key, thr, scale);
    }
    reinterpret_cast<float4*>(out)[q] = r;
  }
  // the n % 4 tail
  const uint64_t t = 4 * n4 + blockIdx.x * static_cast<uint64_t>(kThreads) + threadIdx.x;
  if (t < n) out[t] = drop_one<CHANNEL>(in[t], t, hw, key, thr, scale);
}

template <bool CHANNEL>
__global__ void __launch_bounds__(kThreads)
    dropout_scalar_kernel(const float* __restrict__ in, float* __restrict__ out, uint64_t n,
                          uint64_t hw, uint64_t key, uint32_t thr, float scale, KeySource ks) {
  key = resolve_key(key, ks);
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * kThreads;
  for (uint64_t i = blockIdx.x * static_cast<uint64_t>(kThreads) + threadIdx.x; i < n; i += stride)
    out[i] = drop_one<CHANNEL>(in[i], i, hw, key, thr, scale);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <bool CHANNEL>
void launch(const float* in, float* out, const DropoutParams& p, const DropoutShape& s,
            cudaStream_t stream) {
  const uint64_t n = static_cast<uint64_t>(s.numel());
  const uint64_t hw = static_cast<uint64_t>(s.hw);
  if (n == 0) return;
  const KeySource ks{p.step_ptr, p.seed, p.salt};
  // enough blocks to fill the GPU several times over; the loops stride over the rest
  const uint64_t cap = 1u << 16;
  if (aligned16(in) && aligned16(out)) {
    const uint64_t work = (n / 4 > 0 ? n / 4 : 1);
    const unsigned blocks = static_cast<unsigned>(std::min<uint64_t>(ceil_div(work, kThreads), cap));
    dropout_vec_kernel<CHANNEL><<<blocks, kThreads, 0, stream>>>(in, out, n, hw, p.key, p.threshold, p.scale, ks);
  } else {
    const unsigned blocks = static_cast<unsigned>(std::min<uint64_t>(ceil_div(n, kThreads), cap));
    dropout_scalar_kernel<CHANNEL><<<blocks, kThreads, 0, stream>>>(in, out, n, hw, p.key, p.threshold, p.scale, ks);
  }
  KILN_LAUNCH_CHECK();
}

void apply(const float* in, float* out, const DropoutParams& p, const DropoutShape& s,
           cudaStream_t stream) {
  KILN_CHECK(s.hw > 0, "dropout: plane size must be positive, got " << s.hw);
  if (p.channelwise) launch<true>(in, out, p, s, stream);
  else launch<false>(in, out, p, s, stream);
}
}  // namespace

void dropout_fwd(const float* x, float* y, const DropoutParams& p, const DropoutShape& s,
                 cudaStream_t stream) {
  apply(x, y, p, s, stream);
}

void dropout_bwd(const float* dy, float* dx, const DropoutParams& p, const DropoutShape& s,
                 cudaStream_t stream) {
  apply(dy, dx, p, s, stream);
}

}  // namespace kiln
