// Buffer: an RAII, move-only block of bytes on the host or on a CUDA device. The only place
// memory is allocated; tensors and datasets share buffers through std::shared_ptr.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/device.h"

namespace kiln {

class Buffer {
 public:
  Buffer() = default;
  Buffer(size_t bytes, Device device);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  // Bytes the process's live Buffers hold on `device` (torch.cuda.memory_allocated, and the
  // host's too): what a model, a trainer or a layer's scratch keeps.
  static size_t live_bytes(Device device);

 private:
  void release() noexcept;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::CPU;
};

// Copies bytes between any two devices. With a stream the copy is asynchronous on it (host
// memory must then stay alive); without, it completes before returning.
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes,
                cudaStream_t stream = nullptr);
// Sets bytes to zero (async on stream for CUDA memory).
void zero_bytes(void* dst, Device dev, size_t bytes, cudaStream_t stream = nullptr);
// Waits for all work on the stream (no-op for the CPU).
void stream_sync(cudaStream_t stream);

}  // namespace kiln
