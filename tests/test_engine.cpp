// Engine core: tensors and views, ensure() reuse, errors, the flat parameter layout of a Model,
// state_dict names, the option table (CLI + YAML) and JSON output.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>

#include "engine/buffer.h"
#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/json.h"
#include "engine/tensor.h"
#include "engine/trainer.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/dropout.h"
#include "layers/linear.h"
#include "layers/models.h"
#include "layers/norm.h"
#include "layers/pool.h"
#include "test_util.h"
#include "tuning/options.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"

using namespace kiln;

TEST(Tensor, ViewsShareStorageAndCopiesDoNot) {
  Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}, Device::CPU);
  Tensor r = t.rows(1, 3);
  EXPECT_EQ(r.shape(), (Shape{2, 2}));
  EXPECT_EQ(r.to_vector(), (std::vector<float>{3, 4, 5, 6}));
  r.data()[0] = 30;
  EXPECT_EQ(t.to_vector()[2], 30);
  Tensor c = t.clone();
  c.data()[0] = -1;
  EXPECT_EQ(t.to_vector()[0], 1);
  EXPECT_THROW(t.reshape({4, 2}), Error);
  EXPECT_THROW(t.rows(2, 4), Error);
}

// An undefined tensor holds nothing (its empty shape read as a 0-d tensor of 1 element, and
// to_vector, clone, zero_ and copy_from touched 4 bytes at null); a moved-from one is
// undefined (the default move kept its data pointer, dangling once the storage was freed).
TEST(Tensor, UndefinedAndMovedFromTensorsHoldNothing) {
  Tensor u;
  EXPECT_FALSE(u.defined());
  EXPECT_EQ(u.numel(), 0);
  EXPECT_EQ(u.bytes(), 0u);
  EXPECT_TRUE(u.to_vector().empty());
  EXPECT_FALSE(u.clone().defined());
  u.zero_();
  u.copy_from(Tensor());
  EXPECT_THROW(u.reshape({1}), Error);
  Tensor a = Tensor::from_vector({1, 2, 3, 4}, {4}, Device::CPU);
  Tensor b = std::move(a);
  EXPECT_FALSE(a.defined());     // NOLINT(bugprone-use-after-move): what a moved-from one is
  EXPECT_EQ(a.numel(), 0);       // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  Tensor c;
  c = std::move(b);
  EXPECT_FALSE(b.defined());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.to_vector(), (std::vector<float>{1, 2, 3, 4}));
  Tensor d = c;  // copies share storage
  EXPECT_EQ(d.data(), c.data());
}

TEST(Tensor, EnsureReusesStorageWhenLargeEnough) {
  Tensor t;
  ensure(t, {4, 8}, Device::CPU);
  float* p = t.data();
  ensure(t, {2, 8}, Device::CPU);  // a smaller last batch: same pointer
  EXPECT_EQ(t.data(), p);
  EXPECT_EQ(t.shape(), (Shape{2, 8}));
  ensure(t, {4, 8}, Device::CPU);  // back to full size: still the same storage
  EXPECT_EQ(t.data(), p);
  ensure(t, {8, 8}, Device::CPU);  // larger: reallocated
  EXPECT_EQ(t.numel(), 64);
}

// A shape whose element count (or byte count) passes 2^63 is an error naming it: {2^62+1} wrapped
// to a 4-byte buffer that numel() said held 2^62+1 floats, and {2^40, 2^40} to none at all.
TEST(Tensor, ShapesPastTwoTo63AreErrorsNotWrappedSizes) {
  const int64_t two40 = int64_t(1) << 40, two62 = int64_t(1) << 62;
  for (const Shape& s : {Shape{two62 + 1}, Shape{two40, two40}, Shape{3, two62, 1}}) {
    try {
      Tensor::empty(s, Device::CPU);
      FAIL() << shape_str(s) << " allocated";
    } catch (const Error& e) {
      EXPECT_EQ(e.message().rfind("shape " + shape_str(s) + ": ", 0), 0u) << e.message();
    }
  }
  EXPECT_THROW(shape_numel({two40, two40}), Error);
  EXPECT_EQ(shape_numel({two62, 4, 0}), 0);  // nothing in it, though its first two overflow
  EXPECT_EQ(shape_numel({two62, 1}), two62);
  EXPECT_EQ(Tensor::empty({two62, 4, 0}, Device::CPU).numel(), 0);
  // ensure() and view_as() size their storage the same way: {2^62+1} fit the 16 bytes of {4}
  Tensor small = Tensor::zeros({4}, Device::CPU);
  EXPECT_THROW(small.view_as({two62 + 1}), Error);
  Tensor t = small;
  EXPECT_THROW(ensure(t, {two62 + 1}, Device::CPU), Error);
  EXPECT_EQ(t.numel(), 4);
}

TEST(Tensor, CudaWithoutDeviceIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU answers";
  try {
    Tensor::empty({4}, Device::CUDA);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << e.what();
  }
}

// A host allocation that cannot be made is an OutOfMemory error (exit 1), not a Runtime one, so a
// sweep can fail that trial alone; a size that would wrap when rounded up is one too. (Under
// ASan an exabyte request aborts in ASan's allocator before malloc can return null.)
TEST(Buffer, FailedHostAllocationIsOutOfMemory) {
  std::vector<size_t> sizes = {SIZE_MAX - 10};
#if !defined(__SANITIZE_ADDRESS__)
  sizes.push_back(size_t{1} << 60);
#endif
  for (size_t bytes : sizes) {
    try {
      Buffer b(bytes, Device::CPU);
      FAIL() << bytes << " bytes allocated";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory) << e.what();
      EXPECT_EQ(exit_code(e.kind()), 1);
      EXPECT_NE(e.message().find("out of memory: cannot allocate " + std::to_string(bytes)),
                std::string::npos)
          << e.message();
    }
  }
}

// with_memory_context names what ran out (the data, the model, the evaluation, a training step:
// a bare "out of memory" or "cannot allocate N bytes" said neither): kiln's OutOfMemory and a
// container's std::bad_alloc come out as OutOfMemory with the context in front; other errors and
// results pass through untouched.
TEST(Buffer, MemoryContextNamesWhatRanOut) {
  const auto what = [] { return std::string("loading mnist train"); };
  const auto message_of = [&](const std::function<void()>& f) {
    try {
      with_memory_context(what, f);
    } catch (const Error& e) {
      return std::to_string(static_cast<int>(e.kind())) + " " + e.message();
    }
    return std::string("no error");
  };
  const std::string oom = std::to_string(static_cast<int>(ErrorKind::OutOfMemory));
  EXPECT_EQ(message_of([] { Buffer b(SIZE_MAX, Device::CPU); }),
            oom + " loading mnist train: out of memory: cannot allocate " +
                std::to_string(SIZE_MAX) + " bytes of host memory");
  EXPECT_EQ(message_of([] { throw std::bad_alloc(); }),
            oom + " loading mnist train: out of memory");
  EXPECT_EQ(message_of([] { KILN_USAGE_FAIL("--width 0"); }),
            std::to_string(static_cast<int>(ErrorKind::Usage)) + " --width 0");
  EXPECT_EQ(with_memory_context(what, [] { return 7; }), 7);
}

// The same on the device (a petabyte): OutOfMemory, and the failed cudaMalloc leaves no error
// behind, so the next allocation and launch work.
TEST(BufferGpu, FailedDeviceAllocationIsOutOfMemoryAndLeavesNoError) {
  KILN_SKIP_WITHOUT_GPU();
  try {
    Buffer b(size_t{1} << 50, Device::CUDA);
    FAIL() << "a petabyte allocated";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory) << e.what();
    EXPECT_NE(e.message().find("out of memory: cudaMalloc"), std::string::npos) << e.message();
  }
  Tensor t = Tensor::from_vector({1.f, 2.f}, {2}, Device::CUDA);
  EXPECT_EQ(t.to_vector(), (std::vector<float>{1.f, 2.f}));
}

TEST(Error, CarriesKindAndLocation) {
  try {
    KILN_USAGE_CHECK(1 == 2, "bad value " << 42);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_EQ(e.message(), "bad value 42");
    EXPECT_NE(e.where().find("test_engine.cpp:"), std::string::npos);
    EXPECT_EQ(exit_code(e.kind()), 2);
  }
  EXPECT_EQ(exit_code(ErrorKind::Runtime), 1);
  EXPECT_EQ(exit_code(ErrorKind::Diverged), 3);
}

// Every message is one line, whatever a caller's text brings in: a library caller's path or
// name with a line break (the apps refuse such values up front) gave a multi-line what() until
// 2026-12-06, and a file's DEL byte was echoed raw.
TEST(Error, MessagesAreOneLineWhateverTheyEcho) {
  auto message_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), e.message().c_str());
      return e.message();
    }
    ADD_FAILURE() << "no error";
    return "";
  };
  EXPECT_EQ(message_of([] { KILN_CHECK(false, "x\ny\rz\tw\x7f\x1b[31m"); }),
            "x\\ny\\rz\\tw\\u007f\\u001b[31m");
  EXPECT_EQ(message_of([] { KILN_CHECK(false, "caf\xc3\xa9 \xff"); }), "caf\xc3\xa9 \xff")
      << "UTF-8 and other bytes from 0x80 up are kept";
  const Error e(ErrorKind::Usage, "b", "f.cpp", 1);
  EXPECT_EQ(e.prefixed("a\n").message(), "a\\nb");
  EXPECT_EQ(e.suffixed("\nc").message(), "b\\nc");
  EXPECT_STREQ(e.suffixed("\nc").what(), "b\\nc");
  ModelOptions mo;
  mo.model = "ml\np";
  const std::string m = message_of([&] { make_model(mo, {1, 28, 28}, 10); });
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  EXPECT_NE(m.find("ml\\np"), std::string::npos) << m;
}

