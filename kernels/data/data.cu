// CUDA data kernels: batch gather through a device-side permutation, and the same gather with
// CIFAR crop/flip augmentation. Both are memory-bound copies; the plain gather moves float4s when
// rows and pointers allow it. Augmentation parameters are recomputed per element from the
// counter-based hash in data.h (a few integer ops) instead of a per-sample table, so there is no
// extra launch or scratch buffer, and the CPU reference derives exactly the same values.
#include <algorithm>
#include <cstdint>

#include "engine/cuda_check.h"
#include "kernels/data/data.h"

namespace kiln {

namespace {
constexpr int kThreads = 256;
// Grid-stride loops cover any size; this caps the grid at a few waves on big GPUs.
constexpr long long kMaxBlocks = 4096;

unsigned grid_for(long long work) {
  return static_cast<unsigned>(
      std::max(1LL, std::min<long long>(ceil_div(work, kThreads), kMaxBlocks)));
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}
}  // namespace

template <typename V>
static __global__ void gather_rows_kernel(const V* __restrict__ src,
                                          const int32_t* __restrict__ labels,
                                          const int32_t* __restrict__ idx, int64_t count,
                                          int64_t row_v, V* __restrict__ dst,
                                          int32_t* __restrict__ dst_labels) {
  const int64_t total = count * row_v;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t e = tid; e < total; e += stride) {
    int64_t j = e / row_v, k = e - j * row_v;
    dst[e] = src[static_cast<int64_t>(idx[j]) * row_v + k];
  }
  if (labels && dst_labels)
    for (int64_t j = tid; j < count; j += stride) dst_labels[j] = labels[idx[j]];
}

static __global__ void crop_flip_gather_kernel(const float* __restrict__ src,
                                               const int32_t* __restrict__ labels,
                                               const int32_t* __restrict__ idx, CropFlipShape s,
                                               float* __restrict__ dst,
                                               int32_t* __restrict__ dst_labels) {
  const int64_t plane = static_cast<int64_t>(s.h) * s.w, row = plane * s.c;
  const int64_t total = s.count * row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t e = tid; e < total; e += stride) {
    int64_t j = e / row, r = e - j * row;
    int c = static_cast<int>(r / plane);
    int64_t q = r - c * plane;
    int y = static_cast<int>(q / s.w), x = static_cast<int>(q - static_cast<int64_t>(y) * s.w);
    const int32_t i = idx[j];
    const CropFlip p = augment_params(s.seed, s.epoch, static_cast<uint64_t>(i), s.pad);
    int sy = y + p.oy - s.pad;
    int sx = (p.flip ? s.w - 1 - x : x) + p.ox - s.pad;
    bool inside = sy >= 0 && sy < s.h && sx >= 0 && sx < s.w;
    dst[e] =
        inside
            ? src[static_cast<int64_t>(i) * row + c * plane + static_cast<int64_t>(sy) * s.w + sx]
            : crop_fill(s, c);
  }
  if (labels && dst_labels)
    for (int64_t j = tid; j < s.count; j += stride) dst_labels[j] = labels[idx[j]];
}

void gather_rows_fwd(const float* src, const int32_t* labels, const int32_t* idx,
                     const GatherShape& s, float* dst, int32_t* dst_labels, cudaStream_t stream) {
  if (s.count <= 0) return;
  if (s.row % 4 == 0 && aligned16(src) && aligned16(dst)) {
    const int64_t row_v = s.row / 4;
    gather_rows_kernel<float4><<<grid_for(s.count * row_v), kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(src), labels, idx, s.count, row_v,
        reinterpret_cast<float4*>(dst), dst_labels);
  } else {
    gather_rows_kernel<float><<<grid_for(s.count * s.row), kThreads, 0, stream>>>(
        src, labels, idx, s.count, s.row, dst, dst_labels);
  }
  KILN_LAUNCH_CHECK();
}

void crop_flip_gather_fwd(const float* src, const int32_t* labels, const int32_t* idx,
                          const CropFlipShape& s, float* dst, int32_t* dst_labels,
                          cudaStream_t stream) {
  if (s.count <= 0) return;
  const long long total = s.count * static_cast<long long>(s.c) * s.h * s.w;
  crop_flip_gather_kernel<<<grid_for(total), kThreads, 0, stream>>>(src, labels, idx, s, dst,
                                                                    dst_labels);
  KILN_LAUNCH_CHECK();
}

}  // namespace kiln
