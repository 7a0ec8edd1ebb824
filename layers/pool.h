// Pooling layers: MaxPool2d and AvgPool2d (kernel, stride defaulting to the kernel, zero
// padding up to half the kernel as in PyTorch) and GlobalAvgPool, which maps (C, H, W) to (C)
// per sample so a Linear layer or the loss can follow directly.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/pool/pool.h"
#include "layers/layer.h"

namespace kiln {

// Shared by MaxPool2d and AvgPool2d: window parameters, shape checks, receptive field.
class Pool2dBase : public Layer {
 public:
  Pool2dBase(int64_t kernel, int64_t stride, int64_t pad);
  std::string describe() const override;  // "MaxPool2d(k2 s2 p0)"
  Shape setup(const Shape& in) override;
  ReceptiveField receptive_field(ReceptiveField in) const override;
  PoolShape pool_shape(int64_t n) const;
  void release_scratch() override { release({&y_, &dx_}); }

 protected:
  int64_t k_, stride_, pad_;
  int64_t c_ = 0, h_ = 0, w_ = 0;
  Tensor y_, dx_;
};

class MaxPool2d : public Pool2dBase {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0, int64_t pad = 0)
      : Pool2dBase(kernel, stride, pad) {}
  std::string type() const override { return "MaxPool2d"; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void release_scratch() override { release({&y_, &dx_, &argmax_}); }

 private:
  Tensor argmax_;  // int32 indices stored in a float tensor's storage (same size, stable)
  int64_t n_ = 0;
};

class AvgPool2d : public Pool2dBase {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = 0, int64_t pad = 0)
      : Pool2dBase(kernel, stride, pad) {}
  std::string type() const override { return "AvgPool2d"; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

 private:
  int64_t n_ = 0;
};

class GlobalAvgPool : public Layer {
 public:
  std::string type() const override { return "GlobalAvgPool"; }
  Shape setup(const Shape& in) override;
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void release_scratch() override { release({&y_, &dx_}); }
  // Every output sees the whole input: the field grows to cover it.
  ReceptiveField receptive_field(ReceptiveField in) const override;

 private:
  int64_t c_ = 0, h_ = 0, w_ = 0, n_ = 0;
  Tensor y_, dx_;
};

}  // namespace kiln