TEST(Model, OptionsTheModelNeverReadsAreNamed) {
  ModelOptions o;  // defaults: nothing to say
  EXPECT_TRUE(o.ignored().empty());
  o.model = "mlp";
  o.width = 64;
  o.depth = 5;
  EXPECT_TRUE(o.ignored().empty()) << "the mlp reads width and depth";
  o.pool_after = 2;
  o.groups = 4;
  o.norm_position = "after";
  auto notes = o.ignored();
  ASSERT_EQ(notes.size(), 3u);
  EXPECT_EQ(notes[0],
            "--pool-after 2 is ignored: it places the cnn's maxpool; the mlp has no pooling");
  EXPECT_EQ(notes[1], "--groups 4 is ignored without --norm group");
  EXPECT_EQ(notes[2], "--norm-position after is ignored without --norm batch|group");
  o.norm = "group";
  EXPECT_EQ(o.ignored().size(), 1u) << "group norm reads groups and the position";
  o = ModelOptions{};
  o.dropout_kind = "channel";
  notes = o.ignored();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0], "--dropout-kind channel is ignored without --dropout");
  o.dropout = 0.1f;
  EXPECT_TRUE(o.ignored().empty()) << "the cnn's conv blocks take channel dropout";
  o.model = "mlp";
  notes = o.ignored();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("the mlp has no channels"), std::string::npos) << notes[0];
  o = ModelOptions{};
  o.model = "cifar";
  o.width = 64;
  o.depth = 3;
  notes = o.ignored();
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_NE(notes[0].find("--width 64 is ignored"), std::string::npos);
  EXPECT_NE(notes[1].find("the cifar net has a fixed depth"), std::string::npos);
  o.model = "cnn";
  o.width = 128;
  o.depth = 2;
  o.pool_after = 6;
  EXPECT_TRUE(o.ignored().empty()) << "the cnn reads pool_after";
  // Against an app's own defaults (train_mnist's mlp width 256): its default is not "set".
  ModelOptions app;
  app.width = 256;
  o = app;
  o.model = "cifar";
  EXPECT_TRUE(o.ignored(app).empty());
  EXPECT_EQ(o.ignored().size(), 1u) << "against the library defaults 256 is a change";
  // --depth 0: the mlp is one Linear layer, so the hidden block's options shape nothing.
  o = ModelOptions{};
  o.model = "mlp";
  o.depth = 0;
  EXPECT_TRUE(o.ignored().empty());
  o.norm = "batch";
  o.dropout = 0.5f;
  notes = o.ignored();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0],
            "--norm --dropout are ignored: --depth 0 makes the mlp one Linear layer, "
            "with no hidden block");
  // ...and so are the norm's and the dropout's own settings, in the same one note (--groups and
  // --norm-position went unsaid; --dropout-kind was "ignored: the mlp has no channels")
  o.norm = "group";
  o.groups = 4;
  o.norm_position = "after";
  o.dropout_kind = "channel";
  notes = o.ignored();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0],
            "--norm --groups --norm-position --dropout --dropout-kind are ignored: --depth 0 makes "
            "the mlp one Linear layer, with no hidden block");
}

// The layers' own checks run in RunConfig::validate (on a model set up, never built), so a
// sweep's up-front check and --dry-run see them; --fuse on is said when nothing folds.
TEST(Model, ValidateRunsTheLayersChecksAndFusionIsCounted) {
  RunConfig c;
  c.model.norm = "group";
  c.model.groups = 3;  // the cnn's 16 channels
  try {
    c.validate();
    ADD_FAILURE() << "--groups 3 accepted for 16 channels";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_EQ(e.message(),
              "layer 1 (GroupNorm(3 groups, 16 channels)): 16 channels are not divisible by "
              "--groups 3");
  }
  // (each distinct model is set up once: the second verdict comes from the cache, the same)
  try {
    c.validate();
    ADD_FAILURE() << "--groups 3 accepted the second time";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("not divisible by --groups 3"), std::string::npos) << e.message();
  }
  c.model.groups = 4;
  EXPECT_NO_THROW(c.validate());
  c.data.dataset = "cifar10";  // another input: the cifar images' 3 channels, set up anew
  c.model.model = "cifar";
  c.model.groups = 3;
  EXPECT_THROW(c.validate(), Error);  // its 32 channels
  c.model.groups = 4;
  EXPECT_NO_THROW(c.validate());
  c = RunConfig{};
  c.model.norm = "group";
  c.model.activation = "gelu";
  try {
    c.validate();
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "--activation: unknown activation 'gelu' (expected relu|sigmoid|tanh)");
  }
  c = RunConfig{};
  c.fuse = "on";
  EXPECT_EQ(c.check_model(), 7) << "the cnn's seven conv blocks fold their ReLUs";
  c.model.activation = "tanh";
  EXPECT_EQ(c.check_model(), 0);
  c.model.activation = "relu";
  c.model.model = "mlp";
  EXPECT_EQ(c.check_model(), 0) << "a Linear does not fold its ReLU";
  c.model.norm = "batch";
  EXPECT_EQ(c.check_model(), 2) << "batch norm before the ReLU does";
  std::string notes;
  for (const auto& n : option_notes(c, RunConfig{})) notes += n + "\n";
  EXPECT_EQ(notes.find("--fuse"), std::string::npos) << notes;
  c.model.norm = "none";
  notes.clear();
  for (const auto& n : option_notes(c, RunConfig{})) notes += n + "\n";
  EXPECT_NE(notes.find("--fuse on is ignored: no ReLU in this model follows a conv or batch norm "
                       "layer that could apply it (--activation relu, --norm none before)"),
            std::string::npos)
      << notes;
  c.fuse = "auto";  // the default says nothing: it asked for no fusion in particular
  notes.clear();
  for (const auto& n : option_notes(c, RunConfig{})) notes += n + "\n";
  EXPECT_EQ(notes.find("--fuse"), std::string::npos) << notes;
}

namespace {
// Every note option_notes gives for c against the defaults, a line each.
std::string notes_of(const RunConfig& c) {
  std::string s;
  for (const auto& n : option_notes(c, RunConfig{})) s += n + "\n";
  return s;
}
}  // namespace

TEST(Model, ExponentialScheduleWithoutGammaIsNoted) {
  // --gamma left at StepLR's 0.1: per step the lr is gone after a few steps, silently until
  // 2026-12-04; a given --gamma (even 0.1) is not noted.
  RunConfig c;
  c.sched.name = "exponential-step";
  EXPECT_NE(notes_of(c).find("--schedule exponential-step multiplies the lr by --gamma every "
                             "optimizer step, and --gamma was not given: the default 0.1"),
            std::string::npos)
      << notes_of(c);
  c.sched.name = "exponential";
  EXPECT_NE(notes_of(c).find("every epoch, and --gamma was not given"), std::string::npos);
  c.sched.gamma = 0.1f;
  EXPECT_EQ(notes_of(c).find("--gamma was not given"), std::string::npos) << notes_of(c);
  c.sched.gamma = NAN;
  c.sched.name = "step";
  EXPECT_EQ(notes_of(c).find("--gamma was not given"), std::string::npos) << notes_of(c);
}

