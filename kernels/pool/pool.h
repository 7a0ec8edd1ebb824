// Pooling family API over NCHW tensors: max pooling (the first maximum in row-major window
// order wins ties, on CPU and GPU alike; its position is stored as an int32 index into the
// input plane, h*W + w, for backward), average pooling (zero padding counted in the divisor,
// PyTorch's count_include_pad=True) and global average pooling ([N, C, H, W] -> [N, C]).
// Backward passes gather over the windows that cover each input element, so they are
// deterministic and write every element of dx (no atomics, no separate zeroing).
#pragma once
#include <cstdint>
#include <string>

#include "engine/device.h"

namespace kiln {

struct PoolShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // input [n, c, h, w]
  int64_t kh = 2, kw = 2, stride = 2, pad = 0;
  constexpr int64_t p() const { return (h + 2 * pad - kh) / stride + 1; }
  constexpr int64_t q() const { return (w + 2 * pad - kw) / stride + 1; }
  int64_t x_numel() const { return n * c * h * w; }
  int64_t y_numel() const { return n * c * p() * q(); }
};

// Max pooling's winner is an int32 index h*W + w into one input plane (CPU and GPU alike), so
// a plane may hold at most 2^31-1 elements; every other index in this family is 64-bit.
constexpr int64_t kPoolMaxPlane = 2147483647;

// "" when every function below can take `s`, else why not (one line): a stride below 1 (a
// division by zero), padding past half the window (windows wholly in the padding; PyTorch
// refuses them too), a window larger than the padded plane, a window or a plane past kPoolMaxPlane.
// The layers refuse such shapes with a usage error first; the launchers and references check
// again for direct callers (a runtime error naming the function).
std::string pool_shape_error(const PoolShape& s);
// Throws a runtime Error "<op>: unsupported shape ...: <why>" unless pool_shape_error(s) is "".
void check_pool_shape(const PoolShape& s, const char* op);

// ---- CPU references (float and double) --------------------------------------------------------
template <typename T>
void maxpool2d_fwd_ref(const PoolShape& s, const T* x, T* y, int32_t* argmax);
template <typename T>
void maxpool2d_bwd_ref(const PoolShape& s, const T* dy, const int32_t* argmax, T* dx);
template <typename T>
void avgpool2d_fwd_ref(const PoolShape& s, const T* x, T* y);
template <typename T>
void avgpool2d_bwd_ref(const PoolShape& s, const T* dy, T* dx);
// planes = N*C, hw = H*W: y[i] = mean(x[i*hw .. (i+1)*hw)).
template <typename T>
void global_avgpool_fwd_ref(int64_t planes, int64_t hw, const T* x, T* y);
template <typename T>
void global_avgpool_bwd_ref(int64_t planes, int64_t hw, const T* dy, T* dx);

// ---- CUDA launchers (pool.cu) -----------------------------------------------------------------
void maxpool2d_fwd(const PoolShape& s, const float* x, float* y, int32_t* argmax,
                   cudaStream_t stream);
void maxpool2d_bwd(const PoolShape& s, const float* dy, const int32_t* argmax, float* dx,
                   cudaStream_t stream);
void avgpool2d_fwd(const PoolShape& s, const float* x, float* y, cudaStream_t stream);
void avgpool2d_bwd(const PoolShape& s, const float* dy, float* dx, cudaStream_t stream);
void global_avgpool_fwd(int64_t planes, int64_t hw, const float* x, float* y, cudaStream_t stream);
void global_avgpool_bwd(int64_t planes, int64_t hw, const float* dy, float* dx,
                        cudaStream_t stream);
// The max/avg pooling kernels and global average pooling's backward index in 32 bits where the
// tensors allow (a GPU divides those several times faster) and in 64 bits past that; on: 64
// bits always. The same results either way; process-wide, for tests and benchmarks to compare.
// Change it between launches.
void pool_set_index64(bool on);
// 32 or 64: the index width the max/avg kernels would use for `s` now (host arithmetic only).
int pool_index_bits(const PoolShape& s);

}  // namespace kiln
