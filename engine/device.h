// Devices and the opaque CUDA handle types. Headers of the library never include CUDA headers,
// so a CPU-only build (no toolkit at all) compiles them; the typedefs below are the exact ones
// the CUDA headers use, so the two agree when both are seen.
#pragma once
#include <string>

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;
struct CUevent_st;
typedef struct CUevent_st* cudaEvent_t;
struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

namespace kiln {

enum class Device { CPU, CUDA };

// True when the library was built with CUDA.
bool built_with_cuda();
// True when built with CUDA and at least one device answers (cudaGetDeviceCount succeeds, > 0).
bool cuda_available();
const char* device_name(Device d);
// "cpu" | "cuda"; anything else is a usage error naming the value.
Device parse_device(const std::string& s);
// A one-line description of the current GPU ("NVIDIA H100 80GB HBM3, sm_90, driver 13.0"), or "".
std::string cuda_device_description();

}  // namespace kiln
