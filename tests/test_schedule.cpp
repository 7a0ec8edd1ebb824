// LR schedules: each sequence against its formula written out by hand (PyTorch/Keras
// semantics), momentum cycling, plateau patience/cooldown, manual file re-read, warm-up
// composition; batch-size schedules and linear LR scaling.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>

#include "engine/error.h"
#include "optim/batch_schedule.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "tests/test_util.h"

using namespace kiln;

namespace {

std::unique_ptr<Schedule> sched(ScheduleOptions o, float lr0 = 0.1f, long long spe = 10, int epochs = 10) {
  return make_schedule(o, lr0, spe, epochs);
}
ScheduleOptions named(const std::string& n) {
  ScheduleOptions o;
  o.name = n;
  return o;
}
// lr at epochs 0.. (step = epoch * 10, i.e. the first step of the epoch).
void expect_epochs(Schedule& s, const std::vector<double>& want) {
  for (size_t e = 0; e < want.size(); ++e)
    EXPECT_NEAR(s.lr(static_cast<int>(e), 10 * static_cast<long long>(e)), want[e], 1e-6) << "epoch " << e;
}
void expect_steps(Schedule& s, const std::vector<std::pair<long long, double>>& want, bool momentum = false) {
  for (auto [t, v] : want) {
    float got = momentum ? s.momentum(0, t) : s.lr(0, t);
    EXPECT_NEAR(got, v, 1e-6 * std::max(1.0, std::fabs(v))) << (momentum ? "momentum" : "lr") << " at step " << t;
  }
}

}  // namespace

TEST(Schedule, ConstantStepMultistepExponential) {
  auto c = sched(named("constant"));
  expect_epochs(*c, {0.1, 0.1, 0.1});
  EXPECT_FALSE(c->per_step());
  EXPECT_LT(c->momentum(0, 0), 0.0f);
  ScheduleOptions o = named("step");  // 0.1 * 0.5^floor(e/3)
  o.gamma = 0.5f;
  o.step_size = 3;
  expect_epochs(*sched(o), {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025});
  o = named("multistep");  // 0.1 * 0.1^(#milestones <= e), milestones {2, 5}
  o.milestones = {2, 5};
  expect_epochs(*sched(o), {0.1, 0.1, 0.01, 0.01, 0.01, 0.001});
  o.milestones.clear();  // torch's MultiStepLR requires them: not a constant lr by another name
  EXPECT_THROW(o.validate(), Error);
  o = named("exponential");  // 0.1 * 0.95^e: 0.1, 0.095, 0.09025, 0.0857375
  o.gamma = 0.95f;
  expect_epochs(*sched(o), {0.1, 0.095, 0.09025, 0.0857375});
}

TEST(Schedule, InverseTimeAndInverseSqrt) {
  ScheduleOptions o = named("inverse-time");  // 0.1/(1 + 0.5e): 0.1, 0.0666667, 0.05, 0.04
  o.decay = 0.5f;
  expect_epochs(*sched(o), {0.1, 0.1 / 1.5, 0.05, 0.04});
  o = named("inverse-sqrt-epoch");  // k/sqrt(e+1)*lr0 with k 2: 0.2, 0.1414214, 0.1154701, 0.1
  o.k = 2.0f;
  auto s = sched(o);
  expect_epochs(*s, {0.2, 0.1414214, 0.1154701, 0.1});
  EXPECT_FALSE(s->per_step());
  o = named("inverse-sqrt-step");  // k/sqrt(t+1)*lr0 by mini-batch: t 0 -> 0.1, 3 -> 0.05, 15 -> 0.025
  s = sched(o);
  EXPECT_TRUE(s->per_step());
  expect_steps(*s, {{0, 0.1}, {3, 0.05}, {15, 0.025}});
  // Per step, as Keras's legacy SGD(decay=d) and ExponentialDecay(decay_steps=1):
  // 0.1/(1 + 0.5t) at t 0, 1, 3 and 0.1 * 0.9^t at t 0, 1, 10.
  o = named("inverse-time-step");
  o.decay = 0.5f;
  s = sched(o);
  EXPECT_TRUE(s->per_step());
  expect_steps(*s, {{0, 0.1}, {1, 0.1 / 1.5}, {3, 0.04}});
  EXPECT_FALSE(sched(named("inverse-time"))->per_step());
  o = named("exponential-step");
  o.gamma = 0.9f;
  s = sched(o);
  EXPECT_TRUE(s->per_step());
  expect_steps(*s, {{0, 0.1}, {1, 0.09}, {10, 0.1 * std::pow(0.9, 10)}});
}

