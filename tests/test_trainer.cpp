// Trainer end to end on the real MNIST subset in tests/data: an MLP learns, runs are
// deterministic for a seed on the CPU, metrics are consistent, and non-finite training stops
// with a Diverged error naming a layer; weight_sparsity counts what L1 zeroes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <thread>
#include <tuple>

#include "apps/app_common.h"
#include "engine/checkpoint.h"
#include "engine/error.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/linear.h"
#include "layers/model.h"
#include "layers/norm.h"
#include "oom_layer.h"
#include "test_util.h"
#include "tuning/lr_finder.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"
#include "tuning/sweep.h"

using namespace kiln;

namespace {
RunConfig small_mlp() {
  RunConfig c;
  c.device = "cpu";
  c.data.data_dir = test::data_dir();
  c.model.model = "mlp";
  c.model.width = 32;
  c.model.depth = 1;
  c.optim.lr = 0.05f;
  c.optim.momentum = 0.9f;
  c.train.epochs = 2;
  c.train.batch_size = 32;
  c.train.progress = 0;
  return c;
}
}  // namespace

TEST(TrainerCpu, MlpLearnsMnistSubset) {
  RunResult r = run_training(small_mlp(), {});
  ASSERT_EQ(r.epochs.size(), 2u);
  EXPECT_GT(r.test_acc, 0.80) << "an MLP should pass 80% on 500 test images after 2 epochs on 2000";
  EXPECT_LT(r.epochs[1].train_loss, r.epochs[0].train_loss);
  EXPECT_EQ(r.epochs[1].step, 2 * 63);  // ceil(2000/32) steps per epoch
}

TEST(TrainerCpu, SameSeedSameWeightsOtherSeedDiffers) {
  auto weights = [](uint64_t seed) {
    RunConfig c = small_mlp();
    c.train.epochs = 1;
    c.data.train_limit = 500;
    c.seed = seed;
    auto s = make_session(c);
    s->trainer->fit(s->train, nullptr);
    return s->model->flat_params().to_vector();
  };
  auto a = weights(5), b = weights(5), c = weights(6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(TrainerCpu, ExplodingRunStopsWithDivergedNamingALayer) {
  RunConfig c = small_mlp();
  // The issue's recipe, shortened: deep sigmoid MLP, Adam at lr 10. Sigmoids bound the hidden
  // activations, so the logits grow without overflowing: the loss bound is what stops it.
  c.model.depth = 20;
  c.model.activation = "sigmoid";
  c.optim.name = "adam";
  c.optim.lr = 10.0f;
  c.optim.momentum = 0;
  c.data.train_limit = 512;
  c.train.epochs = 3;
  c.train.log_path = test::temp_file("diverged.jsonl");
  std::string message;
  try {
    run_training(c, {});
    FAIL() << "expected divergence";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Diverged);
    EXPECT_NE(e.message().find("diverged"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("layer "), std::string::npos) << e.message();
    message = e.message();
  }
  // The log ends with how the run ended: a diverged record with the error's message.
  std::ifstream f(c.train.log_path);
  std::string line, last;
  while (std::getline(f, line)) last = line;
  JsonValue r = parse_json(last);
  ASSERT_TRUE(r.find("type") && r.find("epoch") && r.find("message")) << last;
  EXPECT_EQ(r.find("type")->text, "diverged") << last;
  EXPECT_GE(r.find("epoch")->number, 1) << last;
  EXPECT_EQ(r.find("message")->text, message);
  std::remove(c.train.log_path.c_str());
}

TEST(TrainerCpu, NonFiniteGradientNamesTheFirstLayerInBackwardOrder) {
  // A NaN weight in the last Linear makes the logits, the loss and then every gradient NaN; the
  // trainer must name the first non-finite gradient in backward order, the last layer's bias
  // (the first gradient backward computes), not the first layer's weight.
  RunConfig c = small_mlp();
  c.data.train_limit = 64;
  auto s = make_session(c);
  const auto& refs = s->model->param_refs();
  Param* out_w = refs[refs.size() - 2].param;  // the last Linear's weight (its bias is last)
  std::vector<float> w = out_w->value.to_vector();
  w[0] = std::nanf("");
  out_w->value.copy_from(Tensor::from_vector(w, out_w->shape, Device::CPU));
  const std::string last = s->model->param_refs().back().name;
  try {
    s->trainer->fit(s->train, nullptr);
    FAIL() << "expected divergence";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Diverged);
    const std::string m = e.message();
    EXPECT_NE(m.find("first non-finite gradient in backward order: layer"), std::string::npos) << m;
    EXPECT_NE(m.find(") " + last + " ("), std::string::npos) << "expected " << last << ": " << m;
  }
}

TEST(TrainerCpu, NonFiniteHeldOutLossDivergesAlsoWithTheBoundOff) {
  // One SGD step at lr 1e20 leaves weights whose forward pass overflows, while the only
  // gradient (of the step itself) was finite: no later step sees them, the test loss does.
  // --max-loss < 0 turns off the bound on a finite loss only.
  for (float max_loss : {0.0f, -1.0f}) {
    RunConfig c = small_mlp();
    c.data.train_limit = 32;
    c.data.test_limit = 100;
    c.optim.lr = 1e20f;
    c.optim.momentum = 0;
    c.sched.name = "constant";
    c.train.epochs = 1;
    c.train.max_loss = max_loss;
    try {
      run_training(c, {});
      FAIL() << "expected divergence (max_loss " << max_loss << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Diverged);
      EXPECT_NE(e.message().find("training diverged: test loss nan in epoch 1 (step 1)"),
                std::string::npos)
          << e.message();
    }
  }
}

TEST(TrainerCpu, NoCheckpointIsWrittenAfterTheFirstBadStep) {
  // SGD at lr 1e10: step 3 is the first with a non-finite gradient (skipped). A checkpoint
  // every step must stop at step 2, not save the skipped steps as if the run were fine.
  RunConfig c = small_mlp();
  c.data.train_limit = 512;
  c.model.width = 16;
  c.optim.lr = 1e10f;
  c.optim.momentum = 0;
  c.sched.name = "constant";
  auto s = make_session(c);
  std::vector<long long> steps;
  s->trainer->checkpoint_every_steps = 1;
  s->trainer->on_checkpoint = [&](const TrainPosition& p, const std::string&) {
    steps.push_back(p.step);
  };
  try {
    s->trainer->fit(s->train, nullptr);
    FAIL() << "expected divergence";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("at epoch 1 step 3;"), std::string::npos) << e.message();
  }
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.back(), 2);
}

TEST(TrainerCpu, EvaluateMatchesEpochRecord) {
  RunConfig c = small_mlp();
  c.train.epochs = 1;
  auto s = make_session(c);
  auto recs = s->trainer->fit(s->train, &s->test);
  EvalResult e = s->trainer->evaluate(s->test);
  EXPECT_EQ(e.count, 500);
  EXPECT_DOUBLE_EQ(e.acc, recs[0].test_acc);
  EXPECT_DOUBLE_EQ(e.loss, recs[0].test_loss);
}

// weight_sparsity counts weights (not biases) with |w| below the threshold: set by hand here,
// then an L1 run on the subset drives more weights to (near) zero than the same run without,
// and the epoch record carries it into the JSONL log.
TEST(TrainerCpu, WeightSparsityCountsSmallWeightsAndGrowsWithL1) {
  RunConfig c = small_mlp();
  auto s = make_session(c);
  Model& m = *s->model;
  std::vector<float> w = m.flat_params().to_vector();
  int64_t weights = 0, zeroed = 0;
  for (const auto& r : m.param_refs()) {
    const int64_t n = shape_numel(r.param->shape);
    for (int64_t i = 0; i < n; ++i) {
      float& v = w[static_cast<size_t>(r.param->offset + i)];
      v = (i % 4 == 0) ? 5e-4f : 0.5f;  // a quarter of every tensor is small
      if (r.param->decay) zeroed += i % 4 == 0, weights += 1;
    }
  }
  // Biases made all-small must not count: they are not weights.
  for (const auto& r : m.param_refs())
    if (!r.param->decay)
      for (int64_t i = 0; i < shape_numel(r.param->shape); ++i)
        w[static_cast<size_t>(r.param->offset + i)] = 0;
  m.flat_params().copy_from(Tensor::from_vector(w, m.flat_params().shape(), Device::CPU));
  EXPECT_DOUBLE_EQ(m.weight_sparsity(1e-3f), static_cast<double>(zeroed) / weights);
  EXPECT_DOUBLE_EQ(m.weight_sparsity(1e-4f), 0.0);
  EXPECT_DOUBLE_EQ(m.weight_sparsity(1.0f), 1.0);

  auto sparsity = [](float l1) {
    RunConfig c = small_mlp();
    c.optim.l1 = l1;
    c.train.log_path =
        ::testing::TempDir() + "kiln_sparsity_" + std::to_string(getpid()) + ".jsonl";
    RunResult r = run_training(c, {});
    std::ifstream f(c.train.log_path);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_NE(all.find("\"weight_sparsity\":"), std::string::npos) << all;
    std::remove(c.train.log_path.c_str());
    return r.epochs.back().weight_sparsity;
  };
  double none = sparsity(0), l1 = sparsity(3e-3f);
  EXPECT_LT(none, 0.05);
  EXPECT_GT(l1, none + 0.2) << "L1 3e-3 should zero a good share of the weights";
}

// With nothing left to train (--epochs 0, or --resume of a finished run) the result is the
// model scored as it stands: a resumed finished run reports exactly what the run itself did.
TEST(TrainerCpu, NothingLeftToTrainStillReportsTheTestScore) {
  RunConfig c = small_mlp();
  c.train.epochs = 1;
  c.save = ::testing::TempDir() + "kiln_done_" + std::to_string(getpid()) + ".safetensors";
  RunResult trained = run_training(c, {});
  RunConfig again = small_mlp();
  again.train.epochs = 1;
  again.resume = c.save;
  RunResult resumed = run_training(again, {});
  EXPECT_TRUE(resumed.epochs.empty());
  EXPECT_EQ(resumed.test_acc, trained.test_acc);
  EXPECT_EQ(resumed.test_loss, trained.test_loss);
  again.train.epochs = 0;  // below what the checkpoint has done: a mistake, not a quiet no-op
  try {
    run_training(again, {});
    ADD_FAILURE() << "--epochs below the checkpoint's accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_EQ(e.message(), "--epochs 0 with --resume " + c.save +
                               ": the checkpoint has done 1 epoch and --epochs counts the whole "
                               "run: give --epochs 1 to evaluate it, more to train on");
  }
  std::remove(c.save.c_str());
  RunConfig none = small_mlp();
  none.train.epochs = 0;
  RunResult untrained = run_training(none, {});
  EXPECT_TRUE(std::isfinite(untrained.test_loss));
  EXPECT_GE(untrained.test_acc, 0.0);
  EXPECT_LT(untrained.test_acc, 0.5);  // an untrained net is near chance
}

// SGD with momentum 0.9 at lr 0.05 kills every ReLU of the BN-less cnn within one epoch on the
// subset (it then predicts one class): the epoch record counts the weight tensors whose gradient
// is exactly 0 and the trainer warns once; the healthy MLP run reports none and stays quiet.
TEST(TrainerCpu, DeadReluRunIsFlaggedAndAHealthyOneIsNot) {
  auto run = [](RunConfig c, std::string* logged) {
    RunHooks hooks;
    hooks.log = [logged](const std::string& line) { *logged += line + "\n"; };
    return run_training(c, hooks);
  };
  RunConfig dead = small_mlp();
  dead.model.model = "cnn";
  dead.model.init = "kaiming";  // the apps' default
  dead.optim.name = "sgd";
  dead.optim.momentum = 0.9f;
  dead.optim.lr = 0.05f;
  dead.sched.name = "constant";
  dead.train.batch_size = 64;
  dead.train.epochs = 1;
  dead.data.train_limit = 1000;
  dead.data.test_limit = 100;
  std::string log_dead, log_ok;
  RunResult d = run(dead, &log_dead);
  ASSERT_FALSE(d.epochs.empty()) << "no epoch ran (stopped by a signal?)";
  EXPECT_GE(d.epochs.back().zero_grad_weights, 2);
  EXPECT_NE(log_dead.find("dead ReLUs"), std::string::npos) << log_dead;
  // An L1 or L2 penalty's gradient is no gradient of the loss: the same dead net with a tiny
  // penalty is flagged the same (the norms of g + penalty were never 0, and it went unsaid).
  for (const bool l1 : {true, false}) {
    RunConfig pen = dead;
    (l1 ? pen.optim.l1 : pen.optim.l2) = 1e-6f;
    std::string log_pen;
    RunResult p = run(pen, &log_pen);
    ASSERT_FALSE(p.epochs.empty());
    EXPECT_EQ(p.epochs.back().zero_grad_weights, d.epochs.back().zero_grad_weights) << l1;
    EXPECT_NE(log_pen.find("dead ReLUs"), std::string::npos) << log_pen;
  }
  RunConfig ok = small_mlp();
  ok.train.epochs = 1;
  RunResult h = run(ok, &log_ok);
  ASSERT_FALSE(h.epochs.empty());
  EXPECT_EQ(h.epochs.back().zero_grad_weights, 0);
  EXPECT_EQ(log_ok.find("dead ReLUs"), std::string::npos) << log_ok;
  EXPECT_EQ(dead_gradient_warning(3, 1, "0.weight").find("gradient of 1 weight tensor (up to 0.weight)"),
            std::string("warning: epoch 3: the ").size());
}

