// StepGraph (see step_graph.h): capture, replay and the eager fall-backs. Compiled in every
// build; without CUDA the class cannot be constructed (the trainer only builds it on CUDA).
#include "engine/step_graph.h"

#include <cstring>
#include <exception>

#include "engine/error.h"
#include "kernels/optim/optim_math.h"

#ifdef KILN_WITH_CUDA
#include "engine/cuda_check.h"
#endif

namespace kiln {

namespace {
// The device block: the step count, then the optimizer's arguments.
struct StepScalars {
  uint64_t step;
  OptimStepArgs optim;
};
static_assert(sizeof(StepScalars) % 4 == 0 && sizeof(StepScalars) <= kDeviceWriteMax,
              "StepScalars must fit one device_write_async");
}  // namespace

StepGraph::StepGraph(Context& ctx, Optimizer& opt) : ctx_(ctx), opt_(opt) {
  KILN_CHECK(ctx.cuda(), "--cuda-graphs on needs a CUDA context");
  KILN_CHECK(opt.supports_device_step(), "--cuda-graphs on: this optimizer cannot take its step "
                                         "arguments from device memory");
#ifdef KILN_WITH_CUDA
  // The cuBLAS workspace a capture needs is the Context's (set for eager steps too).
  scalars_ = Buffer(sizeof(StepScalars), Device::CUDA);
#endif
}

StepGraph::~StepGraph() {
#ifdef KILN_WITH_CUDA
  cudaStreamSynchronize(ctx_.stream());  // nothing in flight uses the graph
  destroy();
#endif
}

void StepGraph::destroy() {
#ifdef KILN_WITH_CUDA
  if (exec_) cudaGraphExecDestroy(exec_);
#endif
  exec_ = nullptr;
}

void StepGraph::invalidate() {
  destroy();
  warmed_ = false;
  n_ = -1;
  x_ = y_ = nullptr;
}

void StepGraph::run(int64_t n, const void* x, const void* y, uint64_t step, float lr, float momentum,
                    const std::function<void(const OptimStepArgs* dev)>& body) {
#ifdef KILN_WITH_CUDA
  const bool same = n == n_ && x == x_ && y == y_;
  if (exec_ && !same && n > n_) destroy();  // a larger batch may move layer buffers
  if (!same || !warmed_) {
    // Eager: the warm-up of a new key (allocations happen here, never under capture), or a
    // batch the graph does not fit (the partial last batch) while the graph stays valid.
    if (!exec_) {
      warmed_ = true;
      n_ = n;
      x_ = x;
      y_ = y;
    }
    ++eager_;
    body(nullptr);
    return;
  }
  StepScalars s;
  std::memset(static_cast<void*>(&s), 0, sizeof(s));  // padding too: the bytes go to the device
  s.step = step;
  const int64_t steps_before = opt_.steps_taken();
  opt_.device_step_args(lr, momentum, &s.optim);  // advances the optimizer's step count
  auto* dev = static_cast<StepScalars*>(scalars_.data());
  device_write_async(dev, &s, sizeof(s), ctx_.stream());
  if (!exec_) {
    // A capture that fails never runs its step: the optimizer's step count goes back, so that
    // a caller who carries on (eagerly, say) steps with the count the step would have had.
    try {
      capture(body, &dev->step, &dev->optim);
    } catch (...) {
      opt_.set_steps_taken(steps_before);
      throw;
    }
    ++captures_;
  } else {
    ++replays_;
  }
  KILN_CUDA_CHECK(cudaGraphLaunch(exec_, ctx_.stream()));
#else
  (void)n, (void)x, (void)y, (void)step, (void)lr, (void)momentum, (void)body;
  KILN_FAIL("--cuda-graphs on in a build without CUDA");
#endif
}

#ifdef KILN_WITH_CUDA
void StepGraph::capture(const std::function<void(const OptimStepArgs*)>& body,
                        const uint64_t* step_dev, const OptimStepArgs* args) {
  cudaStream_t st = ctx_.stream();
  KILN_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  ctx_.step_dev = step_dev;
  try {
    body(args);
  } catch (...) {
    ctx_.step_dev = nullptr;
    cudaStreamEndCapture(st, &graph);  // leaves the stream usable
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  ctx_.step_dev = nullptr;
  cudaError_t e = cudaStreamEndCapture(st, &graph);
  KILN_CHECK(e == cudaSuccess && graph, "--cuda-graphs: capturing the training step failed: "
                                            << cudaGetErrorString(e)
                                            << " (run with --cuda-graphs off)");
  e = cudaGraphInstantiateWithFlags(&exec_, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) exec_ = nullptr;
  KILN_CHECK(e == cudaSuccess, "--cuda-graphs: instantiating the training step failed: "
                                   << cudaGetErrorString(e) << " (run with --cuda-graphs off)");
}
#endif

}  // namespace kiln
