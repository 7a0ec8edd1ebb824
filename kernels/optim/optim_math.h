// Per-element optimizer math shared by the CPU reference (optim_ref.cpp) and the CUDA step
// (optim.cu), so both apply the same formulas in the same order (see optim.h). Host and device
// both see it; nothing here allocates or loops over tensors.
#pragma once
#include <cmath>

#include "kernels/optim/optim.h"

#ifdef __CUDACC__
#define KILN_OPTIM_HD __host__ __device__ __forceinline__
#else
#define KILN_OPTIM_HD inline
#endif

namespace kiln {

KILN_OPTIM_HD float optim_sqrt(float x) { return sqrtf(x); }
KILN_OPTIM_HD double optim_sqrt(double x) { return sqrt(x); }

// Scalars of one step that do not depend on the element, computed once on the host (in double,
// then rounded to float) and handed to the kernels as arguments.
struct OptimScalars {
  float step_size = 0;   // Adam: lr / (1 - beta1^t); others: lr
  float bc2_sqrt = 1;    // Adam: sqrt(1 - beta2^t)
  float decay_mul = 1;   // AdamW: 1 - lr*wd
  int first = 0;         // t == 1: SGD momentum buffer starts as g
};

inline OptimScalars optim_scalars(const OptimHyper& h) {
  OptimScalars s;
  double t = static_cast<double>(h.step);
  s.step_size = h.lr;
  if (h.kind == OptimKind::Adam || h.kind == OptimKind::AdamW) {
    s.step_size = static_cast<float>(h.lr / (1.0 - std::pow(static_cast<double>(h.beta1), t)));
    s.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(h.beta2), t)));
  }
  if (h.kind == OptimKind::AdamW) s.decay_mul = static_cast<float>(1.0 - double(h.lr) * h.weight_decay);
  s.first = h.step <= 1;
  return s;
}

// Everything of one step that a schedule or the step count changes, as the CUDA-graph path
// (optim_step_device) reads it from device memory: the whole hyper-parameter block and its
// derived scalars, computed on the host exactly as the argument path computes them.
struct OptimStepArgs {
  OptimHyper h;
  OptimScalars sc;
};
inline OptimStepArgs optim_step_args(const OptimHyper& h) { return {h, optim_scalars(h)}; }

// The sticky non-finite flag's value for a skipped step: its 1-based count, kept in 1..INT_MAX.
KILN_OPTIM_HD int optim_sticky_step(int64_t step) {
  return step < 1 ? 1 : step > 2147483647 ? 2147483647 : static_cast<int>(step);
}

// Which state buffers a step reads and writes (s1/s2 as in optim_step_ref).
KILN_OPTIM_HD void optim_uses_state(const OptimHyper& h, bool have1, bool have2, int& use1, int& use2) {
  const bool adam = h.kind == OptimKind::Adam || h.kind == OptimKind::AdamW;
  use1 = (h.kind == OptimKind::SGD ? h.momentum != 0.0f : true) && have1;
  use2 = (adam || (h.kind == OptimKind::RMSprop && h.momentum > 0.0f)) && have2;
}

// Stage 1: the penalised gradient.
template <typename T>
KILN_OPTIM_HD T optim_penalised_grad(T g, T w, int penalize, float l1, float l2) {
  if (!penalize) return g;
  const T sgn = T(w > T(0)) - T(w < T(0));  // torch.sign: sign(0) = 0; no branch on the sign
  return g + T(l1) * sgn + T(2) * T(l2) * w;
}

// Stage 4: the clip factor of a tensor from its squared norm and the global norm (double).
KILN_OPTIM_HD double optim_clip_factor(ClipMode mode, double c, double tensor_sq, double global) {
  if (mode == ClipMode::Norm) {
    double n = optim_sqrt(tensor_sq);
    return n > c ? c / n : 1.0;  // Keras: g * c / max(||g||, c)
  }
  if (mode == ClipMode::GlobalNorm) {
    double f = c / (global + 1e-6);  // torch.nn.utils.clip_grad_norm_
    return f < 1.0 ? f : 1.0;
  }
  return 1.0;
}

// Stage 4 applied to one element.
template <typename T>
KILN_OPTIM_HD T optim_clip(T g, ClipMode mode, float c, float factor) {
  if (mode == ClipMode::Value) return g < T(-c) ? T(-c) : (g > T(c) ? T(c) : g);
  if (mode == ClipMode::Norm || mode == ClipMode::GlobalNorm) return g * T(factor);
  return g;
}

// Stages 5-6 for one element: g is the clipped g_eff; s1/s2 as in optim_step_ref.
template <typename T>
KILN_OPTIM_HD void optim_update(T& w, T g, T* s1, T* s2, int decay, const OptimHyper& h,
                                const OptimScalars& s) {
  const T wd = decay ? T(h.weight_decay) : T(0);
  switch (h.kind) {
    case OptimKind::SGD: {
      g += wd * w;
      if (h.momentum != 0.0f) {
        T mu = T(h.momentum);
        T b = s.first ? g : mu * *s1 + (T(1) - T(h.dampening)) * g;
        *s1 = b;
        g = h.nesterov ? g + mu * b : b;
      }
      w -= T(h.lr) * g;
      break;
    }
    case OptimKind::Adam:
    case OptimKind::AdamW: {
      if (h.kind == OptimKind::Adam) g += wd * w;
      else if (decay) w *= T(s.decay_mul);
      T m = T(h.beta1) * *s1 + (T(1) - T(h.beta1)) * g;
      T v = T(h.beta2) * *s2 + (T(1) - T(h.beta2)) * g * g;
      *s1 = m;
      *s2 = v;
      T denom = optim_sqrt(v) / T(s.bc2_sqrt) + T(h.eps);
      w -= T(s.step_size) * m / denom;
      break;
    }
    case OptimKind::RMSprop: {
      g += wd * w;
      T a = T(h.alpha);
      T v = a * *s1 + (T(1) - a) * g * g;
      *s1 = v;
      T avg = optim_sqrt(v) + T(h.eps);
      if (h.momentum > 0.0f) {
        T b = T(h.momentum) * *s2 + g / avg;
        *s2 = b;
        w -= T(h.lr) * b;
      } else {
        w -= T(h.lr) * g / avg;
      }
      break;
    }
  }
}

}  // namespace kiln
