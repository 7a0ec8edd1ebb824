// CPU reference for dropout: the same hash as the CUDA kernel, so masks agree bit for bit.
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/error.h"
#include "engine/parallel.h"
#include "kernels/cpu_isa.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"

namespace kiln {

namespace {
// The element-wise mask: one hash per element, most of dropout's time. Its 64-bit multiplies
// vectorise only where the instruction set has them (AVX-512DQ: about 10x the baseline x86-64
// loop here; AVX2 emulates them: about 2x), so x86-64 builds also compile it for those and pick
// at run time. Integer work and one multiply by scale or 0 per element (nothing to contract or
// reorder): every version writes the same bits.
template <typename T>
KILN_ALWAYS_INLINE void mask_elements(const T* in, T* out, int64_t b, int64_t e, uint64_t key,
                                      uint32_t threshold, T scale) {
  // A dropped element is in * 0, not 0: a NaN or inf stays NaN, as torch's input * mask.
  for (int64_t i = b; i < e; ++i)
    out[i] = in[i] * (dropout_keep(key, static_cast<uint64_t>(i), threshold) ? scale : T(0));
}

template <typename T>
using MaskFn = void (*)(const T*, T*, int64_t, int64_t, uint64_t, uint32_t, T);

template <typename T>
void mask_generic(const T* in, T* out, int64_t b, int64_t e, uint64_t key, uint32_t thr, T scale) {
  mask_elements(in, out, b, e, key, thr, scale);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KILN_DROPOUT_X86 1
template <typename T>
__attribute__((target("avx2"))) void mask_avx2(const T* in, T* out, int64_t b, int64_t e,
                                               uint64_t key, uint32_t thr, T scale) {
  mask_elements(in, out, b, e, key, thr, scale);
}
template <typename T>
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) void mask_avx512(
    const T* in, T* out, int64_t b, int64_t e, uint64_t key, uint32_t thr, T scale) {
  mask_elements(in, out, b, e, key, thr, scale);
}
#endif

struct MaskIsa {
  const char* name;
  bool (*runs)();
  MaskFn<float> f32;
  MaskFn<double> f64;
};

// Best first. A constant table: nothing to construct or destroy, so the entry points' cached
// choice stays valid up to the process's end.
const MaskIsa kMaskIsas[] = {
#ifdef KILN_DROPOUT_X86
    {"avx512",
     [] {
       return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
              __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
     },
     mask_avx512<float>, mask_avx512<double>},
    {"avx2", [] { return static_cast<bool>(__builtin_cpu_supports("avx2")); }, mask_avx2<float>,
     mask_avx2<double>},
#endif
    {"generic", [] { return true; }, mask_generic<float>, mask_generic<double>},
};

const MaskIsa& find_mask_isa(const std::string& name) {
  return find_isa(kMaskIsas, name, "dropout: no mask loop");
}

// The best this CPU runs, found once for the entry points.
const MaskIsa& best_isa() {
  static const MaskIsa& best = find_mask_isa("");
  return best;
}

template <typename T>
MaskFn<T> pick(const MaskIsa& m) {
  if constexpr (std::is_same_v<T, float>)
    return m.f32;
  else
    return m.f64;
}

template <typename T>
void apply_mask(const MaskIsa& isa, const T* in, T* out, const DropoutParams& p,
                const DropoutShape& s) {
  const int64_t total = s.numel();
  const T scale = static_cast<T>(p.scale);
  const uint64_t key = p.step_ptr ? dropout_key(p.seed, *p.step_ptr, p.salt) : p.key;
  const uint32_t thr = p.threshold;
  const MaskFn<T> elements = pick<T>(isa);
  // Each element's mask bit depends on its index alone: threads take runs of elements. Channel
  // dropout draws once per plane of hw elements, also for a plane a run starts inside.
  parallel_for(
      total,
      [&](int64_t b, int64_t e) {
        if (!p.channelwise) return elements(in, out, b, e, key, thr, scale);
        for (int64_t i = b; i < e;) {
          const uint64_t plane = static_cast<uint64_t>(i / s.hw);
          const T f = dropout_keep(key, plane, thr) ? scale : T(0);
          const int64_t end = std::min(e, i + s.hw - i % s.hw);
          for (; i < end; ++i) out[i] = in[i] * f;
        }
      },
      kElementwiseGrain);
}
}  // namespace

std::vector<std::string> dropout_ref_isas() {
  return isa_names(kMaskIsas);
}

template <typename T>
void dropout_fwd_ref(const T* x, T* y, const DropoutParams& p, const DropoutShape& s) {
  apply_mask(best_isa(), x, y, p, s);
}

template <typename T>
void dropout_bwd_ref(const T* dy, T* dx, const DropoutParams& p, const DropoutShape& s) {
  apply_mask(best_isa(), dy, dx, p, s);
}

template <typename T>
void dropout_ref_isa(const std::string& isa, const T* x, T* y, const DropoutParams& p,
                     const DropoutShape& s) {
  apply_mask(find_mask_isa(isa), x, y, p, s);
}

template void dropout_fwd_ref<float>(const float*, float*, const DropoutParams&,
                                     const DropoutShape&);
template void dropout_fwd_ref<double>(const double*, double*, const DropoutParams&,
                                      const DropoutShape&);
template void dropout_bwd_ref<float>(const float*, float*, const DropoutParams&,
                                     const DropoutShape&);
template void dropout_bwd_ref<double>(const double*, double*, const DropoutParams&,
                                      const DropoutShape&);
template void dropout_ref_isa<float>(const std::string&, const float*, float*, const DropoutParams&,
                                     const DropoutShape&);
template void dropout_ref_isa<double>(const std::string&, const double*, double*,
                                      const DropoutParams&, const DropoutShape&);

}  // namespace kiln
