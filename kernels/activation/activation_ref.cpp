#include <cmath>

#include "engine/error.h"
#include "engine/parallel.h"
#include "kernels/activation/activation.h"
#include "kernels/activation/relu_rule.h"

namespace kiln {

Act parse_act(const std::string& s) {
  if (s == "relu") return Act::ReLU;
  if (s == "sigmoid") return Act::Sigmoid;
  if (s == "tanh") return Act::Tanh;
  KILN_USAGE_FAIL("unknown activation '" << s << "' (expected relu|sigmoid|tanh)");
}

const char* act_name(Act a) {
  switch (a) {
    case Act::ReLU: return "ReLU";
    case Act::Sigmoid: return "Sigmoid";
    case Act::Tanh: return "Tanh";
  }
  return "?";
}

// Element-wise: threads (engine/parallel.h) take contiguous runs of elements.
template <typename T>
void activation_fwd_ref(Act a, const T* x, T* y, int64_t n) {
  parallel_for(
      n,
      [=](int64_t b, int64_t e) {
        switch (a) {
          case Act::ReLU:
            for (int64_t i = b; i < e; ++i) y[i] = relu_fwd(x[i]);
            break;
          case Act::Sigmoid:
            for (int64_t i = b; i < e; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
            break;
          case Act::Tanh:
            for (int64_t i = b; i < e; ++i) y[i] = std::tanh(x[i]);
            break;
        }
      },
      kElementwiseGrain);
}

template <typename T>
void activation_bwd_ref(Act a, const T* y, const T* dy, T* dx, int64_t n) {
  parallel_for(
      n,
      [=](int64_t b, int64_t e) {
        switch (a) {
          case Act::ReLU:
            // dy is loaded whatever the mask: a load only on one side of the ?: may not be
            // hoisted (it could fault), so the compiler kept a branch that mispredicts on half
            // the elements.
            for (int64_t i = b; i < e; ++i) {
              const T g = dy[i];
              dx[i] = relu_bwd(y[i], g);
            }
            break;
          case Act::Sigmoid:
            for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
            break;
          case Act::Tanh:
            for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
            break;
        }
      },
      kElementwiseGrain);
}

template void activation_fwd_ref<float>(Act, const float*, float*, int64_t);
template void activation_fwd_ref<double>(Act, const double*, double*, int64_t);
template void activation_bwd_ref<float>(Act, const float*, const float*, float*, int64_t);
template void activation_bwd_ref<double>(Act, const double*, const double*, double*, int64_t);

}  // namespace kiln
