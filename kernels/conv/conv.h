// Convolution family API: 2-D convolution over NCHW tensors with any kernel size, one stride
// and one zero padding for both axes, optional bias. Weights are [K, C, kh, kw] like PyTorch.
// CPU references (suffix _ref, float and double) use im2col + GEMM; the CUDA launchers are
// hand-written implicit-GEMM kernels (conv.cu), with a separate GEMM-over-channels path for
// 1x1/stride 1/no padding convolutions. Every op overwrites its outputs (no accumulation).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/device.h"

namespace kiln {

struct ConvShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // input  [n, c, h, w]
  int64_t k = 1;                       // output channels
  int64_t kh = 1, kw = 1;              // kernel size
  int64_t stride = 1, pad = 0;
  int64_t p() const { return (h + 2 * pad - kh) / stride + 1; }  // output height
  int64_t q() const { return (w + 2 * pad - kw) / stride + 1; }  // output width
  bool is_1x1() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }
  int64_t x_numel() const { return n * c * h * w; }
  int64_t w_numel() const { return k * c * kh * kw; }
  int64_t y_numel() const { return n * k * p() * q(); }
  // Multiply-adds of the forward pass (backward-data and backward-filter do the same number).
  double macs() const {  // (each factor a double: -Wconversion-clean for embedders)
    double m = 1;
    for (int64_t f : {n, k, p(), q(), c, kh, kw}) m *= static_cast<double>(f);
    return m;
  }
};

// ---- shape check --------------------------------------------------------------------------------
// Why `s` is not a convolution kiln computes, or "": empty channels or planes, a kernel or stride
// below 1, negative padding, a window larger than the padded input (PyTorch refuses it; C++'s
// division would give it a positive output size), a dimension but the stride past 2^31-64. The
// batch may be 0. Layers refuse these with a usage error naming the layer; every reference and
// launcher checks them for direct callers (check_conv_shape: a runtime Error "<op>: unsupported
// shape
// ...: <why>").
std::string conv_shape_error(const ConvShape& s);
void check_conv_shape(const ConvShape& s, const char* op);

// ---- CPU references (templates instantiated for float and double) ----------------------------
// y = conv(x, w) + b (then max(0, .) when relu); b may be null.
template <typename T>
void conv2d_fwd_ref(const ConvShape& s, const T* x, const T* w, const T* b, T* y,
                    bool relu = false);
// dx = d(sum dy*y)/dx; relu_y: see above (null: no ReLU).
template <typename T>
void conv2d_bwd_data_ref(const ConvShape& s, const T* dy, const T* w, T* dx,
                         const T* relu_y = nullptr);
// dw = d/dw, db = d/db (db may be null).
template <typename T>
void conv2d_bwd_filter_ref(const ConvShape& s, const T* x, const T* dy, T* dw, T* db,
                           const T* relu_y = nullptr);

// The float references compute stride-1 shapes but the 1x1 GEMM's by direct convolution on x86-64
// CPUs with AVX-512F or AVX2 + FMA (conv_direct_cpu.cpp; backward-data also needs a padding
// below the kernel size); every other shape, and every double call, takes im2col + GEMM. The
// paths sum in different orders and agree to rounding; each gives the same bits on any thread
// count, and the two instruction sets give the same bits as each other (NaN payloads aside: which
// NaN survives a sum is the compiler's choice). A non-finite input gives NaN in the same places
// on every path (the direct filter gradient sums a group again by im2col when its own sums, which
// also multiply zeros by the x past each row's end, are not all finite). conv_ref_paths() lists
// what this CPU runs, best first ("avx512", "avx2", "im2col"); set_conv_ref_path(name) makes
// every later float call take one ("" restores the default, the first; an unknown name or one
// this CPU lacks is an error). Process-wide: tests compare the paths, bench_cpu times them.
std::vector<std::string> conv_ref_paths();
void set_conv_ref_path(const std::string& name);
std::string conv_ref_path();

// ---- index range of the CUDA kernels ------------------------------------------------------------
// The CUDA kernels index with 32-bit ints: tensor offsets (input N*C*H*W, output N*K*P*Q, weight
// K*C*kh*kw), the implicit-GEMM coordinates (N*P*Q, N*H*W: at most the tensor sizes) and
// window rows/columns (H + 2*pad, W + 2*pad); a tile may step up to 63 past the end of the
// range, hence 2^31-64 (the 128-wide tiles run only where the columns end 64 further below).
// Output channels and input channels are also bounded by the grid's y extent (65535 tiles of
// 64). Returns "" when `s` fits, else one line naming the product and its value ("output
// N*K*P*Q = 4*64*3000*3000 = 2304000000 exceeds 2^31-64"). Shape level only: nothing is
// allocated, so layers call it in setup (per sample) and per batch. A shape conv_shape_error
// refuses is refused here too, with its reason.
constexpr int64_t kConvIndexLimit = (int64_t(1) << 31) - 64;
constexpr int64_t kConvMaxChannels = int64_t(65535) * 64;
std::string conv_index_range_error(const ConvShape& s);

// ---- CUDA launchers (conv.cu; call only when built with CUDA) ---------------------------------
// General shapes use implicit GEMM; 1x1/stride 1/pad 0 shapes take the GEMM-over-channels path
// automatically. All results are deterministic (no order-dependent atomics).
void conv2d_fwd(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                cudaStream_t stream, bool relu = false);
void conv2d_bwd_data(const ConvShape& s, const float* dy, const float* w, float* dx,
                     cudaStream_t stream, const float* relu_y = nullptr);
// Floats of scratch conv2d_bwd_filter needs for its fixed split-K partial sums (may be 0).
size_t conv2d_bwd_filter_workspace(const ConvShape& s);
// dw (and db when non-null); workspace holds conv2d_bwd_filter_workspace(s) floats.
void conv2d_bwd_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* db,
                       float* workspace, cudaStream_t stream, const float* relu_y = nullptr);

// Tile choice of the CUDA kernels. kAuto (the default) picks by shape: 128-row tiles when the
// GEMM has more than 64 rows, 128-column tiles for long GEMMs, stepping down while the grid
// would have fewer than 256 blocks; kSmall keeps every tile at most 64 x 64 (the only tiles
// before 2026-12-04); kWide takes the largest tile the shape allows; kTall the most rows with
// 64 columns (128 x 64: two blocks fit an SM where one 128 x 128 does). Results are bitwise the
// same under all four (each output is one thread's sum in reduction order, whatever the
// tile): the switch is there so benchmarks and tests can compare them. Process-wide; change it
// only between launches.
enum class ConvTiles { kAuto, kSmall, kWide, kTall };
void conv_set_tiles(ConvTiles t);
ConvTiles conv_tiles();
// The tiles the launchers would use for `s` now, e.g.
// "fwd 128x128, bwd_data 64x128, bwd_filter 128x64 x 12 splits".
std::string conv_tile_plan(const ConvShape& s);

}  // namespace kiln