// A typo made while editing a manual schedule file mid-run (the reason it is re-read) costs
// nothing: the run keeps the schedule it had, warns at each failed re-read, and saves.
TEST(TrainerCpu, ABadScheduleFileReReadWarnsAndTheRunGoesOn) {
  const std::string lrs = test::temp_file("live_lrs.txt"),
                    save = test::temp_file("live.safetensors");
  { std::ofstream(lrs) << "0 0.05\n1 0.02\n"; }
  std::remove(save.c_str());
  RunConfig c = small_mlp();
  c.train.epochs = 3;
  c.data.train_limit = 256;
  c.sched.name = "manual";
  c.sched.file = lrs;
  c.save = save;
  std::vector<std::string> logged;
  RunHooks hooks;
  hooks.log = [&](const std::string& l) { logged.push_back(l); };
  hooks.on_epoch = [&](const EpochRecord& r) {
    if (r.epoch == 1) std::ofstream(lrs) << "0 0.05\n1 0.02\n2 1e-3x\n";  // saved with a typo
    return true;
  };
  RunResult r = run_training(c, hooks);
  ASSERT_EQ(r.epochs.size(), 3u);
  EXPECT_FLOAT_EQ(r.epochs[0].lr, 0.05f);
  EXPECT_FLOAT_EQ(r.epochs[2].lr, 0.02f);  // the lines read before the typo
  std::vector<std::string> warned;
  for (const auto& l : logged)
    if (l.rfind("warning: ", 0) == 0) warned.push_back(l);
  ASSERT_EQ(warned.size(), 2u);  // after epochs 2 and 3, each re-read
  EXPECT_EQ(warned[0], "warning: epoch 2: schedule file " + lrs +
                           ":3: expected 'epoch lr' (epoch >= 0 " +
                           "counting from 0, lr 0 or 1.2e-38..3.4e38), got '2 1e-3x'; kept the 2 " +
                           "lines read before (read again after the next epoch)");
  EXPECT_TRUE(std::ifstream(save).good()) << "the run's --save file was not written";
  std::remove(lrs.c_str());
  std::remove(save.c_str());
}

// An output over one of the data files the run reads (--save at train-images-idx3-ubyte.gz)
// is refused before training; the file is left as it was.
TEST(TrainerCpu, AnOutputOverADataFileIsRefused) {
  const std::string dir = ::testing::TempDir() + "kiln_data_out_" + std::to_string(getpid());
  ASSERT_EQ(std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "' && cp -r '" +
                         test::data_dir() + "/mnist' '" + dir + "/'")
                            .c_str()),
            0);
  const std::string images = dir + "/mnist/train-images-idx3-ubyte.gz",
                    labels = dir + "/mnist/t10k-labels-idx1-ubyte.gz";
  auto bytes = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  const std::string before = bytes(images);
  RunConfig c = small_mlp();
  c.data.data_dir = dir;
  c.train.epochs = 1;
  c.data.train_limit = 64;
  for (auto [opt, path] : {std::pair<const char*, std::string>{"--save", images},
                           std::pair<const char*, std::string>{"--log", labels}}) {
    RunConfig r = c;
    (std::string(opt) == "--save" ? r.save : r.train.log_path) = path;
    try {
      run_training(r, {});
      ADD_FAILURE() << opt << " over a data file accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find(std::string(opt) + " " + path + " is " + path + ", a file of "),
                std::string::npos)
          << e.message();
    }
  }
  EXPECT_EQ(bytes(images), before);
  std::system(("rm -rf '" + dir + "'").c_str());
}

// Batch norm cannot train on a batch of 1 without spatial dimensions (torch raises): an epoch
// whose last, partial batch is one image is found before the first step, not after the epochs
// before it trained.
TEST(TrainerCpu, ABatchNormBatchOfOneIsFoundBeforeTraining) {
  RunConfig c = small_mlp();
  c.model.norm = "batch";
  c.data.train_limit = 145;  // 145 = 4 x 32 + 17 = 3 x 48 + 1
  c.train.batch_schedule = "0:32,1:48";
  int epochs = 0;
  RunHooks hooks;
  hooks.on_epoch = [&](const EpochRecord&) { return ++epochs, true; };
  auto refused = [&] {
    try {
      run_training(c, hooks);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      return e.message();
    }
    return std::string("(a batch of 1 reached batch norm)");
  };
  EXPECT_EQ(refused(),
            "layer 2 (BatchNorm1d(32)) trains on batches of at least 2, and epoch 2 ends in a "
            "batch of 1 (145 training images in batches of 48): change --batch-schedule or "
            "--train-limit so none is left over");
  EXPECT_EQ(epochs, 0);
  c.train.epochs = 1;  // the 48s never come
  EXPECT_EQ(run_training(c, {}).epochs.size(), 1u);
  c.train.batch_schedule.clear();  // with --batch-size, named as such
  c.data.train_limit = 129;
  const std::string why = refused();
  EXPECT_NE(why.find("epoch 1 ends in a batch of 1 (129 training images in batches of 32): "
                     "change --batch-size or --train-limit"),
            std::string::npos)
      << why;
  c.data.train_limit = 258;  // with a validation split, which is what leaves the 1 over
  c.data.val_split = 0.5;
  const std::string held = refused();
  EXPECT_NE(held.find("(129 training images in batches of 32): change --batch-size, "
                      "--train-limit or --val-split so none is left over"),
            std::string::npos)
      << held;
  // Batches all of 1: raise the batch size (the leftover advice above does not apply).
  c.data.val_split = 0;
  c.train.batch_size = 1;
  c.data.train_limit = 10;
  EXPECT_EQ(refused(), "layer 2 (BatchNorm1d(32)) trains on batches of at least 2, and epoch 1's "
                       "are of 1 (--batch-size 1): raise --batch-size");
  c.train.batch_size = 32;
  c.data.train_limit = 1;  // one image in all
  EXPECT_EQ(refused(), "layer 2 (BatchNorm1d(32)) trains on batches of at least 2, and epoch 1's "
                       "are of 1 (1 training image): train on more images");
  c.data.train_limit = 129;
  // The LR range test stops after --num-it steps: a last batch past them is never reached.
  RunConfig lf = c;
  lf.lr_find = true;
  lf.num_it = 4;
  EXPECT_EQ(lr_find(*make_session(lf), lr_find_options(lf)).points.size(), 4u);
  lf.num_it = 5;  // the fifth step is the batch of 1
  EXPECT_THROW(lr_find(*make_session(lf), lr_find_options(lf)), Error);
  // Batches all of 1 within --num-it: refused before the first step with the advice that
  // helps (it reached the layer, whose error said to leave no partial batch over).
  lf.train.batch_size = 1;
  lf.num_it = 3;
  try {
    lr_find(*make_session(lf), lr_find_options(lf));
    ADD_FAILURE() << "a batch of 1 reached batch norm";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(),
              "layer 2 (BatchNorm1d(32)) trains on batches of at least 2, and epoch "
              "1's are of 1 (--batch-size 1): raise --batch-size");
  }
  c.model.model = "cnn";  // a batch of 1 image still has 26x26 values per channel
  c.train.epochs = 2;
  c.data.train_limit = 97;
  EXPECT_EQ(run_training(c, {}).epochs.size(), 2u);
}

namespace {
// Records what the trainer hands the schedule after each epoch.
struct WatchSpy : Schedule {
  explicit WatchSpy(bool acc) : acc_(acc) {}
  float lr(int, long long) override { return 0.05f; }
  void on_epoch_end(int, double metric) override { seen.push_back(metric); }
  bool watches_accuracy() const override { return acc_; }
  bool acc_;
  std::vector<double> seen;
};
}  // namespace

TEST(TrainerCpu, AugmentReachesTheTrainingBatchesAndNeverEvaluation) {
  // 3x32x32 images: with augment the model trains on cropped and flipped batches, so its
  // weights end elsewhere than without (the same for the same seed); evaluating never augments.
  Dataset ds;
  ds.name = "cifar-shaped";
  ds.images = Tensor::from_vector(test::random_vec(64 * 3072, 21), {64, 3, 32, 32}, Device::CPU);
  for (int i = 0; i < 64; ++i) ds.host_labels.push_back(i % 10);
  ds.labels = std::make_shared<Buffer>(64 * sizeof(int32_t), Device::CPU);
  copy_bytes(ds.labels->data(), Device::CPU, ds.host_labels.data(), Device::CPU,
             64 * sizeof(int32_t));
  ds.black = {-2.f, -2.f, -2.f};
  auto train = [&](bool augment, EvalResult* eval) {
    ModelOptions mo;
    mo.model = "mlp";
    mo.width = 16;
    mo.depth = 1;
    auto m = make_model(mo, {3, 32, 32}, 10);
    m->build(Device::CPU, 3);
    Context ctx(Device::CPU, 3);
    OptimOptions oo;
    oo.name = "sgd";
    oo.lr = 0.05f;
    auto opt = make_optimizer(oo, *m);
    auto sched = make_schedule(ScheduleOptions{}, oo.lr, 4, 1);
    TrainOptions to;
    to.epochs = 1;
    to.batch_size = 16;
    to.progress = 0;
    to.augment = augment;
    Trainer tr(*m, *opt, *sched, ctx, to);
    tr.fit(ds, nullptr);
    if (eval) {  // the same weights evaluated by a trainer that augments and one that does not
      TrainOptions plain = to;
      plain.augment = !augment;
      Trainer other(*m, *opt, *sched, ctx, plain);
      *eval = tr.evaluate(ds);
      EvalResult e2 = other.evaluate(ds);
      EXPECT_EQ(eval->loss, e2.loss);
    }
    std::vector<float> w;
    for (auto& [name, t] : m->state_dict()) {
      std::vector<float> v = t.to_vector();
      w.insert(w.end(), v.begin(), v.end());
    }
    return w;
  };
  EvalResult e;
  const std::vector<float> plain = train(false, nullptr), aug = train(true, &e);
  EXPECT_NE(plain, aug) << "--augment did not reach the training batches";
  EXPECT_EQ(aug, train(true, nullptr));
  // MNIST-shaped data cannot be augmented: a usage error, not a silent no-op.
  RunConfig c = small_mlp();
  c.train.augment = true;
  EXPECT_THROW(run_training(c, {}), Error);
}

TEST(TrainerCpu, PlateauScheduleGetsTheMetricItsModeWatches) {
  // Mode max watches an accuracy, mode min a loss: handing a max-mode plateau the test loss
  // made every improving epoch look worse and cut the lr while the run was still learning.
  // The set watched: the validation split, else the test set, else the training set.
  for (bool acc : {true, false}) {
    RunConfig c = small_mlp();
    c.data.train_limit = 256;
    c.data.test_limit = 200;
    c.data.val_split = 0.25;
    auto s = make_session(c);
    ASSERT_EQ(s->val.size(), 64);
    WatchSpy spy(acc);
    Trainer tr(*s->model, *s->opt, spy, *s->ctx, c.train);
    for (const char* watch : {"val", "test", "train"}) {
      const std::string w = watch;
      tr.val_set = w == "val" ? &s->val : nullptr;
      spy.seen.clear();
      std::vector<EpochRecord> rs = tr.fit(s->train, w == "train" ? nullptr : &s->test);
      ASSERT_EQ(spy.seen.size(), rs.size());
      for (size_t e = 0; e < rs.size(); ++e) {
        const EpochRecord& r = rs[e];
        double want = w == "val"    ? (acc ? r.val_acc : r.val_loss)
                      : w == "test" ? (acc ? r.test_acc : r.test_loss)
                                    : (acc ? r.train_acc : r.train_loss);
        EXPECT_EQ(spy.seen[e], want)  // the double itself (as a float, 0.3 gained on 0.2 + 0.1)
            << watch << " acc " << acc << " epoch " << e;
        EXPECT_EQ(std::isnan(r.val_acc), w != "val") << watch;
      }
    }
  }
}

