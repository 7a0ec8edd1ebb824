#include "layers/linear.h"

#include <cmath>

#include "engine/error.h"
#include "kernels/dense/dense.h"

namespace kiln {

Linear::Linear(int64_t in, int64_t out, bool bias, InitScheme init) : in_(in), out_(out), bias_(bias) {
  KILN_USAGE_CHECK(in > 0 && out > 0, "Linear(" << in << ", " << out << "): sizes must be positive");
  add_param("weight", {out, in}, weight_init(init, in, out), true);
  if (bias) add_param("bias", {out}, Init::uniform(1.0 / std::sqrt(static_cast<double>(in))), false);
}

std::string Linear::describe() const {
  return "Linear(" + std::to_string(in_) + " -> " + std::to_string(out_) + (bias_ ? "" : ", no bias") + ")";
}

Shape Linear::setup(const Shape& in) {
  KILN_USAGE_CHECK(in.size() == 1 && in[0] == in_,
                   "layer " << name() << " (" << describe() << "): expects input [" << in_
                            << "] per sample, got " << shape_str(in)
                            << (in.size() > 1 ? " (add a Flatten first)" : ""));
  return {out_};
}

Tensor Linear::forward(Context& ctx, const Tensor& x) {
  check_forward_input(x, {in_});
  int64_t n = x.dim(0);
  x_ = x;
  ensure(y_, {n, out_}, x.device());
  const float* w = value(0).data();
  if (x.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    gemm_cuda(ctx.cublas(), false, true, n, out_, in_, 1.f, x.data(), in_, w, in_, 0.f, y_.data(), out_);
    if (bias_) bias_add(y_.data(), value(1).data(), n, out_, ctx.stream());
#else
    (void)ctx;  // no CUDA tensors exist in a build without CUDA
#endif
  } else {
    gemm_ref_blocks<float>(false, true, n, out_, in_, 1.f, x.data(), in_, w, in_, 0.f, y_.data(),
                           out_);
    if (bias_) bias_add_ref<float>(y_.data(), value(1).data(), n, out_);
  }
  return y_;
}

Tensor Linear::backward(Context& ctx, const Tensor& dy) {
  check_matching_forward(x_, dy, y_.shape());
  int64_t n = dy.dim(0);
  const float* w = value(0).data();
  float* dw = grad(0).data();
  bool cuda = dy.device() == Device::CUDA;
  if (need_dx) ensure(dx_, {n, in_}, dy.device());
  if (cuda) {
#ifdef KILN_WITH_CUDA
    gemm_cuda(ctx.cublas(), true, false, out_, in_, n, 1.f, dy.data(), out_, x_.data(), in_, 0.f, dw, in_);
    if (bias_) bias_grad(dy.data(), grad(1).data(), n, out_, ctx.stream());
    if (need_dx) gemm_cuda(ctx.cublas(), false, false, n, in_, out_, 1.f, dy.data(), out_, w, in_, 0.f, dx_.data(), in_);
#else
    (void)ctx;
#endif
  } else {
    gemm_ref_blocks<float>(true, false, out_, in_, n, 1.f, dy.data(), out_, x_.data(), in_, 0.f, dw,
                           in_);
    if (bias_) bias_grad_ref<float>(dy.data(), grad(1).data(), n, out_);
    if (need_dx)
      gemm_ref_blocks<float>(false, false, n, in_, out_, 1.f, dy.data(), out_, w, in_, 0.f,
                             dx_.data(), in_);
  }
  return need_dx ? dx_ : Tensor();
}

}  // namespace kiln
