// CUDA-graph training step (engine/step_graph.h) and the performance switches: option rows
// (--cuda-graphs on|off, --precision fp32|tf32) and their usage errors; the device-argument
// paths the graph relies on (dropout keyed by a step read from memory, the optimizer step
// reading lr/momentum/step from memory) against the argument paths; and, on a GPU, whole
// training runs with graphs on and off from one seed giving the same weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <stdexcept>

#include "engine/error.h"
#include "engine/precision.h"
#include "engine/step_graph.h"
#include "kernels/dense/dense.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"
#include "kernels/optim/optim_math.h"
#include "layers/models.h"
#include "test_util.h"
#include "tuning/run.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace kiln;

namespace {

std::string usage_msg(std::vector<const char*> args, RunConfig* out = nullptr) {
  RunConfig r;
  args.insert(args.begin(), "x");
  try {
    parse_args(r, static_cast<int>(args.size()), const_cast<char**>(args.data()), run_options());
    r.validate();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    return e.message();
  }
  if (out) *out = r;
  return "no error";
}

}  // namespace

TEST(PerfOptions, CudaGraphsOnOffParsesAndMaybeIsAUsageError) {
  RunConfig c;
  EXPECT_FALSE(c.train.cuda_graphs) << "graphs are off by default";
  EXPECT_EQ(usage_msg({"--cuda-graphs", "on"}, &c), "no error");
  EXPECT_TRUE(c.train.cuda_graphs);
  EXPECT_EQ(usage_msg({"--cuda-graphs=off"}, &c), "no error");
  EXPECT_FALSE(c.train.cuda_graphs);
  EXPECT_EQ(usage_msg({"--cuda-graphs", "maybe"}), "--cuda-graphs: 'maybe' is not on|off");
  // YAML 1.1's booleans, as every bool option takes them (yes/no were refused here)
  for (const auto& [word, on] : {std::pair<const char*, bool>{"Yes", true},
                                 {"no", false},
                                 {"TRUE", true},
                                 {"ON", true},
                                 {"0", false}}) {
    EXPECT_EQ(usage_msg({"--cuda-graphs", word}, &c), "no error") << word;
    EXPECT_EQ(c.train.cuda_graphs, on) << word;
  }
  EXPECT_EQ(usage_msg({"--cuda-graphs"}), "--cuda-graphs needs a value (on|off)");
  EXPECT_EQ(run_options().find("cuda_graphs")->get(c), "off");
}

TEST(PerfOptions, PrecisionFp32Tf32AndBf16IsAUsageError) {
  RunConfig c;
  EXPECT_EQ(c.precision, "fp32");
  EXPECT_EQ(usage_msg({"--precision", "tf32"}, &c), "no error");
  EXPECT_EQ(c.precision, "tf32");
  EXPECT_EQ(parse_precision("tf32"), Precision::TF32);
  EXPECT_EQ(parse_precision("fp32"), Precision::FP32);
  EXPECT_NE(usage_msg({"--precision", "bf16"}).find("bf16: not implemented"), std::string::npos);
  EXPECT_EQ(usage_msg({"--precision", "fp16"}), "--precision fp16: expected fp32|tf32");
}

TEST(PerfOptions, CudaSwitchesWithDeviceCpuAreUsageErrors) {
  EXPECT_EQ(usage_msg({"--device", "cpu", "--cuda-graphs", "on"}),
            "--cuda-graphs on needs --device cuda (or auto); got --device cpu");
  EXPECT_EQ(usage_msg({"--device", "cpu", "--precision", "tf32"}),
            "--precision tf32 needs --device cuda (or auto); got --device cpu");
  EXPECT_EQ(usage_msg({"--device", "cpu", "--cuda-graphs", "off", "--precision", "fp32"}), "no error");
}

namespace {
// A run of a one-hidden-layer mlp on the first train_limit images of the test subset.
RunConfig small_mlp_run(const char* device, int64_t train_limit, int width) {
  RunConfig c;
  c.device = device;
  c.data.data_dir = test::data_dir();
  c.data.train_limit = train_limit;
  c.model.model = "mlp";
  c.model.width = width;
  c.model.depth = 1;
  return c;
}
}  // namespace

