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
    // NaN when the row has one: loss and dlogits are NaN then, as in PyTorch. An infinite
    // maximum (a +inf logit, or every logit -inf) too, as torch's cross_entropy gives.
    T m = std::isinf(z[arg]) ? T(NAN) : z[arg];
    // s1 = sum over k != arg of exp(z[k] - m), so the softmax denominator is 1 + s1 and
    // loss = log1p(s1) - (z[y] - m): a confident row's small loss keeps float precision
    // (log(1 + s1) would round 1 + s1 first; (m + log s) - z[y] rounds to m's precision).
    T s1 = 0;
    for (int64_t k = 0; k < K; ++k)
      if (k != arg) s1 += std::exp(z[k] - m);
    int32_t y = labels[n];
    loss[n] = std::log1p(s1) - (z[y] - m);
    correct[n] = arg == y ? T(1) : T(0);
    if (dlogits) {
      const T denom = T(1) + s1;
      for (int64_t k = 0; k < K; ++k) {
        // p - 1 for the arg-max label is -s1 / (1 + s1), without the cancellation.
        T d = k != y     ? std::exp(z[k] - m) / denom
              : k == arg ? -s1 / denom
                         : std::exp(z[k] - m) / denom - T(1);
        dlogits[n * K + k] = d * grad_scale;
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
