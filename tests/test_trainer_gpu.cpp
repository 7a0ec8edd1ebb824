// Whole training runs on the GPU against the same runs on the CPU: the default cnn with batch
// norm and dropout (masks are the same bits on both devices), trained through the CUDA path with
// every GPU switch on (fused conv/BN+ReLU, CUDA graphs, deterministic kernels), must follow the
// CPU reference's losses for 2 epochs (8 steps) and end its first epoch (4 steps) at the same
// weights to float-rounding tolerance.
//
// Why the weights are held to rounding only after the first epoch: on an H200 the cnn's weights
// after 8 steps differed by up to 1.3e-3 (810 of 17,712 beyond 2e-4 + 2e-3|w|) while the losses
// agreed to 1e-3. That is the model, not a kernel: the same run through the CUDA emulator built
// with FMA contraction (-mfma -ffp-contract=fast, as nvcc contracts) differs from the CPU by the
// same amount with the two sides swapped (the contracted CPU reference lands on the GPU's
// weights to 6e-6). Normalization makes a rounding-level change jump to ~4e-5 at some step (a
// discrete event: without a norm layer the two stay within 3e-8), and the later steps amplify it.
// After epoch 2 the weights are still held to the same trajectory (1e-2: a wrong kernel is off
// by far more).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/step_graph.h"
#include "kernels/norm/norm.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "oom_layer.h"
#include "test_util.h"
#include "tuning/run.h"

using namespace kiln;

namespace {

struct Trained {
  std::vector<float> weights, weights_epoch1;
  std::vector<EpochRecord> epochs;
};

Trained train(const std::string& device, const std::string& model, bool gpu_switches,
              int epochs = 2) {
  RunConfig c;
  c.device = device;
  c.seed = 23;
  c.deterministic = gpu_switches;
  c.data.data_dir = test::data_dir();
  c.data.train_limit = 128;
  c.data.test_limit = 64;
  c.model.model = model;
  c.model.norm = "batch";
  c.model.dropout = 0.1f;
  c.fuse = gpu_switches ? "on" : "off";
  c.optim.name = "sgd";
  c.optim.lr = 0.02f;
  c.optim.momentum = 0.9f;
  c.train.epochs = epochs;
  c.train.batch_size = 32;
  c.train.progress = 0;
  c.train.cuda_graphs = gpu_switches;
  auto s = make_session(c);
  Trained t;
  s->trainer->on_epoch = [&](const EpochRecord& r) {
    if (r.epoch == 1) t.weights_epoch1 = s->model->flat_params().to_vector();
    return true;
  };
  t.epochs = s->trainer->fit(s->train, &s->test);
  t.weights = s->model->flat_params().to_vector();
  return t;
}

void expect_gpu_follows_cpu(const std::string& model) {
  const Trained cpu = train("cpu", model, false), gpu = train("cuda", model, true);
  ASSERT_EQ(cpu.epochs.size(), gpu.epochs.size());
  for (size_t e = 0; e < cpu.epochs.size(); ++e) {
    EXPECT_NEAR(gpu.epochs[e].train_loss, cpu.epochs[e].train_loss,
                1e-3 * std::fabs(cpu.epochs[e].train_loss))
        << "epoch " << e + 1;
    EXPECT_NEAR(gpu.epochs[e].test_loss, cpu.epochs[e].test_loss,
                2e-3 * std::fabs(cpu.epochs[e].test_loss))
        << "epoch " << e + 1;
    EXPECT_NEAR(gpu.epochs[e].test_acc, cpu.epochs[e].test_acc, 2.0 / 64) << "epoch " << e + 1;
  }
  ASSERT_FALSE(cpu.weights_epoch1.empty());
  EXPECT_TRUE(test::all_close(gpu.weights_epoch1, cpu.weights_epoch1, 2e-4, 2e-3))
      << "after epoch 1";
  EXPECT_TRUE(test::all_close(gpu.weights, cpu.weights, 1e-2, 0)) << "after epoch 2";
}

}  // namespace

TEST(TrainerGpu, CnnWithBatchNormAndDropoutFollowsCpu) {
  KILN_SKIP_WITHOUT_GPU();
  expect_gpu_follows_cpu("cnn");
}

