// Counter-based hash for dropout masks, shared by the CPU reference and the CUDA kernels so both
// produce the same mask bit for bit. A key mixes (seed, step, layer salt) once per launch; the
// bits for element (or channel plane) i are a splitmix64 finalizer of key + i * golden ratio, a
// bijection of the 64-bit counter with good avalanche, so masks need no state and backward
// recomputes them instead of storing them.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define KILN_HD __host__ __device__ __forceinline__
#else
#define KILN_HD inline
#endif

namespace kiln {

KILN_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One key per (seed, step, salt); distinct inputs give unrelated keys.
KILN_HD uint64_t dropout_key(uint64_t seed, uint64_t step, uint64_t salt) {
  uint64_t k = mix64(seed + 0x9E3779B97F4A7C15ull);
  k = mix64(k ^ (step + 0xD1B54A32D192ED03ull));
  return mix64(k ^ (salt * 0xA24BAED4963EE407ull + 1));
}

// 32 uniform bits for counter i under key.
KILN_HD uint32_t dropout_bits(uint64_t key, uint64_t i) {
  return static_cast<uint32_t>(mix64(key + i * 0x9E3779B97F4A7C15ull) >> 32);
}

// The drop threshold for probability p in [0, 1): element i is dropped when bits < threshold,
// so P(drop) = threshold / 2^32 = p up to 2^-32.
KILN_HD uint32_t dropout_threshold(double p) {
  double t = p * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(t);
}

KILN_HD bool dropout_keep(uint64_t key, uint64_t i, uint32_t threshold) {
  return dropout_bits(key, i) >= threshold;
}

}  // namespace kiln