TEST(Model, InverseTimeWithoutDecayAndKeepLastWithoutPeriodicCheckpointsAreNoted) {
  // Both were silent until 2026-12-07: inverse-time with the default --decay 0 trained at a
  // constant lr, and --keep-last alone pruned nothing.
  RunConfig c;
  c.sched.name = "inverse-time";
  EXPECT_NE(notes_of(c).find("--schedule inverse-time divides --lr by 1 + --decay * t (t the "
                             "epoch), and --decay is 0: the lr stays --lr"),
            std::string::npos)
      << notes_of(c);
  c.sched.name = "inverse-time-step";
  EXPECT_NE(notes_of(c).find("(t the optimizer step), and --decay is 0"), std::string::npos);
  c.sched.decay = 0.5;
  EXPECT_EQ(notes_of(c).find("--decay is 0"), std::string::npos) << notes_of(c);
  c.sched.decay = 0;
  c.sched.name = "constant";
  EXPECT_EQ(notes_of(c).find("--decay is 0"), std::string::npos) << notes_of(c);
  {  // --early-stop-start at or past --epochs: nothing watched (no note until 2026-12-07)
    RunConfig e = c;
    e.train.early_stop = 1;
    e.train.epochs = 2;
    e.train.early_stop_start = 2;
    EXPECT_NE(notes_of(e).find("--early-stop-start 2 is not below --epochs 2: early stopping "
                               "watches no epoch and never stops this run"),
              std::string::npos)
        << notes_of(e);
    // Epoch 2 is watched, but the first watched epoch sets the best: the soonest stop follows
    // epoch 3, and a stop after the last epoch skips nothing (a run of 3 epochs trains them all:
    // the note was missing for --epochs equal to that epoch until 2026-12-07).
    e.train.early_stop_start = 1;
    EXPECT_NE(notes_of(e).find("--early-stop 1 never stops this run: it stops after 1 watched "
                               "epoch without improvement, and the first watched epoch sets "
                               "the best: the first epoch it can skip is 4, and --epochs is 2 "
                               "(--early-stop-start 1)"),
              std::string::npos)
        << notes_of(e);
    EXPECT_EQ(notes_of(e).find("watches no epoch"), std::string::npos) << notes_of(e);
    e.train.epochs = 3;  // trains epochs 1-3 whatever the loss does
    EXPECT_NE(notes_of(e).find("the first epoch it can skip is 4, and --epochs is 3"),
              std::string::npos)
        << notes_of(e);
    e.train.epochs = 4;  // epoch 4 can be skipped
    EXPECT_EQ(notes_of(e).find("never stops"), std::string::npos) << notes_of(e);
    // --early-stop 10 --epochs 10 and 11 (no start): it can skip epoch 12 at the soonest.
    e.train.early_stop_start = 0;
    e.train.early_stop = 10;
    for (int epochs : {10, 11}) {
      e.train.epochs = epochs;
      EXPECT_NE(notes_of(e).find("--early-stop 10 never stops this run: it stops after 10 "
                                 "watched epochs without improvement, and the first watched "
                                 "epoch sets the best: the first epoch it can skip is 12, and "
                                 "--epochs is " +
                                 std::to_string(epochs) + "\n"),
                std::string::npos)
          << notes_of(e);
    }
    e.train.epochs = 12;
    EXPECT_EQ(notes_of(e).find("never stops"), std::string::npos) << notes_of(e);
    // A baseline can start the wait at the first watched epoch: the stop can follow epoch 10.
    e.train.early_stop_baseline = 0.5;
    e.train.epochs = 10;
    EXPECT_NE(notes_of(e).find("--early-stop 10 never stops this run: it stops after 10 watched "
                               "epochs without improvement on --early-stop-baseline, and the "
                               "first watched epoch sets the best: the first epoch it can skip "
                               "is 11, and --epochs is 10"),
              std::string::npos)
        << notes_of(e);
    e.train.epochs = 11;
    EXPECT_EQ(notes_of(e).find("never stops"), std::string::npos) << notes_of(e);
    // ... but not after the first watched epoch, which set the best: --early-stop 1 needs two
    // (the note was missing with --early-stop-start until 2026-12-07)
    e.train.early_stop = 1;
    for (int start : {0, 3}) {
      e.train.early_stop_start = start;
      e.train.epochs = start + 2;
      EXPECT_NE(notes_of(e).find("the first epoch it can skip is " + std::to_string(start + 3) +
                                 ", and --epochs is " + std::to_string(start + 2)),
                std::string::npos)
          << notes_of(e);
      e.train.epochs = start + 3;
      EXPECT_EQ(notes_of(e).find("never stops"), std::string::npos) << notes_of(e);
    }
    e.train.early_stop_start = 0;
    // The largest patience: no int overflow (--early-stop 2147483647 went unnoted)
    e.train.early_stop = std::numeric_limits<int>::max();
    e.train.early_stop_baseline = NAN;
    EXPECT_NE(notes_of(e).find("the first epoch it can skip is 2147483649, and --epochs is"),
              std::string::npos)
        << notes_of(e);
    e.train.early_stop = 1;
    // Resumed: the checkpoint's wait may end it sooner; nothing is claimed.
    e.train.epochs = 1;
    e.resume = "ckpt";
    EXPECT_EQ(notes_of(e).find("never stops"), std::string::npos) << notes_of(e);
  }
  c.keep_last = 3;
  EXPECT_NE(notes_of(c).find("--keep-last 3 has nothing to prune without --checkpoint-every or "
                             "--checkpoint-every-steps"),
            std::string::npos)
      << notes_of(c);
  RunConfig d = c;
  d.checkpoint_every = 1;
  EXPECT_EQ(notes_of(d).find("--keep-last"), std::string::npos) << notes_of(d);
  d = c;
  d.checkpoint_every_steps = 100;
  EXPECT_EQ(notes_of(d).find("--keep-last"), std::string::npos) << notes_of(d);
}

// Options a schedule overrides are said, not silently dropped: adam's --beta1 under a cycling
// momentum (the apps' default one-cycle; a sweep over beta1 gave identical trials), --lr beside
// one-cycle's --max-lr or cyclic's --base-lr, the momentum range with --no-cycle-momentum, and
// sgd's --dampening without a momentum. Each is quiet where the option is read.
TEST(Model, OptionsTheScheduleOverridesAreNoted) {
  auto has = [&](const RunConfig& c, const std::string& what) {
    return notes_of(c).find(what) != std::string::npos;
  };
  RunConfig c;
  c.optim.name = "adam";
  c.sched.name = "one-cycle";
  c.optim.beta1 = 0.5f;
  EXPECT_TRUE(has(c,
                  "--beta1 0.5 is ignored: --schedule one-cycle cycles adam's beta1 between 0.85 "
                  "and 0.95 (as torch's OneCycleLR does); --no-cycle-momentum keeps --beta1"))
      << notes_of(c);
  c.sched.name = "cyclic";
  c.optim.name = "adamw";
  EXPECT_TRUE(has(c, "cycles adamw's beta1 between 0.8 and 0.9 (as torch's CyclicLR"))
      << notes_of(c);
  c.sched.cycle_momentum = false;
  EXPECT_FALSE(has(c, "--beta1")) << notes_of(c);
  c.sched.cycle_momentum = true;
  c.sched.max_momentum = 0.97f;  // a range given: beta1 still cycles, over it
  EXPECT_TRUE(has(c, "cycles adamw's beta1 between 0.8 and 0.97")) << notes_of(c);
  c = RunConfig{};
  c.optim.name = "adam";
  c.sched.name = "constant";
  c.optim.beta1 = 0.5f;
  EXPECT_FALSE(has(c, "--beta1")) << notes_of(c);

  c = RunConfig{};
  c.optim.lr = 0.5f;
  c.sched.name = "one-cycle";
  EXPECT_FALSE(has(c, "--lr is ignored")) << notes_of(c);
  c.sched.max_lr = 0.003f;
  EXPECT_TRUE(has(c, "--lr is ignored by --schedule one-cycle with --max-lr")) << notes_of(c);
  c.sched.name = "cyclic";
  EXPECT_FALSE(has(c, "--lr is ignored")) << notes_of(c) << " (cyclic's base is --lr)";
  c.sched.base_lr = 0.001f;
  EXPECT_TRUE(has(c, "--lr is ignored by --schedule cyclic with --base-lr")) << notes_of(c);

  c = RunConfig{};
  c.sched.name = "one-cycle";
  c.sched.cycle_momentum = false;
  c.sched.max_momentum = 0.99f;
  EXPECT_TRUE(has(c, "--base-momentum/--max-momentum are ignored with --no-cycle-momentum"))
      << notes_of(c);
  c.sched.cycle_momentum = true;
  EXPECT_FALSE(has(c, "ignored with --no-cycle-momentum")) << notes_of(c);

  c = RunConfig{};
  c.optim.name = "sgd";
  c.sched.name = "constant";
  c.optim.dampening = 0.5f;
  EXPECT_TRUE(has(c, "--dampening 0.5 is ignored: sgd's momentum is 0 (--momentum sets it)"))
      << notes_of(c);
  c.optim.momentum = 0.9f;
  EXPECT_FALSE(has(c, "--dampening")) << notes_of(c);
  c.optim.momentum = 0;
  c.sched.name = "one-cycle";  // the schedule's momentum is dampened
  EXPECT_FALSE(has(c, "--dampening")) << notes_of(c);
}

TEST(Model, FlatLayoutAlignedViewsAndStateDictNames) {
  ModelOptions o;
  o.model = "mlp";
  o.width = 5;
  o.depth = 2;
  auto m = make_model(o, {1, 4, 4}, 3);
  m->build(Device::CPU, 1);
  const auto& refs = m->param_refs();
  ASSERT_EQ(refs.size(), 6u);
  EXPECT_EQ(refs[0].name, "1.weight");  // 0 is Flatten, as in nn.Sequential
  EXPECT_EQ(refs[1].name, "1.bias");
  EXPECT_EQ(refs[5].name, "5.bias");
  EXPECT_FALSE(refs[1].param->decay);
  EXPECT_TRUE(refs[0].param->decay);
  int64_t n = 0;
  for (const auto& r : refs) {
    EXPECT_EQ(r.param->offset % 16, 0) << r.name;  // 64-byte aligned
    EXPECT_EQ(r.param->value.data(), m->flat_params().data() + r.param->offset);
    EXPECT_EQ(r.param->grad.data(), m->flat_grads().data() + r.param->offset);
    n += r.param->value.numel();
  }
  EXPECT_EQ(n, m->num_params());
  EXPECT_EQ(m->num_params(), 16 * 5 + 5 + 5 * 5 + 5 + 5 * 3 + 3);
  auto sd = m->state_dict();
  EXPECT_EQ(sd.size(), 6u);
  EXPECT_EQ(sd[2].first, "3.weight");
}