TEST(TrainerGpu, MlpWithBatchNormAndDropoutFollowsCpu) {
  KILN_SKIP_WITHOUT_GPU();
  expect_gpu_follows_cpu("mlp");
}

TEST(TrainerGpu, ValidationSplitEarlyStopAndRestoreBestOnTheDevice) {
  // The held-out split lives on the device like the training rows; --restore-best copies the
  // best epoch's state_dict (batch-norm statistics included) to the host and back: the run
  // ends exactly where a deterministic 1-epoch run ends, on the device as on the CPU.
  KILN_SKIP_WITHOUT_GPU();
  auto run = [](int epochs, bool stop) {
    RunConfig c;
    c.device = "cuda";
    c.deterministic = true;
    c.data.data_dir = test::data_dir();
    c.data.train_limit = 160;
    c.data.test_limit = 64;
    c.data.val_split = 0.2;
    c.model.model = "mlp";
    c.model.width = 32;
    c.model.norm = "batch";
    c.optim.name = "sgd";
    c.optim.lr = 0.05f;
    c.train.epochs = epochs;
    c.train.batch_size = 32;
    c.train.progress = 0;
    if (stop) {
      c.train.early_stop = 1;
      c.train.early_stop_delta = 10;  // only epoch 1 improves
      c.train.restore_best = true;
    }
    auto s = make_session(c);
    s->trainer->val_set = &s->val;
    std::vector<EpochRecord> rs = s->trainer->fit(s->train, &s->test);
    std::vector<float> state;
    for (auto& [n, t] : s->model->state_dict()) {
      std::vector<float> v = t.to_vector();
      state.insert(state.end(), v.begin(), v.end());
    }
    EXPECT_EQ(s->val.size(), 32);
    EXPECT_FALSE(std::isnan(rs[0].val_acc));
    return std::make_pair(rs.size(), state);
  };
  auto [n_stop, stopped] = run(4, true);
  auto [n_one, one] = run(1, false);
  EXPECT_EQ(n_stop, 2u);
  EXPECT_EQ(n_one, 1u);
  EXPECT_EQ(stopped, one);
}

namespace {
// A small mlp run on `device` with plain SGD at a constant lr (the two tests below).
RunConfig small_sgd_mlp(const std::string& device, int64_t train_limit, int epochs) {
  RunConfig c;
  c.device = device;
  c.data.data_dir = test::data_dir();
  c.data.train_limit = train_limit;
  c.data.test_limit = 64;
  c.model.model = "mlp";
  c.model.width = 16;
  c.optim.name = "sgd";
  c.sched.name = "constant";
  c.train.epochs = epochs;
  c.train.batch_size = 32;
  c.train.progress = 0;
  return c;
}
}  // namespace

TEST(TrainerGpu, DivergenceNamesTheSameFirstBadStepAsTheCpu) {
  // The device's non-finite flag is read without stalling, so it may be seen steps late (on the
  // emulator at the epoch's end); the flag holds the first bad step's count, and the message
  // names that step as the CPU run does, eager and through a CUDA graph.
  KILN_SKIP_WITHOUT_GPU();
  auto message = [](const std::string& device, bool graphs) {
    RunConfig c = small_sgd_mlp(device, 512, 2);
    c.optim.lr = 1e10f;
    c.train.cuda_graphs = graphs;
    try {
      run_training(c, {});
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Diverged) << e.message();
      return e.message();
    }
    return std::string("no divergence");
  };
  // Up to the ';': the layer diagnosis after it is the latest step's, which on the device may
  // be a later one (and then says so).
  auto head = [](const std::string& m) { return m.substr(0, m.find(';')); };
  const std::string cpu = message("cpu", false);
  ASSERT_NE(cpu.find("non-finite loss/gradient at epoch 1 step 3;"), std::string::npos) << cpu;
  // Both answers of the early check's cudaEventQuery: under the emulator "late" (the first
  // query after a record is not ready, so only the epoch-end check sees the flag) and "ready"
  // (the flag copy has landed, as is usual on a GPU: the next step's check reads it). A device
  // ignores the switch and runs the same test twice.
  for (const char* events : {"late", "ready"}) {
    test::ScopedEnv env("KILN_EMU_EVENTS", events);
    for (bool graphs : {false, true}) {
      const std::string gpu = message("cuda", graphs);
      EXPECT_EQ(head(gpu), head(cpu)) << events << (graphs ? " graphs" : " eager");
#ifdef KILN_CUDA_EMU
      // Read at once after the bad step, the diagnosis is that step's (as on the CPU); read at
      // the epoch's end, it says it looked at a later step.
      if (std::string(events) == "ready")
        EXPECT_EQ(gpu.find("(the latest)"), std::string::npos) << gpu;
      else
        EXPECT_NE(gpu.find("at step 16 (the latest)"), std::string::npos) << gpu;
#endif
    }
  }
}

