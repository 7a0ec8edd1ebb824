// Optimizer: updates all of a Model's parameters from its flat gradient buffer. On CUDA the
// step is fused (pass 1: per-tensor squared norms, global norm, non-finite flag; pass 2:
// clipping, penalties, weight decay and the update, reading the clip factor from device
// memory), so a step never synchronises with the host.
#pragma once
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/context.h"
#include "layers/model.h"

namespace kiln {

struct OptimStepArgs;  // kernels/optim/optim_math.h

// Step and batch counts past this are refused (a checkpoint's, a Trainer::fit position's, an
// optimizer's step count): the counters they seed are incremented and summed, and 2^63-1
// wrapped negative a step later.
constexpr long long kMaxStepCount = 1000000000000000LL;  // 1e15

struct OptimOptions {
  std::string name = "sgd";  // sgd | adam | adamw | rmsprop
  float lr = 0.01f;
  float momentum = 0.0f;     // SGD momentum / RMSprop momentum
  float dampening = 0.0f;
  bool nesterov = false;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float alpha = 0.99f;       // RMSprop smoothing
  // Coupled (L2 in the gradient) for sgd/adam/rmsprop, decoupled for adamw. NaN (not given):
  // PyTorch's default for the optimizer, 0.01 for AdamW and 0 for the others (resolved()).
  float weight_decay = NAN;
  bool decay_all = false;    // also decay biases and norm parameters
  // Clipping: at most one of these is > 0 (checked in validate()).
  float clipnorm = 0.0f;         // per tensor (Keras clipnorm)
  float global_clipnorm = 0.0f;  // all tensors together (torch's clip_grad_norm_: c / (G + 1e-6))
  float clipvalue = 0.0f;        // element-wise
  // Penalties added to the loss and the gradient (weights only unless penalize_all).
  float l1 = 0.0f, l2 = 0.0f;
  bool penalize_all = false;
  void validate() const;  // usage errors name the option
  OptimOptions resolved() const;  // weight_decay filled in when not given
  // Options set away from `defaults` that the chosen optimizer never reads (--nesterov with
  // adam, --beta1 with sgd, ...): one sentence each, for a "note:" line (torch would raise a
  // TypeError for most; a note lets one config serve several optimizers in a sweep).
  std::vector<std::string> ignored(const OptimOptions& defaults) const;
};

// What the last step saw, read back from the device on request (not every step).
struct StepStats {
  float grad_norm = 0;          // global L2 norm before clipping (penalties included)
  bool nonfinite = false;       // the step was skipped
  float l1_penalty = 0, l2_penalty = 0;  // l1*sum|w|, l2*sum w^2 over penalised tensors
  std::vector<float> tensor_grad_norms;  // per parameter tensor, Model::param_refs() order
  std::vector<float> tensor_weight_norms;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // lr and momentum come from the schedule each step (momentum < 0: keep the configured one).
  virtual void step(Context& ctx, float lr, float momentum = -1.0f) = 0;
  // Synchronous read of the last step's statistics.
  virtual StepStats stats(Context& ctx) = 0;
  // Device pointer (or host pointer on CPU) to an int flag that becomes non-zero once any
  // step has seen a non-finite gradient; the trainer reads it without stalling the stream.
  virtual const int* nonfinite_flag() const = 0;
  virtual void reset_nonfinite_flag(Context& ctx) = 0;  // (load_checkpoint resets it too)
  // State for checkpoints, named "<param>.<slot>" (e.g. "0.weight.momentum_buffer").
  virtual std::vector<std::pair<std::string, Tensor>> state() = 0;
  virtual int64_t steps_taken() const = 0;
  virtual void set_steps_taken(int64_t t) = 0;
  // CUDA graphs (engine/step_graph.h): step() split so that lr, momentum and the step count
  // come from device memory. device_step_args() advances the step count exactly as step() does
  // and fills `out` with this step's values; step_device() enqueues the fused step reading them
  // from `dev` (device memory the caller fills before the launch). Not supported: false/throws.
  virtual bool supports_device_step() const { return false; }
  virtual void device_step_args(float lr, float momentum, OptimStepArgs* out);
  virtual void step_device(Context& ctx, const OptimStepArgs* dev);
  const OptimOptions& options() const { return opts_; }
  // Whether this optimizer steps `model`'s parameters (make_optimizer(opts, model) binds one
  // model's flat buffers for good; another model's would silently never train).
  bool bound_to(Model& model) const { return bound_params_ == model.flat_params().data(); }

 protected:
  OptimOptions opts_;
  const float* bound_params_ = nullptr;
};

std::unique_ptr<Optimizer> make_optimizer(const OptimOptions& opts, Model& model);

}  // namespace kiln
