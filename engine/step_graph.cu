// device_write_async: a host-to-device write whose payload travels as kernel arguments (the
// launch copies them), so the caller's buffer is free on return and nothing waits; used to
// update the per-step values a replayed CUDA graph reads.
#include <cstdint>
#include <cstring>

#include "engine/cuda_check.h"
#include "engine/error.h"
#include "engine/step_graph.h"

namespace kiln {

namespace {
struct Payload {
  uint32_t w[kDeviceWriteMax / 4];
};

static __global__ void device_write_kernel(uint32_t* __restrict__ dst, Payload p, int nwords) {
  for (int i = threadIdx.x; i < nwords; i += blockDim.x) dst[i] = p.w[i];
}
}  // namespace

void device_write_async(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  KILN_CHECK(bytes <= kDeviceWriteMax && bytes % 4 == 0 && reinterpret_cast<uintptr_t>(dst) % 4 == 0,
             "device_write_async: " << bytes << " bytes (at most " << kDeviceWriteMax
                                    << ", a multiple of 4, to a 4-byte aligned address)");
  if (bytes == 0) return;
  Payload p;
  std::memcpy(p.w, src, bytes);
  const int nwords = static_cast<int>(bytes / 4);
  device_write_kernel<<<1, 128, 0, stream>>>(static_cast<uint32_t*>(dst), p, nwords);
  KILN_LAUNCH_CHECK();
}

}  // namespace kiln