TEST(TrainerCpu, ValidationSplitIsScoredEachEpochAndWatchedByTargetAcc) {
  RunConfig c = small_mlp();
  c.data.train_limit = 400;
  c.data.val_split = 0.2;
  c.train.epochs = 1;
  c.train.log_path = test::temp_file("val_split.jsonl");
  RunResult one = run_training(c, {});
  ASSERT_EQ(one.epochs.size(), 1u);
  const EpochRecord& r = one.epochs[0];
  EXPECT_EQ(r.step, 10);  // ceil(320 / 32): the 80 validation samples are not trained on
  std::ifstream f(c.train.log_path);
  std::string line((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(line.find("\"val_acc\":"), std::string::npos) << line;
  EXPECT_NE(line.find("\"val_loss\":"), std::string::npos) << line;
  std::remove(c.train.log_path.c_str());
  c.train.log_path.clear();
  auto s = make_session(c);  // the same rows, evaluated by hand after the same epoch
  s->trainer->fit(s->train, nullptr);
  EvalResult v = s->trainer->evaluate(s->val);
  EXPECT_EQ(v.count, 80);
  EXPECT_DOUBLE_EQ(r.val_acc, v.acc);
  EXPECT_DOUBLE_EQ(r.val_loss, v.loss);
  // --target-acc between the two accuracies of epoch 1: the run stops there exactly when it
  // watches the validation accuracy, not the test accuracy.
  ASSERT_NE(r.val_acc, r.test_acc);
  c.train.epochs = 3;
  c.train.target_acc = static_cast<float>(0.5 * (r.val_acc + r.test_acc));
  RunResult three = run_training(c, {});
  EXPECT_EQ(three.epochs.size() == 1, r.val_acc >= c.train.target_acc)
      << "val " << r.val_acc << " test " << r.test_acc << " epochs " << three.epochs.size();
  std::remove(c.train.log_path.c_str());
}

// Metrics are per-sample means over every sample, whatever the batches: an evaluation in
// batches of 7 (the last one short) equals one in a single batch, and an epoch at lr 0 (the
// weights never move; no dropout or batch norm) reports the training set's evaluation, its last
// partial batch included. Every other test evaluated in one batch and never compared the
// training metrics with anything, so a mean of batch means passed them all.
TEST(TrainerCpu, MetricsArePerSampleMeansWhateverTheBatches) {
  RunConfig c = small_mlp();
  c.data.train_limit = 500;  // 15 batches of 32 and one of 20
  c.data.test_limit = 500;   // 71 batches of 7 and one of 3
  c.optim.lr = 0;
  c.sched.name = "constant";
  c.train.epochs = 1;
  c.train.eval_batch_size = 7;
  auto by7 = make_session(c);
  c.train.eval_batch_size = 1000;
  auto whole = make_session(c);
  const EvalResult a = by7->trainer->evaluate(by7->test), b = whole->trainer->evaluate(whole->test);
  EXPECT_EQ(a.count, 500);
  EXPECT_EQ(a.acc, b.acc);
  EXPECT_NEAR(a.loss, b.loss, 1e-6 * b.loss);
  const EpochRecord r = whole->trainer->fit(whole->train, nullptr).at(0);
  const EvalResult t = whole->trainer->evaluate(whole->train);
  EXPECT_EQ(t.count, 500);
  EXPECT_EQ(r.train_acc, t.acc);
  EXPECT_NEAR(r.train_loss, t.loss, 1e-6 * t.loss);
}

// --target-acc typed as the accuracy a run printed stops at that epoch: as a float, 0.86 lay
// above 86 of 100 and the run trained on (the option is a double now).
TEST(TrainerCpu, TargetAccuracyTypedAsPrintedIsReached) {
  const OptionSpec* t = run_options().find("target-acc");
  ASSERT_NE(t, nullptr);
  RunConfig d;
  t->set(d, "0.86");
  EXPECT_EQ(d.train.target_acc, 86.0 / 100);
  RunConfig c = small_mlp();
  c.data.train_limit = 500;
  c.data.test_limit = 100;
  c.train.epochs = 1;
  const double acc = run_training(c, {}).epochs.at(0).test_acc;
  char typed[16];
  std::snprintf(typed, sizeof typed, "%.2f", acc);
  ASSERT_EQ(std::stod(typed), acc) << "hundredths of 100 test images";
  c.train.epochs = 3;
  t->set(c, typed);
  EXPECT_EQ(run_training(c, {}).epochs.size(), 1u) << "--target-acc " << typed;
}

// Keras's EarlyStopping never stops after an epoch that improved on the best (with a baseline it
// may still be counting toward the patience), nor after the first epoch.
TEST(EarlyStop, NeverStopsAfterAnImprovingEpochOrTheFirst) {
  EarlyStopRule r;
  r.baseline = 0.01;  // a loss no epoch reaches
  EarlyStopState s;
  for (int e = 1; e <= 4; ++e) {
    EXPECT_TRUE(s.update(1.0 / e, r, e));  // improving every epoch
    EXPECT_EQ(s.wait, e);
    EXPECT_FALSE(s.stops(2, e)) << "after improving epoch " << e;
  }
  EXPECT_FALSE(s.update(1.0, r, 5));
  EXPECT_TRUE(s.stops(2, 5));
  EXPECT_FALSE(s.stops(0, 5)) << "patience 0: early stopping is off";
  EarlyStopState first;  // a first epoch without a number: not an improvement, yet no stop
  EXPECT_FALSE(first.update(NAN, EarlyStopRule{}, 1));
  EXPECT_EQ(first.wait, 1);
  EXPECT_FALSE(first.stops(1, 1));
  EXPECT_FALSE(first.update(NAN, EarlyStopRule{}, 2));
  EXPECT_TRUE(first.stops(1, 2));
}

// A signal during the evaluation of an epoch that ends the run anyway (the target reached, early
// stopping, on_epoch's no as a sweep prunes a trial) lets the run finish as it would have: it
// stopped for the signal, and the app exited 130 without its --save, asking to resume a run
// with nothing left to train (a pruned trial went unrecorded and ran again on --resume).
TEST(TrainerCpu, SignalInAnEpochThatEndsTheRunLetsItFinish) {
  enum Ending { kTarget, kEarlyStop, kPruned };
  for (Ending ending : {kTarget, kEarlyStop, kPruned}) {
    SCOPED_TRACE(ending == kTarget ? "target" : ending == kEarlyStop ? "early stop" : "pruned");
    RunConfig c = small_mlp();
    c.data.train_limit = 128;
    c.data.test_limit = 100;
    c.train.epochs = 4;
    if (ending == kTarget) c.train.target_acc = 0.01;
    if (ending == kEarlyStop) {
      c.train.early_stop = 1;
      c.train.early_stop_delta = 100;  // only the first epoch improves: stop after the second
    }
    const size_t ends_after = ending == kEarlyStop ? 2 : 1;
    auto s = make_session(c);
    volatile std::sig_atomic_t flag = 0;
    s->trainer->stop_flag = &flag;
    s->trainer->on_epoch = [&](const EpochRecord& r) {
      if (size_t(r.epoch) == ends_after) flag = 1;  // as a signal during the evaluation
      return !(ending == kPruned && size_t(r.epoch) == ends_after);
    };
    EXPECT_EQ(s->trainer->fit(s->train, &s->test).size(), ends_after);
    EXPECT_FALSE(s->trainer->stopped());
  }
}

// --early-stop-delta is the decimal typed: as a float, 0.01 was 0.0099999998 and a rise from 86
// to 87 of 100 counted as an improvement "by more than 0.01".
TEST(EarlyStop, DeltaIsTheDecimalTyped) {
  RunConfig c;
  run_options().find("early-stop-delta")->set(c, "0.01");
  c.train.early_stop = 1;
  c.train.early_stop_metric = "acc";
  EXPECT_FALSE(c.train.early_stop_rule().beats(0.87, 0.86));
  EXPECT_TRUE(c.train.early_stop_rule().beats(0.88, 0.86));
}

TEST(TrainerCpu, OneCycleSpansTheStepsOfABatchSchedule) {
  // 256 samples at batch 64 then 32: 4 + 8 = 12 steps, and one-cycle ends on its final lr at the
  // last of them (sized by --batch-size 32 alone it would plan 16 and stop near its peak).
  RunConfig c = small_mlp();
  c.data.train_limit = 256;
  c.data.test_limit = 100;
  c.optim.name = "adam";
  c.optim.lr = 0.003f;
  c.optim.momentum = 0;
  c.sched.name = "one-cycle";
  c.train.batch_schedule = "0:64,1:32";
  RunResult r = run_training(c, {});
  ASSERT_EQ(r.epochs.size(), 2u);
  EXPECT_EQ(r.epochs[1].step, 12);
  EXPECT_NEAR(r.epochs[1].lr, 0.003 / 25 / 1e4, 1e-10);
}

// --scale-lr: each epoch's lr is the schedule's times its batch over the first epoch's (the linear
// scaling rule); without it the batch schedule leaves the lr alone. (Only the PyTorch parity
// recipe, which skips without torch, trained with it until 2026-12-05.)
TEST(TrainerCpu, ScaleLrScalesEachEpochByItsBatchOverTheFirst) {
  for (bool scale : {true, false}) {
    RunConfig c = small_mlp();
    c.data.train_limit = 256;
    c.data.test_limit = 100;
    c.optim.lr = 0.01f;
    c.sched.name = "constant";
    c.train.epochs = 3;
    c.train.batch_schedule = "0:64,1:32,2:128";
    c.train.scale_lr_with_batch = scale;
    RunResult r = run_training(c, {});
    ASSERT_EQ(r.epochs.size(), 3u);
    EXPECT_EQ(r.epochs[2].step, 4 + 8 + 2);
    EXPECT_FLOAT_EQ(r.epochs[0].lr, 0.01f) << "scale " << scale;
    EXPECT_FLOAT_EQ(r.epochs[1].lr, scale ? 0.005f : 0.01f) << "scale " << scale;
    EXPECT_FLOAT_EQ(r.epochs[2].lr, scale ? 0.02f : 0.01f) << "scale " << scale;
  }
}

TEST(EarlyStop, KerasImprovementRuleWithMinDelta) {
  // mode min, min_delta 0.1: an improvement must beat the best by more than 0.1.
  EarlyStopState s;
  EarlyStopRule min01;
  min01.min_delta = 0.1;
  EXPECT_FALSE(s.update(NAN, min01, 1));  // no value yet: a NaN is no improvement
  EXPECT_EQ(s.wait, 1);
  EXPECT_TRUE(s.update(1.0, min01, 2));  // the first number sets the best
  EXPECT_EQ(s.wait, 0);
  EXPECT_FALSE(s.update(0.95, min01, 3));  // lower, but by less than 0.1
  EXPECT_FALSE(s.update(0.9, min01, 4));   // exactly 0.1 lower is not "more than"
  EXPECT_EQ(s.wait, 2);
  EXPECT_TRUE(s.update(0.85, min01, 5));
  EXPECT_EQ(s.best, 0.85);
  EXPECT_EQ(s.best_epoch, 5);
  EXPECT_EQ(s.wait, 0);
  EXPECT_FALSE(s.update(NAN, min01, 6));  // a NaN epoch counts as one without improvement
  EXPECT_EQ(s.wait, 1);
  EXPECT_EQ(s.best, 0.85);
  EarlyStopState m;  // mode max (accuracy), min_delta 0
  EarlyStopRule max0;
  max0.maximize = true;
  EXPECT_TRUE(m.update(0.5, max0, 1));
  EXPECT_FALSE(m.update(0.5, max0, 2));  // equal is no improvement
  EXPECT_FALSE(m.update(0.4, max0, 3));
  EXPECT_TRUE(m.update(0.51, max0, 4));
  EXPECT_EQ(m.best_epoch, 4);
}

TEST(EarlyStop, KerasBaselineAndStartFromEpoch) {
  // Keras baseline: an epoch that improves on the best but not on the baseline becomes the best
  // (the epoch --restore-best keeps) without starting the patience over.
  EarlyStopRule r;
  r.maximize = true;
  r.baseline = 0.9;
  EarlyStopState s;
  EXPECT_TRUE(s.update(0.5, r, 1));  // the best so far, below the baseline
  EXPECT_EQ(s.wait, 1);
  EXPECT_TRUE(s.update(0.8, r, 2));
  EXPECT_EQ(s.wait, 2);
  EXPECT_EQ(s.best_epoch, 2);
  EXPECT_FALSE(s.update(0.7, r, 3));
  EXPECT_EQ(s.wait, 3);
  EXPECT_TRUE(s.update(0.95, r, 4));  // beats the baseline: the wait starts over
  EXPECT_EQ(s.wait, 0);
  EXPECT_FALSE(s.update(0.93, r, 5));  // above the baseline but not the best: no reset
  EXPECT_EQ(s.wait, 1);
  // min_delta applies to the baseline too (mode min: 0.5 must be beaten by more than 0.1).
  EarlyStopRule lo;
  lo.baseline = 0.5;
  lo.min_delta = 0.1;
  EarlyStopState l;
  EXPECT_TRUE(l.update(0.45, lo, 1));
  EXPECT_EQ(l.wait, 1);
  EXPECT_TRUE(l.update(0.3, lo, 2));
  EXPECT_EQ(l.wait, 0);
  // start_from_epoch 2: epochs 1 and 2 are not watched at all (no best, no wait).
  EarlyStopRule w;
  w.start_from_epoch = 2;
  EarlyStopState ws;
  EXPECT_FALSE(ws.update(0.1, w, 1));
  EXPECT_FALSE(ws.update(0.05, w, 2));
  EXPECT_TRUE(std::isnan(ws.best));
  EXPECT_EQ(ws.wait, 0);
  EXPECT_TRUE(ws.update(0.9, w, 3));  // the first watched epoch sets the best
  EXPECT_EQ(ws.best_epoch, 3);
  EXPECT_FALSE(ws.update(0.95, w, 4));
  EXPECT_EQ(ws.wait, 1);
}

namespace {
// Six epochs with patience 2 and a delta (10) no loss change reaches: only epoch 1 improves (on
// nothing), so the run stops before epoch 4. Checkpoints after every epoch go to a fresh `dir`.
RunConfig early_stop_run(const std::string& dir) {
  RunConfig c = small_mlp();
  c.data.train_limit = 256;
  c.data.test_limit = 100;
  c.data.val_split = 0.25;
  c.train.epochs = 6;
  c.train.early_stop = 2;
  c.train.early_stop_delta = 10;
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  c.checkpoint_dir = dir;
  c.checkpoint_every = 1;
  return c;
}
}  // namespace

TEST(TrainerCpu, EarlyStopAfterPatienceEpochsAndAResumedRunStopsAlike) {
  std::string dir = ::testing::TempDir() + "kiln_early_stop_" + std::to_string(getpid());
  RunConfig c = early_stop_run(dir);
  std::vector<std::string> logged;
  RunHooks hooks;
  hooks.log = [&](const std::string& l) { logged.push_back(l); };
  RunResult whole = run_training(c, hooks);
  ASSERT_EQ(whole.epochs.size(), 3u);
  ASSERT_FALSE(logged.empty());
  EXPECT_NE(logged.back().find("early stopping before epoch 4: val_loss has not improved on"),
            std::string::npos)
      << logged.back();
  // Resumed after epoch 2 (wait 1 in the checkpoint), the run stops after epoch 3 as well; with
  // the counter lost it would train on to epoch 4. From epoch 3's checkpoint nothing is left.
  RunConfig r = c;
  r.checkpoint_every = 0;
  r.resume = dir + "/ckpt-epoch-2.safetensors";
  RunResult resumed = run_training(r, {});
  ASSERT_EQ(resumed.epochs.size(), 1u);
  EXPECT_EQ(resumed.epochs[0].epoch, 3);
  EXPECT_EQ(resumed.test_acc, whole.test_acc);
  r.resume = dir + "/ckpt-epoch-3.safetensors";
  EXPECT_TRUE(run_training(r, {}).epochs.empty());
  // The accuracy can be watched instead; patience 0 is off.
  c.checkpoint_every = 0;
  c.train.early_stop_metric = "acc";
  c.train.early_stop_delta = 2;  // no accuracy improves by 2
  EXPECT_EQ(run_training(c, {}).epochs.size(), 3u);
  c.train.early_stop = 0;
  EXPECT_EQ(run_training(c, {}).epochs.size(), 6u);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(TrainerCpu, APlateauRunResumedWithAnotherLrScalesTheLrItsCutsLeft) {
  // Every epoch after the first is "not better" (abs threshold 100), so patience 0 halves the lr
  // after epoch 2: epoch 3 would run at 0.05. Resumed with --lr 0.2 (twice 0.1) it runs at 0.1,
  // as a step schedule's lr follows the new --lr; the saved 0.05 was kept before (the log said
  // the lr had changed).
  const std::string dir = ::testing::TempDir() + "kiln_plateau_lr_" + std::to_string(getpid());
  ASSERT_EQ(std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str()), 0);
  RunConfig c = small_mlp();
  c.data.train_limit = 128;
  c.data.test_limit = 64;
  c.optim.lr = 0.1f;
  c.sched.name = "plateau";
  c.sched.patience = 0;
  c.sched.factor = 0.5f;
  c.sched.threshold = 100;
  c.sched.threshold_mode = "abs";
  c.save = dir + "/p.safetensors";
  RunResult first = run_training(c, {});
  ASSERT_EQ(first.epochs.size(), 2u);
  EXPECT_EQ(first.epochs[1].lr, 0.1f);
  RunConfig r = c;
  r.save.clear();
  r.resume = c.save;
  r.train.epochs = 3;
  ASSERT_EQ(run_training(r, {}).epochs.at(0).lr, 0.05f);  // the same --lr: the cut kept
  r.optim.lr = 0.2f;
  std::vector<std::string> logged;
  RunHooks hooks;
  hooks.log = [&](const std::string& l) { logged.push_back(l); };
  RunResult resumed = run_training(r, hooks);
  ASSERT_EQ(resumed.epochs.size(), 1u);
  EXPECT_EQ(resumed.epochs[0].lr, 0.1f);
  bool said = false;
  for (const auto& l : logged)
    said |= l.find(
                "note: --schedule plateau goes on from the lr its state holds scaled by the "
                "new --lr / 0.1: 0.1 (its cuts carry over") != std::string::npos;
  EXPECT_TRUE(said) << ::testing::PrintToString(logged);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(TrainerCpu, AMidEpochResumeWithASmallerPatienceFinishesItsEpochBeforeStopping) {
  // Patience 3 stops after epoch 4 (6 steps an epoch); resumed at epoch 4's batch 2 with
  // patience 2, whose stop was due before epoch 4, the run finishes epoch 4 and stops there. It
  // stopped at once until 2026-12-07: test_acc and --save then held two batches of epoch 4.
  std::string dir = ::testing::TempDir() + "kiln_early_stop_mid_" + std::to_string(getpid());
  RunConfig c = early_stop_run(dir);
  c.train.early_stop = 3;
  c.checkpoint_every = 0;
  c.checkpoint_every_steps = 1;
  ASSERT_EQ(run_training(c, {}).epochs.size(), 4u);
  RunConfig r = c;
  r.checkpoint_every_steps = 0;
  r.train.early_stop = 2;
  r.resume = dir + "/ckpt-step-20.safetensors";
  r.save = dir + "/final.safetensors";
  RunResult resumed = run_training(r, {});
  ASSERT_EQ(resumed.epochs.size(), 1u);
  EXPECT_EQ(resumed.epochs[0].epoch, 4);
  const TrainPosition saved = checkpoint_position(read_checkpoint(r.save), r.save);
  EXPECT_EQ(saved.epoch, 4);
  EXPECT_EQ(saved.batch, 0);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(TrainerCpu, EarlyStopBaselineAndStartFromEpochShapeThePatience) {
  std::string dir = ::testing::TempDir() + "kiln_early_stop_b_" + std::to_string(getpid());
  RunConfig c = early_stop_run(dir);  // patience 2, delta 10: only the first watched epoch counts
  c.checkpoint_every = 0;
  // Epochs 1 and 2 are not watched: epoch 3 sets the best, 4 and 5 wait, 6 never runs.
  c.train.early_stop_start = 2;
  EXPECT_EQ(run_training(c, {}).epochs.size(), 5u);
  // A baseline no loss beats: epoch 1 becomes the best without starting the wait over.
  c.train.early_stop_start = 0;
  c.train.early_stop_baseline = -1;
  std::vector<std::string> logged;
  RunHooks hooks;
  hooks.log = [&](const std::string& l) { logged.push_back(l); };
  EXPECT_EQ(run_training(c, hooks).epochs.size(), 2u);
  ASSERT_FALSE(logged.empty());
  EXPECT_NE(logged.back().find("val_loss has not beaten the baseline -1 by more than 10 in 2 "
                               "epochs (best "),
            std::string::npos)
      << logged.back();
  // They shape early stopping, so without it they are usage errors; the option round-trips
  // "none" (no baseline) through a checkpoint's config.
  c.train.early_stop = 0;
  EXPECT_THROW(run_training(c, {}), Error);
  const OptionSpec* b = run_options().find("early-stop-baseline");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->get(c), "-1");
  RunConfig d;
  EXPECT_EQ(b->get(d), "none");
  b->set(d, "0.25");
  EXPECT_EQ(d.train.early_stop_baseline, 0.25);
  b->set(d, "none");
  EXPECT_TRUE(std::isnan(d.train.early_stop_baseline));
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(TrainerCpu, CheckpointConfigRecordsTheWeightDecayTheRunUsed) {
  // --optimizer adamw without --weight-decay trains with PyTorch's 0.01, and says so in the
  // checkpoint's config (the PyTorch comparisons rebuild the optimizer from it).
  RunConfig c = small_mlp();
  c.optim.name = "adamw";
  auto s = make_session(c);
  EXPECT_FLOAT_EQ(s->opt->options().weight_decay, 0.01f);
  EXPECT_FLOAT_EQ(s->cfg.optim.weight_decay, 0.01f);
  EXPECT_EQ(run_options().find("weight-decay")->get(s->cfg), "0.01");
}

TEST(TrainerCpu, CheckpointConfigRecordsThePrecisionTheRunComputedIn) {
  // --precision tf32 with --device auto on a machine without a GPU runs fp32 on the CPU, and
  // the config its checkpoints carry says fp32.
  if (cuda_available()) GTEST_SKIP() << "a GPU answers: auto is cuda here";
  RunConfig c = small_mlp();
  c.device = "auto";
  c.precision = "tf32";
  auto s = make_session(c);
  EXPECT_EQ(s->cfg.precision, "fp32");
}

// --resume FILE continues FILE's run: an option no flag or --config key gives takes FILE's
// recorded value; one it left unset (a NaN "auto", recorded as what it resolved to) stays unset
// while the recipe still resolves it so, and a given flag, where this invocation runs and the
// options it does not read keep this invocation's values.
TEST(TrainerCpu, AResumeTakesTheOptionsItsCommandLineLeavesOutFromTheCheckpoint) {
  RunConfig c = small_mlp();
  c.model.width = 16;
  c.optim.name = "sgd";
  c.optim.momentum = 0.8f;
  c.sched.name = "cyclic";  // gamma and the cycled momenta unset: cyclic's 1, 0.8, 0.9
  c.train.epochs = 1;
  c.data.train_limit = 200;
  c.data.test_limit = 100;
  test::RemoveAtExit files;
  c.save = files.add(test::temp_file("adopt_cyclic.safetensors"));
  run_training(c, {});
  RunConfig exp = c;  // a schedule with a gamma the run gave
  exp.sched.name = "exponential";
  exp.sched.gamma = 0.5f;
  exp.save = files.add(test::temp_file("adopt_exponential.safetensors"));
  run_training(exp, {});

  auto resumed = [](const std::string& file, const ParsedArgs& args, RunConfig now,
                    unsigned skip = kRangeTestOnly) {
    now.resume = file;
    now.data.data_dir = "/elsewhere";  // where this invocation finds its data
    std::vector<std::string> changed = adopt_resume_options(now, args, skip);
    return std::make_pair(now, changed);
  };
  const RunConfig defaults;
  auto [a, changed] = resumed(c.save, {}, defaults);
  EXPECT_EQ(a.model.model, "mlp");
  EXPECT_EQ(a.model.width, 16);
  EXPECT_EQ(a.optim.name, "sgd");
  EXPECT_FLOAT_EQ(a.optim.momentum, 0.8f);
  EXPECT_FLOAT_EQ(a.optim.lr, 0.05f);
  EXPECT_EQ(a.sched.name, "cyclic");
  EXPECT_EQ(a.data.train_limit, 200);
  EXPECT_EQ(a.train.epochs, 1);
  EXPECT_TRUE(a.save.empty());  // where it writes is this invocation's to say
  EXPECT_EQ(a.data.data_dir, "/elsewhere");
  EXPECT_EQ(a.device, defaults.device);
  EXPECT_TRUE(std::isnan(a.sched.gamma));  // still cyclic's own
  EXPECT_TRUE(std::isnan(a.optim.weight_decay));
  // What changed as the run sees it (cyclic's gamma 1 instead of the default one-cycle's 0.1),
  // in the table's order; the library's defaults are sgd and 1 epoch already.
  std::string list;
  for (const std::string& o : changed) list += o + ", ";
  EXPECT_EQ(list,
            "train-limit 200, test-limit 100, model mlp, width 16, depth 1, lr 0.05, momentum "
            "0.8, schedule cyclic, gamma 1, base-momentum 0.8, max-momentum 0.9, batch-size 32, ");

  // A flag given now wins, and an unset option resolves afresh for it.
  RunConfig one_cycle = defaults;
  one_cycle.sched.name = "one-cycle";
  one_cycle.optim.lr = 0.2f;
  ParsedArgs flags;
  flags.flag_keys = {"schedule"};
  flags.config_keys = {{"lr", "lr"}};
  auto [b, unused] = resumed(c.save, flags, one_cycle);
  EXPECT_EQ(b.sched.name, "one-cycle");
  EXPECT_FLOAT_EQ(b.optim.lr, 0.2f);
  EXPECT_FLOAT_EQ(b.sched.resolved().gamma, 0.1f);
  EXPECT_FLOAT_EQ(b.sched.resolved().base_momentum, 0.85f);

  // One of a set of options a run sets one of (a clipping mode, a warm-up length) given now
  // replaces the recorded other: resumed with --clipnorm, a --global-clipnorm run was refused
  // as setting both (until 2026-12-07).
  RunConfig clip = c;
  clip.optim.global_clipnorm = 1.0f;
  clip.sched.warmup_epochs = 1;
  clip.save = files.add(test::temp_file("adopt_clip.safetensors"));
  run_training(clip, {});
  auto [kept, unused4] = resumed(clip.save, {}, defaults);
  EXPECT_FLOAT_EQ(kept.optim.global_clipnorm, 1.0f);
  EXPECT_EQ(kept.sched.warmup_epochs, 1);
  RunConfig other = defaults;
  other.optim.clipnorm = 0.5f;
  other.sched.warmup_steps = 10;
  ParsedArgs swapped;
  swapped.flag_keys = {"clipnorm"};
  swapped.config_keys = {{"warmup-steps", "warmup_steps"}};
  auto [sw, unused5] = resumed(clip.save, swapped, other);
  EXPECT_FLOAT_EQ(sw.optim.clipnorm, 0.5f);
  EXPECT_EQ(sw.optim.global_clipnorm, 0.0f);
  EXPECT_EQ(sw.sched.warmup_steps, 10);
  EXPECT_EQ(sw.sched.warmup_epochs, 0);
  EXPECT_NO_THROW(sw.validate());

  // A value the run gave is kept, even where this kiln's default would give another.
  auto [e, unused2] = resumed(exp.save, {}, defaults);
  EXPECT_EQ(e.sched.name, "exponential");
  EXPECT_FLOAT_EQ(e.sched.gamma, 0.5f);

  // The range test takes none of the options it does not read, nor the run's invocation.
  RunConfig ramp = defaults;
  ramp.lr_find = true;
  ramp.train.epochs = 7;
  auto [r, unused3] = resumed(c.save, {}, ramp, kRangeTestUnused | kInvocation);
  EXPECT_EQ(r.model.width, 16);
  EXPECT_FLOAT_EQ(r.optim.lr, defaults.optim.lr);
  EXPECT_EQ(r.sched.name, defaults.sched.name);
  EXPECT_EQ(r.train.epochs, 7);  // the run's length is not the test's
  EXPECT_TRUE(r.lr_find);
}

// What a resume never takes from its checkpoint: where it writes (a branch off an earlier
// checkpoint would overwrite the run's files) and the precision (tied to the device the run had).
// A recorded value this kiln cannot read fails the resume only when it would be taken, naming it.
TEST(TrainerCpu, AResumeLeavesOutputsAndPrecisionAndNamesARecordItCannotTake) {
  RunConfig c = small_mlp();
  c.data.train_limit = 200;
  auto s = make_session(c);
  test::RemoveAtExit files;
  auto with_config = [&](const std::string& name, const std::string& config) {
    CheckpointInfo info;
    info.config = config;
    const std::string path = files.add(test::temp_file(name));
    save_checkpoint(path, *s->ctx, *s->model, s->opt.get(), s->sched.get(), info);
    return path;
  };
  const std::string outputs =
      with_config("adopt_outputs.safetensors",
                  R"({"width": "24", "precision": "tf32", "save": "final.st", "log": "run.jsonl",
          "checkpoint-dir": "ck", "checkpoint-every": "1", "keep-last": "2",
          "cuda-graphs": "auto", "milestones": "30,x"})");
  RunConfig now;
  now.resume = outputs;
  ParsedArgs given;
  given.flag_keys = {"cuda-graphs", "milestones"};
  adopt_resume_options(now, given, kRangeTestOnly);
  const RunConfig defaults;
  EXPECT_EQ(now.model.width, 24);
  EXPECT_EQ(now.precision, defaults.precision);
  EXPECT_TRUE(now.save.empty());
  EXPECT_TRUE(now.train.log_path.empty());
  EXPECT_TRUE(now.checkpoint_dir.empty());
  EXPECT_EQ(now.checkpoint_every, 0);
  EXPECT_EQ(now.keep_last, 0);
  auto error_of = [](RunConfig r, const ParsedArgs& args) -> std::string {
    try {
      adopt_resume_options(r, args, kRangeTestOnly);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      return e.message();
    }
    return "";
  };
  ParsedArgs only_graphs;
  only_graphs.flag_keys = {"cuda-graphs"};
  EXPECT_NE(error_of(now, only_graphs).find("its recorded --milestones (give --milestones"),
            std::string::npos)
      << error_of(now, only_graphs);
  RunConfig elsewhere;
  elsewhere.resume = with_config("adopt_schedule_file.safetensors",
                                 R"({"schedule": "manual", "schedule-file": "no/such/lrs.txt"})");
  const std::string e = error_of(elsewhere, {});
  EXPECT_NE(e.find("its recorded --schedule-file (give --schedule-file to set it): "
                   "no/such/lrs.txt cannot be read from here"),
            std::string::npos)
      << e;
}

// The interrupted run's message gives the outputs to resume with as shell words a user can
// paste: plain paths as they are, others single-quoted (a quote inside as '\'').
TEST(TrainerCpu, TheResumeCommandOfAnInterruptedRunIsShellWords) {
  EXPECT_EQ(app::shell_word("ck/ckpt-step-5.safetensors"), "ck/ckpt-step-5.safetensors");
  EXPECT_EQ(app::shell_word("sp ace/ck"), "'sp ace/ck'");
  EXPECT_EQ(app::shell_word("it's.st"), "'it'\\''s.st'");
  EXPECT_EQ(app::shell_word("$HOME;rm"), "'$HOME;rm'");
  EXPECT_EQ(app::shell_word(""), "''");
  RunConfig defaults, c;
  c.checkpoint_dir = "sp ace/ck";
  c.checkpoint_every_steps = 25;
  c.save = "S.safetensors";
  c.model.width = 7;  // the recipe: the checkpoint's to give
  EXPECT_EQ(app::output_options(c, defaults),
            " --save S.safetensors --checkpoint-dir 'sp ace/ck' --checkpoint-every-steps 25");
  c.threads = 1;  // how the run ran, not the recipe: not in the checkpoint's options to take
  EXPECT_EQ(app::output_options(c, defaults),
            " --threads 1 --save S.safetensors --checkpoint-dir 'sp ace/ck' "
            "--checkpoint-every-steps 25");
  c.data.data_dir = "/d/mnist";  // where its data is: a resume from elsewhere reads ./data
  EXPECT_EQ(app::output_options(c, defaults),
            " --data-dir /d/mnist --threads 1 --save S.safetensors --checkpoint-dir 'sp ace/ck' "
            "--checkpoint-every-steps 25");
  // Diagnostics a resume does not take either (they were dropped from the command it printed)
  c.train.detect_anomaly = true;
  c.train.grad_report = true;
  c.train.log_path = "m.jsonl";
  EXPECT_EQ(app::output_options(c, defaults),
            " --data-dir /d/mnist --detect-anomaly --grad-report --log m.jsonl --threads 1 --save "
            "S.safetensors --checkpoint-dir 'sp ace/ck' --checkpoint-every-steps 25");
  // Every option a resume leaves to the command line is one the message can give.
  for (const OptionSpec& o : run_options().specs())
    if (o.traits & kSideEffect) {
      RunConfig one;
      run_options().set(one, o.name,
                        o.type == "bool"          ? (o.get(defaults) == "true" ? "false" : "true")
                        : o.type == "on|off"      ? (o.get(defaults) == "on" ? "off" : "on")
                        : o.type == "auto|on|off" ? (o.get(defaults) == "off" ? "on" : "off")
                        : o.type == "int"         ? "7"
                                                  : "x7",
                        "--" + o.name);
      EXPECT_NE(app::output_options(one, defaults).find("--" + o.name), std::string::npos)
          << o.name;
    }
}

namespace {
// The model tensors (not optimizer state or snapshots) of a saved checkpoint.
std::vector<std::pair<std::string, std::vector<uint8_t>>> model_tensors(const std::string& path) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> out;
  for (const auto& t : read_safetensors(path).tensors)
    if (t.name.rfind("optimizer.", 0) != 0 && t.name.rfind("early_stop.", 0) != 0)
      out.emplace_back(t.name, t.data);
  return out;
}
}  // namespace

TEST(TrainerCpu, RestoreBestEndsWithTheBestEpochsWeightsAlsoAfterAResume) {
  // Epoch 1 is the best and the run stops before epoch 4; --restore-best loads epoch 1's
  // weights and batch-norm statistics back, so the run ends as a 1-epoch run does.
  std::string dir = ::testing::TempDir() + "kiln_restore_best_" + std::to_string(getpid());
  RunConfig c = early_stop_run(dir);
  c.model.norm = "batch";
  c.train.restore_best = true;
  c.save = dir + "/whole.safetensors";
  RunResult whole = run_training(c, {});
  ASSERT_EQ(whole.epochs.size(), 3u);
  RunConfig one = c;
  one.train.epochs = 1;
  one.checkpoint_every = 0;
  one.save = dir + "/one.safetensors";
  RunResult first = run_training(one, {});
  EXPECT_EQ(whole.test_acc, first.test_acc);
  EXPECT_EQ(whole.test_loss, first.test_loss);
  EXPECT_NE(whole.test_loss, whole.epochs.back().test_loss)
      << "the last epoch's score is not the result";
  EXPECT_EQ(model_tensors(c.save), model_tensors(one.save));
  // Resumed after epoch 2, the snapshot of epoch 1 comes from the checkpoint.
  RunConfig r = c;
  r.checkpoint_every = 0;
  r.resume = dir + "/ckpt-epoch-2.safetensors";
  r.save = dir + "/resumed.safetensors";
  RunResult resumed = run_training(r, {});
  EXPECT_EQ(resumed.test_loss, whole.test_loss);
  EXPECT_EQ(model_tensors(r.save), model_tensors(c.save));
  // The final file holds epoch 1's weights with the last epoch's position: it says so, and a
  // run resumed from it says what it continues from.
  const SafetensorsFile f = read_checkpoint(c.save);
  ASSERT_NE(f.meta("restored_epoch"), nullptr);
  EXPECT_EQ(*f.meta("restored_epoch"), "1");
  RunConfig more = c;
  more.checkpoint_every = 0;
  more.train.epochs = 4;
  more.resume = c.save;
  more.save = dir + "/more.safetensors";
  std::vector<std::string> logged;
  RunHooks hooks;
  hooks.log = [&](const std::string& l) { logged.push_back(l); };
  run_training(more, hooks);
  bool noted = false;
  for (const auto& l : logged)
    noted |= l.find(
                 "holds the weights of epoch 1 (--restore-best) with the position and "
                 "optimizer state of the end of epoch 3") != std::string::npos;
  EXPECT_TRUE(noted);
  EXPECT_EQ(read_checkpoint(one.save).meta("restored_epoch"), nullptr);
  c.train.early_stop = 0;  // the best epoch is the early stopping's
  EXPECT_THROW(c.validate(), Error);
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(TrainerCpu, ARunTargetAccStopsKeepsThatEpochsWeightsUnderRestoreBest) {
  // Early stopping judges epoch 1 best (delta 10: nothing later improves); the epoch that first
  // reaches --target-acc ends the run with its own weights, not epoch 1's, which missed the
  // target (restored until 2026-12-04).
  std::string dir = ::testing::TempDir() + "kiln_target_best_" + std::to_string(getpid());
  RunConfig c = early_stop_run(dir);
  c.checkpoint_every = 0;
  c.train.restore_best = true;
  RunResult whole = run_training(c, {});
  ASSERT_EQ(whole.epochs.size(), 3u);
  EXPECT_EQ(whole.restored_epoch, 1);  // what a sweep scores such a trial on
  size_t k = 1;  // the first epoch after the first whose val_acc beats every epoch before it
  while (k < whole.epochs.size() && whole.epochs[k].val_acc <= whole.epochs[0].val_acc &&
         (k < 2 || whole.epochs[k].val_acc <= whole.epochs[1].val_acc))
    ++k;
  ASSERT_LT(k, whole.epochs.size()) << "the fixture needs a later epoch with a better val_acc";
  c.train.target_acc = static_cast<float>(whole.epochs[k].val_acc) - 1e-4f;
  std::vector<std::string> logged;
  RunHooks hooks;
  hooks.log = [&](const std::string& l) { logged.push_back(l); };
  RunResult hit = run_training(c, hooks);
  ASSERT_EQ(hit.epochs.size(), k + 1);
  EXPECT_EQ(hit.test_acc, hit.epochs.back().test_acc);
  EXPECT_EQ(hit.test_loss, hit.epochs.back().test_loss);
  bool said = false, restored = false;
  for (const auto& l : logged) {
    said |= l.find("target accuracy") != std::string::npos &&
            l.find("reached at epoch " + std::to_string(k + 1)) != std::string::npos &&
            l.find("--restore-best keeps them") != std::string::npos;
    restored |= l.find("restored the weights") != std::string::npos;
  }
  EXPECT_TRUE(said);
  EXPECT_FALSE(restored);
  EXPECT_EQ(hit.restored_epoch, 0);
  // a sweep's trial: the runner passes the trainer's choice on, so the trial is scored on the
  // epoch that reached the target, the weights it ends with
  const TrialRun trial = default_trial_runner()(c, [](const EpochRecord&) { return true; });
  EXPECT_EQ(trial.restored_epoch, 0);
  ASSERT_EQ(trial.epochs.size(), k + 1);
  c.train.target_acc = 0;
  EXPECT_EQ(default_trial_runner()(c, [](const EpochRecord&) { return true; }).restored_epoch, 1);
  // The same when the epoch that reaches the target is the last one: a run resumed from its
  // checkpoint, or from the final --save, keeps that epoch's weights too (until 2026-12-07 it
  // had no epoch left in which to see the target reached, and restored epoch 1's).
  c.train.target_acc = static_cast<float>(whole.epochs[k].val_acc) - 1e-4f;
  c.train.epochs = static_cast<int>(k) + 1;
  c.checkpoint_every = 1;
  c.checkpoint_dir = dir + "/last";
  c.save = dir + "/last.safetensors";
  const RunResult last = run_training(c, {});
  ASSERT_EQ(last.epochs.size(), k + 1);
  ASSERT_EQ(last.restored_epoch, 0);
  for (const std::string& from :
       {c.checkpoint_dir + "/ckpt-epoch-" + std::to_string(k + 1) + ".safetensors", c.save}) {
    RunConfig r = c;
    r.checkpoint_every = 0;
    r.resume = from;
    r.save = dir + "/resumed.safetensors";
    const RunResult res = run_training(r, {});
    EXPECT_EQ(res.restored_epoch, 0) << from;
    EXPECT_EQ(res.test_acc, last.test_acc) << from;
    EXPECT_EQ(model_tensors(r.save), model_tensors(c.save)) << from;
    EXPECT_EQ(read_checkpoint(r.save).meta("restored_epoch"), nullptr) << from;
  }
  std::system(("rm -rf '" + dir + "'").c_str());
}

namespace {
// 16 samples of 1x4x4 noise labelled i % 3, on the CPU.
Dataset three_class_noise(const char* name) {
  Dataset ds;
  ds.name = name;
  ds.images = Tensor::from_vector(test::random_vec(16 * 16, 31), {16, 1, 4, 4}, Device::CPU);
  for (int i = 0; i < 16; ++i) ds.host_labels.push_back(i % 3);
  ds.labels = std::make_shared<Buffer>(16 * sizeof(int32_t), Device::CPU);
  copy_bytes(ds.labels->data(), Device::CPU, ds.host_labels.data(), Device::CPU,
             16 * sizeof(int32_t));
  return ds;
}

// SGD at lr 0.05, one epoch of batches of 8, no progress lines, for a model built on the CPU.
struct SgdTrainer {
  Context ctx{Device::CPU, 5};
  OptimOptions oo;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<Schedule> sched;
  TrainOptions to;
  std::unique_ptr<Trainer> tr;
  explicit SgdTrainer(Model& m) {
    oo.name = "sgd";
    oo.lr = 0.05f;
    opt = make_optimizer(oo, m);
    sched = make_schedule(ScheduleOptions{}, oo.lr, 1, 1);
    to.epochs = 1;
    to.batch_size = 8;
    to.progress = 0;
    tr = std::make_unique<Trainer>(m, *opt, *sched, ctx, to);
  }
};
}  // namespace

TEST(TrainerCpu, TrainingsInThreadsGiveTheBitsEachGivesAlone) {
  // An embedding program may train several independent models at once, one per thread (each
  // with its own Context, optimizer, schedule, Trainer; a shared read-only Dataset): no state
  // is shared between them, so each ends with the weights it reaches alone. (A ThreadSanitizer
  // build of this test ran clean on 2026-12-03; this build only compares the bits.)
  const Dataset train = three_class_noise("noise/train");
  auto train_one = [&](uint64_t seed, const char* optimizer, std::atomic<int>* start) {
    ModelOptions mo;
    mo.model = "mlp";
    mo.width = 16;
    mo.norm = "batch";
    mo.dropout = 0.25f;
    auto m = make_model(mo, {1, 4, 4}, 3);
    m->build(Device::CPU, seed);
    Context ctx(Device::CPU, seed);
    OptimOptions oo;
    oo.name = optimizer;
    oo.lr = 0.01f;
    auto opt = make_optimizer(oo, *m);
    ScheduleOptions so;
    so.name = "one-cycle";
    auto sched = make_schedule(so, oo.lr, 4, 6);
    TrainOptions to;
    to.epochs = 6;
    to.batch_size = 4;
    to.progress = 0;
    Trainer tr(*m, *opt, *sched, ctx, to);
    if (start) {  // the threads begin together, so their steps interleave
      start->fetch_sub(1);
      while (start->load() > 0) std::this_thread::yield();
    }
    for (int round = 0; round < 25; ++round) tr.fit(train, nullptr);  // 600 steps
    return m->flat_params().to_vector();
  };
  const std::vector<std::pair<uint64_t, const char*>> jobs = {
      {1, "adam"}, {2, "sgd"}, {3, "rmsprop"}, {4, "adamw"}};
  std::vector<std::vector<float>> alone, together(jobs.size());
  for (const auto& [seed, o] : jobs) alone.push_back(train_one(seed, o, nullptr));
  std::atomic<int> start{static_cast<int>(jobs.size())};
  std::vector<std::thread> threads;
  for (size_t j = 0; j < jobs.size(); ++j)
    threads.emplace_back(
        [&, j] { together[j] = train_one(jobs[j].first, jobs[j].second, &start); });
  for (auto& t : threads) t.join();
  for (size_t j = 0; j < jobs.size(); ++j) {
    ASSERT_EQ(together[j].size(), alone[j].size());
    EXPECT_EQ(std::memcmp(together[j].data(), alone[j].data(), alone[j].size() * sizeof(float)), 0)
        << "job " << j << " (" << jobs[j].second << ")";
  }
  EXPECT_NE(alone[0], alone[1]);  // the jobs differ: a mix-up would show
}

// Returning false from on_step stops the run after that step, as Keras's stop_training set in
// on_train_batch_end: the epoch ends there (its record comes at the step it stopped at, on_epoch
// sees it) and no later epoch starts. Until 2026-12-06 only the epoch ended and the next ran.
TEST(TrainerCpu, OnStepFalseStopsTheRunAfterThatStep) {
  const Dataset train = three_class_noise("noise/train");  // 16 samples: 4 steps of 4 an epoch
  ModelOptions mo;
  mo.model = "mlp";
  mo.width = 8;
  auto m = make_model(mo, {1, 4, 4}, 3);
  m->build(Device::CPU, 3);
  SgdTrainer s(*m);
  s.to.epochs = 4;
  s.to.batch_size = 4;
  s.sched = make_schedule(ScheduleOptions{}, s.oo.lr, 4, 4);
  Trainer tr(*m, *s.opt, *s.sched, s.ctx, s.to);
  std::vector<long long> steps;
  int epochs_seen = 0;
  tr.on_step = [&](long long step, float) {
    steps.push_back(step);
    return step != 6;  // the second epoch's second step
  };
  tr.on_epoch = [&](const EpochRecord&) { return ++epochs_seen > 0; };
  const std::vector<EpochRecord> out = tr.fit(train, nullptr);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].step, 4);
  EXPECT_EQ(out[1].step, 6) << "the second epoch ends at the step on_step stopped";
  EXPECT_EQ(epochs_seen, 2);
  EXPECT_EQ(steps, (std::vector<long long>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(tr.step(), 6);
  EXPECT_EQ(tr.position().epoch, 2);
  EXPECT_FALSE(tr.stopped()) << "stopped() is for signals";
}

// A held-out set of another sample shape is refused before the first step, by name (it failed
// in the first epoch's evaluation, after the epoch had trained); and an evaluate() that throws
// gives the context back in the mode it found (it stayed in eval mode: a caller's next step ran
// without dropout and with batch norm's running statistics).
TEST(TrainerCpu, HeldOutSetOfAnotherShapeIsRefusedBeforeTrainingAndEvaluateKeepsTheMode) {
  const Dataset train = three_class_noise("noise/train");
  Dataset wide = three_class_noise("noise/wide");
  wide.images = Tensor::from_vector(test::random_vec(16 * 25, 32), {16, 1, 5, 5}, Device::CPU);
  ModelOptions mo;
  mo.model = "mlp";
  mo.width = 8;
  mo.dropout = 0.5f;
  auto m = make_model(mo, {1, 4, 4}, 3);
  m->build(Device::CPU, 5);
  SgdTrainer t(*m);
  const std::vector<float> before = m->flat_params().to_vector();
  try {
    t.tr->fit(train, &wide);
    FAIL() << "trained with a 5x5 test set for a 4x4 model";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_EQ(e.message().substr(0, e.message().find(" (")),
              "noise/wide: samples [1, 5, 5], the model takes [1, 4, 4]");
  }
  EXPECT_EQ(m->flat_params().to_vector(), before) << "trained before refusing";
  // A layer whose forward throws in eval mode: the error inside evaluate()'s loop.
  class ThrowsInEval : public Layer {
   public:
    std::string type() const override { return "ThrowsInEval"; }
    Shape setup(const Shape& in) override { return in; }
    Tensor forward(Context& c, const Tensor& x) override {
      KILN_CHECK(c.training, "ThrowsInEval: eval mode");
      return x;
    }
    Tensor backward(Context&, const Tensor& dy) override { return dy; }
  };
  Model thrower({1, 4, 4});
  thrower.add(std::make_unique<ThrowsInEval>());
  thrower.add(std::make_unique<Flatten>());
  thrower.add(std::make_unique<Linear>(16, 3));
  thrower.build(Device::CPU, 5);
  SgdTrainer t2(thrower);
  t2.ctx.training = true;
  try {
    t2.tr->evaluate(train);
    FAIL() << "the layer did not throw";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("ThrowsInEval: eval mode"), std::string::npos) << e.message();
  }
  EXPECT_TRUE(t2.ctx.training) << "a throwing evaluate left the context in eval mode";
  t2.ctx.training = false;  // and a caller in eval mode stays there
  EXPECT_THROW(t2.tr->evaluate(train), Error);
  EXPECT_FALSE(t2.ctx.training);
}

// Out of memory in evaluation (a large --eval-batch-size): the batch is halved and the
// evaluation starts over, down to batches of 1, with a note each time; the result is the
// smaller batch's, bit for bit, and later evaluations start from it. Other errors are not
// retried.
TEST(TrainerCpu, EvaluationOutOfMemoryHalvesTheBatchUntilItFits) {
  const Dataset train = three_class_noise("noise/train"),
                test_set = three_class_noise("noise/test");
  struct Run {
    Model model{{1, 4, 4}};
    std::vector<int64_t> seen;
    std::vector<std::string> notes;
    test::OomPastBatch* oom = nullptr;
    std::unique_ptr<SgdTrainer> t;
    std::unique_ptr<Trainer> tr;
    Run(int64_t fits, int64_t eval_batch, ErrorKind kind = ErrorKind::OutOfMemory) {
      model.add(std::make_unique<Flatten>());
      model.add(std::make_unique<Linear>(16, 16));  // runs before the failure: grows its buffer
      auto layer = std::make_unique<test::OomPastBatch>(fits, &seen, kind);
      oom = layer.get();
      model.add(std::move(layer));
      model.add(std::make_unique<Linear>(16, 3));
      model.build(Device::CPU, 5);
      t = std::make_unique<SgdTrainer>(model);
      TrainOptions to = t->to;
      to.eval_batch_size = eval_batch;
      to.epochs = 2;
      tr = std::make_unique<Trainer>(model, *t->opt, *t->sched, t->ctx, to);
      tr->log = [this](const std::string& l) { notes.push_back(l); };
    }
  };
  // 16 samples at --eval-batch-size 1000: 16, 8 and 4 run out, 2 fits.
  Run r(3, 1000), ref(1000, 2);
  const EvalResult e = r.tr->evaluate(test_set), want = ref.tr->evaluate(test_set);
  EXPECT_EQ(e.count, 16);
  EXPECT_EQ(e.loss, want.loss);
  EXPECT_EQ(e.acc, want.acc);
  ASSERT_EQ(r.notes.size(), 3u);
  EXPECT_EQ(
      r.notes[0],
      "note: evaluating noise/test at --eval-batch-size 16: out of memory: cannot allocate 16 "
      "samples; evaluating at --eval-batch-size 8 from here on");
  EXPECT_NE(r.notes[2].find("at --eval-batch-size 4: out of memory"), std::string::npos)
      << r.notes[2];
  EXPECT_NE(r.notes[2].find("evaluating at --eval-batch-size 2 from here on"), std::string::npos);
  // A batch that ran out of memory is the last of its try: each try starts over.
  EXPECT_EQ(r.seen, (std::vector<int64_t>{16, 8, 4, 2, 2, 2, 2, 2, 2, 2, 2}));
  // Each try started with the layers' buffers freed: the first Linear's output, grown to 16
  // rows by the first, is now as large as 2 rows (a smaller batch keeps the larger buffer).
  const Tensor one = Tensor::zeros({1, 16}, Device::CPU);
  EXPECT_EQ(r.model.layers()[1]->forward(r.t->ctx, one).capacity_bytes(), 2 * 16 * sizeof(float));
  // Later evaluations, a fit's included, start at 2: no more notes, the epochs' records score
  // the test set as the reference run does, and the two runs train the same weights.
  r.seen.clear();
  const std::vector<EpochRecord> got = r.tr->fit(train, &test_set),
                                 exp = ref.tr->fit(train, &test_set);
  EXPECT_EQ(r.notes.size(), 3u);
  EXPECT_EQ(r.seen, std::vector<int64_t>(16, 2));  // 8 batches of 2, two epochs
  ASSERT_EQ(got.size(), 2u);
  ASSERT_EQ(exp.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].test_loss, exp[i].test_loss);
    EXPECT_EQ(got[i].test_acc, exp[i].test_acc);
  }
  EXPECT_EQ(r.model.flat_params().to_vector(), ref.model.flat_params().to_vector());
  // The out-of-memory error of an evaluation that cannot fit.
  auto oom_message = [](Run& run, const Dataset& ds) {
    try {
      run.tr->evaluate(ds);
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::OutOfMemory);
      return err.message();
    }
    ADD_FAILURE() << "evaluated with no memory";
    return std::string();
  };
  // Nothing fits: the error of batches of 1 goes out, after a note for every halving.
  Run none(0, 5);
  EXPECT_EQ(
      oom_message(none, test_set),
      "evaluating noise/test at --eval-batch-size 1: out of memory: cannot allocate 1 samples "
      "(--eval-batch-size 5 was halved down to 1)");
  EXPECT_EQ(none.seen, (std::vector<int64_t>{5, 2, 1}));
  EXPECT_EQ(none.notes.size(), 2u);
  // A set of one sample that does not fit was not halved: the error says nothing of halving.
  const Dataset one_sample = slice_rows(test_set, 0, 1, "noise/one");
  const std::string one_fails =
      "evaluating noise/one at --eval-batch-size 1: out of memory: cannot allocate 1 samples";
  Run single(0, 1000);
  EXPECT_EQ(oom_message(single, one_sample), one_fails);
  EXPECT_TRUE(single.notes.empty());
  // Nor after an earlier set halved the size from 8 to 2: a later set of one sample that runs
  // out was not halved.
  Run later(2, 8);
  later.tr->evaluate(test_set);  // 8 and 4 run out, 2 fits
  ASSERT_EQ(later.notes.size(), 2u);
  later.oom->set_fits(0);
  EXPECT_EQ(oom_message(later, one_sample), one_fails);
  // Another kind of error is not retried: one try, no note, the batch size kept.
  Run other(3, 8, ErrorKind::Runtime);
  EXPECT_THROW(other.tr->evaluate(test_set), Error);
  EXPECT_EQ(other.seen, std::vector<int64_t>{8});
  EXPECT_TRUE(other.notes.empty());
  other.seen.clear();
  EXPECT_THROW(other.tr->evaluate(test_set), Error);
  EXPECT_EQ(other.seen, std::vector<int64_t>{8});
}

