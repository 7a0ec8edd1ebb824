// Linear (nn.Linear): y = x W^T + b, weight [out, in], bias [out]. cuBLAS on the GPU.
#pragma once
#include "layers/layer.h"

namespace kiln {

class Linear : public Layer {
 public:
  Linear(int64_t in, int64_t out, bool bias = true, InitScheme init = InitScheme::Default);
  std::string type() const override { return "Linear"; }
  std::string describe() const override;
  Shape setup(const Shape& in) override;
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void release_scratch() override { release({&x_, &y_, &dx_}); }
  // Each output mixes every input feature, so it sees the whole input image.
  ReceptiveField receptive_field(ReceptiveField in) const override {
    in.whole = true;
    return in;
  }

 private:
  int64_t in_, out_;
  bool bias_;
  Tensor x_, y_, dx_;
};

}  // namespace kiln
