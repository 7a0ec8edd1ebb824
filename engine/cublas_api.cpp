// cuBLAS loaded on first use (see cublas_api.h).
#ifdef KILN_WITH_CUDA
#include "engine/cublas_api.h"

#include <type_traits>

#include "engine/error.h"

#ifndef KILN_CUDA_EMU
#include <dlfcn.h>
#endif

#define KILN_CUBLAS_NAME_(f) #f
#define KILN_CUBLAS_NAME(f) KILN_CUBLAS_NAME_(f)  // cublasCreate -> "cublasCreate_v2"

namespace kiln {

CublasApi load_cublas(const std::vector<std::string>& libraries) {
#ifdef KILN_CUDA_EMU
  (void)libraries;
  CublasApi a;
  a.create = &cublasCreate;
  a.destroy = &cublasDestroy;
  a.set_stream = &cublasSetStream;
  a.set_workspace = &cublasSetWorkspace;
  a.set_math_mode = &cublasSetMathMode;
  a.sgemm = &cublasSgemm;
  a.status_string = &cublasGetStatusString;
  return a;
#else
  void* lib = nullptr;
  std::string tried, opened;
  for (const std::string& name : libraries) {
    lib = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib) {
      opened = name;
      break;
    }
    const char* why = ::dlerror();
    tried += (tried.empty() ? "" : "; ") + (why ? std::string(why) : name + ": cannot open");
  }
  KILN_CHECK(lib, "cuBLAS could not be loaded (" << tried
                                                 << "): add the CUDA toolkit's lib64 (or the "
                                                    "one holding libcublas) to LD_LIBRARY_PATH");
  CublasApi a;
  auto get = [&](auto& fn, const char* symbol) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)> >(::dlsym(lib, symbol));
    KILN_CHECK(fn, opened << ": has no " << symbol << "; not the cuBLAS this build was made for");
  };
  get(a.create, KILN_CUBLAS_NAME(cublasCreate));
  get(a.destroy, KILN_CUBLAS_NAME(cublasDestroy));
  get(a.set_stream, KILN_CUBLAS_NAME(cublasSetStream));
  get(a.set_workspace, KILN_CUBLAS_NAME(cublasSetWorkspace));
  get(a.set_math_mode, KILN_CUBLAS_NAME(cublasSetMathMode));
  get(a.sgemm, KILN_CUBLAS_NAME(cublasSgemm));
  get(a.status_string, KILN_CUBLAS_NAME(cublasGetStatusString));
  return a;  // the library stays open for the process
#endif
}

const CublasApi& cublas_api() {
#ifdef KILN_CUDA_EMU
  static const CublasApi api = load_cublas({});
#else
  static const CublasApi api = load_cublas({KILN_CUBLAS_SONAME, KILN_CUBLAS_PATH});
#endif
  return api;
}

}  // namespace kiln
#endif  // KILN_WITH_CUDA
