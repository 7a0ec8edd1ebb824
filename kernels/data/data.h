// Data kernels: gathering a batch of dataset rows (images and int32 labels) through an index
// array, and CIFAR-style augmentation (random crop from a black-padded image + horizontal flip)
// fused into that gather. The random choices come from a counter-based hash of
// (seed, epoch, dataset index), defined here for host and device, so the CPU reference and the
// GPU kernel pick the same crop and flip for every sample, independent of batch size or order.
#pragma once
#include <cstdint>

#include "engine/device.h"
#include "kernels/dropout/hash.h"

#if defined(__CUDACC__)
#define KILN_DATA_HD __host__ __device__
#else
#define KILN_DATA_HD
#endif

namespace kiln {

// ---- counter-based randomness -----------------------------------------------------------------
// The splitmix64 finaliser shared with dropout (kernels/dropout/hash.h): a bijective mix with good
// avalanche, cheap enough to recompute per pixel. Each of seed, epoch and index is offset by a
// different odd constant before mixing so that zeros do not map to zero.
KILN_DATA_HD inline uint64_t augment_hash(uint64_t seed, uint64_t epoch, uint64_t index) {
  uint64_t k = mix64(seed + 0x9E3779B97F4A7C15ull);
  k = mix64(k ^ (epoch + 0xD1B54A32D192ED03ull));
  return mix64(k ^ (index + 0xA24BAED4963EE407ull));
}

// The augmentation of one sample: crop offset (oy, ox) into the image padded by `pad` on every
// side (each in [0, 2*pad]; pad,pad is the uncropped image) and whether to mirror it.
struct CropFlip {
  int oy, ox;
  bool flip;
};

KILN_DATA_HD inline CropFlip augment_params(uint64_t seed, uint64_t epoch, uint64_t index,
                                            int pad) {
  uint64_t h = augment_hash(seed, epoch, index);
  unsigned span = 2u * static_cast<unsigned>(pad) + 1u;
  CropFlip p;
  p.oy = static_cast<int>((h & 0xFFFFFFu) % span);
  p.ox = static_cast<int>(((h >> 24) & 0xFFFFFFu) % span);
  p.flip = ((h >> 63) & 1u) != 0;
  return p;
}

// ---- shapes -----------------------------------------------------------------------------------
// Gather `count` rows of `row` elements each: dst[j] = src[idx[j]], labels likewise.
struct GatherShape {
  int64_t n_src = 0;  // rows in the source (indices must be in [0, n_src))
  int64_t count = 0;  // rows gathered
  int64_t row = 0;    // elements per row
};

// Gather with crop/flip: samples are (c, h, w) images; out-of-image pixels of the padded view
// read as fill[c] (channels past the third as fill[2]): the dataset's black, so the padding is
// black as torchvision's RandomCrop(padding=4) makes it before Normalize.
struct CropFlipShape {
  int64_t n_src = 0, count = 0;
  int c = 0, h = 0, w = 0;
  int pad = 4;
  uint64_t seed = 0, epoch = 0;
  float fill[3] = {0, 0, 0};
};

// fill[c] by constant indices (a dynamic index into a kernel's by-value argument would put it
// in local memory).
KILN_DATA_HD inline float crop_fill(const CropFlipShape& s, int c) {
  return c == 0 ? s.fill[0] : c == 1 ? s.fill[1] : s.fill[2];
}

// ---- CUDA launchers (built with CUDA only) ----------------------------------------------------
// labels / dst_labels may both be null to gather images only.
void gather_rows_fwd(const float* src, const int32_t* labels, const int32_t* idx,
                     const GatherShape& s, float* dst, int32_t* dst_labels, cudaStream_t stream);
void crop_flip_gather_fwd(const float* src, const int32_t* labels, const int32_t* idx,
                          const CropFlipShape& s, float* dst, int32_t* dst_labels,
                          cudaStream_t stream);

// ---- CPU references (float and double); they also check every index is in range --------------
template <typename T>
void gather_rows_fwd_ref(const T* src, const int32_t* labels, const int32_t* idx,
                         const GatherShape& s, T* dst, int32_t* dst_labels);
template <typename T>
void crop_flip_gather_fwd_ref(const T* src, const int32_t* labels, const int32_t* idx,
                              const CropFlipShape& s, T* dst, int32_t* dst_labels);

}  // namespace kiln
