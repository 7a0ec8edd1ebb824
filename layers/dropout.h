// Dropout (element-wise) and Dropout2d (one draw per sample and channel), inverted scaling,
// identity in eval mode. Masks are a pure function of (ctx.seed, ctx.step, the layer's salt,
// element index) so backward recomputes them and the CPU and GPU paths agree bit for bit.
#pragma once
#include "kernels/dropout/dropout.h"
#include "layers/layer.h"

namespace kiln {

class Dropout : public Layer {
 public:
  // salt tells dropout layers of one model apart; kAutoSalt derives it from the layer's name.
  static constexpr uint64_t kAutoSalt = ~uint64_t(0);
  explicit Dropout(double p, bool channelwise = false, uint64_t salt = kAutoSalt);
  std::string type() const override { return channelwise_ ? "Dropout2d" : "Dropout"; }
  std::string describe() const override;
  Shape setup(const Shape& in) override;
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void release_scratch() override { release({&out_, &dx_}); }

  double p() const { return p_; }
  uint64_t salt() const { return salt_; }
  // The parameters the next forward will use with this context (tests re-derive masks).
  DropoutParams params_for(const Context& ctx) const;

 private:
  double p_;
  bool channelwise_;
  uint64_t salt_;
  Shape in_;
  Tensor out_, dx_;
  DropoutParams last_;  // what the last forward applied
  bool applied_ = false;
};

// Dropout2d: channel dropout on (C,H,W) inputs.
class Dropout2d : public Dropout {
 public:
  explicit Dropout2d(double p, uint64_t salt = kAutoSalt) : Dropout(p, true, salt) {}
};

}  // namespace kiln