// Memory that runs out for the dataset's size, not the batch's (the label copy, the sample
// order: one entry a sample) is not retried with smaller batches, which would need as much: a
// real allocation failure under an address-space cap, in a child process.
TEST(TrainerCpu, EvaluationOutOfMemoryOfTheWholeSetIsNotRetried) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)  // gcc
  GTEST_SKIP() << "a sanitizer's shadow memory does not run under an address-space cap";
#elif defined(__has_feature)  // clang
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  GTEST_SKIP() << "a sanitizer's shadow memory does not run under an address-space cap";
#endif
#endif
  // 60 s: a cap that does not bite must not hang the suite (OpenBLAS, see README).
  test::expect_child_passes(
      [] {
        // 80 MB of labels to copy, 160 MB of sample order: past the cap's 8 MB, and past
        // glibc's largest mmap threshold (32 MB), so no free heap left by earlier tests can
        // serve them.
        const int64_t n = 20000000;
        Dataset ds;
        ds.name = "big";
        ds.images = Tensor::zeros({n, 1}, Device::CPU);
        ds.labels = std::make_shared<Buffer>(n * sizeof(int32_t), Device::CPU);
        zero_bytes(ds.labels->data(), Device::CPU, ds.labels->bytes());
        ds.num_classes = 3;
        Model m({1});
        m.add(std::make_unique<Linear>(1, 3));
        m.build(Device::CPU, 1);
        SgdTrainer t(m);
        TrainOptions to = t.to;
        to.eval_batch_size = 1024;
        Trainer tr(m, *t.opt, *t.sched, t.ctx, to);
        int notes = 0;
        tr.log = [&notes](const std::string&) { ++notes; };
        if (!test::cap_address_space(8L << 20)) return 20;
        try {
          tr.evaluate(ds);
          return 21;  // it fit after all
        } catch (const Error& e) {
          const bool first_try =
              e.message().find("at --eval-batch-size 1024: ") != std::string::npos;
          return e.kind() != ErrorKind::OutOfMemory ? 22 : notes != 0 ? 23 : first_try ? 0 : 24;
        } catch (...) {
          return 25;
        }
      },
      "20: no cap, 21: evaluated, 22: another error, 23: retried with smaller batches, 24: the "
      "error named another batch size, 25: not a kiln error",
      60);
}

