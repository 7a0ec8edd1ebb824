// Device queries and memory primitives. The CUDA calls are compiled only with KILN_WITH_CUDA;
// a CPU-only build reports no GPU and refuses CUDA memory with a clear error.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "engine/buffer.h"
#include "engine/context.h"
#include "engine/error.h"
#include "engine/numtext.h"

#ifdef KILN_WITH_CUDA
#include "engine/cublas_api.h"
#include "engine/cuda_check.h"
#endif

namespace kiln {

bool built_with_cuda() {
#ifdef KILN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
#ifdef KILN_WITH_CUDA
  static const bool ok = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      return false;
    }
    return n > 0;
  }();
  return ok;
#else
  return false;
#endif
}

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::CPU;
  if (s == "cuda") return Device::CUDA;
  KILN_USAGE_FAIL("unknown device '" << s << "' (expected cpu or cuda)");
}

std::string cuda_device_description() {
#ifdef KILN_WITH_CUDA
  if (!cuda_available()) return "";
  int dev = 0, driver = 0;
  cudaDeviceProp p{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return "";
  cudaDriverGetVersion(&driver);
  ClassicOStringStream os;
  os << p.name << ", sm_" << p.major << p.minor << ", driver " << driver / 1000 << "."
     << (driver % 1000) / 10;
  return os.str();
#else
  return "";
#endif
}

#ifndef KILN_WITH_CUDA
[[noreturn]] static void no_cuda() {
  KILN_USAGE_FAIL("this kiln was built without CUDA; use --device cpu");
}
#endif

// ---- Buffer -----------------------------------------------------------------------------------
namespace {
std::atomic<size_t> g_live_bytes[2];  // host, CUDA
std::atomic<size_t>& live_counter(Device d) {
  return g_live_bytes[d == Device::CPU ? 0 : 1];
}
}  // namespace

size_t Buffer::live_bytes(Device device) {
  return live_counter(device).load();
}

Buffer::Buffer(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (bytes == 0) return;
  if (device == Device::CPU) {
    // (a size within 63 of SIZE_MAX would round up to a tiny one)
    ptr_ = bytes <= SIZE_MAX - 63 ? std::aligned_alloc(64, (bytes + 63) / 64 * 64) : nullptr;
    if (!ptr_)
      KILN_OUT_OF_MEMORY("out of memory: cannot allocate " << bytes << " bytes of host memory");
  } else {
#ifdef KILN_WITH_CUDA
    KILN_CHECK(cuda_available(), "no CUDA device answers; use --device cpu");
    cudaError_t e = cudaMalloc(&ptr_, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // not sticky: clear it, the next allocation may fit
      ptr_ = nullptr;
      KILN_OUT_OF_MEMORY("out of memory: cudaMalloc of "
                         << bytes << " bytes failed: " << cudaGetErrorString(e));
    }
    KILN_CHECK(e == cudaSuccess,
               "cudaMalloc of " << bytes << " bytes failed: " << cudaGetErrorString(e));
#else
    no_cuda();
#endif
  }
  live_counter(device) += bytes;
}

Buffer::~Buffer() { release(); }

void Buffer::release() noexcept {
  if (!ptr_) return;
  live_counter(device_) -= bytes_;
  if (device_ == Device::CPU) {
    std::free(ptr_);
  } else {
#ifdef KILN_WITH_CUDA
    cudaFree(ptr_);
#endif
  }
  ptr_ = nullptr;
  bytes_ = 0;
}

Buffer::Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_), device_(o.device_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    device_ = o.device_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes,
                cudaStream_t stream) {
  if (bytes == 0) return;
  if (dst_dev == Device::CPU && src_dev == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef KILN_WITH_CUDA
  cudaMemcpyKind kind = dst_dev == Device::CUDA
                            ? (src_dev == Device::CUDA ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                            : cudaMemcpyDeviceToHost;
  if (stream) {
    KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
  } else {
    KILN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
  }
#else
  (void)stream;
  no_cuda();
#endif
}

void zero_bytes(void* dst, Device dev, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  if (dev == Device::CPU) {
    std::memset(dst, 0, bytes);
    return;
  }
#ifdef KILN_WITH_CUDA
  KILN_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream));
  if (!stream) KILN_CUDA_CHECK(cudaStreamSynchronize(nullptr));
#else
  (void)stream;
  no_cuda();
#endif
}

void stream_sync(cudaStream_t stream) {
#ifdef KILN_WITH_CUDA
  if (cuda_available()) KILN_CUDA_CHECK(cudaStreamSynchronize(stream));
#else
  (void)stream;
#endif
}

// ---- Context ----------------------------------------------------------------------------------
Context::Context(Device device, uint64_t seed_) : seed(seed_), device_(device) {
  if (device == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    KILN_CHECK(cuda_available(), "no CUDA device answers; use --device cpu");
    // A blocking stream on purpose: synchronous copies (Tensor::to_vector, to(), from_vector)
    // run on the legacy default stream, which orders itself after blocking streams only. With
    // cudaStreamNonBlocking a to_vector() right after enqueued kernels could read stale data.
    KILN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamDefault));
    KILN_CUBLAS_CHECK(cublas_api().create(&cublas_));
    KILN_CUBLAS_CHECK(cublas_api().set_stream(cublas_, stream_));
    int dev = 0, major = 0;
    KILN_CUDA_CHECK(cudaGetDevice(&dev));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    const size_t ws = (major >= 9 ? 32u : 4u) << 20;
    cublas_ws_ = Buffer(ws, Device::CUDA);
    KILN_CUBLAS_CHECK(cublas_api().set_workspace(cublas_, cublas_ws_.data(), ws));
#else
    no_cuda();
#endif
  }
}

Context::~Context() {
#ifdef KILN_WITH_CUDA
  if (cublas_) cublas_api().destroy(cublas_);
  if (stream_) cudaStreamDestroy(stream_);
#endif
}

void Context::sync() const {
  if (device_ == Device::CUDA) stream_sync(stream_);
}

#ifdef KILN_WITH_CUDA
const char* cublas_status_string(cublasStatus_t s) {
  return cublas_api().status_string(s);
}
#endif

}  // namespace kiln
