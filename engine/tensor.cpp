#include "engine/tensor.h"

#include <limits>
#include <sstream>
#include <utility>

#include "engine/error.h"
#include "engine/numtext.h"

namespace kiln {

Tensor::Tensor(Tensor&& o) noexcept
    : buf_(std::move(o.buf_)),
      data_(std::exchange(o.data_, nullptr)),
      shape_(std::move(o.shape_)),
      device_(o.device_) {
  o.shape_.clear();
}

Tensor& Tensor::operator=(Tensor&& o) noexcept {
  if (this != &o) {
    buf_ = std::move(o.buf_);
    data_ = std::exchange(o.data_, nullptr);
    shape_ = std::move(o.shape_);
    o.shape_.clear();
    device_ = o.device_;
  }
  return *this;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  KILN_CHECK(i >= -n && i < n, "tensor " << shape_str(shape_) << ": no dimension " << i);
  return shape_[static_cast<size_t>(i < 0 ? i + n : i)];
}

int64_t shape_numel(const Shape& s) {
  for (int64_t d : s)
    if (d == 0) return 0;  // {2^62, 4, 0} holds nothing, though its first two overflow
  int64_t n = 1;
  for (int64_t d : s)
    KILN_CHECK(!__builtin_mul_overflow(n, d, &n),
               "shape " << shape_str(s) << ": more than 2^63-1 elements");
  return n;
}

std::string shape_str(const Shape& s) {
  ClassicOStringStream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

namespace {
// The bytes of a float tensor of `shape`, refused for a negative dimension and past 2^63-1
// (the product wrapped: {2^62+1} needed "16 bytes").
size_t shape_bytes(const Shape& shape) {
  for (int64_t d : shape) KILN_CHECK(d >= 0, "negative dimension in shape " << shape_str(shape));
  const int64_t n = shape_numel(shape);
  KILN_CHECK(n <= std::numeric_limits<int64_t>::max() / int64_t(sizeof(float)),
             "shape " << shape_str(shape) << ": " << n << " floats are more than 2^63-1 bytes");
  return static_cast<size_t>(n) * sizeof(float);
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, Device device) {
  Tensor t;
  t.buf_ = std::make_shared<Buffer>(shape_bytes(shape), device);
  t.data_ = static_cast<float*>(t.buf_->data());
  t.shape_ = shape;
  t.device_ = device;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, Device device) {
  Tensor t = empty(shape, device);
  t.zero_();
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& shape, Device device) {
  KILN_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape),
             "from_vector: " << v.size() << " values for shape " << shape_str(shape));
  Tensor t = empty(shape, device);
  copy_bytes(t.data_, device, v.data(), Device::CPU, t.bytes());
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  for (int64_t d : shape)
    KILN_CHECK(d >= 0, "reshape " << shape_str(shape_) << " -> " << shape_str(shape)
                                  << ": negative dimension");
  KILN_CHECK(shape_numel(shape) == numel(),
             "reshape " << shape_str(shape_) << " -> " << shape_str(shape) << ": sizes differ");
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  KILN_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
             "rows(" << begin << ", " << end << ") out of range for " << shape_str(shape_));
  Tensor t = *this;
  int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  t.data_ = data_ + begin * row;
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::to(Device device) const {
  if (!buf_) return Tensor();  // undefined stays so (not a 0-d tensor of garbage)
  Tensor t = empty(shape_, device);
  copy_bytes(t.data_, device, data_, device_, bytes());
  return t;
}

Tensor Tensor::clone() const { return to(device_); }

std::vector<float> Tensor::to_vector() const {
  std::vector<float> v(static_cast<size_t>(numel()));
  copy_bytes(v.data(), Device::CPU, data_, device_, bytes());
  return v;
}

void Tensor::copy_from(const Tensor& src, cudaStream_t stream) {
  KILN_CHECK(src.numel() == numel(),
             "copy_from: " << shape_str(src.shape_) << " into " << shape_str(shape_));
  copy_bytes(data_, device_, src.data_, src.device_, bytes(), stream);
}

void Tensor::zero_(cudaStream_t stream) { zero_bytes(data_, device_, bytes(), stream); }

size_t Tensor::capacity_bytes() const {
  if (!buf_) return 0;
  auto* base = static_cast<char*>(buf_->data());
  return buf_->bytes() - static_cast<size_t>(reinterpret_cast<char*>(data_) - base);
}

Tensor Tensor::view_as(const Shape& shape) const {
  const size_t need = shape_bytes(shape);
  KILN_CHECK(need <= capacity_bytes(),
             "view_as " << shape_str(shape) << " exceeds the storage of " << shape_str(shape_));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

void ensure(Tensor& t, const Shape& shape, Device device) {
  const size_t need = shape_bytes(shape);
  if (t.data() && t.device() == device && t.capacity_bytes() >= need) {
    if (t.shape() != shape) t = t.view_as(shape);
    return;
  }
  t = Tensor::empty(shape, device);
}

}  // namespace kiln