TEST(TrainerCpu, LabelsOutsideTheClassesAndNonVectorOutputsAreRefusedBeforeTraining) {
  // The loss reads logits[label]: a label past the model's classes would read the next row
  // (PyTorch raises "Target 2 is out of bounds"). Checked for every set before the first step.
  const Dataset train = three_class_noise("noise/train"),
                test_set = three_class_noise("noise/test");
  auto fit = [](std::unique_ptr<Model> m, const Dataset& train, const Dataset* test) {
    m->build(Device::CPU, 5);
    SgdTrainer t(*m);
    const std::vector<float> before = m->state_dict()[0].second.to_vector();
    try {
      t.tr->fit(train, test);
    } catch (const Error&) {
      EXPECT_EQ(m->state_dict()[0].second.to_vector(), before) << "trained before refusing";
      throw;
    }
  };
  auto mlp = [](int64_t classes) {
    ModelOptions mo;
    mo.model = "mlp";
    mo.width = 8;
    mo.depth = 1;
    return make_model(mo, {1, 4, 4}, classes);
  };
  EXPECT_NO_THROW(fit(mlp(3), train, &test_set));
  try {
    fit(mlp(2), train, &test_set);
    FAIL() << "labels 0..2 trained a 2-class model";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
    EXPECT_EQ(e.message().substr(0, e.message().find(" (")),
              "noise/train: label 2 of sample 2 is outside the model's 2 classes [0, 2)");
  }
  Dataset bad_test = three_class_noise("noise/test");
  bad_test.host_labels[13] = -1;
  copy_bytes(bad_test.labels->data(), Device::CPU, bad_test.host_labels.data(), Device::CPU,
             16 * sizeof(int32_t));
  try {
    fit(mlp(3), train, &bad_test);
    FAIL() << "a test label of -1 was scored";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("noise/test: label -1 of sample 13 is outside the model's 3 "
                               "classes [0, 3)"),
              std::string::npos)
        << e.message();
  }
  // The loss reads the labels buffer: a host mirror that disagrees with it, a short buffer or
  // none at all are caught there, not by reading past the logits.
  Dataset stale = three_class_noise("noise/stale-mirror");
  static_cast<int32_t*>(stale.labels->data())[5] = 1000000;
  try {
    fit(mlp(3), stale, nullptr);
    FAIL() << "a label of 1000000 in the buffer was trained on";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("label 1000000 of sample 5"), std::string::npos) << e.message();
  }
  Dataset short_buf = three_class_noise("noise/short");
  short_buf.labels = std::make_shared<Buffer>(4 * sizeof(int32_t), Device::CPU);
  try {
    fit(mlp(3), short_buf, nullptr);
    FAIL() << "4 labels for 16 samples";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("noise/short: the labels buffer holds 4 labels for 16 samples"),
              std::string::npos)
        << e.message();
  }
  Dataset unlabelled = three_class_noise("noise/unlabelled");
  unlabelled.labels.reset();
  try {
    fit(mlp(3), unlabelled, nullptr);
    FAIL() << "no labels";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("noise/unlabelled: 16 samples and no labels"), std::string::npos)
        << e.message();
  }
  // Labels without the host copy are read from the labels buffer.
  Dataset no_host = three_class_noise("noise/buffer-only");
  no_host.host_labels.clear();
  try {
    fit(mlp(2), no_host, nullptr);
    FAIL() << "labels 0..2 trained a 2-class model";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("noise/buffer-only: label 2 of sample 2"), std::string::npos)
        << e.message();
  }
  // A model whose output is a feature map, not one score vector per sample.
  auto conv_only = std::make_unique<Model>(Shape{1, 4, 4});
  conv_only->add(std::make_unique<Conv2d>(1, 3, 3));
  try {
    fit(std::move(conv_only), train, nullptr);
    FAIL() << "a [3, 2, 2] output was treated as class scores";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("model output [3, 2, 2] per sample"), std::string::npos)
        << e.message();
  }
}

