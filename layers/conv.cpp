// Conv2d: shape checks (errors name the layer and both shapes; shapes past the CUDA kernels'
// 32-bit index range are usage errors), parameters, dispatch to the CUDA launchers or the CPU
// reference. The 1x1 path is chosen inside the launchers.
#include "layers/conv.h"

#include <algorithm>
#include <sstream>

#include "engine/error.h"
#include "engine/numtext.h"
#include "kernels/activation/activation.h"
#ifdef KILN_WITH_CUDA
#include "engine/cuda_check.h"
#endif

namespace kiln {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kh, int64_t kw, int64_t stride,
               int64_t pad, bool bias, InitScheme init)
    : cin_(in_channels), cout_(out_channels), kh_(kh), kw_(kw), stride_(stride), pad_(pad),
      bias_(bias), init_(init) {
  KILN_USAGE_CHECK(cin_ > 0 && cout_ > 0 && kh_ > 0 && kw_ > 0 && stride_ > 0 && pad_ >= 0,
                   describe() << ": channels, kernel and stride must be positive, padding >= 0");
}

std::string Conv2d::describe() const {
  ClassicOStringStream os;
  os << "Conv2d(" << cin_ << "->" << cout_ << ", k";
  if (kh_ == kw_) os << kh_; else os << kh_ << "x" << kw_;
  os << " s" << stride_ << " p" << pad_ << (bias_ ? "" : ", no bias") << ")";
  return os.str();
}

Shape Conv2d::setup(const Shape& in) {
  const std::string who = "layer " + name() + " (" + describe() + ")";
  KILN_USAGE_CHECK(in.size() == 3 && in[0] == cin_,
                   who << ": expected input [" << cin_ << ", H, W], got " << shape_str(in));
  KILN_USAGE_CHECK(in[1] + 2 * pad_ >= kh_ && in[2] + 2 * pad_ >= kw_,
                   who << ": input " << shape_str(in) << " is smaller than the kernel " << kh_
                       << "x" << kw_ << (pad_ ? " (with padding)" : ""));
  h_ = in[1];
  w_ = in[2];
  // One sample must fit the CUDA kernels' 32-bit indexing on every device, so a model that
  // builds runs on both; the batch is checked per forward on CUDA (the CPU path is 64-bit).
  const std::string range = conv_index_range_error(conv_shape(1));
  KILN_USAGE_CHECK(range.empty(), who << ": input " << shape_str(in) << " (one sample): " << range);
  const int64_t fan_in = cin_ * kh_ * kw_, fan_out = cout_ * kh_ * kw_;
  params().clear();
  add_param("weight", {cout_, cin_, kh_, kw_}, weight_init(init_, fan_in, fan_out), true);
  // PyTorch's bias init for every scheme: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  if (bias_) add_param("bias", {cout_}, weight_init(InitScheme::Default, fan_in, fan_out), false);
  ConvShape s = conv_shape(1);
  return {cout_, s.p(), s.q()};
}

ConvShape Conv2d::conv_shape(int64_t n) const {
  ConvShape s;
  s.n = n;
  s.c = cin_;
  s.h = h_;
  s.w = w_;
  s.k = cout_;
  s.kh = kh_;
  s.kw = kw_;
  s.stride = stride_;
  s.pad = pad_;
  return s;
}

ReceptiveField Conv2d::receptive_field(ReceptiveField in) const {
  in.size += (std::max(kh_, kw_) - 1) * in.jump;
  in.jump *= stride_;
  return in;
}

Tensor Conv2d::forward(Context& ctx, const Tensor& x) {
  check_forward_input(x, {cin_, h_, w_});
  const ConvShape s = conv_shape(x.dim(0));
  if (x.device() == Device::CUDA) {
    const std::string range = conv_index_range_error(s);
    KILN_USAGE_CHECK(range.empty(), "layer " << name() << " (" << describe() << "): input "
                                             << shape_str(x.shape()) << ": " << range
                                             << " (use a smaller batch)");
  }
  x_ = x;
  ensure(y_, {s.n, s.k, s.p(), s.q()}, x.device());
  const float* b = bias_ ? value(1).data() : nullptr;
  if (x.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    conv2d_fwd(s, x.data(), value(0).data(), b, y_.data(), ctx.stream(), relu_);
#endif
  } else {
    conv2d_fwd_ref<float>(s, x.data(), value(0).data(), b, y_.data(), relu_);
  }
  (void)ctx;
  return y_;
}

Tensor Conv2d::backward(Context& ctx, const Tensor& dy) {
  check_matching_forward(x_, dy, y_.shape());
  const ConvShape s = conv_shape(x_.dim(0));
  float* db = bias_ ? grad(1).data() : nullptr;
  if (need_dx) ensure(dx_, x_.shape(), x_.device());
  if (dy.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    const int64_t ws = static_cast<int64_t>(conv2d_bwd_filter_workspace(s));
    ensure(ws_, {std::max<int64_t>(ws, 1)}, Device::CUDA);
    const float* g = dy.data();
    if (relu_) {  // the ReLU backward once (the same rule as the kernels' masked loads)
      ensure(dy_masked_, dy.shape(), Device::CUDA);
      activation_bwd(Act::ReLU, y_.data(), dy.data(), dy_masked_.data(), dy.numel(), ctx.stream());
      g = dy_masked_.data();
    }
    conv2d_bwd_filter(s, x_.data(), g, grad(0).data(), db, ws_.data(), ctx.stream());
    if (need_dx) conv2d_bwd_data(s, g, value(0).data(), dx_.data(), ctx.stream());
#endif
  } else {
    // The fused ReLU's mask is this layer's own output from the matching forward.
    const float* relu_y = relu_ ? y_.data() : nullptr;
    conv2d_bwd_filter_ref<float>(s, x_.data(), dy.data(), grad(0).data(), db, relu_y);
    if (need_dx) conv2d_bwd_data_ref<float>(s, dy.data(), value(0).data(), dx_.data(), relu_y);
  }
  (void)ctx;
  return need_dx ? dx_ : Tensor();
}

}  // namespace kiln