// Nothing before the first layer with parameters needs an input gradient: the mlp's Flatten and
// first Linear (its dx GEMM was a quarter of an mlp step, thrown away by Flatten) and a cnn that
// pools first compute none, and the parameter gradients are those of a full backward.
TEST(Model, NoInputGradientUpToTheFirstLayerWithParameters) {
  struct Case {
    std::string model;
    int pool_after;
    Shape input;
    std::vector<bool> need_dx;  // the first layers'; every later one needs dx
  };
  for (const Case& c : {Case{"mlp", 4, {1, 6, 6}, {false, false, true}},
                        Case{"cnn", 0, {1, 28, 28}, {false, false, true}}}) {
    SCOPED_TRACE(c.model);
    ModelOptions o;
    o.model = c.model;
    o.width = 7;
    o.pool_after = c.pool_after;
    auto grads = [&](bool full, Tensor* dx) {
      auto m = make_model(o, c.input, 3);
      m->build(Device::CPU, 5);
      const auto layers = m->layers();
      if (full) {
        for (auto* l : layers) l->need_dx = true;
      } else {
        for (size_t i = 0; i < layers.size(); ++i)
          EXPECT_EQ(layers[i]->need_dx, i < c.need_dx.size() ? bool(c.need_dx[i]) : true)
              << "layer " << i << " " << layers[i]->describe();
      }
      Context ctx(Device::CPU, 1);
      Shape xs = c.input;
      xs.insert(xs.begin(), 2);
      m->forward(
          ctx, Tensor::from_vector(test::random_vec(2 * shape_numel(c.input), 3), xs, Device::CPU));
      *dx = m->backward(ctx, Tensor::from_vector(test::random_vec(6, 4), {2, 3}, Device::CPU));
      return m->flat_grads().to_vector();
    };
    Tensor dx_skip, dx_full;
    const auto skip = grads(false, &dx_skip), full = grads(true, &dx_full);
    EXPECT_FALSE(dx_skip.defined());
    ASSERT_TRUE(dx_full.defined());
    Shape xs = c.input;
    xs.insert(xs.begin(), 2);
    EXPECT_EQ(dx_full.shape(), xs);
    EXPECT_EQ(skip, full);
  }
  // A cleared need_dx after the first layer with parameters would leave the layers before it
  // with the last step's gradients: an error naming the layer (it ran on silently, or crashed).
  ModelOptions o;
  o.model = "mlp";
  o.width = 7;
  auto m = make_model(o, {1, 6, 6}, 3);
  m->build(Device::CPU, 5);
  m->layers()[3]->need_dx = false;  // the second Linear
  Context ctx(Device::CPU, 1);
  m->forward(ctx, Tensor::from_vector(test::random_vec(72, 3), {2, 1, 6, 6}, Device::CPU));
  std::string msg = "no error";
  try {
    m->backward(ctx, Tensor::from_vector(test::random_vec(6, 4), {2, 3}, Device::CPU));
  } catch (const Error& e) {
    msg = e.message();
  }
  EXPECT_NE(msg.find("model backward: layer 3 (Linear(7 -> 7)) computes no input gradient "
                     "(need_dx is false), but layer 1 before it has parameters"),
            std::string::npos)
      << msg;
}

// Every layer type that keeps buffers, with an input shape (per sample) it takes.
struct LayerCase {
  std::function<LayerPtr()> make;
  Shape in;
};
std::vector<LayerCase> buffered_layer_cases() {
  return {
      {[] { return std::make_unique<Activation>(Act::Tanh); }, {3, 4, 4}},
      {[] { return std::make_unique<Conv2d>(3, 4, 3, 1, 1); }, {3, 5, 5}},
      {[] { return std::make_unique<Dropout>(0.5); }, {3, 4, 4}},
      {[] { return std::make_unique<Linear>(6, 5); }, {6}},
      {[] { return std::make_unique<BatchNorm>(3, true); }, {3, 4, 4}},
      {[] { return std::make_unique<GroupNorm>(1, 3); }, {3, 4, 4}},
      {[] { return std::make_unique<MaxPool2d>(2); }, {3, 4, 4}},
      {[] { return std::make_unique<AvgPool2d>(2); }, {3, 4, 4}},
      {[] { return std::make_unique<GlobalAvgPool>(); }, {3, 4, 4}},
  };
}

TEST(Model, ReleaseScratchFreesWhatTheLayersGrewTo) {
  // A layer's buffers grow to the largest batch it has run and stay (ensure); release_scratch
  // lets them go: after a batch of 8 and a release, a batch of 2's output and dx take a batch
  // of 2's bytes, and after the last release the process holds what it held before the first
  // forward (Buffer::live_bytes: the saved input and every workspace and index buffer too).
  for (const LayerCase& c : buffered_layer_cases()) {
    Model m(c.in);
    m.add(c.make());
    m.build(Device::CPU, 1);
    Layer* l = m.layers()[0];
    SCOPED_TRACE(l->describe());
    l->need_dx = true;
    Context ctx(Device::CPU, 1);
    ctx.training = true;
    int64_t out_numel = 0;  // per sample
    const size_t before = Buffer::live_bytes(Device::CPU);
    auto run = [&](int64_t n) {
      Shape xs = c.in;
      xs.insert(xs.begin(), n);
      const Tensor x =
          Tensor::from_vector(test::random_vec(n * shape_numel(c.in), 3), xs, Device::CPU);
      const Tensor y = l->forward(ctx, x);
      out_numel = y.numel() / n;
      const Tensor dx = l->backward(
          ctx, Tensor::from_vector(test::random_vec(y.numel(), 4), y.shape(), Device::CPU));
      return std::make_pair(y.capacity_bytes(), dx.capacity_bytes());
    };
    const auto big = run(8);
    EXPECT_EQ(run(2), big) << "a smaller batch reuses the larger buffers";
    m.release_scratch();
    const auto small = run(2);
    EXPECT_EQ(small.first, 2 * out_numel * sizeof(float));
    EXPECT_EQ(small.second, 2 * shape_numel(c.in) * sizeof(float));
    EXPECT_LT(small.first, big.first);
    EXPECT_GT(Buffer::live_bytes(Device::CPU), before);
    m.release_scratch();
    EXPECT_EQ(Buffer::live_bytes(Device::CPU), before);
  }
  // After a release there is no forward to differentiate.
  ModelOptions o;
  o.model = "mlp";
  o.width = 4;
  auto m = make_model(o, {1, 3, 3}, 3);
  m->build(Device::CPU, 1);
  Context ctx(Device::CPU, 1);
  m->forward(ctx, Tensor::zeros({2, 1, 3, 3}, Device::CPU));
  m->release_scratch();
  try {
    m->backward(ctx, Tensor::zeros({2, 3}, Device::CPU));
    FAIL() << "backward after release_scratch";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("before a forward"), std::string::npos) << e.message();
  }
}

// A layer's backward reads what its forward kept: with no forward yet, after the layer's own
// release_scratch(), or with a gradient of another batch, it is an Error naming the layer (an
// embedding harness, 2026-12-07: the activation read a null pointer and the Linear layer's GEMM
// segfaulted). Dropout keeps nothing its backward needs.
TEST(Model, LayerBackwardWithoutItsForwardIsAnError) {
  for (const LayerCase& c : buffered_layer_cases()) {
    Model m(c.in);
    m.add(c.make());
    m.build(Device::CPU, 1);
    Layer* l = m.layers()[0];
    if (l->type() == "Dropout") continue;
    SCOPED_TRACE(l->describe());
    l->need_dx = true;
    Context ctx(Device::CPU, 1);
    ctx.training = true;
    Shape xs = c.in;
    xs.insert(xs.begin(), 4);
    const Tensor x = Tensor::from_vector(test::random_vec(shape_numel(xs), 3), xs, Device::CPU);
    auto backward_fails = [&](const Tensor& dy, const std::string& why) {
      try {
        l->backward(ctx, dy);
        ADD_FAILURE() << "backward ran: " << why;
      } catch (const Error& e) {
        EXPECT_EQ(e.message().rfind("layer 0 (" + l->describe() + "): ", 0), 0u) << e.message();
        EXPECT_NE(e.message().find(why), std::string::npos) << e.message();
      }
    };
    const Shape ys = m.forward(ctx, x).shape();  // (the shapes of a forward, then none kept)
    m.release_scratch();
    const Tensor dy = Tensor::from_vector(test::random_vec(shape_numel(ys), 4), ys, Device::CPU);
    backward_fails(dy, "backward without a matching forward");
    l->forward(ctx, x);
    l->release_scratch();
    backward_fails(dy, "backward without a matching forward");
    l->forward(ctx, x);
    Shape half = ys;
    half[0] = 2;
    backward_fails(Tensor::zeros(half, Device::CPU), "gradient " + shape_str(half) +
                                                         " does not match the output " +
                                                         shape_str(ys) + " of its last forward");
    EXPECT_NO_THROW(l->backward(ctx, dy));
  }
}

// A forward given an input other than the per-sample shape its setup saw (a library caller's
// mistake: Model::forward checks its own input) is an error naming the layer and both shapes;
// a narrower input was read past (Linear, until 2026-12-07). Layers that map any shape
// elementwise (activations, dropout) take any; the norms check theirs in check_batch.
TEST(Model, LayerForwardOnAnotherInputShapeIsAnError) {
  int checked = 0;
  for (const LayerCase& c : buffered_layer_cases()) {
    Model m(c.in);
    m.add(c.make());
    m.build(Device::CPU, 1);
    Layer* l = m.layers()[0];
    const std::string type = l->type();
    if (type != "Conv2d" && type != "Linear" && type != "MaxPool2d" && type != "AvgPool2d" &&
        type != "GlobalAvgPool")
      continue;
    SCOPED_TRACE(l->describe());
    Context ctx(Device::CPU, 1);
    Shape setup = c.in;
    std::string want = "[N";
    for (int64_t d : setup) want += ", " + std::to_string(d);
    want += "]";
    std::vector<Shape> wrong;
    for (size_t i = 0; i < setup.size(); ++i) {  // each dimension one narrower and one wider
      for (int64_t delta : {-1, 1}) {
        Shape s = setup;
        s[i] += delta;
        wrong.push_back(s);
      }
    }
    Shape flat{shape_numel(setup)};  // the same values, another rank
    if (flat != setup) wrong.push_back(flat);
    Shape more = setup;
    more.push_back(1);
    wrong.push_back(more);
    for (Shape s : wrong) {
      s.insert(s.begin(), 2);
      const Tensor x = Tensor::zeros(s, Device::CPU);
      try {
        l->forward(ctx, x);
        ADD_FAILURE() << "took " << shape_str(s);
      } catch (const Error& e) {
        EXPECT_EQ(e.message(), "layer 0 (" + l->describe() + "): input " + shape_str(s) +
                                   " does not match setup " + want);
      }
    }
    Shape ok = setup;
    ok.insert(ok.begin(), 2);
    EXPECT_NO_THROW(l->forward(ctx, Tensor::zeros(ok, Device::CPU)));
    ++checked;
  }
  EXPECT_EQ(checked, 5);  // Conv2d, Linear, MaxPool2d, AvgPool2d, GlobalAvgPool
}

