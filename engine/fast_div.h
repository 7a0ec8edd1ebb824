// Division by a divisor fixed at launch, as a multiply-high and a shift (Granlund & Montgomery,
// "Division by invariant integers using multiplication", 1994). A GPU has no integer divide
// instruction: `n / d` with a runtime d is a software routine of a few dozen instructions, and
// the implicit-GEMM gathers divide several times per operand they load. Exact for every
// 0 <= n < 2^31 and 1 <= d < 2^31 (tests/test_conv.cpp checks it against `/`).
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define KILN_FD_HD __host__ __device__ __forceinline__
#else
#define KILN_FD_HD inline
#endif

namespace kiln {

struct FastDiv {
  unsigned d = 1, mul = 1, shr = 0;

  FastDiv() = default;
  // l: the smallest with 2^l >= d; mul = floor(2^32 (2^l - d) / d) + 1, below 2^32. Then
  // n / d = (mulhi(n, mul) + n) >> l, where the sum stays below 2^32 for n < 2^31. No branch:
  // d = 1 (and every power of two) gives mul 1, a plain shift.
  explicit FastDiv(int divisor) : d(static_cast<unsigned>(divisor)) {
    while ((uint64_t(1) << shr) < d) ++shr;
    mul = static_cast<unsigned>((uint64_t(1) << 32) * ((uint64_t(1) << shr) - d) / d + 1);
  }

  KILN_FD_HD static unsigned mulhi(unsigned a, unsigned b) {
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
#endif
  }
  // n / d for 0 <= n < 2^31.
  KILN_FD_HD int div(int n) const {
    const unsigned u = static_cast<unsigned>(n);
    return static_cast<int>((mulhi(u, mul) + u) >> shr);
  }
};

// A divisor that kernels take in place of an unsigned parameter: it converts to the unsigned it
// holds wherever one is used, and divides by it with FastDiv. Launch sites pass the plain
// value (the conversion computes the constants on the host).
struct Divisor {
  unsigned v = 1;
  FastDiv f;
  Divisor() = default;
  Divisor(unsigned d) : v(d), f(static_cast<int>(d)) {}  // NOLINT(google-explicit-constructor)
  KILN_FD_HD operator unsigned() const { return v; }     // NOLINT(google-explicit-constructor)
  // n / v for n < 2^31.
  KILN_FD_HD unsigned div(unsigned n) const {
    return static_cast<unsigned>(f.div(static_cast<int>(n)));
  }
};

}  // namespace kiln
