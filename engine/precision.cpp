// --precision: cuBLAS math mode on the context's handle (see precision.h).
#include "engine/precision.h"

#include "engine/error.h"

#ifdef KILN_WITH_CUDA
#include "engine/cublas_api.h"
#include "engine/cuda_check.h"
#endif

namespace kiln {

Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::FP32;
  if (s == "tf32") return Precision::TF32;
  KILN_USAGE_CHECK(s != "bf16", "--precision bf16: not implemented (bf16 mixed precision is out of "
                                "scope so far); expected fp32|tf32");
  KILN_USAGE_FAIL("--precision " << s << ": expected fp32|tf32");
}

const char* precision_name(Precision p) { return p == Precision::TF32 ? "tf32" : "fp32"; }

void set_precision(Context& ctx, Precision p) {
  if (!ctx.cuda()) return;
#ifdef KILN_WITH_CUDA
  KILN_CUBLAS_CHECK(cublas_api().set_math_mode(
      ctx.cublas(), p == Precision::TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
#else
  (void)p;
#endif
}

}  // namespace kiln