// --device auto on a machine without a GPU: the CUDA switches are ignored and the run is the
// ordinary CPU run, step for step.
TEST(PerfOptions, AutoDeviceWithoutGpuIgnoresCudaSwitches) {
  if (cuda_available()) GTEST_SKIP() << "a GPU answers: auto means cuda here";
  auto weights = [](bool graphs) {
    RunConfig c = small_mlp_run("auto", 200, 16);
    c.train.batch_size = 64;
    c.train.progress = 0;
    c.train.cuda_graphs = graphs;
    c.precision = graphs ? "tf32" : "fp32";
    auto s = make_session(c);
    EXPECT_EQ(s->trainer->step_graph(), nullptr);
    s->trainer->fit(s->train, nullptr);
    return s->model->flat_params().to_vector();
  };
  EXPECT_EQ(weights(true), weights(false));
}

// The graph path's dropout: the key derived from a step read through a pointer equals the
// key the host computes for that step (CPU reference; the GPU kernel is checked below).
TEST(DropoutStepPointer, RefKeyFromPointerEqualsHostKey) {
  const DropoutShape s{3, 5, 7};
  std::vector<float> x = test::random_vec(s.numel(), 11, 0.5, 1.5), a(x.size()), b(x.size()), c(x.size());
  DropoutParams host{dropout_key(42, 9, 77), dropout_threshold(0.3), 1.0f / 0.7f, false};
  dropout_fwd_ref<float>(x.data(), a.data(), host, s);
  uint64_t step = 9;
  DropoutParams dev = host;
  dev.key = 0;  // must not be used
  dev.step_ptr = &step;
  dev.seed = 42;
  dev.salt = 77;
  dropout_fwd_ref<float>(x.data(), b.data(), dev, s);
  EXPECT_EQ(a, b);
  step = 10;  // the next replay draws another mask
  dropout_fwd_ref<float>(x.data(), c.data(), dev, s);
  EXPECT_NE(a, c);
}

// device_step_args advances the step count like step() and carries this step's lr, the
// schedule's momentum (Adam's beta1) and the bias-corrected step size.
TEST(OptimDeviceArgs, AdvanceStepsAndCarryScheduleValues) {
  ModelOptions mo;
  mo.model = "mlp";
  mo.width = 8;
  mo.depth = 1;
  auto m = make_model(mo, {1, 4, 4}, 3);
  m->build(Device::CPU, 1);
  OptimOptions o;
  o.name = "adam";
  auto op = make_optimizer(o, *m);
  EXPECT_FALSE(op->supports_device_step()) << "CPU parameters have no device-argument step";
  OptimStepArgs a;
  op->device_step_args(0.01f, 0.85f, &a);
  op->device_step_args(0.02f, 0.8f, &a);
  EXPECT_EQ(op->steps_taken(), 2);
  EXPECT_EQ(a.h.step, 2);
  EXPECT_FLOAT_EQ(a.h.lr, 0.02f);
  EXPECT_FLOAT_EQ(a.h.beta1, 0.8f);
  EXPECT_FLOAT_EQ(a.sc.step_size, static_cast<float>(0.02 / (1.0 - 0.8 * 0.8)));
  EXPECT_EQ(a.sc.first, 0);
}

// ---- GPU ---------------------------------------------------------------------------------------

TEST(DropoutStepPointerGpu, KernelKeyFromDevicePointerEqualsHostKey) {
  KILN_SKIP_WITHOUT_GPU();
  const DropoutShape s{5, 3, 37};  // odd sizes: vector body and scalar tail
  for (bool channel : {false, true}) {
    std::vector<float> x = test::random_vec(s.numel(), 3, 0.5, 1.5);
    Tensor xd = Tensor::from_vector(x, {s.numel()}, Device::CUDA);
    DropoutParams host{dropout_key(7, 123, 5), dropout_threshold(0.4), 1.0f / 0.6f, channel};
    std::vector<float> ref(x.size());
    dropout_fwd_ref<float>(x.data(), ref.data(), host, s);
    Tensor step = Tensor::zeros({2}, Device::CUDA);  // 8 bytes for the uint64 step
    uint64_t st = 123;
    copy_bytes(step.data(), Device::CUDA, &st, Device::CPU, sizeof(st));
    DropoutParams dev = host;
    dev.key = 0;
    dev.step_ptr = reinterpret_cast<const uint64_t*>(step.data());
    dev.seed = 7;
    dev.salt = 5;
    Tensor y = test::poisoned({s.numel()}, Device::CUDA);
#ifdef KILN_WITH_CUDA
    dropout_fwd(xd.data(), y.data(), dev, s, nullptr);
#endif
    EXPECT_EQ(y.to_vector(), ref) << (channel ? "channel" : "element");
  }
}