TEST(Schedule, CosineAndWarmRestarts) {
  ScheduleOptions o = named("cosine");  // 0.01 + 0.09*(1 + cos(pi e/4))/2
  o.t_max = 4;
  o.eta_min = 0.01f;
  expect_epochs(*sched(o), {0.1, 0.0868198, 0.055, 0.0231802, 0.01});
  o.t_max = 0;  // the run's epochs (10): e5 is the midpoint 0.055
  EXPECT_NEAR(sched(o)->lr(5, 0), 0.055, 1e-6);
  o = named("cosine-restarts");  // T0 2, t_mult 2: periods [0,2) [2,6) [6,14)
  o.t_max = 2;
  o.t_mult = 2;
  // e1: 0.1*(1+cos(pi/2))/2 = 0.05; e3: T_cur 1 of 4: 0.0853553; e5: T_cur 3 of 4: 0.0146447
  expect_epochs(*sched(o), {0.1, 0.05, 0.1, 0.0853553, 0.05, 0.0146447, 0.1});
}

TEST(Schedule, CyclicTriangularModesAndMomentum) {
  ScheduleOptions o = named("cyclic");
  o.base_lr = 0.1f;
  o.max_lr = 1.0f;
  o.step_size_up = 4;
  auto s = sched(o);
  EXPECT_TRUE(s->per_step());
  // triangular: up 0.1 -> 1.0 over 4 steps, down over 4: t2 = 0.1 + 0.9*0.5 = 0.55
  expect_steps(*s, {{0, 0.1}, {2, 0.55}, {4, 1.0}, {6, 0.55}, {8, 0.1}, {12, 1.0}});
  // momentum cycles inversely between CyclicLR's defaults 0.9 and 0.8: 0.9 - 0.1*scale
  expect_steps(*s, {{0, 0.9}, {2, 0.85}, {4, 0.8}, {8, 0.9}}, true);
  o.cyclic_mode = "triangular2";  // amplitude halves each cycle: peaks 1.0, 0.55, 0.325
  s = sched(o);
  expect_steps(*s, {{4, 1.0}, {12, 0.55}, {14, 0.325}, {20, 0.325}, {16, 0.1}});
  o.cyclic_mode = "exp_range";  // amplitude * gamma^t: t2 = 0.1 + 0.9*0.5*0.81 = 0.4645
  o.gamma = 0.9f;
  expect_steps(*sched(o), {{2, 0.4645}, {4, 0.1 + 0.9 * 0.6561}});
  o.gamma = NAN;  // exp_range's default gamma is CyclicLR's 1.0: the triangular cycle
  expect_steps(*sched(o), {{2, 0.55}, {4, 1.0}, {12, 1.0}});
  o = named("cyclic");  // defaults: base = lr, max = 10*lr, half cycle = 2 epochs (20 steps)
  o.cycle_momentum = false;
  s = sched(o);
  expect_steps(*s, {{0, 0.1}, {20, 1.0}, {40, 0.1}});
  EXPECT_LT(s->momentum(0, 5), 0.0f);
  // the other schedules keep gamma 0.1 (StepLR's default) and one-cycle's momenta 0.85/0.95
  EXPECT_FLOAT_EQ(named("step").resolved().gamma, 0.1f);
  EXPECT_FLOAT_EQ(named("one-cycle").resolved().base_momentum, 0.85f);
  EXPECT_FLOAT_EQ(named("one-cycle").resolved().max_momentum, 0.95f);
  o = named("cyclic");
  o.max_momentum = 0.7f;  // given below the default base: the range check sees the defaults filled
  EXPECT_THROW(o.validate(), Error);
}

