// Cooperative launches (every block resident at once, so blocks may wait for each other at a
// grid-wide barrier) and dynamic shared memory, spelled the same for nvcc and kiln's CUDA
// emulator (tests/cuda_emu). Include from .cu files only.
#pragma once
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <tuple>
#include <type_traits>
#include <utility>

// `KILN_DYNAMIC_SMEM(float4, buf);` declares the launch's dynamic shared memory as `buf`.
#ifndef KILN_DYNAMIC_SMEM
#define KILN_DYNAMIC_SMEM(T, name) extern __shared__ T name[]
#endif

namespace kiln {

// Every thread of a cooperatively launched grid waits here until all have arrived; global
// memory written before it is visible to every block after it.
__device__ __forceinline__ void grid_sync() {
  cooperative_groups::this_grid().sync();
}

// cudaLaunchCooperativeKernel with the arguments converted to the kernel's parameter types
// first (the runtime reads each through a void* of exactly that type). Returns the launch's
// error (cudaErrorCooperativeLaunchTooLarge when the grid does not fit at once).
template <typename... P, typename... A>
cudaError_t launch_cooperative(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                               cudaStream_t stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A),
                "launch_cooperative: wrong number of kernel arguments");
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  return std::apply(
      [&](auto&... v) {
        void* ptrs[] = {static_cast<void*>(&v)...};
        return cudaLaunchCooperativeKernel(kernel, grid, block, ptrs, smem, stream);
      },
      params);
}

}  // namespace kiln
