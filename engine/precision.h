// Math precision of a context (--precision fp32|tf32). tf32 lets cuBLAS use TF32 tensor cores
// (CUBLAS_TF32_TENSOR_OP_MATH: inputs rounded to a 10-bit mantissa, fp32 accumulation) for the
// dense layers' GEMMs; everything else, the hand-written convolutions included, stays fp32.
// Parameters, gradients and optimizer state are fp32 throughout. bf16 mixed precision is not
// implemented (parse_precision says so).
#pragma once
#include <string>

#include "engine/context.h"

namespace kiln {

enum class Precision { FP32, TF32 };

Precision parse_precision(const std::string& s);  // usage error for anything but fp32|tf32
const char* precision_name(Precision p);
// Sets the cuBLAS math mode of ctx's handle; a no-op on a CPU context (fp32 already).
void set_precision(Context& ctx, Precision p);

}  // namespace kiln