TEST(Schedule, OneCycleFirstPeakLastAndMomentum) {
  // max 1, 2 epochs x 50 steps = 100; initial 1/25 = 0.04, final 0.04/1e4 = 4e-6; the peak is at
  // step 0.3*100 - 1 = 29. Mid phase 2 (step 64, pct 0.5): (1 + 4e-6)/2, momentum 0.9.
  ScheduleOptions o = named("one-cycle");
  o.max_lr = 1.0f;
  auto s = sched(o, 0.1f, 50, 2);
  EXPECT_TRUE(s->per_step());
  expect_steps(*s, {{0, 0.04}, {29, 1.0}, {64, 0.500002}, {99, 4e-6}});
  // inside phase 1 (step 14, pct 14/29): cos anneal from 0.04 to 1
  double p = 14.0 / 29.0;
  expect_steps(*s, {{14, 1.0 + (0.04 - 1.0) / 2 * (1 + std::cos(3.14159265358979323846 * p))}});
  expect_steps(*s, {{0, 0.95}, {29, 0.85}, {64, 0.9}, {99, 0.95}}, true);
  o.max_lr = 0;  // max_lr defaults to the optimizer's lr
  EXPECT_NEAR(sched(o, 0.1f, 50, 2)->lr(0, 29), 0.1, 1e-7);
}

TEST(Schedule, OneCycleWhosePhaseOneHasAtMostOneStep) {
  // pct_start * total <= 1: torch's phase 1 ends at step pct_start * total - 1 <= 0. At exactly
  // 0 (0.25 * 4) the one step of phase 1 is its end, the peak (torch divides 0 by 0 there), and
  // phase 2 anneals over steps 1..3 to the final lr. Below 0 (0.2 * 4 - 1 = -0.2) no step is in
  // phase 1: step t is at pct (t + 0.2) / 3.2 of phase 2, as torch computes it. Momentum, with
  // the lr's phases, starts at base_momentum or past it.
  const double pi = 3.14159265358979323846;
  auto cos_anneal = [&](double a, double b, double p) {
    return b + (a - b) / 2 * (1 + std::cos(pi * p));
  };
  ScheduleOptions o = named("one-cycle");
  o.max_lr = 1.0f;
  o.pct_start = 0.25f;
  auto s = sched(o, 0.1f, 4, 1);
  const double fin = 0.04 / 1e4;
  expect_steps(
      *s, {{0, 1.0}, {1, cos_anneal(1, fin, 1.0 / 3)}, {2, cos_anneal(1, fin, 2.0 / 3)}, {3, fin}});
  expect_steps(*s, {{0, 0.85}, {3, 0.95}}, true);
  o.pct_start = 0.2f;
  s = sched(o, 0.1f, 4, 1);
  const double end1 = double(0.2f) * 4 - 1;
  for (long long t = 0; t < 4; ++t) {
    expect_steps(*s, {{t, cos_anneal(1, fin, (t - end1) / (3 - end1))}});
    expect_steps(*s, {{t, cos_anneal(0.85, 0.95, (t - end1) / (3 - end1))}}, true);
  }
  EXPECT_LT(s->lr(0, 0), 1.0f);
  EXPECT_GT(s->lr(0, 0), 0.99f);
}

// --warmup-epochs counts its steps at once: a loop over the epochs took 0.6 s (50 s under the
// asan preset, deaf to SIGTERM) for --warmup-epochs 2147483647, before the first step, also in
// lr_find, which never warms up. Past the run, each epoch counts the last epoch's steps.
TEST(Schedule, HugeWarmupEpochsAreCountedAtOnce) {
  ScheduleOptions o = named("constant");
  o.warmup_epochs = std::numeric_limits<int>::max();
  const auto t0 = std::chrono::steady_clock::now();
  auto s = make_schedule(o, 1.0f, std::vector<long long>{2, 4, 4});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.1);
  const double w = 2.0 + 4.0 * (std::numeric_limits<int>::max() - 1.0);  // 2 + 4 + 4 + ...
  EXPECT_FLOAT_EQ(s->lr(0, 0), static_cast<float>(1.0 / w));
  EXPECT_FLOAT_EQ(s->lr(2, 9), static_cast<float>(10.0 / w));
  o.warmup_epochs = 4;  // one epoch past the run: 2 + 4 + 4 + 4 steps
  s = make_schedule(o, 1.0f, std::vector<long long>{2, 4, 4});
  expect_steps(*s, {{0, 1.0 / 14}, {13, 1.0}});
}

