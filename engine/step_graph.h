// StepGraph: the training step (forward, loss, backward, fused optimizer step) captured once
// into a CUDA graph and replayed (--cuda-graphs on). What changes from step to step is read
// from a small device block that the host rewrites before each replay with one tiny kernel
// whose arguments carry the values (so no pinned staging buffer can be overwritten while a
// copy is still queued): the step count (dropout masks, via Context::step_dev) and the
// optimizer's OptimStepArgs (lr, momentum/beta1, step, bias corrections).
//
// Policy: the batch gather stays eager, outside the graph. A graph is valid for one batch size
// and one pair of input pointers; invalidate() (the trainer calls it at every epoch start,
// since evaluation may move layer buffers) drops it. After an invalidation the next full batch
// runs eagerly (so every lazily allocated buffer exists), the one after is captured and
// launched, later ones replay. Other batch sizes (the partial last batch) run eagerly.
// Replays compute bitwise what the eager steps compute: same kernels, same values.
#pragma once
#include <cstdint>
#include <functional>

#include "engine/buffer.h"
#include "engine/context.h"
#include "optim/optimizer.h"

struct CUgraphExec_st;  // cudaGraphExec_t is CUgraphExec_st* (no CUDA headers here)

namespace kiln {

// Copies `bytes` (<= kDeviceWriteMax, a multiple of 4) from host memory to device memory `dst`
// in stream order, the values travelling as kernel arguments: the host buffer may be reused
// as soon as this returns. CUDA builds only.
constexpr size_t kDeviceWriteMax = 512;
void device_write_async(void* dst, const void* src, size_t bytes, cudaStream_t stream);

class StepGraph {
 public:
  // ctx's cuBLAS handle already has a preallocated workspace (Context), as a capture needs.
  StepGraph(Context& ctx, Optimizer& opt);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // One training step of batch size n on inputs at x/y (for the validity check). `body`
  // enqueues forward, loss, backward and the optimizer step; it gets the device address of
  // this step's optimizer arguments when it must call Optimizer::step_device(), or nullptr
  // when it must run the ordinary Optimizer::step(ctx, lr, momentum) (the eager path).
  // `step` is the step count the eager path would put in Context::step.
  void run(int64_t n, const void* x, const void* y, uint64_t step, float lr, float momentum,
           const std::function<void(const OptimStepArgs* dev)>& body);
  void invalidate();

  long long captures() const { return captures_; }
  long long replays() const { return replays_; }
  long long eager_steps() const { return eager_; }

 private:
  void destroy();
  // Captures `body` into exec_ (CUDA builds): on failure nothing is kept, the stream is usable
  // and the error is rethrown.
  void capture(const std::function<void(const OptimStepArgs*)>& body, const uint64_t* step_dev,
               const OptimStepArgs* args);

  [[maybe_unused]] Context& ctx_;  // both used only in CUDA builds
  [[maybe_unused]] Optimizer& opt_;
  Buffer scalars_;  // device: uint64 step, then OptimStepArgs (8-byte aligned)
  CUgraphExec_st* exec_ = nullptr;
  int64_t n_ = -1;  // batch size of exec_ / of the warm-up step
  const void* x_ = nullptr;
  const void* y_ = nullptr;
  bool warmed_ = false;
  long long captures_ = 0, replays_ = 0, eager_ = 0;
};

}  // namespace kiln
