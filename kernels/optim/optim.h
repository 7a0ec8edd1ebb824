// Optimizer step kernels: penalties, gradient norms, clipping, weight decay and the update of
// SGD / Adam / AdamW / RMSprop over one flat parameter buffer cut into tensors.
//
// Order of operations in one step (CPU reference and CUDA step alike), per element of tensor t:
//   1. g_eff = g + l1*sign(w) + 2*l2*w          (penalised tensors only; l2 is the coefficient of
//                                                the loss term l2*sum(w^2), hence 2*l2*w)
//   2. statistics over g_eff and w: ||g_eff||_t^2, ||w||_t^2, sum|w|_t, the global norm
//      G = sqrt(sum_t ||g_eff||_t^2) and a non-finite flag (any g_eff element inf/NaN);
//      penalty values l1*sum|w| and l2*sum w^2 over penalised tensors (before the update).
//   3. non-finite: the whole step is skipped (params and state untouched); the sticky flag, when
//      still 0, takes the step's 1-based count (OptimHyper::step), naming the first bad step.
//   4. clipping (at most one mode): value: clamp(g_eff, -c, c); norm (Keras, per tensor):
//      g_eff *= min(1, c/||g_eff||_t); global (torch clip_grad_norm_): g_eff *= min(1, c/(G+1e-6)).
//   5. weight decay on decayed tensors: coupled (sgd, adam, rmsprop): g += wd*w;
//      decoupled (adamw): w *= 1 - lr*wd, before the Adam update.
//   6. the update with PyTorch's formulas (see optim_ref.cpp).
// The reported grad_norm is G, before clipping.
//
// Step count: OptimHyper::step is the 1-based count of step() calls made by the host, also for
// steps the device skipped (the host cannot know without a sync). Adam's bias corrections and
// the "first step: momentum buffer = g" rule use it, identically on CPU and GPU. So after a
// skipped step, a later step uses the (zero) buffer as if it had been initialised, which
// differs from PyTorch when dampening != 0, and Adam's bias corrections count the skipped step
// (after a skipped first step the first update is about 0.74 lr where torch's is lr). The
// trainer never gets there (a skipped step ends its run, exit 3); a library caller's own loop
// that steps on after a skip does. The same holds for a resume that gives
// --momentum to a checkpoint of a momentum-0 SGD run: its buffers are zeros, not absent, so with
// dampening d the first momentum step stores (1-d)*g where torch stores g.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/device.h"