TEST(Schedule, PerEpochStepCountsSizeOneCycleWarmupAndCyclic) {
  // A batch-size schedule gives epochs of different lengths: here 2, 4 and 4 steps. One-cycle
  // spans all 10 (its last step 9 reaches the final lr), warm-up epochs count the steps of
  // those epochs (1 epoch: 2 steps), and the cyclic default half cycle is 2 x the first epoch's.
  ScheduleOptions o = named("one-cycle");
  o.max_lr = 1.0f;
  auto s = make_schedule(o, 0.1f, std::vector<long long>{2, 4, 4});
  expect_steps(*s, {{0, 0.04}, {2, 1.0}, {9, 4e-6}});  // peak at 0.3 * 10 - 1
  o = named("constant");
  o.warmup_epochs = 1;
  s = make_schedule(o, 1.0f, std::vector<long long>{2, 4, 4});
  expect_steps(*s, {{0, 0.5}, {1, 1.0}, {2, 1.0}});
  o.warmup_epochs = 2;
  s = make_schedule(o, 1.0f, std::vector<long long>{2, 4, 4});
  expect_steps(*s, {{0, 1.0 / 6}, {5, 1.0}});
  o = named("cyclic");
  o.base_lr = 0.1f;
  o.max_lr = 0.5f;
  s = make_schedule(o, 0.1f, std::vector<long long>{2, 4, 4});
  expect_steps(*s, {{0, 0.1}, {4, 0.5}, {8, 0.1}});
  o.step_size_up_epochs = 3;  // a half cycle of 3 epochs of 10 steps: 30 up, 30 down
  s = make_schedule(o, 0.1f, 10, 6);
  expect_steps(*s, {{0, 0.1}, {30, 0.5}, {60, 0.1}});
  o.step_size_up = 4;  // both: refused
  EXPECT_THROW(o.validate(), Error);
  o.step_size_up_epochs = 0;
  o.step_size_up = 0;
  EXPECT_THROW(o.validate(), Error);
  // the (steps, epochs) form is the vector of equal counts
  o = named("one-cycle");
  auto a = make_schedule(o, 0.1f, 7, 3),
       b = make_schedule(o, 0.1f, std::vector<long long>{7, 7, 7});
  for (long long t = 0; t < 21; ++t) EXPECT_EQ(a->lr(0, t), b->lr(0, t)) << t;
}

// The plateau state a checkpoint carries: counts past 2^30 are refused (bad_ is incremented, and
// INT_MAX wrapped); the text is echoed escaped.
TEST(Schedule, PlateauStateCountsAreBounded) {
  ScheduleOptions o = named("plateau");
  auto s = sched(o, 1.0f);
  const std::string good = s->state();
  ASSERT_EQ(good.rfind("plateau ", 0), 0u) << good;
  s->set_state(good);
  for (const std::string& bad :
       {std::string("plateau 0.5 1 2147483647 0"), std::string("plateau 0.5 1 0 1073741825"),
        std::string("plateau 0.5 1 0 x\n\x1b[2J"), std::string("plateau 0.5 1 0 0 mode"),
        std::string("plateau 0.5 1 0 0 min x")}) {
    try {
      s->set_state(bad);
      ADD_FAILURE() << bad << " was taken";
    } catch (const Error& e) {
      EXPECT_EQ(e.message().find('\n'), std::string::npos) << e.message();
      EXPECT_NE(e.message().find("is not readable"), std::string::npos) << e.message();
    }
  }
  s->set_state("plateau 0.5 1 1073741824 0");  // 2^30 itself is a count
}

TEST(Schedule, PlateauResumedInTheOtherModeStartsItsBestOver) {
  // A best loss of 2.3 is no best accuracy: resumed with --plateau-mode max, an accuracy of 0.9
  // (below 2.3) counted as a bad epoch and patience 0 cut the lr (until 2026-12-07). The state
  // names its mode; one without (older checkpoints) keeps its best.
  ScheduleOptions o = named("plateau");
  o.patience = 0;
  o.factor = 0.5f;
  auto s = sched(o, 1.0f);
  s->on_epoch_end(0, 2.3);
  const std::string st = s->state();
  ASSERT_EQ(st.substr(st.size() - 4), " min") << st;
  o.mode = "max";
  auto t = sched(o, 1.0f);
  t->set_state(st);
  t->on_epoch_end(1, 0.9);
  EXPECT_EQ(t->lr(2, 0), 1.0f);
  t = sched(o, 1.0f);
  t->set_state(st.substr(0, st.size() - 4));  // an older state: its best stands
  t->on_epoch_end(1, 0.9);
  EXPECT_EQ(t->lr(2, 0), 0.5f);
  o.mode = "min";  // the same mode keeps it too: 2.4 is no better than 2.3
  t = sched(o, 1.0f);
  t->set_state(st);
  t->on_epoch_end(1, 2.4);
  EXPECT_EQ(t->lr(2, 0), 0.5f);
}