namespace {
// Two MLPs built on the device from one seed (same weights): a run and the twin it is compared
// with.
std::pair<std::unique_ptr<Model>, std::unique_ptr<Model>> twin_mlps(int width, int depth,
                                                                    const Shape& in, int classes) {
  ModelOptions mo;
  mo.model = "mlp";
  mo.width = width;
  mo.depth = depth;
  auto a = make_model(mo, in, classes), b = make_model(mo, in, classes);
  a->build(Device::CUDA, 3);
  b->build(Device::CUDA, 3);
  return {std::move(a), std::move(b)};
}
}  // namespace

// The device-argument optimizer step equals the argument step bit for bit over steps whose lr
// and momentum change (as a schedule changes them), for SGD with momentum and Adam.
TEST(OptimDeviceArgsGpu, DeviceArgumentStepBitwiseEqualsArgumentStep) {
  KILN_SKIP_WITHOUT_GPU();
  for (const char* name : {"sgd", "adam", "rmsprop"}) {
    auto [a, b] = twin_mlps(37, 2, {1, 5, 7}, 10);
    OptimOptions o;
    o.name = name;
    o.momentum = 0.9f;
    o.weight_decay = 1e-3f;
    o.global_clipnorm = 5.0f;
    auto oa = make_optimizer(o, *a), ob = make_optimizer(o, *b);
    ASSERT_TRUE(ob->supports_device_step());
    Context ctx(Device::CUDA, 1);
    Buffer args(512, Device::CUDA);
    for (int t = 0; t < 4; ++t) {
      std::vector<float> g = test::random_vec(a->flat_grads().numel(), 100 + t);
      a->flat_grads().copy_from(Tensor::from_vector(g, a->flat_grads().shape(), Device::CUDA), ctx.stream());
      b->flat_grads().copy_from(Tensor::from_vector(g, b->flat_grads().shape(), Device::CUDA), ctx.stream());
      float lr = 0.01f * (t + 1), mom = 0.95f - 0.05f * t;
      oa->step(ctx, lr, mom);
      OptimStepArgs h;
      ob->device_step_args(lr, mom, &h);
#ifdef KILN_WITH_CUDA
      device_write_async(args.data(), &h, sizeof(h), ctx.stream());
#endif
      ob->step_device(ctx, static_cast<const OptimStepArgs*>(args.data()));
    }
    ctx.sync();
    EXPECT_EQ(oa->steps_taken(), ob->steps_taken());
    EXPECT_EQ(a->flat_params().to_vector(), b->flat_params().to_vector()) << name;
  }
}