namespace kiln {

enum class OptimKind : int { SGD = 0, Adam = 1, AdamW = 2, RMSprop = 3 };
enum class ClipMode : int { None = 0, Value = 1, Norm = 2, GlobalNorm = 3 };

// One parameter tensor in the flat buffers (state buffers share the parameters' layout).
struct OptimTensor {
  int64_t offset = 0;  // element offset; a multiple of 16 (64-byte aligned) for the CUDA step
  int64_t numel = 0;
  int decay = 1;       // weight decay applies
  int penalize = 1;    // L1/L2 penalties apply
  int32_t chunk_begin = 0, chunk_end = 0;  // its chunks [begin, end), set by optim_build_chunks
};

struct OptimHyper {
  OptimKind kind = OptimKind::SGD;
  ClipMode clip = ClipMode::None;
  float clip_value = 0;  // c of the active clipping mode
  float lr = 0.01f;
  float momentum = 0;    // SGD/RMSprop momentum; for Adam/AdamW this slot is unused (beta1 is)
  float dampening = 0;
  int nesterov = 0;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float alpha = 0.99f;
  float weight_decay = 0;
  float l1 = 0, l2 = 0;
  int64_t step = 1;      // 1-based, counted by the host (see above)
};

// What a step saw. Per-tensor arrays are owned by the caller (ntensors entries each).
struct OptimStepStats {
  float grad_norm = 0;   // G, before clipping
  float l1_penalty = 0, l2_penalty = 0;
  int skipped = 0;       // a non-finite g_eff element was seen; nothing was updated
  float* tensor_grad_norm = nullptr;    // ||g_eff||_t, may be null
  float* tensor_weight_norm = nullptr;  // ||w||_t (before the update), may be null
};

// CPU reference: one step over all tensors. s1/s2 are the state buffers (same layout as w):
// SGD: s1 = momentum_buffer; Adam/AdamW: s1 = exp_avg, s2 = exp_avg_sq; RMSprop: s1 =
// square_avg, s2 = momentum_buffer. Buffers a kind does not use may be null. Sums of squares
// are accumulated in double in a fixed order whatever the thread count (engine/parallel.h):
// within each kOptimChunk piece of a tensor in four interleaved lanes, then the pieces in
// order. Float only.
template <typename T>
void optim_step_ref(T* w, const T* g, T* s1, T* s2, const OptimTensor* tensors, int ntensors,
                    const OptimHyper& h, OptimStepStats* stats);

// d/dw of l1*sum|w| + l2*sum w^2 added to g (the step's first stage, alone), returning the
// penalty value; for tests and for reporting penalties without a step.
template <typename T>
double optim_penalty_ref(const T* w, T* g, int64_t n, float l1, float l2);

// ---- CUDA step ---------------------------------------------------------------------------------
// Elements per chunk: a chunk lies inside one tensor; one block of pass 1 and of pass 2 each.
constexpr int kOptimChunk = 8192;

struct OptimChunk {
  int64_t begin = 0;  // flat element offset
  int32_t len = 0;    // <= kOptimChunk
  int32_t tensor = 0;
};

// The chunk table for a tensor table (built on the host once, then uploaded); also sets each
// tensor's chunk range.
std::vector<OptimChunk> optim_build_chunks(std::vector<OptimTensor>& tensors);

// Device memory one optimizer needs besides its state buffers; offsets in bytes.
struct OptimWorkspaceLayout {
  size_t partials = 0;   // 4 doubles per chunk: sum g^2, sum w^2, sum |w|, non-finite count
  size_t stats = 0;      // float[3 + 2*T]: G, l1_penalty, l2_penalty, ||g||_t..., ||w||_t...
  size_t skip = 0;       // int: this step is skipped
  size_t sticky =
      0;  // int: the first step (1-based) that saw a non-finite gradient; 0: none (until reset)
  size_t ticket = 0;     // unsigned: blocks of pass 1 done (reset by the last one)
  size_t factors = 0;    // float[T]: clip factor per tensor
  size_t bytes = 0;
};
OptimWorkspaceLayout optim_workspace_layout(int nchunks, int ntensors);

// Everything the launcher needs about the layout, in device memory (tables uploaded once,
// workspace zeroed once at construction).
struct OptimPlan {
  const OptimChunk* chunks = nullptr;    // device
  int nchunks = 0;
  const OptimTensor* tensors = nullptr;  // device
  int ntensors = 0;
  void* workspace = nullptr;             // device, optim_workspace_layout(nchunks, ntensors)
};

// The fused step: exactly two kernel launches on `stream` (statistics + clip factors, then the
// update), no host synchronisation. Results stay in the workspace.
void optim_step(float* w, const float* g, float* s1, float* s2, const OptimPlan& plan,
                const OptimHyper& h, cudaStream_t stream);

// The same step reading its per-step values (lr, momentum/beta1, step count and the scalars
// derived from them: an OptimStepArgs, optim_math.h) from device memory at `dev`, so a CUDA
// graph that captured the launch sees each replay's values (the host rewrites `dev` before
// each launch). `fixed` supplies what cannot change during a run (kind, clipping, l1/l2).
// Bitwise the same result as optim_step with the same values.
struct OptimStepArgs;
void optim_step_device(float* w, const float* g, float* s1, float* s2, const OptimPlan& plan,
                       const OptimHyper& fixed, const OptimStepArgs* dev, cudaStream_t stream);

// Kernel launches made by optim_step since the process started (0 without CUDA).
int64_t optim_launch_count();
// Called by the launcher after each launch.
void optim_count_launch();

}  // namespace kiln
