// Activation and Flatten layers: dispatch to kernels/activation, pass-through when fused.
#include "layers/activation.h"

#include "engine/error.h"

namespace kiln {

std::string Activation::describe() const {
  return fused() ? type() + " (fused into layer " + fused_into_ + ")" : type();
}

Tensor Activation::forward(Context& ctx, const Tensor& x) {
  if (fused()) return x;
  ensure(y_, x.shape(), x.device());
  if (x.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    activation_fwd(act_, x.data(), y_.data(), x.numel(), ctx.stream());
#endif
  } else {
    activation_fwd_ref<float>(act_, x.data(), y_.data(), x.numel());
  }
  (void)ctx;
  return y_;
}

Tensor Activation::backward(Context& ctx, const Tensor& dy) {
  if (!need_dx) return Tensor();
  if (fused()) return dy;
  check_matching_forward(y_, dy, y_.shape());
  ensure(dx_, dy.shape(), dy.device());
  if (dy.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    activation_bwd(act_, y_.data(), dy.data(), dx_.data(), dy.numel(), ctx.stream());
#endif
  } else {
    activation_bwd_ref<float>(act_, y_.data(), dy.data(), dx_.data(), dy.numel());
  }
  (void)ctx;
  return dx_;
}

LayerPtr make_activation(const std::string& name) { return std::make_unique<Activation>(parse_act(name)); }

Shape Flatten::setup(const Shape& in) {
  in_ = in;
  return {shape_numel(in)};
}

Tensor Flatten::forward(Context&, const Tensor& x) { return x.reshape({x.dim(0), shape_numel(in_)}); }

Tensor Flatten::backward(Context&, const Tensor& dy) {
  if (!need_dx) return Tensor();
  Shape s = in_;
  s.insert(s.begin(), dy.dim(0));
  return dy.reshape(s);
}

}  // namespace kiln
