// Direct convolution for the float CPU references (internal to kernels/conv): conv_ref.cpp calls
// these first and takes im2col + GEMM where they return false.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/conv/conv.h"

namespace kiln {

// Per-thread scratch of the CPU conv that only grows: a fresh std::vector per call zero-filled
// (and, past the allocator's mmap threshold, page-faulted in) a whole column matrix on every
// layer call. Slot 0: im2col's columns, or the direct path's padded input; slot 1: col2im's
// columns, or its wide output; slot 2: a masked dy. A call takes one path, so they never overlap.
template <typename T>
T* conv_scratch(int slot, int64_t n) {
  thread_local std::vector<T> bufs[3];
  std::vector<T>& b = bufs[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

namespace conv_direct {

// y = conv(x, w) (+ b) (then ReLU), all images; false: not this path's shape, or turned off.
bool forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
             bool relu);
// dx for all images (dy masked by relu_y where set); false as above.
bool backward_data(const ConvShape& s, const float* dy, const float* w, float* dx,
                   const float* relu_y);
// An instruction set's tiles (conv_direct_cpu.cpp).
struct Isa;
// The set the filter gradient of shape s takes, or null for im2col: read once per call, and
// passed to every group, so that a path switched meanwhile cannot split one call.
const Isa* filter_isa(const ConvShape& s);
// dw (overwritten, [K, C, kh, kw]) = the filter gradient summed over images [first, last), on
// isa (not null).
void backward_filter_group(const Isa* isa, const ConvShape& s, const float* x, const float* dy,
                           const float* relu_y, int64_t first, int64_t last, float* dw);

}  // namespace conv_direct
}  // namespace kiln
