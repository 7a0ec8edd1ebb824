// CPU reference for dropout: the same hash as the CUDA kernel, so masks agree bit for bit.
#include "engine/parallel.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"

namespace kiln {

namespace {
template <typename T>
void apply_mask(const T* in, T* out, const DropoutParams& p, const DropoutShape& s) {
  const int64_t total = s.numel();
  const T scale = static_cast<T>(p.scale);
  const uint64_t key = p.step_ptr ? dropout_key(p.seed, *p.step_ptr, p.salt) : p.key;
  // Each element's mask bit depends on its index alone: threads take runs of elements.
  parallel_for(
      total,
      [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const uint64_t ctr =
              p.channelwise ? static_cast<uint64_t>(i / s.hw) : static_cast<uint64_t>(i);
          // A dropped element is in * 0, not 0: a NaN or inf stays NaN, as torch's input * mask.
          out[i] = in[i] * (dropout_keep(key, ctr, p.threshold) ? scale : T(0));
        }
      },
      kElementwiseGrain);
}
}  // namespace

template <typename T>
void dropout_fwd_ref(const T* x, T* y, const DropoutParams& p, const DropoutShape& s) {
  apply_mask(x, y, p, s);
}

template <typename T>
void dropout_bwd_ref(const T* dy, T* dx, const DropoutParams& p, const DropoutShape& s) {
  apply_mask(dy, dx, p, s);
}

template void dropout_fwd_ref<float>(const float*, float*, const DropoutParams&,
                                     const DropoutShape&);
template void dropout_fwd_ref<double>(const double*, double*, const DropoutParams&,
                                      const DropoutShape&);
template void dropout_bwd_ref<float>(const float*, float*, const DropoutParams&,
                                     const DropoutShape&);
template void dropout_bwd_ref<double>(const double*, double*, const DropoutParams&,
                                      const DropoutShape&);

}  // namespace kiln
