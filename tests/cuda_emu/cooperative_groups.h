// kiln's CUDA emulator: the part of cooperative_groups kiln's kernels use (the grid barrier of a
// cooperative launch).
#pragma once
#include "cuda_runtime.h"

namespace cooperative_groups {
struct grid_group {
  void sync() const { ::kiln_emu::grid_sync(); }
};
inline grid_group this_grid() {
  return {};
}
}  // namespace cooperative_groups
