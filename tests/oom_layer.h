// A pass-through layer that stands in for an allocation failing in evaluation (a cudaMalloc or
// host allocation past the memory left): in eval mode a batch of more than `fits` samples
// throws kiln's OutOfMemory error, as Buffer does (or another kind, `kind`); it records every
// eval batch it sees.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/error.h"
#include "layers/layer.h"

namespace kiln::test {

class OomPastBatch : public Layer {
 public:
  OomPastBatch(int64_t fits, std::vector<int64_t>* seen, ErrorKind kind = ErrorKind::OutOfMemory)
      : fits_(fits), seen_(seen), kind_(kind) {}
  std::string type() const override { return "OomPastBatch"; }
  void set_fits(int64_t fits) { fits_ = fits; }
  Shape setup(const Shape& in) override { return in; }
  Tensor forward(Context& c, const Tensor& x) override {
    if (!c.training) {
      seen_->push_back(x.dim(0));
      if (x.dim(0) > fits_)
        throw Error(kind_,
                    "out of memory: cannot allocate " + std::to_string(x.dim(0)) + " samples",
                    __FILE__, __LINE__);
    }
    return x;
  }
  Tensor backward(Context&, const Tensor& dy) override { return dy; }

 private:
  int64_t fits_;
  std::vector<int64_t>* seen_;
  ErrorKind kind_;
};

}  // namespace kiln::test