// A fit that diverged, then a good checkpoint loaded into the same objects: the next fit on the
// same Trainer trains (the load cleared the device's flag, but the host copy of the diverged
// fit's last step answered the first check, as on a GPU that has caught up: "ready").
TEST(TrainerGpu, AFitAfterReloadingAGoodCheckpointTrains) {
  KILN_SKIP_WITHOUT_GPU();
  for (const char* events : {"late", "ready"}) {
    test::ScopedEnv env("KILN_EMU_EVENTS", events);
    auto s = make_session(small_sgd_mlp("cuda", 128, 1));
    Trainer& tr = *s->trainer;
    ASSERT_EQ(tr.fit(s->train, &s->test).size(), 1u);
    const std::string path = test::temp_file("reload_after_divergence.safetensors");
    CheckpointInfo info;
    info.config = "{}";
    save_checkpoint(path, *s->ctx, *s->model, s->opt.get(), s->sched.get(), info);
    Dataset bad = s->train.to(Device::CPU);
    bad.images = Tensor::from_vector(std::vector<float>(bad.images.numel(), NAN),
                                     bad.images.shape(), Device::CPU);
    bad = bad.to(Device::CUDA);
    EXPECT_THROW(tr.fit(bad, &s->test), Error) << events;
    load_checkpoint(path, *s->ctx, *s->model, s->opt.get(), s->sched.get());
    std::vector<EpochRecord> again;
    EXPECT_NO_THROW(again = tr.fit(s->train, &s->test)) << events;
    EXPECT_EQ(again.size(), 1u) << events;
    std::remove(path.c_str());
  }
}

// Batch norm's persistent kernels (batchnorm_set_persistent) in a whole run with every GPU switch
// on (fused BN + ReLU, CUDA graphs capturing the cooperative launches, deterministic): the same
// losses and the same weights, bit for bit, as the three-kernel run.
TEST(TrainerGpu, PersistentBatchNormTrainsToTheSameBits) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA  // the switch and its counters exist in CUDA builds only
  struct Restore {
    ~Restore() {
      batchnorm_set_persistent(false);
      batchnorm_persistent_limits(0, SIZE_MAX);
    }
  } restore;
  int epochs = 2;
#ifdef KILN_CUDA_EMU
  batchnorm_persistent_limits(8,
                              SIZE_MAX);  // the emulator runs a cooperative grid's fibers at once
  epochs = 1;  // eager, captured and replayed steps and an evaluation; 50 s a run emulated
