// Dropout (inverted): y = x * keep(i) / (1 - p), keep(i) from the counter hash in hash.h. The
// forward writes only y (no mask tensor); backward applies the same recomputed mask to dy.
// Element-wise dropout draws once per element; channel dropout (Dropout2d) once per (n, c)
// plane of hw elements.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"

namespace kiln {

struct DropoutShape {
  int64_t n = 1, c = 1, hw = 1;  // [n, c, hw]; element-wise dropout only uses the product
  int64_t numel() const { return n * c * hw; }
};

struct DropoutParams {
  uint64_t key = 0;        // dropout_key(seed, step, salt)
  uint32_t threshold = 0;  // dropout_threshold(p)
  float scale = 1.0f;      // 1 / (1 - p)
  bool channelwise = false;
  // CUDA graphs: when set, the kernels derive the key as dropout_key(seed, *step_ptr, salt) from
  // the step stored at step_ptr (device memory; host memory for the _ref functions) instead of
  // using `key`, so a replayed graph draws the mask of the step it is replaying.
  const uint64_t* step_ptr = nullptr;
  uint64_t seed = 0, salt = 0;
};

template <typename T>
void dropout_fwd_ref(const T* x, T* y, const DropoutParams& p, const DropoutShape& s);
template <typename T>
void dropout_bwd_ref(const T* dy, T* dx, const DropoutParams& p, const DropoutShape& s);
// The CPU reference's element-wise mask loop is compiled for several instruction sets (x86-64
// builds: "avx512", "avx2", and "generic", the build's own) and dropout_*_ref run the best this
// CPU has. dropout_ref_isas() lists the ones this CPU runs, best first; dropout_ref_isa applies
// the mask with one of them (tests compare their bits, bench_cpu their speed; channel dropout,
// one draw per plane, runs the same loop under every name). An unknown or unavailable name is
// an error.
std::vector<std::string> dropout_ref_isas();
template <typename T>
void dropout_ref_isa(const std::string& isa, const T* x, T* y, const DropoutParams& p,
                     const DropoutShape& s);
void dropout_fwd(const float* x, float* y, const DropoutParams& p, const DropoutShape& s,
                 cudaStream_t stream);
void dropout_bwd(const float* dy, float* dx, const DropoutParams& p, const DropoutShape& s,
                 cudaStream_t stream);

}  // namespace kiln
