// Context: what every op needs besides its tensors: the device, the CUDA stream, the cuBLAS
// handle, the run's seed and the step counter (dropout masks hash (seed, step, index)).
#pragma once
#include <cstdint>

#include "engine/buffer.h"
#include "engine/device.h"

namespace kiln {

class Context {
 public:
  explicit Context(Device device, uint64_t seed = 0);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  bool cuda() const { return device_ == Device::CUDA; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  void sync() const;  // waits for the stream

  uint64_t seed = 0;
  uint64_t step = 0;           // optimizer steps taken; advanced by the trainer
  // CUDA graphs (engine/step_graph.h): while a step is captured, the device address holding the
  // step; kernels that hash the step (dropout) read it there so replays use their own step.
  const uint64_t* step_dev = nullptr;
  bool training = true;        // train() / eval() mode, set by Model
  bool deterministic = false;  // no order-dependent atomics, fixed algorithms

 private:
  Device device_;
  cudaStream_t stream_ = nullptr;
  // cuBLAS's workspace, preallocated (32 MiB on sm_90+, 4 MiB before, as cuBLAS recommends):
  // the same for eager steps and CUDA-graph captures (cuBLAS must not allocate while a stream
  // is captured), so both paths get the same GEMM algorithms and the same numbers.
  Buffer cublas_ws_;
  cublasHandle_t cublas_ = nullptr;
};

}  // namespace kiln
