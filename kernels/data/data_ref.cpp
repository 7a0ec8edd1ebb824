// CPU references of the data kernels (kernels/data/data.h). They are also the CPU path of
// BatchIterator, so they validate indices (a bad permutation must not read out of bounds).
#include <cstring>

#include "engine/error.h"
#include "kernels/data/data.h"

namespace kiln {

static void check_indices(const int32_t* idx, int64_t count, int64_t n_src, const char* op) {
  for (int64_t j = 0; j < count; ++j)
    KILN_CHECK(idx[j] >= 0 && idx[j] < n_src, op << ": index " << idx[j] << " at position " << j
                                                 << " outside [0, " << n_src << ")");
}

static void gather_labels(const int32_t* labels, const int32_t* idx, int64_t count,
                          int32_t* dst_labels) {
  if (!labels || !dst_labels) return;
  for (int64_t j = 0; j < count; ++j) dst_labels[j] = labels[idx[j]];
}

template <typename T>
void gather_rows_fwd_ref(const T* src, const int32_t* labels, const int32_t* idx,
                         const GatherShape& s, T* dst, int32_t* dst_labels) {
  check_indices(idx, s.count, s.n_src, "gather_rows");
  for (int64_t j = 0; j < s.count; ++j)
    std::memcpy(dst + j * s.row, src + static_cast<int64_t>(idx[j]) * s.row, s.row * sizeof(T));
  gather_labels(labels, idx, s.count, dst_labels);
}

template <typename T>
void crop_flip_gather_fwd_ref(const T* src, const int32_t* labels, const int32_t* idx,
                              const CropFlipShape& s, T* dst, int32_t* dst_labels) {
  check_indices(idx, s.count, s.n_src, "crop_flip_gather");
  const int64_t plane = static_cast<int64_t>(s.h) * s.w, row = plane * s.c;
  for (int64_t j = 0; j < s.count; ++j) {
    const CropFlip p = augment_params(s.seed, s.epoch, static_cast<uint64_t>(idx[j]), s.pad);
    const T* in = src + static_cast<int64_t>(idx[j]) * row;
    T* out = dst + j * row;
    for (int c = 0; c < s.c; ++c)
      for (int y = 0; y < s.h; ++y)
        for (int x = 0; x < s.w; ++x) {
          // Flip after crop (torchvision order): output column x shows crop column w-1-x.
          int sy = y + p.oy - s.pad;
          int sx = (p.flip ? s.w - 1 - x : x) + p.ox - s.pad;
          bool inside = sy >= 0 && sy < s.h && sx >= 0 && sx < s.w;
          out[c * plane + y * s.w + x] =
              inside ? in[c * plane + sy * s.w + sx] : T(crop_fill(s, c));
        }
  }
  gather_labels(labels, idx, s.count, dst_labels);
}

template void gather_rows_fwd_ref<float>(const float*, const int32_t*, const int32_t*,
                                         const GatherShape&, float*, int32_t*);
template void gather_rows_fwd_ref<double>(const double*, const int32_t*, const int32_t*,
                                          const GatherShape&, double*, int32_t*);
template void crop_flip_gather_fwd_ref<float>(const float*, const int32_t*, const int32_t*,
                                              const CropFlipShape&, float*, int32_t*);
template void crop_flip_gather_fwd_ref<double>(const double*, const int32_t*, const int32_t*,
                                               const CropFlipShape&, double*, int32_t*);

}  // namespace kiln
