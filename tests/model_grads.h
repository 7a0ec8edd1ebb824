// A built model's output and flat gradients on one device: what the layer tests that compare a
// whole model on the CPU and the GPU (conv, group norm) take from each run.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/context.h"
#include "layers/model.h"
#include "tests/test_util.h"

namespace kiln::test {

// Forward of a seeded random input of shape `in` (batch first), backward of a seeded random
// output gradient (seed + 1); the model must be built on device d.
inline void forward_backward(Model& m, Device d, const Shape& in, uint64_t seed,
                             std::vector<float>* out, std::vector<float>* grads) {
  Context ctx(d);
  int64_t numel = 1;
  for (int64_t v : in) numel *= v;
  Tensor x = Tensor::from_vector(random_vec<float>(numel, seed), in, d);
  Tensor y = m.forward(ctx, x);
  ctx.sync();
  *out = y.to_vector();
  m.backward(ctx, Tensor::from_vector(random_vec<float>(y.numel(), seed + 1), y.shape(), d));
  ctx.sync();
  *grads = m.flat_grads().to_vector();
}

}  // namespace kiln::test
