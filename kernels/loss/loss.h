// Loss family: softmax cross-entropy fused with its gradient and with accuracy. Per-sample
// loss and correctness are written out and summed into device accumulators by a single-block
// reduction with a fixed order, so epoch metrics are deterministic and read once per epoch.
#pragma once
#include <cstdint>

#include "engine/device.h"

namespace kiln {

// For each of N rows of K logits: loss[n] = logsumexp(z) - z[label], correct[n] = 1 when the
// first arg-max equals the label, and (when dlogits is not null) dlogits = (softmax(z) -
// onehot(label)) * grad_scale (grad_scale = 1/N for a mean loss).
template <typename T>
void softmax_xent_ref(const T* logits, const int32_t* labels, int64_t N, int64_t K, T grad_scale,
                      T* dlogits, T* loss, T* correct);
void softmax_xent(const float* logits, const int32_t* labels, int64_t N, int64_t K, float grad_scale,
                  float* dlogits, float* loss, float* correct, cudaStream_t stream);

// acc[0] += sum(a[0..n)), acc[1] += sum(b[0..n)), acc[2] += n, in double, fixed order.
void accumulate_sums_ref(const float* a, const float* b, int64_t n, double* acc);
void accumulate_sums(const float* a, const float* b, int64_t n, double* acc, cudaStream_t stream);

}  // namespace kiln