TEST(Schedule, PlateauPatienceCooldownMinLr) {
  // factor 0.5, patience 2: a 4th epoch without improvement reduces; cooldown 1 skips counting
  // the epoch after a reduction, so the next reduction comes one epoch later.
  for (int cooldown : {0, 1}) {
    ScheduleOptions o = named("plateau");
    o.factor = 0.5f;
    o.patience = 2;
    o.cooldown = cooldown;
    auto s = sched(o, 1.0f);
    std::vector<float> lrs;
    for (int e = 0; e < 9; ++e) {
      s->on_epoch_end(e, e == 8 ? 0.5f : 1.0f);
      lrs.push_back(s->lr(e + 1, 0));
    }
    std::vector<float> want = cooldown ? std::vector<float>{1, 1, 1, 0.5f, 0.5f, 0.5f, 0.5f, 0.25f, 0.25f}
                                       : std::vector<float>{1, 1, 1, 0.5f, 0.5f, 0.5f, 0.25f, 0.25f, 0.25f};
    EXPECT_EQ(lrs, want) << "cooldown " << cooldown;
  }
  ScheduleOptions o = named("plateau");  // min_lr floor; mode max: rising accuracy is better
  o.factor = 0.5f;
  o.patience = 0;
  o.min_lr = 0.3f;
  auto s = sched(o, 1.0f);
  for (int e = 0; e < 4; ++e) s->on_epoch_end(e, 1.0f);  // e0 sets best, e1.. each reduce
  EXPECT_NEAR(s->lr(4, 0), 0.3f, 1e-7);
  o.mode = "max";
  s = sched(o, 1.0f);
  for (int e = 0; e < 4; ++e) s->on_epoch_end(e, 0.5f + 0.1f * e);
  EXPECT_EQ(s->lr(4, 0), 1.0f);
  // threshold 0.15 on a rising accuracy 0.5, 0.6, 0.7: relative (0.5 * 1.15 = 0.575) both
  // epochs improve; absolute (0.5 + 0.15 = 0.65) epoch 2 does not, and patience 0 halves the lr.
  o.min_lr = 0;
  o.threshold = 0.15f;
  for (const char* mode : {"rel", "abs"}) {
    o.threshold_mode = mode;
    s = sched(o, 1.0f);
    s->on_epoch_end(0, 0.5f);
    s->on_epoch_end(1, 0.6f);
    EXPECT_EQ(s->lr(2, 0), std::string(mode) == "rel" ? 1.0f : 0.5f) << mode;
  }
  o.mode = "min";  // abs in mode min: a loss must drop by more than 0.15
  s = sched(o, 1.0f);
  s->on_epoch_end(0, 1.0f);
  s->on_epoch_end(1, 0.9f);
  EXPECT_EQ(s->lr(2, 0), 0.5f);
  o.threshold_mode = "absolute";
  EXPECT_THROW(o.validate(), Error);
}

TEST(Schedule, RescaledLrReachesPlateausStateOnlyAndKeepsMinLr) {
  // A resume with another --lr scales the lr plateau's state holds (its cuts carry over), also
  // behind a warm-up; the closed-form schedules hold none (they follow --lr itself).
  ScheduleOptions o = named("plateau");
  o.factor = 0.5f;
  o.patience = 0;
  o.min_lr = 0.05f;
  auto s = sched(o, 1.0f);
  for (int e = 0; e < 3; ++e) s->on_epoch_end(e, 1.0);  // e1, e2 cut: 0.25
  ASSERT_EQ(s->lr(3, 0), 0.25f);
  const std::string st = s->state();
  auto t = sched(o, 2.0f);
  t->set_state(st);
  EXPECT_EQ(t->rescale_lr(2.0), 0.5);
  EXPECT_EQ(t->lr(3, 0), 0.5f);
  t->set_state(st);
  EXPECT_EQ(t->rescale_lr(0.1), 0.05f);  // 0.025 is under min_lr
  o.warmup_steps = 10;
  t = sched(o, 1.0f);
  t->set_state(st);
  EXPECT_EQ(t->rescale_lr(2.0), 0.5);
  EXPECT_EQ(t->lr(3, 100), 0.5f);
  for (const char* name : {"constant", "step", "cosine"}) {
    auto c = sched(named(name), 1.0f);
    EXPECT_LT(c->rescale_lr(2.0), 0.0) << name;
    EXPECT_EQ(c->lr(0, 0), 1.0f) << name;
  }
}