TEST(Model, MisuseFromCppIsAnErrorNotACrash) {
  // What a library user can get wrong (found by linking the installed library): each a kiln
  // Error naming what is wrong, not a segfault or a silent non-training run.
  ModelOptions o;
  o.model = "mlp";
  o.width = 5;
  o.depth = 1;
  auto m = make_model(o, {1, 4, 4}, 3);
  Context ctx(Device::CPU, 1);
  const Tensor g = Tensor::zeros({4, 3}, Device::CPU);
  EXPECT_THROW(m->backward(ctx, g), Error);  // before build
  EXPECT_THROW(save_checkpoint(test::temp_file("unbuilt.safetensors"), ctx, *m, nullptr, nullptr,
                               CheckpointInfo{}),
               Error);
  m->build(Device::CPU, 1);
  try {
    m->backward(ctx, g);  // before any forward
    FAIL() << "backward before forward";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("Model::backward before a forward"), std::string::npos)
        << e.message();
  }
  m->forward(ctx, Tensor::zeros({4, 1, 4, 4}, Device::CPU));
  EXPECT_NO_THROW(m->backward(ctx, g));
  for (const Shape& bad : {Shape{64, 3}, Shape{4, 7}, Shape{4}}) {
    try {
      m->backward(ctx, Tensor::zeros(bad, Device::CPU));
      FAIL() << "backward took a gradient of " << shape_str(bad);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find("the last forward's output was [4, 3]"), std::string::npos)
          << e.message();
    }
  }
  // An optimizer steps the model it was made for; another model's would never train.
  auto other = make_model(o, {1, 4, 4}, 3);
  other->build(Device::CPU, 2);
  OptimOptions oo;
  auto opt = make_optimizer(oo, *m);
  EXPECT_TRUE(opt->bound_to(*m));
  EXPECT_FALSE(opt->bound_to(*other));
  auto sched = make_schedule(ScheduleOptions{}, oo.lr, 1, 1);
  TrainOptions to;
  try {
    Trainer t(*other, *opt, *sched, ctx, to);
    FAIL() << "a trainer took another model's optimizer";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("another model's parameters"), std::string::npos) << e.message();
  }
  // ...and a checkpoint of one model with another's optimizer would not load back.
  try {
    encode_checkpoint(ctx, *other, opt.get(), nullptr, CheckpointInfo{});
    FAIL() << "a checkpoint paired a model with another model's optimizer";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "save_checkpoint: the optimizer given steps another model's parameters");
  }
  // A caller's own loop passes the lr each step: a NaN or negative one is refused, the weights
  // and the step count left as they were (a NaN lr made every weight NaN, silently).
  const std::vector<float> before = m->flat_params().to_vector();
  for (float lr : {NAN, INFINITY, -0.1f}) {
    try {
      opt->step(ctx, lr);
      FAIL() << "stepped at lr " << lr;
    } catch (const Error& e) {  // not finite: diverged, as a non-finite loss (exit 3)
      EXPECT_EQ(e.kind(), lr < 0 ? ErrorKind::Usage : ErrorKind::Diverged) << e.message();
      EXPECT_NE(e.message().find("optimizer step: lr "), std::string::npos) << e.message();
    }
  }
  try {
    opt->step(ctx, 0.1f, NAN);
    FAIL() << "stepped at momentum nan";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "optimizer step: momentum nan is not finite");
  }
  EXPECT_EQ(opt->steps_taken(), 0);
  EXPECT_EQ(m->flat_params().to_vector(), before);
  opt->step(ctx, 0.0f);
  EXPECT_EQ(opt->steps_taken(), 1) << "lr 0 is a step";
  // A negative step count, or a momentum of 1 or more that Adam takes as beta1: every weight
  // NaN, with no error (until 2026-12-07, the embedding harness).
  EXPECT_THROW(opt->set_steps_taken(-5), Error);
  EXPECT_EQ(opt->steps_taken(), 1);
  OptimOptions ao;
  ao.name = "adam";
  auto adam = make_optimizer(ao, *m);
  const std::vector<float> w0 = m->flat_params().to_vector();
  try {
    adam->step(ctx, 0.01f, 1.0f);
    FAIL() << "adam stepped at beta1 1";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_EQ(e.message(), "optimizer step: momentum 1 is Adam's beta1 here: must be in [0, 1)");
  }
  EXPECT_EQ(m->flat_params().to_vector(), w0);
  EXPECT_EQ(adam->steps_taken(), 0);
  // Shapes: a model input or a reshape with a negative dimension is refused (an mlp on [-2, -3]
  // had built, 43 parameters).
  auto neg = make_model(o, {-2, -3}, 3);
  try {
    neg->build(Device::CPU, 1);
    FAIL() << "a model on input [-2, -3] built";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "model input shape [-2, -3]: every dimension must be positive");
  }
  EXPECT_THROW(Tensor::zeros({6}, Device::CPU).reshape({2, -1, -3}), Error);
  // An empty output name is named as such (it read "Too many levels of symbolic links").
  try {
    save_checkpoint("", ctx, *m, nullptr, nullptr, CheckpointInfo{});
    FAIL() << "saved to ''";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "cannot write a file with an empty name");
  }
  EXPECT_THROW(parse_device("gpu"), Error);  // torch.device("gpu") is refused too
  // Tensor::dim out of range is a kiln Error (the one exception type), not std::out_of_range.
  EXPECT_THROW(g.dim(2), Error);
  EXPECT_THROW(g.dim(-3), Error);
  EXPECT_EQ(g.dim(-1), 3);
}

TEST(Model, InitIsSeededAndPyTorchBounded) {
  auto build = [](uint64_t seed) {
    Model m({100});
    m.add(std::make_unique<Linear>(100, 50));
    m.build(Device::CPU, seed);
    return m.flat_params().to_vector();
  };
  auto a = build(3), b = build(3), c = build(4);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (int i = 0; i < 5000; ++i) EXPECT_LE(std::fabs(a[i]), 0.1f + 1e-7f);  // 1/sqrt(fan_in)
}

// Each --init scheme against torch.nn.init's formulas, on the sample statistics of a large
// layer: the uniform bound (the largest |w| within 1% below it) and the std (within 3%; the
// uniform's is bound/sqrt(3)). Biases keep PyTorch's default, U(+-1/sqrt(fan_in)), under every
// scheme (nn.init.*_(m.weight) leaves the bias alone).
TEST(Model, InitSchemesFollowTorchNnInit) {
  struct Stats {
    double max_abs = 0, mean = 0, std = 0;
  };
  auto stats = [](const std::vector<float>& v) {
    Stats st;
    for (float x : v) st.max_abs = std::max(st.max_abs, std::fabs(double(x))), st.mean += x;
    st.mean /= double(v.size());
    for (float x : v) st.std += (x - st.mean) * (x - st.mean);
    st.std = std::sqrt(st.std / double(v.size()));
    return st;
  };
  // Conv2d(64 -> 128, k3): fan_in 576, fan_out 1152 (PyTorch: in/out channels * kh * kw); and
  // Linear(576 -> 1152), the same fans (with them swapped, every bound would move).
  const double fi = 576, fo = 1152;
  struct Want {
    const char* name;
    double bound, std;  // bound 0: normal
  };
  const Want wants[] = {{"default", 1 / std::sqrt(fi), 1 / std::sqrt(3 * fi)},
                        {"kaiming", std::sqrt(6 / fi), std::sqrt(2 / fi)},
                        {"kaiming_normal", 0, std::sqrt(2 / fi)},
                        {"xavier", std::sqrt(6 / (fi + fo)), std::sqrt(2 / (fi + fo))},
                        {"xavier_normal", 0, std::sqrt(2 / (fi + fo))}};
  for (const Want& w : wants)
    for (bool linear : {false, true}) {
      SCOPED_TRACE(linear ? "Linear" : "Conv2d");
      Model m(linear ? Shape{576} : Shape{64, 8, 8});
      if (linear)
        m.add(std::make_unique<Linear>(576, 1152, true, parse_init_scheme(w.name)));
      else
        m.add(std::make_unique<Conv2d>(64, 128, 3, 1, 0, true, parse_init_scheme(w.name)));
      m.build(Device::CPU, 7);
      auto sd = m.state_dict();
      ASSERT_EQ(sd[0].first, "0.weight");
      Stats ws = stats(sd[0].second.to_vector()), bs = stats(sd[1].second.to_vector());
      EXPECT_NEAR(ws.std, w.std, 0.03 * w.std) << w.name;
      EXPECT_NEAR(ws.mean, 0, 0.02 * w.std) << w.name;
      if (w.bound > 0) {
        EXPECT_LE(ws.max_abs, w.bound * (1 + 1e-6)) << w.name;
        EXPECT_GE(ws.max_abs, w.bound * 0.99) << w.name;
      } else {
        EXPECT_GT(ws.max_abs, 3 * w.std) << w.name << ": not truncated";
      }
      EXPECT_LE(bs.max_abs, 1 / std::sqrt(fi) * (1 + 1e-6)) << w.name << " bias";
      EXPECT_GT(bs.max_abs, 0.5 / std::sqrt(fi)) << w.name << " bias";
    }
  EXPECT_THROW(parse_init_scheme("he_uniformish"), Error);
  // Keras' uniform names are the same distributions; its truncated normals are refused, naming
  // torch's (plain) one (until 2026-12-04 they quietly gave it).
  EXPECT_EQ(parse_init_scheme("he_uniform"), InitScheme::KaimingUniform);
  EXPECT_EQ(parse_init_scheme("glorot_uniform"), InitScheme::XavierUniform);
  for (const char* keras : {"he_normal", "glorot_normal"}) {
    try {
      parse_init_scheme(keras);
      ADD_FAILURE() << keras;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find("is a truncated normal, which kiln does not have"),
                std::string::npos)
          << e.message();
    }
  }
}

