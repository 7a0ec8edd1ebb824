// Direct convolution for the float CPU references (internal to kernels/conv): conv_ref.cpp calls
// these first and takes im2col + GEMM where they return false.
#pragma once
#include <cstdint>

#include "kernels/conv/conv.h"

namespace kiln {
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
