// Pooling layers: shape checks naming the layer and both shapes, dispatch by device.
#include "layers/pool.h"

#include <algorithm>
#include <sstream>

#include "engine/error.h"
#include "engine/numtext.h"

namespace kiln {

Pool2dBase::Pool2dBase(int64_t kernel, int64_t stride, int64_t pad)
    : k_(kernel), stride_(stride == 0 ? kernel : stride), pad_(pad) {}

std::string Pool2dBase::describe() const {
  ClassicOStringStream os;
  os << type() << "(k" << k_ << " s" << stride_ << " p" << pad_ << ")";
  return os.str();
}

Shape Pool2dBase::setup(const Shape& in) {
  const std::string who = "layer " + name() + " (" + describe() + ")";
  // Checked here, not in the constructor, so the message can name the layer (PyTorch: "pad
  // should be at most half of effective kernel size").
  KILN_USAGE_CHECK(k_ > 0 && stride_ > 0 && pad_ >= 0 && pad_ <= k_ / 2,
                   who << ": needs kernel > 0, stride > 0 and padding <= kernel/2");
  KILN_USAGE_CHECK(k_ <= kPoolMaxPlane, who << ": kernel " << k_ << " exceeds 2^31-1");
  KILN_USAGE_CHECK(in.size() == 3, who << ": expected input [C, H, W], got " << shape_str(in));
  KILN_USAGE_CHECK(in[1] + 2 * pad_ >= k_ && in[2] + 2 * pad_ >= k_,
                   who << ": input " << shape_str(in) << " is smaller than the kernel " << k_ << "x"
                       << k_ << " (with padding " << pad_ << ")");
  // Max pooling stores int32 indices into a plane; average pooling shares the check so both
  // pools accept the same shapes. Compared by division: H*W itself could overflow.
  KILN_USAGE_CHECK(in[1] > 0 && in[2] > 0 && in[1] <= kPoolMaxPlane / in[2],
                   who << ": input " << shape_str(in) << ": plane H*W = " << in[1] << "*" << in[2]
                       << " exceeds 2^31-1 (max pooling's int32 plane index)");
  c_ = in[0];
  h_ = in[1];
  w_ = in[2];
  PoolShape s = pool_shape(1);
  return {c_, s.p(), s.q()};
}

PoolShape Pool2dBase::pool_shape(int64_t n) const {
  PoolShape s;
  s.n = n;
  s.c = c_;
  s.h = h_;
  s.w = w_;
  s.kh = s.kw = k_;
  s.stride = stride_;
  s.pad = pad_;
  return s;
}

ReceptiveField Pool2dBase::receptive_field(ReceptiveField in) const {
  in.size += (k_ - 1) * in.jump;
  in.jump *= stride_;
  return in;
}

Tensor MaxPool2d::forward(Context& ctx, const Tensor& x) {
  check_forward_input(x, {c_, h_, w_});
  n_ = x.dim(0);
  const PoolShape s = pool_shape(n_);
  ensure(y_, {s.n, s.c, s.p(), s.q()}, x.device());
  ensure(argmax_, y_.shape(), x.device());
  auto* arg = reinterpret_cast<int32_t*>(argmax_.data());
  if (x.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    maxpool2d_fwd(s, x.data(), y_.data(), arg, ctx.stream());
#endif
  } else {
    maxpool2d_fwd_ref<float>(s, x.data(), y_.data(), arg);
  }
  (void)ctx;
  return y_;
}

Tensor MaxPool2d::backward(Context& ctx, const Tensor& dy) {
  const PoolShape s = pool_shape(n_);
  check_matching_forward(y_, dy, y_.shape());
  if (!need_dx) return Tensor();
  ensure(dx_, {s.n, s.c, s.h, s.w}, dy.device());
  const auto* arg = reinterpret_cast<const int32_t*>(argmax_.data());
  if (dy.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    maxpool2d_bwd(s, dy.data(), arg, dx_.data(), ctx.stream());
#endif
  } else {
    maxpool2d_bwd_ref<float>(s, dy.data(), arg, dx_.data());
  }
  (void)ctx;
  return dx_;
}

Tensor AvgPool2d::forward(Context& ctx, const Tensor& x) {
  check_forward_input(x, {c_, h_, w_});
  n_ = x.dim(0);
  const PoolShape s = pool_shape(n_);
  ensure(y_, {s.n, s.c, s.p(), s.q()}, x.device());
  if (x.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    avgpool2d_fwd(s, x.data(), y_.data(), ctx.stream());
#endif
  } else {
    avgpool2d_fwd_ref<float>(s, x.data(), y_.data());
  }
  (void)ctx;
  return y_;
}

Tensor AvgPool2d::backward(Context& ctx, const Tensor& dy) {
  const PoolShape s = pool_shape(n_);
  check_matching_forward(y_, dy, y_.shape());
  if (!need_dx) return Tensor();
  ensure(dx_, {s.n, s.c, s.h, s.w}, dy.device());
  if (dy.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    avgpool2d_bwd(s, dy.data(), dx_.data(), ctx.stream());
#endif
  } else {
    avgpool2d_bwd_ref<float>(s, dy.data(), dx_.data());
  }
  (void)ctx;
  return dx_;
}

Shape GlobalAvgPool::setup(const Shape& in) {
  KILN_USAGE_CHECK(in.size() == 3 && in[1] > 0 && in[2] > 0,
                   "layer " << name() << " (" << describe() << "): expected input [C, H, W], got "
                            << shape_str(in));
  c_ = in[0];
  h_ = in[1];
  w_ = in[2];
  return {c_};
}

ReceptiveField GlobalAvgPool::receptive_field(ReceptiveField in) const {
  in.size += (std::max(h_, w_) - 1) * in.jump;
  return in;
}

Tensor GlobalAvgPool::forward(Context& ctx, const Tensor& x) {
  check_forward_input(x, {c_, h_, w_});
  n_ = x.dim(0);
  ensure(y_, {n_, c_}, x.device());
  if (x.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    global_avgpool_fwd(n_ * c_, h_ * w_, x.data(), y_.data(), ctx.stream());
#endif
  } else {
    global_avgpool_fwd_ref<float>(n_ * c_, h_ * w_, x.data(), y_.data());
  }
  (void)ctx;
  return y_;
}

Tensor GlobalAvgPool::backward(Context& ctx, const Tensor& dy) {
  check_matching_forward(y_, dy, y_.shape());
  if (!need_dx) return Tensor();
  ensure(dx_, {n_, c_, h_, w_}, dy.device());
  if (dy.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    global_avgpool_bwd(n_ * c_, h_ * w_, dy.data(), dx_.data(), ctx.stream());
#endif
  } else {
    global_avgpool_bwd_ref<float>(n_ * c_, h_ * w_, dy.data(), dx_.data());
  }
  (void)ctx;
  return dx_;
}

}  // namespace kiln