TEST(Options, FloatOptionsAreRecordedExactly) {
  // A checkpoint's config (run_config_json) must rebuild the run: a float option's text reads
  // back as the same float (6 significant digits made --lr 0.0012345678 "0.00123457", another
  // float, and a resume with --lr 0.0012345699 was not told the lr changed).
  const OptionSpec* lr = run_options().find("lr");
  ASSERT_NE(lr, nullptr);
  // FLT_MAX's exact text is a little above FLT_MAX as a double: it was refused on reading back,
  // so a checkpoint of such a run could not be resumed or evaluated.
  for (float v : {0.0012345678f, 0.0012345699f, 0.1f, 0.01f, 1e-7f, 3.0e38f, 0.123456789f,
                  std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                  std::numeric_limits<float>::min()}) {
    RunConfig c;
    c.optim.lr = v;
    const std::string text = lr->get(c);
    RunConfig back;
    const char* argv[] = {"x", "--lr", text.c_str()};
    parse_args(back, 3, const_cast<char**>(argv), run_options());
    EXPECT_EQ(back.optim.lr, v) << text;
  }
  RunConfig a, b;
  a.optim.lr = 0.0012345678f;
  b.optim.lr = 0.0012345699f;
  EXPECT_NE(lr->get(a), lr->get(b));
  a.optim.lr = 0.01f;
  EXPECT_EQ(lr->get(a), "0.01");  // short values stay short
}

TEST(Options, ConfigDiffsReadSixDigitFloatsOfOlderFiles) {
  // Before 2026-12-03 float options were recorded to 6 digits: an older checkpoint or sweep
  // directory with --lr 0.0012345678 says "0.00123457", which is the same option, not a change.
  auto skip_none = [](const std::string&) { return false; };
  const JsonValue was = parse_json("{\"lr\":\"0.00123457\",\"momentum\":\"0.9\"}");
  EXPECT_EQ(config_diffs(was, parse_json("{\"lr\":\"0.0012345678\",\"momentum\":\"0.9\"}"),
                         skip_none, "--"),
            "");
  EXPECT_EQ(
      config_diffs(was, parse_json("{\"lr\":\"0.0012346\",\"momentum\":\"0.9\"}"), skip_none, "--"),
      "--lr 0.00123457 -> 0.0012346");
  EXPECT_EQ(config_diffs(was, parse_json("{\"lr\":\"0.00123457\",\"momentum\":\"0.95\"}"),
                         skip_none, "--"),
            "--momentum 0.9 -> 0.95");
}

TEST(Options, ConfigDiffsCompareOptionsAnOlderFileLacksWithTheirDefaults) {
  // A checkpoint or sweep directory from before an option existed ran as its default does: the
  // same value now is no change, another value is one, and a skipped key stays skipped.
  auto skip_none = [](const std::string&) { return false; };
  const std::string def = run_options().find("fuse")->get(RunConfig{});
  ASSERT_EQ(def, "auto");
  const JsonValue was = parse_json("{\"lr\":\"0.1\"}");
  EXPECT_EQ(
      config_diffs(was, parse_json("{\"lr\":\"0.1\",\"fuse\":\"" + def + "\"}"), skip_none, "--"),
      "");
  EXPECT_EQ(config_diffs(was, parse_json("{\"lr\":\"0.1\",\"fuse\":\"on\"}"), skip_none, "--"),
            "--fuse (not recorded: the default " + def + ") -> on");
  EXPECT_EQ(config_diffs(
                was, parse_json("{\"lr\":\"0.1\",\"fuse\":\"on\"}"),
                [](const std::string& k) { return k == "fuse"; }, "--"),
            "");
  // A key no option has (a later kiln's file read by this one's config) is not a change.
  EXPECT_EQ(
      config_diffs(was, parse_json("{\"lr\":\"0.1\",\"no-such-option\":\"3\"}"), skip_none, "--"),
      "");
}

