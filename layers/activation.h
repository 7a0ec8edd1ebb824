// Activation layers (ReLU, Sigmoid, Tanh) and Flatten. A ReLU that the model's fusion pass
// folded into the layer before it is a pass-through (no kernel, no buffer).
#pragma once
#include <string>

#include "kernels/activation/activation.h"
#include "layers/layer.h"

namespace kiln {

class Activation : public Layer {
 public:
  explicit Activation(Act a) : act_(a) {}
  std::string type() const override { return act_name(act_); }
  std::string describe() const override;  // "ReLU (fused into layer 3)" once fused
  Shape setup(const Shape& in) override { return in; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void release_scratch() override { release({&y_, &dx_}); }

  Act act() const { return act_; }
  // The fusion pass: layer `owner` now applies this activation; forward returns its input and
  // backward its dy (the owner's output is already activated and its backward masks dy).
  void fuse_into(const std::string& owner) { fused_into_ = owner; }
  bool fused() const { return !fused_into_.empty(); }

 private:
  Act act_;
  std::string fused_into_;  // name of the layer that applies it, or empty
  Tensor y_, dx_;
};

LayerPtr make_activation(const std::string& name);

// (C,H,W) -> (C*H*W); a view, no copy.
class Flatten : public Layer {
 public:
  std::string type() const override { return "Flatten"; }
  Shape setup(const Shape& in) override;
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

 private:
  Shape in_;
};

}  // namespace kiln