namespace {
struct GraphRun {
  std::vector<float> weights;
  std::vector<EpochRecord> epochs;
  long long captures = 0, replays = 0, eager = 0, opt_steps = 0;
};

// Two epochs on 300 MNIST images at batch 64: per epoch 4 full batches (warm-up, capture, two
// replays) and a partial one (eager), with evaluation in between (graph invalidated). Under the
// CUDA emulator a quarter of that (75 images at batch 16): the same batches, captures and replays.
GraphRun train_gpu(const std::string& model, const std::string& norm, float dropout, bool graphs) {
#ifdef KILN_CUDA_EMU
  const int scale = 4;
#else
  const int scale = 1;
#endif
  RunConfig c;
  c.device = "cuda";
  c.seed = 17;
  c.data.data_dir = test::data_dir();
  c.data.train_limit = 300 / scale;
  c.data.test_limit = 100 / scale;
  c.model.model = model;
  c.model.width = 48;
  c.model.norm = norm;
  c.model.dropout = dropout;
  c.model.init = "kaiming";
  c.optim.name = "adam";
  c.optim.lr = 0.003f;
  c.sched.name = "one-cycle";
  c.train.epochs = 2;
  c.train.batch_size = 64 / scale;
  c.train.progress = 0;
  c.train.cuda_graphs = graphs;
  auto s = make_session(c);
  GraphRun r;
  r.epochs = s->trainer->fit(s->train, &s->test);
  r.weights = s->model->flat_params().to_vector();
  r.opt_steps = s->opt->steps_taken();
  if (const StepGraph* g = s->trainer->step_graph()) {
    r.captures = g->captures();
    r.replays = g->replays();
    r.eager = g->eager_steps();
  }
  return r;
}

void expect_same_training(const std::string& model, const std::string& norm, float dropout) {
  GraphRun off = train_gpu(model, norm, dropout, false), on = train_gpu(model, norm, dropout, true);
  EXPECT_EQ(on.captures, 2) << "one capture per epoch";
  EXPECT_EQ(on.replays, 4);
  EXPECT_EQ(on.eager, 4) << "per epoch: the warm-up and the partial batch";
  EXPECT_EQ(on.opt_steps, off.opt_steps);
  ASSERT_EQ(on.epochs.size(), off.epochs.size());
  for (size_t e = 0; e < on.epochs.size(); ++e) {
    EXPECT_NEAR(on.epochs[e].train_loss, off.epochs[e].train_loss, 1e-5) << "epoch " << e + 1;
    EXPECT_NEAR(on.epochs[e].test_acc, off.epochs[e].test_acc, 1e-9) << "epoch " << e + 1;
  }
  // Same kernels on the same values: bitwise is expected; the tolerance only leaves room for a
  // cuBLAS heuristic that picks another kernel with the preallocated workspace.
  EXPECT_TRUE(test::all_close(on.weights, off.weights, 1e-5, 1e-4));
  if (on.weights != off.weights) std::printf("note: graph and eager weights are close but not bitwise equal\n");
}
}  // namespace

TEST(StepGraphGpu, MlpWithDropoutGraphsOnMatchesOff) {
  KILN_SKIP_WITHOUT_GPU();
  expect_same_training("mlp", "none", 0.2f);
}

TEST(StepGraphGpu, CnnWithBatchNormAndDropoutGraphsOnMatchesOff) {
  KILN_SKIP_WITHOUT_GPU();
  expect_same_training("cnn", "batch", 0.1f);
}

TEST(StepGraphGpu, CifarNetGraphsOnMatchesOffOnMnistShapes) {
  KILN_SKIP_WITHOUT_GPU();
  KILN_SKIP_ON_EMULATOR("~2 min of emulated convolutions; the cnn case covers the graph logic");
  expect_same_training("cifar", "none", 0.0f);
}

