// cuBLAS, opened when the first CUDA Context is made instead of linked: libcublasLt (540 MB)
// costs every process that links it about 0.4 s and 210 MB of page faults at start, GPU or
// not, so a CPU run, --help or a usage error of a CUDA build paid it for nothing. Include only
// from .cu files or from .cpp files guarded by KILN_WITH_CUDA. (The emulator build's table
// points at the emulator's functions; nothing is opened.)
#pragma once
#include <cublas_v2.h>

#include <string>
#include <vector>

namespace kiln {

// The cuBLAS entry points kiln calls.
struct CublasApi {
  decltype(&cublasCreate) create = nullptr;
  decltype(&cublasDestroy) destroy = nullptr;
  decltype(&cublasSetStream) set_stream = nullptr;
  decltype(&cublasSetWorkspace) set_workspace = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm) sgemm = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

// The table, loaded on the first call (the toolkit's soname, e.g. libcublas.so.13, as the
// loader finds it through LD_LIBRARY_PATH and ld.so.cache, else the library this build linked
// against); a kiln::Error naming what was tried when none loads.
const CublasApi& cublas_api();

// The table from the first of `libraries` that opens; an error names each one tried and why,
// or the entry point missing from the one that opened.
CublasApi load_cublas(const std::vector<std::string>& libraries);

}  // namespace kiln
