// Activation layers (ReLU, Sigmoid, Tanh) and Flatten.
#pragma once
#include "kernels/activation/activation.h"
#include "layers/layer.h"

namespace kiln {

class Activation : public Layer {
 public:
  explicit Activation(Act a) : act_(a) {}
  std::string type() const override { return act_name(act_); }
  Shape setup(const Shape& in) override { return in; }
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;

 private:
  Act act_;
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
