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
// Whether backward_filter_group takes shape s.
bool takes_filter(const ConvShape& s);
// dw (overwritten, [K, C, kh, kw]) = the filter gradient summed over images [first, last).
void backward_filter_group(const ConvShape& s, const float* x, const float* dy, const float* relu_y,
                           int64_t first, int64_t last, float* dw);

}  // namespace conv_direct
}  // namespace kiln