#endif
  const Trained three = train("cuda", "cnn", true, epochs);
  batchnorm_set_persistent(true);
  const BnPersistentCounts before = batchnorm_persistent_counts();
  const Trained persistent = train("cuda", "cnn", true, epochs);
  // The cnn's batch norms on 26x26, 24x24 and 22x22 maps take it (rows of a multiple of four),
  // those on 9x9, 7x7 and 5x5 the three kernels; forward and backward every step, eager and
  // captured.
  const BnPersistentCounts after = batchnorm_persistent_counts();
  EXPECT_GT(after.launches, before.launches);
  EXPECT_EQ(after.fallbacks, before.fallbacks);
  ASSERT_EQ(three.epochs.size(), persistent.epochs.size());
  for (size_t e = 0; e < three.epochs.size(); ++e) {
    EXPECT_EQ(three.epochs[e].train_loss, persistent.epochs[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(three.epochs[e].test_loss, persistent.epochs[e].test_loss) << "epoch " << e + 1;
  }
  EXPECT_TRUE(test::all_close(persistent.weights, three.weights, 0, 0));
#endif
}

// Out of memory in an evaluation on the device (a layer after the conv stands in for cudaMalloc
// failing, once the conv has grown its buffers to the batch): the layers' device buffers are
// freed, the batch halved and the evaluation started over. With CUDA graphs on, the epochs go
// on to the bits of a run that evaluated at the smaller batch from the start.
TEST(TrainerGpu, EvaluationOutOfMemoryHalvesTheBatchWithGraphsOn) {
  KILN_SKIP_WITHOUT_GPU();
  Dataset host;
  host.name = "noise";
  host.images =
      Tensor::from_vector(test::random_vec(32 * 2 * 6 * 6, 31), {32, 2, 6, 6}, Device::CPU);
  for (int i = 0; i < 32; ++i) host.host_labels.push_back(i % 3);
  host.labels = std::make_shared<Buffer>(32 * sizeof(int32_t), Device::CPU);
  copy_bytes(host.labels->data(), Device::CPU, host.host_labels.data(), Device::CPU,
             32 * sizeof(int32_t));
  host.num_classes = 3;
  const Dataset ds = host.to(Device::CUDA);
  struct Run {
    Model model{{2, 6, 6}};
    std::vector<int64_t> seen;
    std::vector<std::string> notes;
    Context ctx{Device::CUDA, 5};
    std::unique_ptr<Optimizer> opt;
    std::unique_ptr<Schedule> sched;
    std::unique_ptr<Trainer> tr;
    Run(int64_t fits, int64_t eval_batch) {
      model.add(std::make_unique<Conv2d>(2, 4, 3));
      model.add(std::make_unique<test::OomPastBatch>(fits, &seen));
      model.add(std::make_unique<BatchNorm>(4, true));
      model.add(std::make_unique<Activation>(Act::ReLU));
      model.add(std::make_unique<Flatten>());
      model.add(std::make_unique<Linear>(64, 3));
      model.build(Device::CUDA, 5);
      ctx.deterministic = true;
      OptimOptions oo;
      oo.name = "sgd";
      oo.lr = 0.05f;
      oo.momentum = 0.9f;
      opt = make_optimizer(oo, model);
      sched = make_schedule(ScheduleOptions{}, oo.lr, 2, 2);
      TrainOptions to;
      to.epochs = 2;
      to.batch_size = 8;
      to.eval_batch_size = eval_batch;
      to.progress = 0;
      to.cuda_graphs = true;
      tr = std::make_unique<Trainer>(model, *opt, *sched, ctx, to);
      tr->log = [this](const std::string& l) { notes.push_back(l); };
    }
  };
  Run r(3, 1000), ref(1000, 2);
  const std::vector<EpochRecord> got = r.tr->fit(ds, &ds), want = ref.tr->fit(ds, &ds);
  ASSERT_EQ(r.notes.size(), 4u);  // 32, 16, 8 and 4 ran out in epoch 1's evaluation
  EXPECT_NE(r.notes[3].find("evaluating at --eval-batch-size 2 from here on"), std::string::npos)
      << r.notes[3];
  EXPECT_EQ(r.seen.size(), 4u + 32u);  // the four failed tries, then 16 batches an epoch
  ASSERT_EQ(got.size(), 2u);
  ASSERT_EQ(want.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    EXPECT_EQ(got[e].test_loss, want[e].test_loss) << "epoch " << e + 1;
    EXPECT_EQ(got[e].test_acc, want[e].test_acc) << "epoch " << e + 1;
    EXPECT_EQ(got[e].train_loss, want[e].train_loss) << "epoch " << e + 1;
  }
  EXPECT_EQ(r.model.flat_params().to_vector(), ref.model.flat_params().to_vector());
  // Four steps an epoch: captured after an evaluation moved the buffers, then replayed.
  ASSERT_NE(r.tr->step_graph(), nullptr);
  EXPECT_GT(r.tr->step_graph()->replays(), 0);
  EXPECT_EQ(r.tr->step_graph()->replays(), ref.tr->step_graph()->replays());
  // The device memory the layers hold is what the reference run's layers hold: freeing them
  // before each try left nothing of the larger batches.
  const size_t both = Buffer::live_bytes(Device::CUDA);
  r.model.release_scratch();
  const size_t ref_only = Buffer::live_bytes(Device::CUDA);
  ref.model.release_scratch();
  EXPECT_EQ(both - ref_only, ref_only - Buffer::live_bytes(Device::CUDA));
  EXPECT_GT(both, ref_only);
}