// A capture whose body fails (a check that throws after work was enqueued, or a call that is
// illegal under capture and invalidates it) ends the capture and rethrows the body's error: no
// graph is kept, the stream is usable (synchronising works, no sticky error), the failed
// step's captured work never runs, and the next steps run eagerly and then capture as usual.
// Weights end bitwise equal to a twin that ran only the steps that succeeded; the optimizer is
// Adam, whose bias correction would differ had a failed capture kept its step count.
TEST(StepGraphGpu, FailedCaptureRethrowsAndLeavesTheStreamUsable) {
  KILN_SKIP_WITHOUT_GPU();
  auto [a, b] = twin_mlps(19, 1, {1, 3, 5}, 4);
  OptimOptions o;
  o.name = "adam";
  o.lr = 0.05f;
  auto oa = make_optimizer(o, *a), ob = make_optimizer(o, *b);
  std::vector<float> g = test::random_vec(a->flat_grads().numel(), 5);
  a->flat_grads().copy_from(Tensor::from_vector(g, a->flat_grads().shape(), Device::CUDA));
  b->flat_grads().copy_from(Tensor::from_vector(g, b->flat_grads().shape(), Device::CUDA));
  Context ctx(Device::CUDA, 1), twin(Device::CUDA, 1);
  StepGraph graph(ctx, *oa);
  int x = 0, y = 0;  // only the keys' addresses matter
  auto ok = [&](const OptimStepArgs* dev) {
    if (dev)
      oa->step_device(ctx, dev);
    else
      oa->step(ctx, 0.05f, 0.9f);
  };
  graph.run(4, &x, &y, 1, 0.05f, 0.9f, ok);  // eager warm-up
  ob->step(twin, 0.05f, 0.9f);
  EXPECT_EQ(graph.eager_steps(), 1);

  const std::function<void(const OptimStepArgs*)> failing[] = {
      [&](const OptimStepArgs* dev) {
        ASSERT_NE(dev, nullptr);
        oa->step_device(ctx, dev);  // captured, never run
        throw std::runtime_error("planted failure inside the capture");
      },
      [&](const OptimStepArgs* dev) {
        oa->step_device(ctx, dev);
        Buffer illegal(64, Device::CUDA);  // cudaMalloc under capture: invalidates it, throws
      },
  };
  for (const auto& body : failing) {
    bool threw = false;
    try {
      graph.run(4, &x, &y, 2, 0.05f, 0.9f, body);
    } catch (const std::exception&) {
      threw = true;
    }
    EXPECT_TRUE(threw);
    EXPECT_EQ(graph.captures(), 0);
#ifdef KILN_WITH_CUDA
    EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the failed capture left an error behind";
    EXPECT_EQ(cudaStreamSynchronize(ctx.stream()), cudaSuccess) << "the stream is still capturing";
#endif
    Buffer fine(64, Device::CUDA);  // allocating works again
    EXPECT_EQ(a->flat_params().to_vector(), b->flat_params().to_vector())
        << "a failed capture's work ran";
    EXPECT_EQ(oa->steps_taken(), ob->steps_taken()) << "a failed capture kept its step count";
  }
  graph.run(4, &x, &y, 3, 0.05f, 0.9f, ok);  // the warmed key: captured and launched
  ob->step(twin, 0.05f, 0.9f);
  graph.run(4, &x, &y, 4, 0.05f, 0.9f, ok);  // replayed
  ob->step(twin, 0.05f, 0.9f);
  graph.run(3, &x, &y, 5, 0.05f, 0.9f, ok);  // another batch size (a partial batch): eager
  ob->step(twin, 0.05f, 0.9f);
  ctx.sync();
  twin.sync();
  EXPECT_EQ(graph.eager_steps(), 2);
  EXPECT_EQ(graph.captures(), 1);
  EXPECT_EQ(graph.replays(), 1);
  EXPECT_EQ(a->flat_params().to_vector(), b->flat_params().to_vector());
}

// --precision reaches the session's cuBLAS handle: a 128 x 128 x 128 product of 1 + 2^-12 (below
// TF32's 10-bit mantissa) and 1 gives 128 under tf32 and exactly 128 (1 + 2^-12) under fp32
// (nothing tested that make_session sets the mode: dropping the call, or swapping the modes,
// passed every test). The size is one cuBLAS runs on tensor cores where TF32 is allowed (a
// 1 x 1 product may take a kernel without them).
TEST(PrecisionGpu, SessionCublasHandleRoundsAsAsked) {
  KILN_SKIP_WITHOUT_GPU();
  const int n = 128;
  const float a = 1.0f + 1.0f / 4096;
  for (const char* p : {"fp32", "tf32", "fp32"}) {
    RunConfig c = small_mlp_run("cuda", 64, 8);
    c.precision = p;
    auto s = make_session(c);
    Tensor A = Tensor::from_vector(std::vector<float>(n * n, a), {n, n}, Device::CUDA);
    Tensor B = Tensor::from_vector(std::vector<float>(n * n, 1.0f), {n, n}, Device::CUDA);
    Tensor C = test::poisoned({n, n}, Device::CUDA);
#ifdef KILN_WITH_CUDA
    gemm_cuda(s->ctx->cublas(), false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(),
              n);
#endif
    const float want = std::string(p) == "tf32" ? float(n) : float(n) * a;  // both exact
    const std::vector<float> got = C.to_vector();
    EXPECT_EQ(std::count(got.begin(), got.end(), want), n * n) << p << ": C[0] = " << got[0];
  }
}