TEST(Schedule, PlateauComparesInDoubleAsTorch) {
  // torch (doubles): an accuracy going 0.2 -> 0.3 is no gain of more than abs 0.1, nor
  // 0.5 -> 0.55 of more than rel 0.1, so patience 0 halves the lr. In float both counted as
  // gains (0.3f = 0.30000001 > 0.2f + 0.1f; 0.55f > 0.5 * 1.1f), and the lr stayed.
  for (const auto& [mode, a, b] : {std::tuple<const char*, double, double>{"abs", 0.2, 0.3},
                                   std::tuple<const char*, double, double>{"rel", 0.5, 0.55}}) {
    ScheduleOptions o = named("plateau");
    o.mode = "max";
    o.factor = 0.5f;
    o.patience = 0;
    o.threshold = 0.1;
    o.threshold_mode = mode;
    auto s = sched(o, 1.0f);
    s->on_epoch_end(0, a);
    s->on_epoch_end(1, b);
    EXPECT_EQ(s->lr(2, 0), 0.5f) << mode;
    s->on_epoch_end(2, b + 0.2);  // a real gain keeps it
    EXPECT_EQ(s->lr(3, 0), 0.5f) << mode;
  }
}

// A pipe (--schedule-file <(printf ...)) gives its lines once and is not read again: the re-read
// found it drained and warned "no 'epoch lr' line" after every epoch (until 2026-12-07).
TEST(Schedule, ManualFileFromAPipeIsReadOnce) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string text = "0 0.1\n2 0.02\n";
  ASSERT_EQ(write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fds[1]);
  ScheduleOptions o = named("manual");
  o.file = "/dev/fd/" + std::to_string(fds[0]);
  auto s = sched(o, 0.5f);
  for (int e = 0; e < 4; ++e) {
    EXPECT_NEAR(s->lr(e, 0), e < 2 ? 0.1 : 0.02, 1e-7) << e;
    s->on_epoch_end(e, 0);
    EXPECT_EQ(s->take_note(), "") << e;
  }
  close(fds[0]);
}

