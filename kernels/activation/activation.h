// Activation family: element-wise ReLU, Sigmoid, Tanh. Backward uses the saved output y
// (all three derivatives are functions of y), so the input need not be kept.
#pragma once
#include <cstdint>
#include <string>

#include "engine/device.h"

namespace kiln {

enum class Act { ReLU, Sigmoid, Tanh };
Act parse_act(const std::string& s);  // "relu" | "sigmoid" | "tanh"
const char* act_name(Act a);

template <typename T>
void activation_fwd_ref(Act a, const T* x, T* y, int64_t n);
template <typename T>
void activation_bwd_ref(Act a, const T* y, const T* dy, T* dx, int64_t n);

void activation_fwd(Act a, const float* x, float* y, int64_t n, cudaStream_t stream);
void activation_bwd(Act a, const float* y, const float* dy, float* dx, int64_t n, cudaStream_t stream);

}  // namespace kiln