TEST(TrainerCpu, ResumedRunsStopWhereTheWholeRunDidAndRefuseOtherBatches) {
  std::string dir = ::testing::TempDir() + "kiln_resume_rules_" + std::to_string(getpid());
  std::system(("mkdir -p '" + dir + "'").c_str());
  // --target-acc: the run stops after the epoch that reaches it; resumed from that epoch's
  // checkpoint it trains nothing more (it used to train the next epoch).
  RunConfig c = small_mlp();
  c.data.train_limit = 512;
  c.data.test_limit = 200;
  c.train.epochs = 4;
  c.train.target_acc = 0.5f;
  c.checkpoint_every = 1;
  c.checkpoint_dir = dir;
  c.save = dir + "/whole.safetensors";
  RunResult whole = run_training(c, {});
  ASSERT_LT(whole.epochs.size(), 4u) << "the target was not reached";
  const int last = static_cast<int>(whole.epochs.size());
  RunConfig r = c;
  r.checkpoint_every = 0;
  r.resume = dir + "/ckpt-epoch-" + std::to_string(last) + ".safetensors";
  r.save = dir + "/resumed.safetensors";
  std::vector<std::string> logged;
  RunHooks hooks;
  hooks.log = [&](const std::string& l) { logged.push_back(l); };
  RunResult resumed = run_training(r, hooks);
  EXPECT_TRUE(resumed.epochs.empty());
  EXPECT_EQ(model_tensors(r.save), model_tensors(c.save));
  ASSERT_FALSE(logged.empty());
  EXPECT_NE(logged.back().find("target accuracy 0.5 was reached before epoch " +
                               std::to_string(last + 1)),
            std::string::npos)
      << logged.back();

  // A step checkpoint that falls on an epoch's last batch waits for the epoch's end (a resume
  // would otherwise start an epoch with no batches and lose its last step's statistics).
  RunConfig s = small_mlp();
  s.data.train_limit = 512;  // 16 batches of 32
  s.train.epochs = 1;
  auto sess = make_session(s);
  std::vector<TrainPosition> at;
  sess->trainer->checkpoint_every_steps = 8;
  sess->trainer->on_checkpoint = [&](const TrainPosition& p, const std::string&) {
    at.push_back(p);
  };
  sess->trainer->fit(sess->train, nullptr);
  ASSERT_EQ(at.size(), 2u);
  EXPECT_EQ(at[0].batch, 8);
  EXPECT_EQ(at[1].epoch, 1);
  EXPECT_EQ(at[1].batch, 0);
  EXPECT_EQ(at[1].step, 16);

  // A mid-epoch checkpoint continues only with the batches it was cut from.
  RunConfig m = small_mlp();
  m.data.train_limit = 512;
  m.train.epochs = 1;
  m.checkpoint_every_steps = 5;
  m.checkpoint_dir = dir + "/mid";
  m.save = dir + "/mid-final.safetensors";
  run_training(m, {});
  m.checkpoint_every_steps = 0;
  m.save.clear();
  m.resume = dir + "/mid/ckpt-step-5.safetensors";
  auto refused = [&] {
    try {
      run_training(m, {});
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      return e.message();
    }
    return std::string("(resumed)");
  };
  m.train.batch_size = 64;
  std::string why = refused();  // it would have skipped other samples
  EXPECT_NE(why.find("continues only with the batches it was cut from: --batch-size 32 -> 64"),
            std::string::npos)
      << why;
  // ...and over the training set it was cut from: another --data-dir (here one whose training
  // files are the subset's test files) changes no option the checkpoint compares.
  m.train.batch_size = 32;
  const std::string other = dir + "/other/mnist", sub = test::data_dir() + "/mnist/";
  ASSERT_EQ(std::system(("mkdir -p '" + other + "'").c_str()), 0);
  for (const char* kind : {"images-idx3", "labels-idx1"}) {
    const std::string t10k = sub + "t10k-" + kind + "-ubyte.gz";
    ASSERT_EQ(symlink(t10k.c_str(), (other + "/train-" + kind + "-ubyte.gz").c_str()), 0);
    ASSERT_EQ(symlink(t10k.c_str(), (other + "/t10k-" + kind + "-ubyte.gz").c_str()), 0);
  }
  m.data.data_dir = dir + "/other";
  const std::string was = "512 images, labels crc32 ";
  why = refused();  // it would have gone on over other images
  EXPECT_NE(why.find("continues only with the training set it was cut from: training set " + was),
            std::string::npos)
      << why;
  EXPECT_NE(why.find(" -> 500 images, labels crc32 "), std::string::npos) << why;
  // An epoch checkpoint may go on over other data; the resume line names it.
  m.resume = dir + "/mid-final.safetensors";
  m.train.epochs = 2;
  logged.clear();
  EXPECT_EQ(run_training(m, hooks).epochs.size(), 1u);
  std::string resumed_line;
  for (const auto& l : logged)
    if (l.rfind("resumed from", 0) == 0) resumed_line = l;
  EXPECT_NE(resumed_line.find("options changed since the checkpoint: training set " + was),
            std::string::npos)
      << resumed_line;
  // The recorded values come from the file: a crafted one with a line break and a terminal
  // escape in them stays one escaped line (they were printed raw).
  {
    const std::string crafted = dir + "/crafted.safetensors";
    SafetensorsFile f = read_checkpoint(dir + "/mid-final.safetensors");
    test::set_meta(f, "train_data", "512 images\x1b[2K\ninjected");
    test::set_meta(f, "meta_crc32", test::meta_crc_hex(f.metadata));
    const std::vector<uint8_t> bytes = encode_safetensors(f);
    write_file_atomic(crafted, bytes.data(), bytes.size());
    m.resume = crafted;
    logged.clear();
    run_training(m, hooks);
    resumed_line.clear();
    for (const auto& l : logged)
      if (l.rfind("resumed from", 0) == 0) resumed_line = l;
    EXPECT_NE(resumed_line.find("training set 512 images\\u001b[2K\\ninjected -> 500 images"),
              std::string::npos)
        << resumed_line;
    for (const auto& l : logged)
      for (unsigned char c : l) EXPECT_TRUE(c >= 0x20 && c != 0x7f) << "a raw control in: " << l;
    m.resume = dir + "/mid-final.safetensors";
  }
  // Back on the data it trained on: nothing to say.
  m.data.data_dir = test::data_dir();
  logged.clear();
  run_training(m, hooks);
  for (const auto& l : logged) EXPECT_EQ(l.find("training set"), std::string::npos) << l;
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(StopSignals, NestedScopesKeepASignalThatCameBefore) {
  // The apps hold a StopSignals from their start and each run (a sweep's trial) holds its own:
  // only the outermost clears the flag, so a signal while a trial loads its data, or between
  // trials, is still there when the inner scope's training loop looks.
  StopSignals outer;
  EXPECT_EQ(*StopSignals::flag(), 0);
  std::raise(SIGTERM);  // the handler only records it
  EXPECT_EQ(*StopSignals::flag(), SIGTERM);
  {
    StopSignals inner;
    EXPECT_EQ(*StopSignals::flag(), SIGTERM);
  }
  EXPECT_EQ(*StopSignals::flag(), SIGTERM);
}

TEST(StopSignals, TheLastScopeOutClearsTheFlag) {
  {
    StopSignals scope;
    std::raise(SIGTERM);
    EXPECT_EQ(*StopSignals::flag(), SIGTERM);
  }
  EXPECT_EQ(*StopSignals::flag(), 0) << "a stop pending with no handler of ours in place";
}

TEST(StopSignals, TheSameStopTwiceIsOneAndALaterSecondSignalKills) {
  // GNU timeout sends its signal to the child and then to the child's process group: the two
  // arrive together and must not act as a user's second Ctrl-C, which killed the run before
  // its checkpoint about one time in five (until 2026-12-04). In a child process: a second
  // signal a second later does kill.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    StopSignals scope;
    std::raise(SIGTERM);
    std::raise(SIGTERM);  // the same stop: survived
    std::raise(SIGINT);
    if (*StopSignals::flag() != SIGTERM) _exit(3);
    struct timespec pause = {1, 200000000};
    nanosleep(&pause, nullptr);
    std::raise(SIGINT);  // a user's second Ctrl-C: the default action
    _exit(4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  EXPECT_EQ(WTERMSIG(status), SIGINT);
}

// A SIGINT while a write to a pipe is blocked (its reader has not drained it: `train_mnist |
// slow-reader`) does not fail the write: the handler has SA_RESTART, so stdio's write goes on
// and the text arrives whole; the flag still records the signal.
TEST(StopSignals, ASignalDuringABlockedPipeWriteLosesNothing) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const int cap = fcntl(fds[1], F_GETPIPE_SZ);
  ASSERT_GT(cap, 0);
  std::vector<char> text(static_cast<size_t>(cap) * 4);
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + i % 26);
  std::string got;
  std::atomic<bool> blocked{false};
  StopSignals scope;
  const pthread_t writer = pthread_self();
  std::thread reader([&] {
    while (!blocked) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the writer now waits in write()
    pthread_kill(writer, SIGINT);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    char buf[4096];
    for (ssize_t r; (r = read(fds[0], buf, sizeof buf)) != 0;)
      if (r > 0) got.append(buf, static_cast<size_t>(r));
  });
  FILE* out = fdopen(fds[1], "w");
  ASSERT_NE(out, nullptr);
  setvbuf(out, nullptr, _IONBF, 0);  // one write(2) per fwrite, as stdout's flush makes
  ASSERT_EQ(fwrite(text.data(), 1, static_cast<size_t>(cap), out), static_cast<size_t>(cap));
  blocked = true;  // the pipe is full: the next write blocks before it moves a byte
  const size_t rest = fwrite(text.data() + cap, 1, text.size() - static_cast<size_t>(cap), out);
  const bool failed = ferror(out) != 0;
  fclose(out);
  reader.join();
  close(fds[0]);
  EXPECT_EQ(*StopSignals::flag(), SIGINT);
  EXPECT_FALSE(failed) << std::strerror(errno);
  EXPECT_EQ(rest, text.size() - static_cast<size_t>(cap));
  EXPECT_TRUE(got == std::string(text.begin(), text.end())) << got.size() << " bytes arrived";
}

