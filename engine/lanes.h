// Long sums in double over 8 interleaved partial sums, added in a fixed order at the end: a
// single accumulator makes every add wait for the one before (4 cycles each), which made the CPU
// references' reductions (the conv bias gradient, batch norm's statistics) slower than the
// arithmetic around them. The order depends on the run lengths alone, so a result is the same
// on any thread count.
#pragma once
#include <cstdint>

namespace kiln {

struct Lanes {
  double v[8] = {};
  // Adds f(0), ..., f(len - 1): f(8i + l) to lane l, the last len % 8 to lanes 0, 1, ...
  template <typename F>
  void add(int64_t len, F f) {
    const int64_t full = len / 8 * 8;
    for (int64_t k = 0; k < full; k += 8)
      for (int l = 0; l < 8; ++l) v[l] += f(k + l);
    for (int64_t k = full; k < len; ++k) v[k - full] += f(k);
  }
  double total() const { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }
};

}  // namespace kiln
