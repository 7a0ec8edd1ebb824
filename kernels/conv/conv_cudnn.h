// cuDNN convolution wrapper used as the second oracle (tests/test_conv.cpp) and the baseline
// (benchmarks/bench_conv.cpp). Header-only and never part of the kiln library: include it only
// where KILN_HAVE_CUDNN and KILN_WITH_CUDA are defined. Math is pinned to FP32 FMA
// (CUDNN_FMA_MATH, no TF32) so results and timings compare like with like against kiln's FP32
// kernels.
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>

#include "engine/buffer.h"
#include "engine/cuda_check.h"
#include "kernels/conv/conv.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#define KILN_CUDNN_CHECK(expr)                                                 \
  do {                                                                         \
    cudnnStatus_t kiln_st_ = (expr);                                           \
    KILN_CHECK(kiln_st_ == CUDNN_STATUS_SUCCESS,                               \
               "cuDNN error in " #expr ": " << cudnnGetErrorString(kiln_st_)); \
  } while (0)

namespace kiln::cudnn_conv {

class Conv {
 public:
  // A constructor that throws runs no destructor: release() frees what was made before the throw.
  Conv(const ConvShape& s, cudaStream_t stream) : s_(s) {
    try {
      init(stream);
    } catch (...) {
      release();
      throw;
    }
  }
  ~Conv() { release(); }
  Conv(const Conv&) = delete;
  Conv& operator=(const Conv&) = delete;

  // Benchmarks the algorithms on these buffers (cudnnFind*AlgorithmEx, up to 256 MiB of
  // workspace) and keeps the fastest of each op.
  void find_best(const float* x, const float* w, float* y, const float* dy, float* dx, float* dw) {
    const size_t cap = size_t(256) << 20;
    Buffer scratch(cap, Device::CUDA);  // freed on every path, a throwing Find included
    void* tmp = scratch.data();
    int got = 0;
    cudnnConvolutionFwdAlgoPerf_t fp[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    KILN_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
        h_, xd_, x, wd_, w, cd_, yd_, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, fp, tmp, cap));
    for (int i = 0; i < got; ++i)
      if (fp[i].status == CUDNN_STATUS_SUCCESS) {
        fwd_ = fp[i].algo, fwd_det_ = fp[i].determinism == CUDNN_DETERMINISTIC;
        break;
      }
    cudnnConvolutionBwdDataAlgoPerf_t dp[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    KILN_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
        h_, wd_, w, yd_, dy, cd_, xd_, dx, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, dp, tmp,
        cap));
    for (int i = 0; i < got; ++i)
      if (dp[i].status == CUDNN_STATUS_SUCCESS) {
        data_ = dp[i].algo, data_det_ = dp[i].determinism == CUDNN_DETERMINISTIC;
        break;
      }
    cudnnConvolutionBwdFilterAlgoPerf_t wp[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    KILN_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
        h_, xd_, x, yd_, dy, cd_, wd_, dw, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, wp, tmp,
        cap));
    for (int i = 0; i < got; ++i)
      if (wp[i].status == CUDNN_STATUS_SUCCESS) {
        filter_ = wp[i].algo, filter_det_ = wp[i].determinism == CUDNN_DETERMINISTIC;
        break;
      }
    scratch = Buffer();
    reserve_for_algos();
  }

  // Whether the algorithms in use give the same bits on every run (find_best may pick ones that
  // sum with atomics; kiln's conv kernels are deterministic).
  bool fwd_deterministic() const { return fwd_det_; }
  bool data_deterministic() const { return data_det_; }
  bool filter_deterministic() const { return filter_det_; }

  void fwd(const float* x, const float* w, const float* b, float* y) {
    const float one = 1.f, zero = 0.f;
    KILN_CUDNN_CHECK(cudnnConvolutionForward(h_, &one, xd_, x, wd_, w, cd_, fwd_, ws_.data(),
                                             ws_.bytes(), &zero, yd_, y));
    if (b) KILN_CUDNN_CHECK(cudnnAddTensor(h_, &one, bd_, b, &one, yd_, y));
  }
  void bwd_data(const float* dy, const float* w, float* dx) {
    const float one = 1.f, zero = 0.f;
    KILN_CUDNN_CHECK(cudnnConvolutionBackwardData(h_, &one, wd_, w, yd_, dy, cd_, data_, ws_.data(),
                                                  ws_.bytes(), &zero, xd_, dx));
  }
  void bwd_filter(const float* x, const float* dy, float* dw, float* db) {
    const float one = 1.f, zero = 0.f;
    KILN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h_, &one, xd_, x, yd_, dy, cd_, filter_,
                                                    ws_.data(), ws_.bytes(), &zero, wd_, dw));
    if (db) KILN_CUDNN_CHECK(cudnnConvolutionBackwardBias(h_, &one, yd_, dy, &zero, bd_, db));
  }

 private:
  void init(cudaStream_t stream) {
    KILN_CUDNN_CHECK(cudnnCreate(&h_));
    KILN_CUDNN_CHECK(cudnnSetStream(h_, stream));
    KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd_));
    KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd_));
    KILN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd_));
    KILN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd_));
    KILN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd_));
    KILN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(s_.n),
                                                int(s_.c), int(s_.h), int(s_.w)));
    KILN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(s_.n),
                                                int(s_.k), int(s_.p()), int(s_.q())));
    KILN_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(bd_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, int(s_.k), 1, 1));
    KILN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd_, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(s_.k),
                                                int(s_.c), int(s_.kh), int(s_.kw)));
    KILN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd_, int(s_.pad), int(s_.pad), int(s_.stride),
                                                     int(s_.stride), 1, 1, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_FLOAT));
    KILN_CUDNN_CHECK(cudnnSetConvolutionMathType(cd_, CUDNN_FMA_MATH));
    reserve_for_algos();
  }
  void release() noexcept {
    ws_ = Buffer();
    if (cd_) cudnnDestroyConvolutionDescriptor(cd_);
    if (wd_) cudnnDestroyFilterDescriptor(wd_);
    if (bd_) cudnnDestroyTensorDescriptor(bd_);
    if (yd_) cudnnDestroyTensorDescriptor(yd_);
    if (xd_) cudnnDestroyTensorDescriptor(xd_);
    if (h_) cudnnDestroy(h_);
    cd_ = nullptr;
    wd_ = nullptr;
    bd_ = yd_ = xd_ = nullptr;
    h_ = nullptr;
  }
  void reserve_for_algos() {
    size_t a = 0, b = 0, c = 0;
    KILN_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h_, xd_, wd_, cd_, yd_, fwd_, &a));
    KILN_CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataWorkspaceSize(h_, wd_, yd_, cd_, xd_, data_, &b));
    KILN_CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterWorkspaceSize(h_, xd_, yd_, cd_, wd_, filter_, &c));
    const size_t need = std::max({a, b, c, size_t(1)});
    if (need > ws_.bytes()) {
      ws_ = Buffer();  // the old workspace goes first: the new one may not fit beside it
      ws_ = Buffer(need, Device::CUDA);
    }
  }
  ConvShape s_;
  cudnnHandle_t h_ = nullptr;
  cudnnTensorDescriptor_t xd_ = nullptr, yd_ = nullptr, bd_ = nullptr;
  cudnnFilterDescriptor_t wd_ = nullptr;
  cudnnConvolutionDescriptor_t cd_ = nullptr;
  // Deterministic implicit-GEMM defaults until find_best picks others.
  cudnnConvolutionFwdAlgo_t fwd_ = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnConvolutionBwdDataAlgo_t data_ = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  cudnnConvolutionBwdFilterAlgo_t filter_ = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  bool fwd_det_ = true, data_det_ = true, filter_det_ = true;
  Buffer ws_;
};

}  // namespace kiln::cudnn_conv

#pragma GCC diagnostic pop