TEST(Schedule, ManualFileReReadAndErrors) {
  std::string path = test::temp_file("manual_schedule.txt");
  { std::ofstream(path) << "# epoch lr\n1 0.1\n3 0.05\n\n5 0.01  # late\n"; }
  ScheduleOptions o = named("manual");
  o.file = path;
  auto s = sched(o, 0.5f);
  expect_epochs(*s, {0.5, 0.1, 0.1, 0.05, 0.05, 0.01, 0.01});
  { std::ofstream(path) << "0 0.1\n2 0.02\n"; }  // a person lowers the lr mid-run
  EXPECT_NEAR(s->lr(3, 0), 0.05, 1e-7);          // not before the epoch ends
  s->on_epoch_end(2, 0);
  EXPECT_NEAR(s->lr(3, 0), 0.02, 1e-7);
  // ...and, rather than editing a line, appends a correction for the same epoch: the later wins
  { std::ofstream(path, std::ios::app) << "2 0.004\n"; }
  s->on_epoch_end(2, 0);
  EXPECT_NEAR(s->lr(3, 0), 0.004, 1e-7);
  EXPECT_EQ(s->take_note(), "");
  // A re-read that fails (a typo, a file caught empty or gone half way through an editor's
  // save) keeps the lines read before and says so once; the run is not ended by it.
  const std::string kept = "; kept the 3 lines read before (read again after the next epoch)";
  { std::ofstream(path) << "0 0.1\n3 abc\n"; }
  s->on_epoch_end(3, 0);
  EXPECT_NEAR(s->lr(3, 0), 0.004, 1e-7);
  EXPECT_EQ(s->take_note(), "schedule file " + path +
                                ":2: expected 'epoch lr' (epoch >= 0 counting " +
                                "from 0, lr 0 or 1.2e-38..3.4e38), got '3 abc'" + kept);
  EXPECT_EQ(s->take_note(), "");
  { std::ofstream(path) << "0 1e-50\n"; }  // would train at 0, as --lr 1e-50 is refused
  s->on_epoch_end(4, 0);
  EXPECT_NE(s->take_note().find(path + ":1: expected"), std::string::npos);
  { std::ofstream(path) << "# nothing yet\n"; }
  s->on_epoch_end(4, 0);
  EXPECT_EQ(s->take_note(),
            "schedule file " + path + ": no 'epoch lr' line (still being written?)" + kept);
  std::remove(path.c_str());
  s->on_epoch_end(4, 0);
  EXPECT_EQ(s->take_note(), "schedule file " + path + ": cannot open" + kept);
  EXPECT_NEAR(s->lr(5, 0), 0.004, 1e-7);
  { std::ofstream(path) << "0 0.3\n"; }  // fixed: taken at the next epoch end
  s->on_epoch_end(5, 0);
  EXPECT_EQ(s->take_note(), "");
  EXPECT_NEAR(s->lr(6, 0), 0.3, 1e-7);
  // Past 16 MiB it is no schedule file: refused before it fills memory (/dev/zero, one endless
  // line, was read until the allocation failed).
  { std::ofstream(path) << std::string((size_t{16} << 20) + 1, '#'); }
  s->on_epoch_end(6, 0);
  EXPECT_EQ(s->take_note(), "schedule file " + path + ": more than 16 MiB: not a schedule file" +
                                "; kept the 1 line read before (read again after the next epoch)");
  EXPECT_NEAR(s->lr(7, 0), 0.3, 1e-7);
  // The first read is an error, not a note: the run has no schedule to keep.
  { std::ofstream(path) << "0 0.1\n3 abc\n"; }
  try {
    sched(o);
    ADD_FAILURE() << "bad line accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
    EXPECT_NE(e.message().find(path + ":2"), std::string::npos) << e.message();
  }
  std::remove(path.c_str());
  try {
    sched(o);
    ADD_FAILURE() << "missing file accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find(path), std::string::npos) << e.message();
  }
  // Behind a warm-up the note still reaches the trainer.
  { std::ofstream(path) << "0 0.2\n"; }
  o.warmup_steps = 2;
  s = sched(o, 0.5f);
  std::remove(path.c_str());
  s->on_epoch_end(0, 0);
  EXPECT_EQ(s->take_note(), "schedule file " + path +
                                ": cannot open; kept the 1 line read before (read again after "
                                "the next epoch)");
  EXPECT_NEAR(s->lr(1, 100), 0.2, 1e-7);
}

TEST(Schedule, LinearWarmupComposes) {
  ScheduleOptions o = named("constant");  // (t+1)/4 * 0.1 for t < 4
  o.warmup_steps = 4;
  auto s = sched(o);
  EXPECT_TRUE(s->per_step());
  expect_steps(*s, {{0, 0.025}, {1, 0.05}, {3, 0.1}, {4, 0.1}, {100, 0.1}});
  o = named("step");  // warm-up of 1 epoch (10 steps) over StepLR(step 1, gamma 0.5)
  o.step_size = 1;
  o.gamma = 0.5f;
  o.warmup_epochs = 1;
  s = sched(o);
  EXPECT_NEAR(s->lr(0, 4), 0.1 * 5 / 10, 1e-7);
  EXPECT_NEAR(s->lr(1, 10), 0.05, 1e-7);
  o = named("one-cycle");  // momentum passes through the warm-up wrapper
  o.max_lr = 1.0f;
  o.warmup_steps = 10;
  s = sched(o, 0.1f, 50, 2);
  EXPECT_NEAR(s->lr(0, 0), 0.04 * 0.1, 1e-7);
  EXPECT_NEAR(s->momentum(0, 29), 0.85, 1e-6);
  o = named("plateau");  // on_epoch_end passes through too
  o.warmup_steps = 1;
  o.patience = 0;
  s = sched(o, 1.0f);
  s->on_epoch_end(0, 1.0f);
  s->on_epoch_end(1, 1.0f);
  EXPECT_NEAR(s->lr(2, 100), 0.1, 1e-7);
}