TEST(Options, CliFlagsBoolsAndErrors) {
  RunConfig c;
  const char* argv[] = {"x", "--lr", "0.5", "--batch-size=32", "--nesterov", "--no-shuffle", "--milestones", "3,7"};
  parse_args(c, 8, const_cast<char**>(argv), run_options());
  EXPECT_FLOAT_EQ(c.optim.lr, 0.5f);
  EXPECT_EQ(c.train.batch_size, 32);
  EXPECT_TRUE(c.optim.nesterov);
  EXPECT_FALSE(c.train.shuffle);
  EXPECT_EQ(c.sched.milestones, (std::vector<int>{3, 7}));
  // Underscores as dashes, for the negated bools too (--batch_size worked, --no_shuffle was an
  // unknown option).
  RunConfig u;
  const char* uv[] = {"x", "--batch_size", "16", "--no_shuffle"};
  parse_args(u, 4, const_cast<char**>(uv), run_options());
  EXPECT_EQ(u.train.batch_size, 16);
  EXPECT_FALSE(u.train.shuffle);
  auto usage_msg = [](std::vector<const char*> args) {
    RunConfig r;
    args.insert(args.begin(), "x");
    try {
      parse_args(r, static_cast<int>(args.size()), const_cast<char**>(args.data()), run_options());
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      return e.message();
    }
    return std::string("no error");
  };
  EXPECT_EQ(usage_msg({"--lr", "abc"}), "--lr: 'abc' is not a finite number");
  // A negated bool with a value is said as such: "--no-shuffle false" was "unexpected argument
  // 'false'", "--no-shuffle=false" "unknown option 'no-shuffle'" (as "--shuffle false" is).
  EXPECT_EQ(usage_msg({"--no-shuffle", "false"}),
            "--no-shuffle takes no value (it got 'false'): write --no-shuffle or --shuffle, or "
            "--shuffle=true|false");
  EXPECT_EQ(usage_msg({"--no_nesterov=true"}),
            "--no_nesterov takes no value (it got 'true'): write --no-nesterov or --nesterov, or "
            "--nesterov=true|false");
  EXPECT_EQ(usage_msg({"--no-shuffle="}),
            "--no-shuffle takes no value (it got ''): write --no-shuffle or --shuffle, or "
            "--shuffle=true|false");
  EXPECT_EQ(usage_msg({"--no-shuffle", "--lr", "0.1"}), "no error");
  EXPECT_EQ(usage_msg({"--no-shuffle", "mnist"}),
            "no error");  // (a positional: the app's to refuse)
  EXPECT_EQ(usage_msg({"--epochs", "2.5"}), "--epochs: '2.5' is not an integer");
  EXPECT_EQ(usage_msg({"--batch-sise", "3"}), "--batch-sise: unknown option 'batch-sise' (did you mean 'batch-size'?)");
  // A short name is not "corrected" into an unrelated one (--wd and --bs were 'lr', --gpu and
  // --cpu 'eps'); PyTorch's and Keras's names for kiln's options are suggested by name, and a
  // unique prefix by its option.
  EXPECT_EQ(usage_msg({"--wd", "0.1"}), "--wd: unknown option 'wd' (did you mean 'weight-decay'?)");
  EXPECT_EQ(usage_msg({"--bs", "8"}), "--bs: unknown option 'bs' (did you mean 'batch-size'?)");
  EXPECT_EQ(usage_msg({"--gpu"}), "--gpu: unknown option 'gpu' (did you mean 'device'?)");
  EXPECT_EQ(usage_msg({"--learning_rate", "0.1"}),
            "--learning_rate: unknown option 'learning_rate' (did you mean 'lr'?)");
  EXPECT_EQ(usage_msg({"--num-epochs", "3"}), "--num-epochs: unknown option 'num-epochs' (did you mean 'epochs'?)");
  EXPECT_EQ(usage_msg({"--optim", "sgd"}), "--optim: unknown option 'optim' (did you mean 'optimizer'?)");
  // Lightning's gradient_clip_val clips the global norm (its gradient_clip_algorithm defaults to
  // "norm"), not each element
  EXPECT_EQ(
      usage_msg({"--gradient_clip_val", "1"}),
      "--gradient_clip_val: unknown option 'gradient_clip_val' (did you mean 'global-clipnorm'?)");
  EXPECT_EQ(usage_msg({"--verbose"}), "--verbose: unknown option 'verbose'");
  EXPECT_EQ(usage_msg({"--x", "1"}), "--x: unknown option 'x'");
  EXPECT_EQ(usage_msg({"--check", "1"}), "--check: unknown option 'check'");  // three options begin so
  EXPECT_EQ(usage_msg({"--modle", "mlp"}), "--modle: unknown option 'modle' (did you mean 'model'?)");
  // Two neighbours swapped are one edit: a short name's slip is still found.
  EXPECT_EQ(usage_msg({"--esp", "1e-7"}), "--esp: unknown option 'esp' (did you mean 'eps'?)");
  // (not --log-every: torch's examples' --log-interval sets how often to print)
  EXPECT_EQ(usage_msg({"--log-interval", "10"}), "--log-interval: unknown option 'log-interval'");
  EXPECT_EQ(usage_msg({"--data-path", "d"}),
            "--data-path: unknown option 'data-path' (did you mean 'data-dir'?)");
  EXPECT_EQ(usage_msg({"--num_threads", "2"}),
            "--num_threads: unknown option 'num_threads' (did you mean 'threads'?)");
  // The same table for another app's flags (kiln_eval's): an alias only where its option is one.
  EXPECT_EQ(closest_option("gpu", {"device", "split"}), "device");
  EXPECT_EQ(closest_option("learning_rate", {"device", "split"}), "");
  EXPECT_EQ(closest_option("splt", {"device", "split"}), "split");
  EXPECT_EQ(edit_distance("esp", "eps"), 1u);
  EXPECT_EQ(edit_distance("ab", "ba"), 1u);
  EXPECT_EQ(edit_distance("abc", "cba"), 2u);
  EXPECT_EQ(edit_distance("ca", "abc"), 3u);  // (no edit of a swapped pair: not 2)
  EXPECT_EQ(edit_distance("", "lr"), 2u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(usage_msg({"--lr"}), "--lr needs a value (float)");
  // An empty path would silently mean "not set": no checkpoint, no log.
  EXPECT_EQ(usage_msg({"--save", ""}), "--save: an empty path (leave --save out instead)");
  EXPECT_EQ(usage_msg({"--log="}), "--log: an empty path (leave --log out instead)");
  EXPECT_EQ(usage_msg({"--config="}), "--config: an empty path (leave --config out instead)");
  EXPECT_EQ(usage_msg({"--"}), "a bare '--': options are --name value (or --name=value)");
  // Past the field's type: refused, not wrapped (2^32 + 1 epochs ran one epoch).
  EXPECT_EQ(usage_msg({"--epochs", "4294967297"}),
            "--epochs: '4294967297' is out of range (-2147483648 to 2147483647)");
  EXPECT_EQ(usage_msg({"--width", "-4294967295"}),
            "--width: '-4294967295' is out of range (-2147483648 to 2147483647)");
  EXPECT_EQ(usage_msg({"--batch-size", "4294967297"}),
            "no error");  // int64: fits (then checked by validate)
  // A float field: past its range it was inf, below it 0, silently; hex was read as hex.
  EXPECT_EQ(usage_msg({"--clipnorm", "1e39"}),
            "--clipnorm: '1e39' is out of range (a float holds at most 3.4e38)");
  EXPECT_EQ(usage_msg({"--eps", "1e-50"}),
            "--eps: '1e-50' is too small for a float (|x| >= 1.2e-38, or 0)");
  EXPECT_EQ(usage_msg({"--val-split", "1e-50"}), "no error");  // a double field
  EXPECT_EQ(usage_msg({"--epochs", "0x10"}), "--epochs: '0x10' is not an integer");
  // Exponent forms: exact integers up to 2^53 (a sweep passes its int_uniform bound 2^53 - 2
  // on as 9.00719925474099e+15, refused below 9e15 as "not an integer"); past it, said so.
  EXPECT_EQ(usage_msg({"--seed", "9.00719925474099e+15"}), "no error");
  EXPECT_EQ(usage_msg({"--epochs", "1e18"}),
            "--epochs: '1e18' is not an integer a double holds exactly (from 2^53 on, write "
            "integers in plain digits)");
  EXPECT_EQ(usage_msg({"--seed", "9007199254740992.5"}),
            "--seed: '9007199254740992.5' is not an integer a double holds exactly (from 2^53 "
            "on, write integers in plain digits)");
  EXPECT_EQ(usage_msg({"--lr", "0x1p3"}), "--lr: '0x1p3' is not a finite number");
  EXPECT_EQ(usage_msg({"--milestones", "2,4294967297"}),
            "--milestones: '4294967297' is out of range (at most 2147483647)");
  for (const char* v : {"1,,2", "1,2,", ",1", ","})  // (dropped, until 2026-12-07)
    EXPECT_EQ(
        usage_msg({"--milestones", v}),
        std::string("--milestones: '") + v + "' has an empty item (epochs and commas, e.g. 30,60)")
        << v;
  EXPECT_EQ(usage_msg({"--milestones", ""}), "no error");  // none
  EXPECT_EQ(usage_msg({"--seed", "18446744073709551615"}),
            "--seed: '18446744073709551615' is out of range (at most 9223372036854775807)");
  // --device cuda without CUDA in the build: refused by validate, before any data loads (a
  // sweep's trials were each recorded as failed, and --resume skipped them).
  RunConfig cuda;
  cuda.device = "cuda";
  if (built_with_cuda()) {
    EXPECT_NO_THROW(cuda.validate());
  } else {
    try {
      cuda.validate();
      ADD_FAILURE() << "--device cuda accepted by a build without CUDA";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_EQ(e.message(), "--device cuda: this kiln was built without CUDA; use --device cpu");
    }
  }
}

// The lists that resume, sweeps and lr_find keep of options are the table's traits.
TEST(Options, TraitsSayWhatResumeSweepsAndTheRangeTestMayIgnore) {
  EXPECT_TRUE(option_has("batch_size", kBatchOrder));  // either spelling
  EXPECT_TRUE(option_has("seed", kBatchOrder));
  EXPECT_FALSE(option_has("lr", kBatchOrder));
  EXPECT_TRUE(option_has("device", kSideEffect));
  EXPECT_FALSE(option_has("epochs", kSideEffect));  // a sweep's trials must agree on it
  EXPECT_TRUE(option_has("epochs", kInvocation));
  EXPECT_TRUE(option_has("warmup-steps", kRangeTestUnused));
  EXPECT_FALSE(option_has("start-lr", kRangeTestUnused));
  EXPECT_TRUE(option_has("sparsity-threshold", kRangeTestUnused));  // it reports no sparsity
  EXPECT_TRUE(option_has("start-lr", kRangeTestOnly));  // training names it when set
  EXPECT_FALSE(option_has("lr", kRangeTestOnly));
  EXPECT_FALSE(option_has("no-such-option", ~0u));
  for (const OptionSpec& s : run_options().specs()) {
    // What decides the batches changes the results: never free on resume or in a sweep.
    if (s.traits & kBatchOrder) EXPECT_FALSE(s.traits & (kSideEffect | kInvocation)) << s.name;
    // Every schedule option is one the range test's ramp replaces.
    if (s.help.find("plateau") == 0 || s.help.find("cosine") == 0 || s.help.find("one-cycle") == 0)
      EXPECT_TRUE(s.traits & kRangeTestUnused) << s.name;
  }
}

TEST(Options, YamlConfigThenFlagsOverride) {
  std::string path = test::temp_file("cfg.yaml");
  std::ofstream(path) << "lr: 0.25\nbatch_size: 16\nmilestones: [2, 4]\nmodel: mlp\n";
  RunConfig c;
  const char* argv[] = {"x", "--batch-size", "8", "--config", path.c_str()};
  parse_args(c, 5, const_cast<char**>(argv), run_options());
  EXPECT_FLOAT_EQ(c.optim.lr, 0.25f);
  EXPECT_EQ(c.train.batch_size, 8);  // the flag wins whatever the order
  EXPECT_EQ(c.sched.milestones, (std::vector<int>{2, 4}));
  EXPECT_EQ(c.model.model, "mlp");
  std::ofstream(path) << "lerning_rate: 0.1\n";
  try {
    apply_yaml_config(c, path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find(path + ": key 'lerning_rate': unknown option"), std::string::npos) << e.message();
  }
  std::ofstream(path) << "epochs: [1, 2]\n";
  EXPECT_THROW(apply_yaml_config(c, path), Error);
  std::ofstream(path) << "epochs: : :\n";
  EXPECT_THROW(apply_yaml_config(c, path), Error);
  EXPECT_THROW(apply_yaml_config(c, path + ".missing"), Error);
  std::remove(path.c_str());
  // A device that never ends is read to 16 MiB, not until memory runs out.
  try {
    apply_yaml_config(c, "/dev/zero");
    ADD_FAILURE() << "/dev/zero read as a config";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_EQ(e.message(), "/dev/zero: more than 16 MiB: not a config file");
  }
}

// A value the file set that validation refuses names the file and key; a flag that overrode
// the file's value is the flag's error alone.
// A value with a line break or another control character is refused (its error says so, and
// would otherwise echo it); DEL too since 2026-12-06 (fuzz_yaml_config: 'shuffle: true<DEL>'
// was "'true\x7f' is not a boolean").
TEST(Options, ValuesWithControlCharactersAreRefused) {
  for (const char* v : {"sgd\n", "sgd\x7f", "s\x1bgd"}) {
    RunConfig c;
    try {
      run_options().set(c, "optimizer", v, "f.yaml: key 'optimizer'");
      ADD_FAILURE() << "took " << printable(v);
    } catch (const Error& e) {
      EXPECT_EQ(e.message(),
                "f.yaml: key 'optimizer': the value has a line break or control "
                "character (" +
                    printable(v) + "); write it on one line");
    }
  }
  RunConfig c;
  run_options().set(c, "save", "a\tb.st", "x");  // a tab is a character a name may hold
  EXPECT_EQ(c.save, "a\tb.st");
}

// A --data-dir or --schedule-file that is not UTF-8 text (a Latin-1 name, byte 0xff) is refused:
// the checkpoint recorded it as JSON text, U+00FF, read back as "\xc3\xbf", so kiln_eval looked
// for the data and a --resume for its adopted schedule file under another name (exit 1 and 2,
// naming a path that does not exist). Valid UTF-8 (the same "\xc3\xbf") and the paths no later
// run reads back (--save) are taken as before.
TEST(Options, RecordedPathsThatAreNotUtf8AreRefused) {
  for (const char* opt : {"data-dir", "schedule-file"}) {
    RunConfig c;
    try {
      run_options().set(c, opt, "/tmp/d\xff/x", std::string("--") + opt);
      ADD_FAILURE() << "--" << opt << " took a byte 0xff";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_EQ(e.message().rfind(std::string("--") + opt +
                                      ": \"/tmp/d\\u00ff/x\" is not UTF-8 text (byte 0xff at "
                                      "offset 6): a checkpoint records it as JSON text",
                                  0),
                0u)
          << e.message();
    }
    run_options().set(c, opt, "/tmp/d\xc3\xbf/x", "x");
  }
  RunConfig c;
  run_options().set(c, "data-dir", "/tmp/d\xc3\xbf", "x");
  EXPECT_EQ(c.data.data_dir, "/tmp/d\xc3\xbf");
  run_options().set(c, "save", "/tmp/d\xff.st", "x");
  EXPECT_EQ(c.save, "/tmp/d\xff.st");
}

TEST(Options, ConfigValueErrorsNameTheFile) {
  std::string path = test::temp_file("cfg_origin.yaml");
  std::ofstream(path) << "lr: -3\nmax_lr: -1\nbase_lr: 0\nschedule: cyclic\n";
  auto first_error = [&](std::vector<const char*> argv) {
    RunConfig c;
    ParsedArgs args = parse_args(c, static_cast<int>(argv.size()), const_cast<char**>(argv.data()),
                                 run_options());
    try {
      c.validate();
    } catch (const Error& e) {
      return with_config_origin(e, args).message();
    }
    return std::string("no error");
  };
  EXPECT_EQ(first_error({"x", "--config", path.c_str()}),
            path + ": key 'lr': --lr must be >= 0, got -3");
  EXPECT_EQ(first_error({"x", "--config", path.c_str(), "--lr", "-2"}),
            "--lr must be >= 0, got -2");
  // Two keys of the file in one message; base_lr's "--base-lr" is found inside "/--base-lr".
  EXPECT_EQ(first_error({"x", "--config", path.c_str(), "--lr", "0.1"}),
            path + ": keys 'max_lr', 'base_lr': --max-lr/--base-lr must be >= 0, got -1/0");
  // Runtime errors and errors naming no key of the file are left alone.
  RunConfig c;
  const char* argv[] = {"x", "--config", path.c_str()};
  ParsedArgs args = parse_args(c, 3, const_cast<char**>(argv), run_options());
  Error runtime(ErrorKind::Runtime, "--lr is fine", "f.cpp", 1);
  EXPECT_EQ(with_config_origin(runtime, args).message(), "--lr is fine");
  Error other(ErrorKind::Usage, "--epochs -1: must be >= 0", "f.cpp", 1);
  EXPECT_EQ(with_config_origin(other, args).message(), "--epochs -1: must be >= 0");
  EXPECT_EQ(with_config_origin(other, args).where(), "f.cpp:1");
  // Not the file's fault: a message that also names a flag's option (the file's base_lr 0 is
  // valid, the flag's max_lr is not), a --no-NAME flag over the file's NAME, "--lr" in a path.
  EXPECT_EQ(first_error({"x", "--config", path.c_str(), "--lr", "0.1", "--max-lr", "-1"}),
            "--max-lr/--base-lr must be >= 0, got -1/0");
  std::ofstream(path) << "lr_find: true\nlr: 0.05\n";
  const char* argv2[] = {"x", "--config", path.c_str(), "--no-lr-find"};
  args = parse_args(c, 4, const_cast<char**>(argv2), run_options());
  Error negated(ErrorKind::Usage, "--no-lr-find: lr_find always runs the LR range test", "f.cpp",
                1);
  EXPECT_EQ(with_config_origin(negated, args).message(), negated.message());
  Error in_path(ErrorKind::Usage, "--save /tmp/x--lr/m: cannot write", "f.cpp", 1);
  EXPECT_EQ(with_config_origin(in_path, args).message(), in_path.message());
  std::remove(path.c_str());
}

// A usage error naming options a resume took from its checkpoint says so (the file may be
// another version's, or edited), once per option; one that also names an option given now is
// left alone, as is a runtime error.
TEST(Options, RecordedValueErrorsNameTheCheckpoint) {
  const std::vector<std::string> adopted = {"init 1.5", "max-lr -1", "base-lr 0", "shuffle false"};
  RunConfig c;
  const char* argv[] = {"x", "--lr", "0.1"};
  const ParsedArgs args = parse_args(c, 3, const_cast<char**>(argv), run_options());
  auto msg = [&](const char* m, ErrorKind k = ErrorKind::Usage) {
    return with_resume_origin(Error(k, m, "f.cpp", 1), args, adopted, "r.st").message();
  };
  EXPECT_EQ(
      msg("--init: unknown init '1.5'"),
      "--resume r.st: its recorded --init (give --init to set it): --init: unknown init '1.5'");
  EXPECT_EQ(
      msg("--max-lr/--base-lr must be >= 0, got -1/0 (--max-lr)"),
      "--resume r.st: its recorded --max-lr, --base-lr (give them to set them): --max-lr/--base-lr "
      "must be >= 0, got -1/0 (--max-lr)");
  EXPECT_EQ(msg("--no-shuffle: x"),
            "--resume r.st: its recorded --shuffle (give --shuffle to set it): --no-shuffle: x");
  EXPECT_EQ(msg("--lr/--max-lr: x"), "--lr/--max-lr: x");  // --lr was given now
  EXPECT_EQ(msg("--epochs -1: must be >= 0"), "--epochs -1: must be >= 0");
  EXPECT_EQ(msg("--init: y", ErrorKind::Runtime), "--init: y");
  EXPECT_EQ(
      with_resume_origin(Error(ErrorKind::Usage, "--init: z", "f.cpp", 1), args, {}, "").message(),
      "--init: z");
}

// A run resumed at an epoch start with another batch size keeps the steps its past epochs took,
// so one-cycle's total is those plus the rest at the new size (not all epochs at the new size:
// the step counter would already sit at the curve's end); a matching count changes nothing.
// The checkpoint's per-epoch record (epoch_steps) gives them exactly, mid-epoch too (a later
// checkpoint of a run an earlier resume changed); without it (older checkpoints) the steps
// before the epoch in progress are shared out.
TEST(Options, ScheduleStepsKeepThePastOnResume) {
  TrainOptions t;
  t.batch_size = 64;
  t.epochs = 3;
  EXPECT_EQ(schedule_steps(128, t, nullptr), (std::vector<long long>{2, 2, 2}));
  TrainPosition at;
  at.epoch = 1;
  at.step = 4;  // epoch 0 ran at batch 32
  EXPECT_EQ(schedule_steps(128, t, &at), (std::vector<long long>{4, 2, 2}));
  at.epoch = 2;
  at.step = 7;  // 4 + 3 over two epochs: shared, the earlier epoch first
  EXPECT_EQ(schedule_steps(128, t, &at), (std::vector<long long>{4, 3, 2}));
  at.step = 4;  // what batch 64 gives: unchanged
  EXPECT_EQ(schedule_steps(128, t, &at), (std::vector<long long>{2, 2, 2}));
  at.batch = 1;
  at.step = 9;  // mid-epoch, 8 steps before it: shared out
  EXPECT_EQ(schedule_steps(128, t, &at), (std::vector<long long>{4, 4, 2}));
  at.step = 5;  // 4 before it: what batch 64 gives
  EXPECT_EQ(schedule_steps(128, t, &at), (std::vector<long long>{2, 2, 2}));
  // the record, where the checkpoint has one: as recorded, whatever the sum
  at.epoch_steps = {5, 2};
  at.step = 8;
  EXPECT_EQ(schedule_steps(128, t, &at), (std::vector<long long>{5, 2, 2}));
  at.batch = 0;
  at.step = 7;
  EXPECT_EQ(schedule_steps(128, t, &at), (std::vector<long long>{5, 2, 2}));
  at.epoch_steps = {5};  // not one a past epoch: not the record
  EXPECT_EQ(schedule_steps(128, t, &at), (std::vector<long long>{4, 3, 2}));
}

TEST(Json, ObjectNumbersAndEscapes) {
  JsonObject j;
  j.add("a", 1).add("b", 0.1f).add("c", std::nan("")).add("s", "q\"\n").add("t", true);
  EXPECT_EQ(j.str(), "{\"a\":1,\"b\":0.1,\"c\":null,\"s\":\"q\\\"\\n\",\"t\":true}");
}
