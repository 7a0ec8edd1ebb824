// Named convolution shapes for the parameterised conv tests (test_conv, test_fusion,
// test_fusion_gpu): a ConvShape from its nine numbers in the order PyTorch users read them, and
// a name that gtest prints in test listings instead of a byte dump of the struct.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>

#include "kernels/conv/conv.h"

namespace kiln {
namespace test {

inline ConvShape conv_shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t kh,
                            int64_t kw, int64_t stride, int64_t pad) {
  ConvShape s;
  s.n = n, s.c = c, s.h = h, s.w = w, s.k = k, s.kh = kh, s.kw = kw, s.stride = stride, s.pad = pad;
  return s;
}

struct NamedConvShape {
  std::string name;
  ConvShape s;
  bool bias = true;  // the GPU fusion cases also run without a bias
};
inline void PrintTo(const NamedConvShape& c, std::ostream* os) { *os << c.name; }

}  // namespace test
}  // namespace kiln