extern "C" void kiln_test_host_handler(int) {}

TEST(StopSignals, ScopesInThreadsRestoreTheHostsHandlers) {
  // Runs in two threads of an embedding program start and end in any order: the handlers the
  // first scope replaced come back when the last one ends (not when the first one does, and not
  // from a scope that never saved them), and the count of scopes is not torn.
  struct sigaction host, now;
  std::memset(&host, 0, sizeof host);
  host.sa_handler = kiln_test_host_handler;
  sigemptyset(&host.sa_mask);
  struct sigaction saved_int, saved_term;
  ASSERT_EQ(::sigaction(SIGINT, &host, &saved_int), 0);
  ASSERT_EQ(::sigaction(SIGTERM, &host, &saved_term), 0);
  auto first = std::make_unique<StopSignals>();
  auto second = std::make_unique<StopSignals>();
  first.reset();  // not last in, first out
  ::sigaction(SIGINT, nullptr, &now);
  EXPECT_NE(now.sa_handler, kiln_test_host_handler) << "restored while a scope is alive";
  second.reset();
  ::sigaction(SIGINT, nullptr, &now);
  EXPECT_EQ(now.sa_handler, kiln_test_host_handler);
  ::sigaction(SIGTERM, nullptr, &now);
  EXPECT_EQ(now.sa_handler, kiln_test_host_handler);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([] {
      for (int i = 0; i < 2000; ++i) StopSignals scope;
    });
  for (auto& t : threads) t.join();
  ::sigaction(SIGINT, nullptr, &now);
  EXPECT_EQ(now.sa_handler, kiln_test_host_handler) << "after scopes in 4 threads";
  ::sigaction(SIGINT, &saved_int, nullptr);
  ::sigaction(SIGTERM, &saved_term, nullptr);
}

