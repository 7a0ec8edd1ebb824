// Conv2d layer: NCHW convolution with PyTorch's parameter names and shapes ("weight"
// [out, in, kh, kw], "bias" [out]) and PyTorch's default initialisation, dispatching to the
// implicit-GEMM CUDA kernels or the im2col CPU reference (kernels/conv).
#pragma once
#include <cstdint>
#include <string>

#include "kernels/conv/conv.h"
#include "layers/layer.h"

namespace kiln {

class Conv2d : public Layer {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1,
         int64_t pad = 0, bool bias = true, InitScheme init = InitScheme::Default)
      : Conv2d(in_channels, out_channels, kernel, kernel, stride, pad, bias, init) {}
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kh, int64_t kw, int64_t stride,
         int64_t pad, bool bias, InitScheme init);

  std::string type() const override { return "Conv2d"; }
  std::string describe() const override;  // "Conv2d(8->16, k3 s1 p0)"
  Shape setup(const Shape& in) override;
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void release_scratch() override { release({&x_, &y_, &dx_, &ws_, &dy_masked_}); }
  ReceptiveField receptive_field(ReceptiveField in) const override;
  // Writes max(0, conv + b) in the forward kernel's epilogue (conv.h). Backward on CUDA masks
  // dy by (y > 0) once into a buffer that both backward kernels read (masking on each load
  // made backward-filter 1.3-1.5x slower on an H200); on the CPU the references mask on load.
  bool fuse_relu() override {
    relu_ = true;
    return true;
  }
  bool relu_fused() const { return relu_; }

  bool has_bias() const { return bias_; }
  // The kernel shape struct for a batch of n (valid after setup).
  ConvShape conv_shape(int64_t n) const;

 private:
  int64_t cin_, cout_, kh_, kw_, stride_, pad_;
  bool bias_;
  bool relu_ = false;
  InitScheme init_;
  int64_t h_ = 0, w_ = 0;  // input spatial size, from setup
  Tensor x_, y_, dx_, ws_;
  Tensor dy_masked_;  // CUDA, fused ReLU: dy where y > 0, else 0
};

}  // namespace kiln