TEST(Schedule, ValidateRejectsBadOptions) {
  EXPECT_THROW(sched(named("linear-ish")), Error);
  ScheduleOptions o = named("cyclic");
  o.cyclic_mode = "sawtooth";
  EXPECT_THROW(sched(o), Error);
  o = named("manual");
  EXPECT_THROW(sched(o), Error);  // no file
  o = named("constant");
  o.warmup_steps = 5;
  o.warmup_epochs = 1;
  EXPECT_THROW(sched(o), Error);
  try {
    sched(named("linear-ish"));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("linear-ish"), std::string::npos);
  }
  // Negative sizes (a library caller's; one-cycle sized so started at 0.0994 or 4e-07). An
  // empty run (0 epochs) still builds one, as a checkpoint of it holds its state.
  const ScheduleOptions oc = named("one-cycle");
  for (auto [spe, epochs] : {std::pair<long long, int>{-1, 3}, {4, -1}})
    EXPECT_THROW(make_schedule(oc, 0.1f, spe, epochs), Error) << spe << " x " << epochs;
  for (const std::vector<long long>& steps :
       {std::vector<long long>{-5}, {10, -3}, {kMaxStepCount, 1}}) {
    try {
      make_schedule(oc, 0.1f, steps);
      ADD_FAILURE() << "sized by " << steps.size() << " epochs";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find("negative, or the run past 1e15 steps"), std::string::npos)
          << e.message();
    }
  }
  EXPECT_NO_THROW(make_schedule(oc, 0.1f, std::vector<long long>{}));
  EXPECT_NO_THROW(make_schedule(oc, 0.1f, 4, 0));
}

TEST(BatchSchedule, ParseLookupAndLinearScaling) {
  auto s = parse_batch_schedule("0:512,5:256,10:128");
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[1], std::make_pair(5, 256));
  EXPECT_EQ(batch_size_at(s, 0), 512);
  EXPECT_EQ(batch_size_at(s, 4), 512);
  EXPECT_EQ(batch_size_at(s, 5), 256);
  EXPECT_EQ(batch_size_at(s, 12), 128);
  EXPECT_FLOAT_EQ(scale_lr_linear(0.1f, 256, 512), 0.2f);
  EXPECT_FLOAT_EQ(scale_lr_linear(0.1f, 512, 128), 0.025f);
  // steps per epoch: ceil(samples / batch), the last partial batch included
  EXPECT_EQ(steps_per_epoch(130, 32, "0:64,1:32", 3), (std::vector<long long>{3, 5, 5}));
  EXPECT_EQ(steps_per_epoch(128, 32, "", 2), (std::vector<long long>{4, 4}));
  EXPECT_TRUE(steps_per_epoch(128, 32, "", 0).empty());
  // (a trailing comma is an empty entry as a leading one is: it passed until 2026-12-07)
  for (const char* bad : {"5:256", "0:512,0:256", "0:x", "0:0", "0:512,,5:2", "0:512;5:256", "",
                          ",0:5", "0:5,", "0:5,3:2,", ","}) {
    try {
      parse_batch_schedule(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
    }
  }
}

TEST(Schedule, OptionsTheScheduleNeverReadsAreNamed) {
  const ScheduleOptions d;
  auto notes = [&](const std::string& name, const std::function<void(ScheduleOptions&)>& set) {
    ScheduleOptions o;
    o.name = name;
    set(o);
    std::string all;
    for (const auto& n : o.ignored(d)) all += n + "\n";
    return all;
  };
  EXPECT_EQ(notes("cosine", [](ScheduleOptions& o) { o.gamma = 0.5f; }),
            "--gamma is ignored by --schedule cosine (it is read by "
            "step|multistep|exponential|exponential-step|cyclic exp_range)\n");
  EXPECT_EQ(notes("step", [](ScheduleOptions& o) { o.gamma = 0.5f; }), "");
  EXPECT_NE(notes("cyclic", [](ScheduleOptions& o) { o.gamma = 0.5f; }).find("--gamma is ignored"),
            std::string::npos);  // triangular: only exp_range reads it
  EXPECT_EQ(
      notes("cyclic", [](ScheduleOptions& o) { o.gamma = 0.5f, o.cyclic_mode = "exp_range"; }), "");
  EXPECT_NE(
      notes("one-cycle", [](ScheduleOptions& o) { o.patience = 3; }).find("--patience is ignored"),
      std::string::npos);
  EXPECT_EQ(notes("plateau", [](ScheduleOptions& o) { o.patience = 3, o.mode = "max"; }), "");
  EXPECT_EQ(notes("one-cycle", [](ScheduleOptions& o) { o.warmup_steps = 5, o.max_lr = 0.1f; }),
            "");
  EXPECT_NE(notes("constant", [](ScheduleOptions& o) { o.milestones = {3}; }).find("--milestones"),
            std::string::npos);
}