TEST(TrainerCpu, ASignalAtAnEpochBoundaryCheckpointsThatEpochAndTheResumeMatchesBitForBit) {
  // SIGTERM arriving while an epoch ends (here from the on_epoch hook, after the record is
  // written) stops the run with a "signal" checkpoint of the next epoch's start; resumed from
  // it, the run ends with the bits of one never stopped. On the last epoch there is nothing
  // left to stop: the run finishes and saves as usual.
  std::string dir = ::testing::TempDir() + "kiln_epoch_signal_" + std::to_string(getpid());
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  RunConfig c = small_mlp();
  c.data.train_limit = 256;
  c.data.test_limit = 100;
  c.train.epochs = 3;
  c.model.norm = "batch";
  c.model.dropout = 0.2f;  // the masks hash the step: a resume at the wrong step shows
  c.checkpoint_dir = dir;
  c.save = dir + "/whole.safetensors";
  RunResult whole = run_training(c, {});
  ASSERT_EQ(whole.epochs.size(), 3u);

  RunConfig s = c;
  s.save = dir + "/stopped.safetensors";
  int hooked = 0;
  RunHooks hooks;
  hooks.on_epoch = [&](const EpochRecord& r) {
    ++hooked;
    if (r.epoch == 1) std::raise(SIGTERM);  // run_training's StopSignals records it
    return true;
  };
  RunResult stopped = run_training(s, hooks);
  EXPECT_EQ(hooked, 1);
  EXPECT_EQ(stopped.stop_signal, SIGTERM);
  ASSERT_EQ(stopped.epochs.size(), 1u);
  EXPECT_EQ(stopped.epochs[0].train_loss, whole.epochs[0].train_loss);
  EXPECT_EQ(stopped.last_checkpoint, dir + "/ckpt-epoch-1.safetensors");
  EXPECT_FALSE(std::ifstream(s.save).good()) << "a stopped run wrote its --save";
  const TrainPosition at =
      checkpoint_position(read_checkpoint(stopped.last_checkpoint), stopped.last_checkpoint);
  EXPECT_EQ(at.epoch, 1);
  EXPECT_EQ(at.batch, 0);
  EXPECT_EQ(at.step, 8);  // 256 / 32

  RunConfig r = c;
  r.resume = stopped.last_checkpoint;
  r.save = dir + "/resumed.safetensors";
  RunResult resumed = run_training(r, {});
  ASSERT_EQ(resumed.epochs.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    EXPECT_EQ(resumed.epochs[e].epoch, whole.epochs[e + 1].epoch);
    EXPECT_EQ(resumed.epochs[e].step, whole.epochs[e + 1].step);
    EXPECT_EQ(resumed.epochs[e].train_loss, whole.epochs[e + 1].train_loss) << e;
    EXPECT_EQ(resumed.epochs[e].test_loss, whole.epochs[e + 1].test_loss) << e;
  }
  EXPECT_EQ(resumed.test_loss, whole.test_loss);
  EXPECT_EQ(model_tensors(r.save), model_tensors(c.save));

  // At the end of the last epoch a signal finds nothing left to do: the run completes.
  RunConfig l = c;
  l.save = dir + "/last.safetensors";
  hooks.on_epoch = [&](const EpochRecord& rec) {
    if (rec.epoch == 3) std::raise(SIGINT);
    return true;
  };
  RunResult last = run_training(l, hooks);
  EXPECT_EQ(last.stop_signal, 0);
  ASSERT_EQ(last.epochs.size(), 3u);
  EXPECT_EQ(model_tensors(l.save), model_tensors(c.save));
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(TrainerCpu, NonFiniteValidationLossDiverges) {
  // As the test loss above: one SGD step at lr 1e20 leaves weights whose forward pass
  // overflows; the validation split, scored first, names it (also with the bound off).
  for (float max_loss : {0.0f, -1.0f}) {
    RunConfig c = small_mlp();
    c.data.train_limit = 40;
    c.data.val_split = 0.2;  // 32 rows train (one step), 8 validate
    c.data.test_limit = 100;
    c.optim.lr = 1e20f;
    c.optim.momentum = 0;
    c.sched.name = "constant";
    c.train.epochs = 1;
    c.train.max_loss = max_loss;
    try {
      run_training(c, {});
      FAIL() << "expected divergence (max_loss " << max_loss << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Diverged);
      EXPECT_NE(e.message().find("training diverged: validation loss nan in epoch 1 (step 1)"),
                std::string::npos)
          << e.message();
    }
  }
}

// Library use the apps never make (an embedding review): an empty held-out set, the loss before
// any step, a refused fit's log, positions a caller builds.
TEST(TrainerCpu, EmbeddersEdgeCasesAreAnswersNotCrashes) {
  RunConfig c = small_mlp();
  c.data.train_limit = 64;
  c.data.test_limit = 32;
  c.train.epochs = 1;
  c.train.log_path = test::temp_file("embed_log.jsonl");
  auto s = make_session(c);
  Trainer& tr = *s->trainer;
  EXPECT_TRUE(std::isnan(tr.last_loss()));  // no step yet (it read 4 bytes at null)
  const Dataset none = slice_rows(s->test, 0, 0, "none");
  const EvalResult e = tr.evaluate(none);
  EXPECT_EQ(e.count, 0);
  EXPECT_TRUE(std::isnan(e.loss) && std::isnan(e.acc));
  // An empty held-out set trains and scores nothing (it trained an epoch, then threw).
  std::vector<EpochRecord> rs = tr.fit(s->train, &none);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_TRUE(std::isnan(rs[0].test_acc));
  EXPECT_TRUE(std::isfinite(tr.last_loss()));
  const auto log_lines = [&] {
    std::ifstream in(c.train.log_path);
    return std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n');
  };
  ASSERT_EQ(log_lines(), 1);
  // A fit refused before its first step leaves the log it would have replaced (it was
  // truncated): a test set of another shape, positions no run reaches.
  Dataset other = s->test;
  other.images = other.images.reshape({32, 1, 784, 1});
  EXPECT_THROW(tr.fit(s->train, &other), Error);
  for (const auto& [epoch, batch, step] :
       {std::tuple<int, int64_t, long long>{-5, 0, 0},
        {0, -1, 0},
        {0, 2, 1},
        {0, 3, 3},
        {0, 0, std::numeric_limits<long long>::max()}}) {  // (the step count overflowed)
    TrainPosition p;
    p.epoch = epoch, p.batch = batch, p.step = step;  // 64 images in batches of 32: 2 a epoch
    try {
      tr.fit(s->train, &s->test, p);
      ADD_FAILURE() << "position " << epoch << " " << batch << " " << step;
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::Usage);
      EXPECT_NE(err.message().find("fit: position "), std::string::npos) << err.message();
    }
  }
  EXPECT_EQ(log_lines(), 1);
  TrainPosition mid;  // a real mid-epoch position still trains
  mid.batch = 1, mid.step = 1;
  EXPECT_EQ(tr.fit(s->train, &s->test, mid).size(), 1u);
  // Per-epoch step counts that do not add up to the position are not used (their sum
  // overflowed): the run trains, as from a position without them.
  TrainPosition odd;
  odd.epoch = 2, odd.step = 4;
  odd.epoch_steps = {std::numeric_limits<long long>::max(), std::numeric_limits<long long>::max()};
  c.train.epochs = 3;
  auto s3 = make_session(c);
  EXPECT_EQ(s3->trainer->fit(s3->train, &s3->test, odd).size(), 1u);
  // ... and so does an epoch whose batches are all done (older checkpoints' step checkpoint
  // on an epoch's last batch): the epoch is finished, not refused
  TrainPosition done;
  done.batch = 2, done.step = 2;
  done.train_sums[0] = 64 * 2.0, done.train_sums[1] = 20, done.train_sums[2] = 64;  // its sums
  const std::vector<EpochRecord> finished = tr.fit(s->train, &s->test, done);
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_DOUBLE_EQ(finished[0].train_loss, 2.0);
  std::remove(c.train.log_path.c_str());
}

// A library caller's per-epoch step counts that add up to the position's step only with a
// negative entry, or only once their sum wraps, are no record: fit drops them and trains as from a
// position without them. Kept (until 2026-12-07), they went into the run's checkpoints, which
// then failed to load ("epoch_steps: expected whole step counts").
TEST(TrainerCpu, ACallersEpochStepsThatDoNotCountTheStepsAreDroppedAndItsCheckpointsLoad) {
  constexpr long long kMax = std::numeric_limits<long long>::max();
  for (const auto& [epoch, steps] :
       {std::pair<int, std::vector<long long>>{2, {5, -1}},  // 5 - 1 = 4
        {3, {kMax, kMax, 6}}}) {                             // wraps to 4
    SCOPED_TRACE("epoch " + std::to_string(epoch) + ", " + std::to_string(steps[0]) + ", ...");
    RunConfig c = small_mlp();
    c.data.train_limit = 64;  // 2 batches of 32 an epoch
    c.data.test_limit = 32;
    c.train.epochs = epoch + 1;
    auto s = make_session(c);
    TrainPosition from;
    from.epoch = epoch, from.step = 4, from.epoch_steps = steps;
    std::vector<std::pair<TrainPosition, std::vector<uint8_t>>> written;
    s->trainer->checkpoint_every_steps = 1;
    s->trainer->on_checkpoint = [&](const TrainPosition& p, const std::string&) {
      CheckpointInfo info;
      info.pos = p;
      written.emplace_back(
          p, encode_checkpoint(*s->ctx, *s->model, s->opt.get(), s->sched.get(), info));
    };
    EXPECT_EQ(s->trainer->fit(s->train, &s->test, from).size(), 1u);
    EXPECT_EQ(s->trainer->position().epoch_steps, std::vector<long long>{});
    ASSERT_FALSE(written.empty());
    auto back = make_session(c);
    for (const auto& [p, bytes] : written) {
      EXPECT_EQ(p.epoch_steps, std::vector<long long>{}) << "at step " << p.step;
      try {
        const CheckpointInfo got =
            load_checkpoint_bytes(bytes, "step " + std::to_string(p.step), *back->ctx, *back->model,
                                  back->opt.get(), back->sched.get());
        EXPECT_EQ(got.pos.step, p.step);
        EXPECT_EQ(got.pos.epoch_steps, std::vector<long long>{});
      } catch (const Error& e) {
        ADD_FAILURE() << e.message();
      }
    }
  }
}

TEST(TrainerCpu, OptionsALibraryCallerSetsAreCheckedAsTheFlags) {
  // Infinite values the apps' float options refuse: from code they made the lr NaN, then a
  // "diverged" error blamed --lr.
  for (auto set : std::vector<std::function<void(ScheduleOptions&)>>{
           [](ScheduleOptions& o) { o.name = "cosine", o.eta_min = INFINITY; },
           [](ScheduleOptions& o) { o.name = "exponential", o.gamma = INFINITY; },
           [](ScheduleOptions& o) { o.name = "plateau", o.threshold = INFINITY; },
           [](ScheduleOptions& o) { o.name = "one-cycle", o.max_lr = INFINITY; }}) {
    ScheduleOptions o;
    set(o);
    EXPECT_THROW(o.validate(), Error) << o.name;
  }
  for (auto set : std::vector<std::function<void(OptimOptions&)>>{
           [](OptimOptions& o) { o.clipnorm = INFINITY; },
           [](OptimOptions& o) { o.global_clipnorm = NAN; },
           [](OptimOptions& o) { o.clipvalue = INFINITY; }}) {
    OptimOptions o;
    set(o);
    EXPECT_THROW(o.validate(), Error);
  }
  for (auto set : std::vector<std::function<void(TrainOptions&)>>{
           [](TrainOptions& o) { o.max_loss = NAN; }, [](TrainOptions& o) { o.progress = 2; },
           [](TrainOptions& o) { o.step_limit = -1; }}) {
    TrainOptions o;
    set(o);
    EXPECT_THROW(o.validate(), Error);
  }
  EXPECT_THROW(BatchNorm(4, false, 0.1, -1.0), Error);
  EXPECT_THROW(BatchNorm(4, false, 5.0, 1e-5), Error);
  EXPECT_THROW(GroupNorm(2, 4, NAN), Error);
  Model m({4});
  EXPECT_THROW(m.add(nullptr), Error);
}

// The momentum range is checked where the momentum cycles; elsewhere the two options are
// ignored, with a note (refused before, naming a default --base-momentum never given).
TEST(TrainerCpu, MomentumRangeIsCheckedWhereTheMomentumCycles) {
  ScheduleOptions o;
  o.name = "one-cycle";
  o.max_momentum = 0.5f;
  try {
    o.validate();
    ADD_FAILURE() << "one-cycle cycling 0.85 -> 0.5";
  } catch (const Error& e) {
    EXPECT_NE(
        e.message().find("--base-momentum 0.85 (its default) / --max-momentum 0.5: the range"),
        std::string::npos)
        << e.message();
  }
  o.cycle_momentum = false;
  EXPECT_NO_THROW(o.validate());
  o.cycle_momentum = true;
  o.name = "constant";
  EXPECT_NO_THROW(o.validate());
  o.name = "cyclic";  // CyclicLR's base default is 0.8: still above 0.5
  EXPECT_THROW(o.validate(), Error);
}

// A sweep trial runs from its start, its JSONL too: a trial continuing a checkpoint (resume: in
// the sweep's base) appended to the records of its stopped attempt, as train_mnist --resume
// appends (epochs 2 2 3; the sweep harness, 2026-12-07).
TEST(TrainerCpu, ASweepTrialContinuingACheckpointLogsOnlyItsOwnEpochs) {
  RunConfig c = small_mlp();
  c.train.epochs = 1;
  c.save = test::temp_file("trial_base.safetensors");
  run_training(c, {});
  RunConfig t = c;
  t.save.clear();
  t.resume = c.save;
  t.train.epochs = 3;
  t.train.log_path = test::temp_file("trial-0.jsonl");
  {
    std::ofstream stopped(t.train.log_path);  // the stopped attempt's first epoch
    stopped << "{\"type\":\"epoch\",\"epoch\":2}\n";
  }
  const TrialRun run =
      default_trial_runner(std::nullopt, nullptr)(t, [](const EpochRecord&) { return true; });
  ASSERT_EQ(run.epochs.size(), 2u);
  std::ifstream in(t.train.log_path);
  std::vector<int> epochs;
  for (std::string line; std::getline(in, line);)
    if (line.find("\"type\":\"epoch\"") != std::string::npos)
      epochs.push_back(static_cast<int>(parse_json(line).find("epoch")->number));
  EXPECT_EQ(epochs, (std::vector<int>{2, 3}));
  for (const std::string& f :
       {c.save, t.train.log_path, t.train.log_path.substr(0, t.train.log_path.size() - 6) + ".log"})
    std::remove(f.c_str());
}
