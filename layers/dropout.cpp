// Dropout layers: validation, mask parameters from the context, dispatch to the CUDA launcher or
// the CPU reference (the same hash, so the two agree bit for bit).
#include "layers/dropout.h"

#include <sstream>

#include "engine/error.h"
#include "engine/numtext.h"
#include "kernels/dropout/hash.h"

namespace kiln {

namespace {
// FNV-1a: a stable salt from the layer's name ("3", "2.body.1").
uint64_t name_salt(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

DropoutShape dropout_shape(const Shape& x) {
  DropoutShape s;
  s.n = x.empty() ? 1 : x[0];
  s.c = x.size() > 1 ? x[1] : 1;
  s.hw = 1;
  for (size_t i = 2; i < x.size(); ++i) s.hw *= x[i];
  return s;
}
}  // namespace

Dropout::Dropout(double p, bool channelwise, uint64_t salt)
    : p_(p), channelwise_(channelwise), salt_(salt) {}

std::string Dropout::describe() const {
  ClassicOStringStream os;
  os << type() << "(p=" << p_ << ")";
  return os.str();
}

Shape Dropout::setup(const Shape& in) {
  KILN_USAGE_CHECK(p_ >= 0.0 && p_ < 1.0,
                   "layer " << name() << " (" << describe() << "): p must be in [0, 1)");
  KILN_USAGE_CHECK(!channelwise_ || in.size() == 3,
                   "layer " << name() << " (" << describe()
                            << "): expects a per-sample input (C, H, W), got " << shape_str(in));
  if (salt_ == kAutoSalt) salt_ = name_salt(name());
  in_ = in;
  return in;
}

DropoutParams Dropout::params_for(const Context& ctx) const {
  DropoutParams p;
  p.key = dropout_key(ctx.seed, ctx.step, salt_);
  p.threshold = dropout_threshold(p_);
  p.scale = static_cast<float>(1.0 / (1.0 - p_));
  p.channelwise = channelwise_;
  if (ctx.step_dev) {  // CUDA graphs: the kernels read the step from device memory
    p.step_ptr = ctx.step_dev;
    p.seed = ctx.seed;
    p.salt = salt_;
  }
  return p;
}

Tensor Dropout::forward(Context& ctx, const Tensor& x) {
  applied_ = ctx.training && p_ > 0.0;
  if (!applied_) return x;
  last_ = params_for(ctx);
  const DropoutShape s = dropout_shape(x.shape());
  ensure(out_, x.shape(), x.device());
  if (x.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    dropout_fwd(x.data(), out_.data(), last_, s, ctx.stream());
#endif
  } else {
    dropout_fwd_ref<float>(x.data(), out_.data(), last_, s);
  }
  return out_;
}

Tensor Dropout::backward(Context& ctx, const Tensor& dy) {
  if (!need_dx) return Tensor();
  if (!applied_) return dy;
  const DropoutShape s = dropout_shape(dy.shape());
  ensure(dx_, dy.shape(), dy.device());
  if (dy.device() == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    dropout_bwd(dy.data(), dx_.data(), last_, s, ctx.stream());
#endif
  } else {
    dropout_bwd_ref<float>(dy.data(), dx_.data(), last_, s);
  }
  (void)ctx;
  return dx_;
}

}  // namespace kiln
