// CPU references of the loss family: softmax cross-entropy with accuracy, and the metric sums.
#include <cmath>

#include "kernels/loss/loss.h"
#include "kernels/loss/loss_math.h"

namespace kiln {

template <typename T>
void softmax_xent_ref(const T* logits, const int32_t* labels, int64_t N, int64_t K, T grad_scale,
                      T* dlogits, T* loss, T* correct) {
  for (int64_t n = 0; n < N; ++n) {
    const T* z = logits + n * K;
    int64_t arg = 0;
    for (int64_t k = 1; k < K; ++k)
      if (argmax_better(z[k], k, z[arg], arg)) arg = k;
    T m = z[arg];  // NaN when the row has one: loss and dlogits are NaN then, as in PyTorch
    T s = 0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(z[k] - m);
    T lse = m + std::log(s);
    int32_t y = labels[n];
    loss[n] = lse - z[y];
    correct[n] = arg == y ? T(1) : T(0);
    if (dlogits) {
      for (int64_t k = 0; k < K; ++k) {
        T p = std::exp(z[k] - lse);
        dlogits[n * K + k] = (p - (k == y ? T(1) : T(0))) * grad_scale;
      }
    }
  }
}

void accumulate_sums_ref(const float* a, const float* b, int64_t n, double* acc) {
  double sa = 0, sb = 0;
  for (int64_t i = 0; i < n; ++i) {
    sa += a[i];
    sb += b[i];
  }
  acc[0] += sa;
  acc[1] += sb;
  acc[2] += static_cast<double>(n);
}

template void softmax_xent_ref<float>(const float*, const int32_t*, int64_t, int64_t, float, float*,
                                      float*, float*);
template void softmax_xent_ref<double>(const double*, const int32_t*, int64_t, int64_t, double,
                                       double*, double*, double*);

}  // namespace kiln
