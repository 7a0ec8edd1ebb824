// Tensor: a float32 NCHW (or N,F) array on one device, sharing ownership of a Buffer. Views
// (reshape, row slices) share the buffer; data moves between devices only through to().
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/buffer.h"

namespace kiln {

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[128, 8, 26, 26]"

class Tensor {
 public:
  Tensor() = default;  // undefined: no storage, numel() 0
  Tensor(const Tensor&) = default;
  Tensor& operator=(const Tensor&) = default;
  // A moved-from tensor is undefined (the default move kept its data pointer, dangling once
  // the storage it no longer owned was freed).
  Tensor(Tensor&& o) noexcept;
  Tensor& operator=(Tensor&& o) noexcept;
  ~Tensor() = default;
  static Tensor empty(const Shape& shape, Device device);
  static Tensor zeros(const Shape& shape, Device device);
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape, Device device);

  bool defined() const { return data_ != nullptr || (buf_ && shape_numel(shape_) == 0); }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const;  // i < 0 counts from the end; out of range: a kiln Error
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return buf_ ? shape_numel(shape_) : 0; }  // (shape {} alone is 1)
  size_t bytes() const { return static_cast<size_t>(numel()) * sizeof(float); }
  Device device() const { return device_; }
  float* data() const { return data_; }

  Tensor reshape(const Shape& shape) const;            // same numel, shared storage
  Tensor rows(int64_t begin, int64_t end) const;       // [begin, end) along dim 0, shared
  Tensor view_as(const Shape& shape) const;            // any numel within the storage, shared
  Tensor to(Device device) const;                      // deep copy (synchronous)
  Tensor clone() const;                                // deep copy on the same device
  std::vector<float> to_vector() const;                // synchronous copy to the host
  void copy_from(const Tensor& src, cudaStream_t stream = nullptr);  // same numel
  void zero_(cudaStream_t stream = nullptr);
  // Bytes of storage this tensor may grow into without reallocating.
  size_t capacity_bytes() const;

 private:
  std::shared_ptr<Buffer> buf_;
  float* data_ = nullptr;
  Shape shape_;
  Device device_ = Device::CPU;
};

// Makes t a tensor of `shape` on `device`, reusing its storage when it is large enough (the
// pointer then stays stable across steps, which CUDA graph capture relies on).
void ensure(Tensor& t, const Shape& shape, Device device);

}  // namespace kiln
