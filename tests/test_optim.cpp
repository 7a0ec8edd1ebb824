// Optimizers: first steps against hand-derived values (PyTorch semantics), weight decay coupled
// vs decoupled, decay/penalty flags, the three clipping modes, non-finite skipping, L1/L2
// penalties, option validation; GPU: the fused step against the CPU reference, launch count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "engine/buffer.h"
#include "engine/error.h"
#include "kernels/optim/optim.h"
#include "kernels/optim/optim_math.h"
#include "optim/optimizer.h"
#include "tests/test_util.h"

using namespace kiln;

namespace {

// A layer that only declares parameters (forward/backward are identity), so the optimizer can
// be tested without the rest of the engine.
class ParamsOnly : public Layer {
 public:
  struct Spec {
    std::string name;
    Shape shape;
    bool decay;
  };
  explicit ParamsOnly(std::vector<Spec> specs) : specs_(std::move(specs)) {}
  std::string type() const override { return "ParamsOnly"; }
  Shape setup(const Shape& in) override {
    for (auto& s : specs_) add_param(s.name, s.shape, Init::zeros(), s.decay);
    return in;
  }
  Tensor forward(Context&, const Tensor& x) override { return x; }
  Tensor backward(Context&, const Tensor& dy) override { return dy; }

 private:
  std::vector<Spec> specs_;
};

struct Rig {
  Model model{Shape{1}};
  explicit Rig(std::vector<ParamsOnly::Spec> specs, Device d = Device::CPU) {
    model.add(std::make_unique<ParamsOnly>(std::move(specs)));
    model.build(d, 1);
  }
  Param& p(size_t i) { return *model.param_refs().at(i).param; }
  void set(size_t i, const std::vector<float>& w) { p(i).value.copy_from(Tensor::from_vector(w, p(i).shape, p(i).value.device())); }
  void grad(size_t i, const std::vector<float>& g) { p(i).grad.copy_from(Tensor::from_vector(g, p(i).shape, p(i).grad.device())); }
  std::vector<float> w(size_t i) { return p(i).value.to_vector(); }
};

// One weight tensor of `n` elements (decayed, penalised).
Rig weight_rig(int64_t n = 1) { return Rig({{"weight", {n}, true}}); }

OptimOptions opt(const std::string& name, float lr) {
  OptimOptions o;
  o.name = name;
  o.lr = lr;
  return o;
}

// Runs steps with the given gradients for the single scalar weight and returns w after each.
std::vector<float> run_scalar(const OptimOptions& o, float w0, const std::vector<float>& grads) {
  Rig r = weight_rig();
  r.set(0, {w0});
  Context ctx(Device::CPU);
  auto op = make_optimizer(o, r.model);
  std::vector<float> out;
  for (float g : grads) {
    r.grad(0, {g});
    op->step(ctx, o.lr);
    out.push_back(r.w(0)[0]);
  }
  return out;
}

void expect_seq(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6 * std::max(1.0, std::fabs(want[i]))) << "step " << i + 1;
}

}  // namespace

TEST(Optim, OptionsTheOptimizerNeverReadsAreNamed) {
  // torch raises TypeError for most of these (nesterov= on Adam); kiln notes them, so one config
  // can serve several optimizers in a sweep.
  const OptimOptions d;
  auto notes = [&](const std::string& name, const std::function<void(OptimOptions&)>& set) {
    OptimOptions o;
    o.name = name;
    set(o);
    std::string all;
    for (const auto& n : o.ignored(d)) all += n + "\n";
    return all;
  };
  EXPECT_NE(notes("adam", [](OptimOptions& o) { o.nesterov = true; }).find("--nesterov is ignored"),
            std::string::npos);
  EXPECT_EQ(notes("sgd", [](OptimOptions& o) { o.nesterov = true; }), "");
  // --decay-all widens a decay of 0 (the default, but adamw's 0.01); --penalize-all no penalty.
  EXPECT_NE(
      notes("sgd", [](OptimOptions& o) { o.decay_all = true; }).find("--decay-all is ignored"),
      std::string::npos);
  EXPECT_EQ(notes("adamw", [](OptimOptions& o) { o.decay_all = true; }), "");
  EXPECT_EQ(notes("adamw", [](OptimOptions& o) { o.decay_all = true, o.weight_decay = 0; }),
            "--decay-all is ignored: the weight decay is 0 (--weight-decay 0)\n");
  EXPECT_EQ(notes("sgd", [](OptimOptions& o) { o.decay_all = true, o.weight_decay = 1e-4f; }), "");
  EXPECT_NE(notes("sgd", [](OptimOptions& o) { o.penalize_all = true; }).find("--penalize-all"),
            std::string::npos);
  EXPECT_EQ(notes("sgd", [](OptimOptions& o) { o.penalize_all = true, o.l2 = 1e-4f; }), "");
  EXPECT_NE(
      notes("adamw", [](OptimOptions& o) { o.momentum = 0.9f; }).find("--momentum 0.9 is ignored"),
      std::string::npos);
  EXPECT_EQ(notes("rmsprop", [](OptimOptions& o) { o.momentum = 0.9f; }), "");
  EXPECT_NE(
      notes("rmsprop", [](OptimOptions& o) { o.dampening = 0.5f; }).find("only sgd's momentum"),
      std::string::npos);
  // sgd with --momentum 0 may get a momentum from a cycling schedule (one-cycle): no note.
  EXPECT_EQ(notes("sgd", [](OptimOptions& o) { o.dampening = 0.5f; }), "");
  EXPECT_NE(notes("rmsprop", [](OptimOptions& o) { o.beta1 = 0.5f; }).find("--beta1/--beta2"),
            std::string::npos);
  EXPECT_EQ(notes("adam", [](OptimOptions& o) { o.beta2 = 0.9f; }), "");
  EXPECT_NE(notes("adam", [](OptimOptions& o) { o.alpha = 0.5f; }).find("--alpha 0.5"),
            std::string::npos);
  EXPECT_NE(notes("sgd", [](OptimOptions& o) { o.eps = 1e-3f; }).find("--eps 0.001"),
            std::string::npos);
  EXPECT_EQ(notes("adam", [](OptimOptions& o) { o.eps = 1e-3f; }), "");
}

TEST(Optim, SgdPlainThreeSteps) {
  // w -= lr*g with lr 0.1, g = 0.5, -1, 2: 1 - 0.05 = 0.95; 0.95 + 0.1 = 1.05; 1.05 - 0.2 = 0.85
  expect_seq(run_scalar(opt("sgd", 0.1f), 1.0f, {0.5f, -1.0f, 2.0f}), {0.95, 1.05, 0.85});
}

TEST(Optim, SgdMomentumThreeSteps) {
  // lr 0.1, mu 0.9, g = 0.5 each step. b1 = g = 0.5 (first step), w = 1 - 0.05 = 0.95;
  // b2 = 0.9*0.5 + 0.5 = 0.95, w = 0.95 - 0.095 = 0.855; b3 = 0.9*0.95 + 0.5 = 1.355,
  // w = 0.855 - 0.1355 = 0.7195.
  OptimOptions o = opt("sgd", 0.1f);
  o.momentum = 0.9f;
  expect_seq(run_scalar(o, 1.0f, {0.5f, 0.5f, 0.5f}), {0.95, 0.855, 0.7195});
}

TEST(Optim, SgdMomentumDampeningFirstStepIsGradient) {
  // mu 0.9, dampening 0.5, g = 0.5: b1 = g = 0.5 (not 0.25), w = 0.95; b2 = 0.45 + 0.25 = 0.7,
  // w = 0.95 - 0.07 = 0.88; b3 = 0.63 + 0.25 = 0.88, w = 0.88 - 0.088 = 0.792.
  OptimOptions o = opt("sgd", 0.1f);
  o.momentum = 0.9f;
  o.dampening = 0.5f;
  expect_seq(run_scalar(o, 1.0f, {0.5f, 0.5f, 0.5f}), {0.95, 0.88, 0.792});
}

TEST(Optim, SgdNesterovThreeSteps) {
  // g' = g + mu*b. b1 = 0.5, g' = 0.5 + 0.45 = 0.95, w = 1 - 0.095 = 0.905; b2 = 0.95,
  // g' = 0.5 + 0.855 = 1.355, w = 0.7695; b3 = 1.355, g' = 0.5 + 1.2195 = 1.7195, w = 0.59755.
  OptimOptions o = opt("sgd", 0.1f);
  o.momentum = 0.9f;
  o.nesterov = true;
  expect_seq(run_scalar(o, 1.0f, {0.5f, 0.5f, 0.5f}), {0.905, 0.7695, 0.59755});
}

TEST(Optim, AdamThreeSteps) {
  // betas (0.5, 0.75), lr 0.1, eps 1e-8, g = 0.5, -0.5, 1.
  // t1: m = 0.25, v = 0.0625; m^ = 0.25/0.5 = 0.5, v^ = 0.0625/0.25 = 0.25; w = 1 - 0.1*0.5/0.5 = 0.9
  // t2: m = 0.125 - 0.25 = -0.125, v = 0.046875 + 0.0625 = 0.109375; m^ = -0.125/0.75 = -1/6,
  //     v^ = 0.109375/0.4375 = 0.25; w = 0.9 + 0.1*(1/6)/0.5 = 0.933333
  // t3: m = -0.0625 + 0.5 = 0.4375, v = 0.08203125 + 0.25 = 0.33203125; m^ = 0.4375/0.875 = 0.5,
  //     v^ = 0.33203125/0.578125 = 0.5743243, sqrt = 0.7578418; w = 0.933333 - 0.1*0.5/0.7578418 = 0.867357
  OptimOptions o = opt("adam", 0.1f);
  o.beta1 = 0.5f;
  o.beta2 = 0.75f;
  expect_seq(run_scalar(o, 1.0f, {0.5f, -0.5f, 1.0f}), {0.9, 0.9333333, 0.8673565});
}

TEST(Optim, AdamDefaultBetasThreeSteps) {
  // betas (0.9, 0.999), lr 0.1, g = 0.5, -0.5, 1. t1: m^ = 0.5, v^ = 0.25, w = 0.9.
  // t2: m = 0.045 - 0.05 = -0.005, m^ = -0.005/0.19 = -0.0263158; v = 0.00024975 + 0.00025 =
  //     0.00049975, v^ = 0.00049975/0.001999 = 0.25; w = 0.9 + 0.1*0.0263158/0.5 = 0.9052632
  // t3: m = -0.0045 + 0.1 = 0.0955, m^ = 0.0955/0.271 = 0.3523985; v = 0.00049925 + 0.001 =
  //     0.00149925, v^ = 0.00149925/0.002997001 = 0.5002503, sqrt = 0.7072837;
  //     w = 0.9052632 - 0.1*0.3523985/0.7072837 = 0.8554389
  expect_seq(run_scalar(opt("adam", 0.1f), 1.0f, {0.5f, -0.5f, 1.0f}), {0.9, 0.9052632, 0.8554389});
}

TEST(Optim, AdamEpsIsAddedAfterTheBiasCorrection) {
  // PyTorch: denom = sqrt(v)/sqrt(1 - beta2^t) + eps. A large eps (0.5) makes its place visible.
  // betas (0.5, 0.75), lr 0.1, g = 0.5, -0.5, 1 (the moments of AdamThreeSteps):
  // t1: sqrt(v^) = 0.5, denom = 1.0, w = 1 - 0.1*0.5/1.0 = 0.95
  // t2: sqrt(v^) = 0.5, denom = 1.0, w = 0.95 + 0.1*(1/6)/1.0 = 0.9666667
  // t3: sqrt(v^) = 0.7578419, denom = 1.2578419, w = 0.9666667 - 0.1*0.5/1.2578419 = 0.9269160
  // (eps before the correction, (sqrt(v) + eps)/sqrt(1 - beta2^t), gives 0.9666667 at t1.)
  OptimOptions o = opt("adam", 0.1f);
  o.beta1 = 0.5f;
  o.beta2 = 0.75f;
  o.eps = 0.5f;
  expect_seq(run_scalar(o, 1.0f, {0.5f, -0.5f, 1.0f}), {0.95, 0.9666667, 0.9269160});
}

TEST(Optim, L1SubgradientAtZeroIsZero) {
  // torch.sign(0) = 0: a weight exactly at 0 gets no L1 push, and adds nothing to the penalty.
  // weight [0, 1, -1], zero gradient, l1 0.1, SGD lr 1: g_eff = [0, 0.1, -0.1] -> [0, 0.9, -0.9].
  Rig r({{"weight", {3}, true}});
  r.set(0, {0, 1, -1});
  r.grad(0, {0, 0, 0});
  OptimOptions o = opt("sgd", 1.0f);
  o.l1 = 0.1f;
  auto op = make_optimizer(o, r.model);
  Context ctx(Device::CPU);
  op->step(ctx, 1.0f);
  EXPECT_TRUE(test::all_close(r.w(0), {0.0f, 0.9f, -0.9f}, 1e-7, 0));
  EXPECT_NEAR(op->stats(ctx).l1_penalty, 0.2f, 1e-7);
}

TEST(Optim, AdamCoupledVsAdamWDecoupledWeightDecay) {
  // wd 0.1, lr 0.1, betas (0.5, 0.75), g = 0.5 every step.
  // Adam (coupled, g' = g + wd*w): t1 g' = 0.6, m^ = 0.6, v^ = 0.36, w = 1 - 0.1 = 0.9;
  //   t2 g' = 0.59, m = 0.15 + 0.295 = 0.445, m^ = 0.5933333; v = 0.0675 + 0.087025 = 0.154525,
  //   v^ = 0.3532, sqrt = 0.5943063; w = 0.9 - 0.0998364 = 0.8001637; t3 -> 0.7005796.
  // AdamW (decoupled, w *= 1 - lr*wd = 0.99, then the plain Adam step of 0.1*sign(g)):
  //   0.99 - 0.1 = 0.89; 0.8811 - 0.1 = 0.7811; 0.773289 - 0.1 = 0.673289.
  OptimOptions a = opt("adam", 0.1f);
  a.beta1 = 0.5f;
  a.beta2 = 0.75f;
  a.weight_decay = 0.1f;
  expect_seq(run_scalar(a, 1.0f, {0.5f, 0.5f, 0.5f}), {0.9, 0.8001637, 0.7005796});
  a.name = "adamw";
  expect_seq(run_scalar(a, 1.0f, {0.5f, 0.5f, 0.5f}), {0.89, 0.7811, 0.673289});
}

TEST(Optim, WeightDecayDefaultsArePyTorchs) {
  // torch.optim.AdamW(weight_decay=0.01) by default, the others 0: with a zero gradient AdamW
  // still shrinks the weight by 1 - lr * 0.01 per step (0.999 at lr 0.1), SGD and Adam do not.
  expect_seq(run_scalar(opt("adamw", 0.1f), 1.0f, {0, 0}), {0.999, 0.998001});
  expect_seq(run_scalar(opt("adam", 0.1f), 1.0f, {0, 0}), {1.0, 1.0});
  expect_seq(run_scalar(opt("sgd", 0.1f), 1.0f, {0, 0}), {1.0, 1.0});
  OptimOptions o = opt("adamw", 0.1f);
  EXPECT_FLOAT_EQ(o.resolved().weight_decay, 0.01f);
  o.weight_decay = 0;  // given, even as 0, it stays
  EXPECT_EQ(o.resolved().weight_decay, 0.0f);
  expect_seq(run_scalar(o, 1.0f, {0, 0}), {1.0, 1.0});
  EXPECT_EQ(opt("rmsprop", 0.1f).resolved().weight_decay, 0.0f);
}

TEST(Optim, SgdCoupledWeightDecay) {
  // g' = g + wd*w with wd 0.5, lr 0.1, g = 0: w = 1 - 0.05 = 0.95; 0.95*0.95 = 0.9025; 0.857375
  OptimOptions o = opt("sgd", 0.1f);
  o.weight_decay = 0.5f;
  expect_seq(run_scalar(o, 1.0f, {0, 0, 0}), {0.95, 0.9025, 0.857375});
}

TEST(Optim, RmspropThreeSteps) {
  // alpha 0.99, lr 0.01, g = 0.5: v1 = 0.01*0.25 = 0.0025, sqrt = 0.05, w = 1 - 0.01*0.5/0.05 = 0.9;
  // v2 = 0.002475 + 0.0025 = 0.004975, sqrt = 0.0705337, w = 0.9 - 0.0708881 = 0.8291119;
  // v3 = 0.00492525 + 0.0025 = 0.00742525, sqrt = 0.0861699, w = 0.8291119 - 0.0580249 = 0.771087
  expect_seq(run_scalar(opt("rmsprop", 0.01f), 1.0f, {0.5f, 0.5f, 0.5f}), {0.9, 0.8291119, 0.771087});
}

TEST(Optim, RmspropMomentumThreeSteps) {
  // As above with momentum 0.9: b1 = 0.5/0.05 = 10, w = 0.9; b2 = 9 + 7.088812 = 16.088812,
  // w = 0.9 - 0.1608881 = 0.7391119; b3 = 14.479931 + 5.802485 = 20.282416, w = 0.5362877
  OptimOptions o = opt("rmsprop", 0.01f);
  o.momentum = 0.9f;
  expect_seq(run_scalar(o, 1.0f, {0.5f, 0.5f, 0.5f}), {0.9, 0.7391119, 0.5362877});
}

TEST(Optim, RmspropEpsIsAddedAfterTheSquareRoot) {
  // PyTorch: avg = sqrt(v) + eps. A large eps (0.5) makes its place visible; alpha 0.5, lr 0.1,
  // g = 0.5, -0.5, 1:
  // t1: v = 0.125, avg = 0.3535534 + 0.5 = 0.8535534, w = 1 - 0.05/0.8535534 = 0.9414214
  // t2: v = 0.1875, avg = 0.9330127, w = 0.9414214 + 0.05/0.9330127 = 0.9950112
  // t3: v = 0.59375, avg = 1.2705518, w = 0.9950112 - 0.1/1.2705518 = 0.9163052
  // (eps under the root, sqrt(v + eps), gives 0.9367544 at t1.)
  OptimOptions o = opt("rmsprop", 0.1f);
  o.alpha = 0.5f;
  o.eps = 0.5f;
  expect_seq(run_scalar(o, 1.0f, {0.5f, -0.5f, 1.0f}), {0.9414214, 0.9950112, 0.9163052});
}

TEST(Optim, ScheduleMomentumOverridesConfigured) {
  // momentum passed to step() (from a schedule) replaces the configured 0: same as SgdMomentum.
  Rig r = weight_rig();
  r.set(0, {1.0f});
  Context ctx(Device::CPU);
  auto op = make_optimizer(opt("sgd", 0.1f), r.model);
  std::vector<float> got;
  for (int i = 0; i < 3; ++i) {
    r.grad(0, {0.5f});
    op->step(ctx, 0.1f, 0.9f);
    got.push_back(r.w(0)[0]);
  }
  expect_seq(got, {0.95, 0.855, 0.7195});
}

TEST(Optim, NoDecayOnBiasesByDefault) {
  // lr 0.1, wd 0.5, zero gradients: the weight shrinks by 1 - 0.1*0.5 = 0.95, the bias only with
  // decay_all. The same numbers for SGD (coupled: g = wd*w) and AdamW (decoupled: w *= 1 - lr*wd,
  // and a zero Adam step since m = 0).
  for (const char* name : {"sgd", "adamw"})
    for (bool all : {false, true}) {
      Rig r({{"weight", {2}, true}, {"bias", {1}, false}});
      r.set(0, {1.0f, -2.0f});
      r.set(1, {3.0f});
      Context ctx(Device::CPU);
      OptimOptions o = opt(name, 0.1f);
      o.weight_decay = 0.5f;
      o.decay_all = all;
      auto op = make_optimizer(o, r.model);
      op->step(ctx, 0.1f);
      EXPECT_NEAR(r.w(0)[0], 0.95f, 1e-6) << name;
      EXPECT_NEAR(r.w(0)[1], -1.9f, 1e-6) << name;
      EXPECT_NEAR(r.w(1)[0], all ? 2.85f : 3.0f, 1e-6) << name << " decay_all " << all;
    }
}

TEST(Optim, ClipValueClampsElements) {
  // clipvalue 0.5, SGD lr 1 from w = 0: w = -clamp(g) = -[0.5, -0.5, 0.25]
  Rig r = weight_rig(3);
  OptimOptions o = opt("sgd", 1.0f);
  o.clipvalue = 0.5f;
  auto op = make_optimizer(o, r.model);
  Context ctx(Device::CPU);
  r.grad(0, {2.0f, -3.0f, 0.25f});
  op->step(ctx, 1.0f);
  EXPECT_TRUE(test::all_close(r.w(0), {-0.5f, 0.5f, -0.25f}, 1e-7, 0));
  EXPECT_NEAR(op->stats(ctx).grad_norm, std::sqrt(4 + 9 + 0.0625), 1e-5);  // before clipping
}

TEST(Optim, ClipNormPerTensor) {
  // clipnorm 1: A = [3, 4] has norm 5 -> [0.6, 0.8]; B = [0.3, 0.4] has norm 0.5 -> unchanged.
  Rig r({{"a", {2}, true}, {"b", {2}, true}});
  OptimOptions o = opt("sgd", 1.0f);
  o.clipnorm = 1.0f;
  auto op = make_optimizer(o, r.model);
  Context ctx(Device::CPU);
  r.grad(0, {3, 4});
  r.grad(1, {0.3f, 0.4f});
  op->step(ctx, 1.0f);
  EXPECT_TRUE(test::all_close(r.w(0), {-0.6f, -0.8f}, 1e-6, 0));
  EXPECT_TRUE(test::all_close(r.w(1), {-0.3f, -0.4f}, 1e-6, 0));
  StepStats s = op->stats(ctx);
  EXPECT_NEAR(s.grad_norm, std::sqrt(25.25), 1e-5);
  ASSERT_EQ(s.tensor_grad_norms.size(), 2u);
  EXPECT_NEAR(s.tensor_grad_norms[0], 5.0f, 1e-6);
  EXPECT_NEAR(s.tensor_grad_norms[1], 0.5f, 1e-6);
  EXPECT_NEAR(s.tensor_weight_norms[0], 0.0f, 1e-7);  // weights before the update
}

TEST(Optim, GlobalClipNorm) {
  // global_clipnorm 1: A = [3, 4], B = [0, 12], G = 13, factor 1/(13 + 1e-6): A -> [3/13, 4/13],
  // B -> [0, 12/13]; grad_norm reports 13.
  Rig r({{"a", {2}, true}, {"b", {2}, true}});
  OptimOptions o = opt("sgd", 1.0f);
  o.global_clipnorm = 1.0f;
  auto op = make_optimizer(o, r.model);
  Context ctx(Device::CPU);
  r.grad(0, {3, 4});
  r.grad(1, {0, 12});
  op->step(ctx, 1.0f);
  EXPECT_TRUE(test::all_close(r.w(0), {-3.0f / 13, -4.0f / 13}, 1e-6, 0));
  EXPECT_TRUE(test::all_close(r.w(1), {0.0f, -12.0f / 13}, 1e-6, 0));
  EXPECT_NEAR(op->stats(ctx).grad_norm, 13.0f, 1e-5);
  // Below the threshold nothing changes: G = 0.5 -> factor 1.
  r.set(0, {0, 0});
  r.set(1, {0, 0});
  r.grad(0, {0.3f, 0.4f});
  r.grad(1, {0, 0});
  op->step(ctx, 1.0f);
  EXPECT_TRUE(test::all_close(r.w(0), {-0.3f, -0.4f}, 1e-7, 0));
}

TEST(Optim, HugeFiniteGradientIsClippedAndAppliedNotSkipped) {
  // |g| = 1e30 is finite in float but g^2 = 1e60 is not: the norms are summed in double, so
  // both norm clipping modes scale the step down instead of seeing an infinite norm.
  // A = [1e30, -2e30, 2e30] (norm 3e30), B = [4e30] (norm 4e30), G = 5e30.
  for (bool global : {false, true}) {
    Rig r({{"a", {3}, true}, {"b", {1}, true}});
    OptimOptions o = opt("sgd", 1.0f);
    (global ? o.global_clipnorm : o.clipnorm) = 1.0f;
    auto op = make_optimizer(o, r.model);
    Context ctx(Device::CPU);
    r.grad(0, {1e30f, -2e30f, 2e30f});
    r.grad(1, {4e30f});
    op->step(ctx, 1.0f);
    SCOPED_TRACE(global ? "global_clipnorm" : "clipnorm");
    StepStats s = op->stats(ctx);
    EXPECT_FALSE(s.nonfinite);
    EXPECT_EQ(*op->nonfinite_flag(), 0);
    EXPECT_NEAR(s.grad_norm, 5e30f, 1e-6 * 5e30);
    ASSERT_EQ(s.tensor_grad_norms.size(), 2u);
    EXPECT_NEAR(s.tensor_grad_norms[0], 3e30f, 1e-6 * 3e30);
    EXPECT_NEAR(s.tensor_grad_norms[1], 4e30f, 1e-6 * 4e30);
    const double fa = global ? 1.0 / 5e30 : 1.0 / 3e30, fb = global ? 1.0 / 5e30 : 1.0 / 4e30;
    EXPECT_TRUE(test::all_close(r.w(0), {float(-1e30 * fa), float(2e30 * fa), float(-2e30 * fa)}, 1e-7, 1e-5));
    EXPECT_TRUE(test::all_close(r.w(1), {float(-4e30 * fb)}, 1e-7, 1e-5));
  }
}

TEST(Optim, NonFiniteGradientSkipsStepAndSetsStickyFlag) {
  for (float bad : {std::nanf(""), INFINITY}) {
    Rig r({{"a", {2}, true}, {"b", {3}, false}});
    r.set(0, {1, 2});
    r.set(1, {3, 4, 5});
    OptimOptions o = opt("sgd", 0.1f);
    o.momentum = 0.9f;
    auto op = make_optimizer(o, r.model);
    Context ctx(Device::CPU);
    r.grad(0, {1, 1});
    r.grad(1, {1, 1, 1});
    op->step(ctx, 0.1f);  // a good step so the momentum state is non-zero
    EXPECT_EQ(*op->nonfinite_flag(), 0);
    auto w0 = r.w(0), w1 = r.w(1);
    auto st = op->state();
    ASSERT_EQ(st.size(), 2u);
    EXPECT_EQ(st[0].first, "0.a.momentum_buffer");
    auto b0 = st[0].second.to_vector();
    r.grad(1, {1, bad, 1});
    op->step(ctx, 0.1f);
    EXPECT_EQ(r.w(0), w0);
    EXPECT_EQ(r.w(1), w1);
    EXPECT_EQ(op->state()[0].second.to_vector(), b0);
    EXPECT_TRUE(op->stats(ctx).nonfinite);
    EXPECT_EQ(*op->nonfinite_flag(), 2);  // the first bad step's 1-based count
    r.grad(1, {1, 1, 1});
    op->step(ctx, 0.1f);  // good again: updates, the flag stays set until reset
    EXPECT_NE(r.w(0), w0);
    EXPECT_FALSE(op->stats(ctx).nonfinite);
    EXPECT_EQ(*op->nonfinite_flag(), 2);
    op->reset_nonfinite_flag(ctx);
    EXPECT_EQ(*op->nonfinite_flag(), 0);
    EXPECT_EQ(op->steps_taken(), 3);  // the host counts skipped steps too
  }
}

TEST(Optim, L1L2PenaltyValuesAndGradients) {
  // weight [1, -2] (penalised), bias [3] (not). l1 0.1, l2 0.01: penalties 0.1*3 = 0.3 and
  // 0.01*5 = 0.05. g_eff = 0.1*sign(w) + 0.02*w = [0.12, -0.14]; SGD lr 1 -> [0.88, -1.86].
  for (bool all : {false, true}) {
    Rig r({{"weight", {2}, true}, {"bias", {1}, false}});
    r.set(0, {1, -2});
    r.set(1, {3});
    OptimOptions o = opt("sgd", 1.0f);
    o.l1 = 0.1f;
    o.l2 = 0.01f;
    o.penalize_all = all;
    auto op = make_optimizer(o, r.model);
    Context ctx(Device::CPU);
    op->step(ctx, 1.0f);
    StepStats s = op->stats(ctx);
    EXPECT_NEAR(s.l1_penalty, all ? 0.6f : 0.3f, 1e-6);
    EXPECT_NEAR(s.l2_penalty, all ? 0.14f : 0.05f, 1e-6);
    EXPECT_TRUE(test::all_close(r.w(0), {0.88f, -1.86f}, 1e-6, 0));
    // bias with penalize_all: g = 0.1 + 0.06 = 0.16 -> 2.84
    EXPECT_NEAR(r.w(1)[0], all ? 2.84f : 3.0f, 1e-6);
    double gn = all ? std::sqrt(0.12 * 0.12 + 0.14 * 0.14 + 0.16 * 0.16) : std::sqrt(0.12 * 0.12 + 0.14 * 0.14);
    EXPECT_NEAR(s.grad_norm, gn, 1e-6);
  }
}

TEST(Optim, PenaltyGradientMatchesCentralDifferences) {
  std::vector<double> w = test::random_vec<double>(17, 5);
  for (auto& x : w) x += x >= 0 ? 0.1 : -0.1;  // away from the |w| kink
  std::vector<double> g(w.size(), 0.0);
  optim_penalty_ref<double>(w.data(), g.data(), static_cast<int64_t>(w.size()), 0.25f, 0.5f);
  auto f = [](const std::vector<double>& x) {
    std::vector<double> scratch(x.size(), 0.0);
    return optim_penalty_ref<double>(x.data(), scratch.data(), static_cast<int64_t>(x.size()), 0.25f, 0.5f);
  };
  EXPECT_TRUE(test::grad_check(f, w, g));
}

TEST(Optim, StateNamesAndStepCount) {
  Rig r({{"weight", {2}, true}, {"bias", {1}, false}});
  auto adam = make_optimizer(opt("adam", 0.1f), r.model);
  auto st = adam->state();
  ASSERT_EQ(st.size(), 4u);
  EXPECT_EQ(st[0].first, "0.weight.exp_avg");
  EXPECT_EQ(st[1].first, "0.weight.exp_avg_sq");
  EXPECT_EQ(st[3].first, "0.bias.exp_avg_sq");
  EXPECT_EQ(st[0].second.shape(), Shape({2}));
  auto rms = make_optimizer(opt("rmsprop", 0.1f), r.model);
  EXPECT_EQ(rms->state()[0].first, "0.weight.square_avg");
  EXPECT_EQ(rms->state()[1].first, "0.weight.momentum_buffer");
  adam->set_steps_taken(41);
  Context ctx(Device::CPU);
  adam->step(ctx, 0.1f);
  EXPECT_EQ(adam->steps_taken(), 42);
}

namespace {
void expect_usage(const OptimOptions& o, const std::vector<std::string>& words) {
  try {
    o.validate();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    for (auto& w : words) EXPECT_NE(e.message().find(w), std::string::npos) << e.message() << " lacks " << w;
  }
}
}  // namespace

TEST(OptimValidate, RejectsBadOptions) {
  OptimOptions o;
  o.clipnorm = 1;
  o.global_clipnorm = 1;
  expect_usage(o, {"--clipnorm", "--global-clipnorm"});
  o.clipvalue = 0.5f;
  expect_usage(o, {"--clipnorm", "--global-clipnorm", "--clipvalue"});
  o = OptimOptions();
  o.clipnorm = 1;
  o.clipvalue = 1;
  expect_usage(o, {"--clipnorm", "--clipvalue"});
  o = OptimOptions();
  o.lr = -0.1f;
  expect_usage(o, {"--lr", "-0.1"});
  o = OptimOptions();
  o.eps = 0;
  expect_usage(o, {"--eps"});
  o.eps = -1e-8f;
  expect_usage(o, {"--eps"});
  o = OptimOptions();
  o.name = "adagrad";
  expect_usage(o, {"adagrad", "sgd|adam|adamw|rmsprop"});
  o = OptimOptions();
  o.nesterov = true;
  expect_usage(o, {"--nesterov"});
  o = OptimOptions();
  o.clipnorm = 1;
  EXPECT_NO_THROW(o.validate());
}

TEST(OptimChunks, ChunksStayInsideTensors) {
  std::vector<OptimTensor> ts = {{0, 0, 1, 1}, {0, 1, 1, 1}, {16, kOptimChunk, 1, 1},
                                 {16 + kOptimChunk, kOptimChunk + 5, 1, 1}};
  auto ch = optim_build_chunks(ts);
  ASSERT_EQ(ch.size(), 4u);  // empty tensor: none; 1; 1; 2
  EXPECT_EQ(ch[0].tensor, 1);
  EXPECT_EQ(ch[0].len, 1);
  EXPECT_EQ(ch[2].begin, 16 + kOptimChunk);
  EXPECT_EQ(ch[3].begin, 16 + 2 * kOptimChunk);
  EXPECT_EQ(ch[3].len, 5);
  EXPECT_EQ(ch[3].tensor, 3);
  EXPECT_EQ(ts[0].chunk_begin, 0);
  EXPECT_EQ(ts[0].chunk_end, 0);
  EXPECT_EQ(ts[2].chunk_begin, 1);
  EXPECT_EQ(ts[2].chunk_end, 2);
  EXPECT_EQ(ts[3].chunk_end, 4);
  std::vector<OptimTensor> bad = {{3, 4, 1, 1}};
  EXPECT_THROW(optim_build_chunks(bad), Error);  // misaligned offset
}

// The CPU step over tensors of 1 to 6 kOptimChunk pieces (threads take runs of them): the norms
// and penalties against sums in long double and the globally clipped SGD update written out;
// then Adam with per-tensor clipping and weight decay gives the same weights, state and
// statistics on one thread and on three. The padding between tensors (NaN) is never touched.
TEST(OptimRef, PiecedTensorsMatchTheSumsOnAnyThreadCount) {
  // 13 pieces: three runs of at least four (the step's grain) for three threads.
  const int64_t sizes[] = {3, kOptimChunk + 5, 5 * kOptimChunk + 13, 3 * kOptimChunk, 1000};
  std::vector<OptimTensor> ts;
  int64_t total = 0;
  for (int64_t n : sizes) {
    OptimTensor t;
    t.offset = total;
    t.numel = n;
    t.penalize = t.decay = n != 1000;  // the last one a bias
    ts.push_back(t);
    total += (n + 15) / 16 * 16;
  }
  const float nan = std::nanf("");
  auto padded = [&](uint64_t seed, double lo, double hi) {
    auto r = test::random_vec<float>(static_cast<size_t>(total), seed, lo, hi);
    std::vector<float> v(r.size(), nan);
    for (const auto& t : ts)
      std::copy(r.begin() + t.offset, r.begin() + t.offset + t.numel, v.begin() + t.offset);
    return v;
  };
  const auto w0 = padded(1, -1, 1), g = padded(2, -0.1, 0.1);
  const int nt = static_cast<int>(ts.size());

  OptimHyper h;  // SGD, lr 1, global clip 0.5, L1 and L2
  h.lr = 1.f;
  h.clip = ClipMode::GlobalNorm;
  h.clip_value = 0.5f;
  h.l1 = 0.01f;
  h.l2 = 0.02f;
  long double G2 = 0, l1 = 0, l2 = 0;
  std::vector<long double> gn(ts.size()), wn(ts.size());
  std::vector<double> geff(static_cast<size_t>(total));
  for (size_t t = 0; t < ts.size(); ++t)
    for (int64_t i = ts[t].offset; i < ts[t].offset + ts[t].numel; ++i) {
      const double wi = w0[i], gi = g[i];
      const double ge = ts[t].penalize ? gi + h.l1 * (wi > 0 ? 1.0 : -1.0) + 2.0 * h.l2 * wi : gi;
      geff[i] = ge;
      gn[t] += (long double)ge * ge;
      wn[t] += (long double)wi * wi;
      if (ts[t].penalize) l1 += std::fabs(wi), l2 += (long double)wi * wi;
      G2 += (long double)ge * ge;
    }
  const double G = std::sqrt(static_cast<double>(G2)), factor = 0.5 / (G + 1e-6);
  ASSERT_LT(factor, 0.5);  // it clips
  std::vector<float> w = w0, s1(w0.size(), 0.f), tg(ts.size()), tw(ts.size());
  OptimStepStats st;
  st.tensor_grad_norm = tg.data();
  st.tensor_weight_norm = tw.data();
  optim_step_ref<float>(w.data(), g.data(), s1.data(), nullptr, ts.data(), nt, h, &st);
  EXPECT_NEAR(st.grad_norm, G, 1e-6 * G);
  EXPECT_NEAR(st.l1_penalty, 0.01 * static_cast<double>(l1), 1e-6 * 0.01 * static_cast<double>(l1));
  EXPECT_NEAR(st.l2_penalty, 0.02 * static_cast<double>(l2), 1e-6 * 0.02 * static_cast<double>(l2));
  for (size_t t = 0; t < ts.size(); ++t) {
    EXPECT_NEAR(tg[t], std::sqrt(static_cast<double>(gn[t])),
                1e-6 * std::sqrt(static_cast<double>(gn[t])))
        << t;
    EXPECT_NEAR(tw[t], std::sqrt(static_cast<double>(wn[t])),
                1e-6 * std::sqrt(static_cast<double>(wn[t])))
        << t;
  }
  std::vector<float> got, want;
  for (const auto& t : ts)
    for (int64_t i = t.offset; i < t.offset + t.numel; ++i) {
      got.push_back(w[i]);
      want.push_back(static_cast<float>(w0[i] - factor * geff[i]));
    }
  EXPECT_TRUE(test::all_close(got, want, 1e-6, 1e-6));

  h.kind = OptimKind::Adam;
  h.lr = 1e-3f;
  h.clip = ClipMode::Norm;
  h.clip_value = 2.f;
  h.weight_decay = 0.1f;
  struct Out {
    std::vector<float> w, s1, s2, tg, tw;
    float G, l1, l2;
  };
  auto adam = [&](int threads) {
    test::ThreadCount tc(threads);
    Out o{w0,
          padded(3, 0, 0),
          padded(4, 0, 0),
          std::vector<float>(ts.size(), nan),
          std::vector<float>(ts.size(), nan),
          0,
          0,
          0};
    OptimStepStats s;
    s.tensor_grad_norm = o.tg.data();
    s.tensor_weight_norm = o.tw.data();
    OptimHyper a = h;
    for (a.step = 1; a.step <= 2; ++a.step)
      optim_step_ref<float>(o.w.data(), g.data(), o.s1.data(), o.s2.data(), ts.data(), nt, a, &s);
    o.G = s.grad_norm, o.l1 = s.l1_penalty, o.l2 = s.l2_penalty;
    return o;
  };
  const Out one = adam(1), three = adam(3);
  EXPECT_TRUE(test::bitwise_equal(three.w, one.w));
  EXPECT_TRUE(test::bitwise_equal(three.s1, one.s1));
  EXPECT_TRUE(test::bitwise_equal(three.s2, one.s2));
  EXPECT_TRUE(test::bitwise_equal(three.tg, one.tg));
  EXPECT_TRUE(test::bitwise_equal(three.tw, one.tw));
  EXPECT_TRUE(test::bitwise_equal(std::vector<float>{three.G, three.l1, three.l2},
                                  std::vector<float>{one.G, one.l1, one.l2}));
  EXPECT_FALSE(test::bitwise_equal(one.w, w0));  // it stepped
  for (const auto& t : ts) {
    const int64_t pad = t.offset + t.numel;
    if (t.numel % 16 != 0)  // padding follows
      EXPECT_TRUE(std::isnan(one.w[pad]) && std::isnan(one.s1[pad]) && std::isnan(one.s2[pad]));
  }
}

// ---- GPU: fused step vs CPU reference ------------------------------------------------------------
namespace {

// Many tensors of awkward sizes (1, odd, around the chunk size), biases without decay.
std::vector<ParamsOnly::Spec> odd_specs() {
  std::vector<ParamsOnly::Spec> s;
  const int64_t sizes[] = {1, 3, 17, 31, 255, 1023, 4097, kOptimChunk - 1, kOptimChunk, kOptimChunk + 3,
                           2 * kOptimChunk + 13, 5, 77, 20011, 2, 9};
  int i = 0;
  for (int64_t n : sizes) {
    bool decay = i % 3 != 1;
    s.push_back({(decay ? "w" : "b") + std::to_string(i), {n}, decay});
    ++i;
  }
  return s;
}

// Random weights and gradients in the tensors; NaN in the padding between them, which no pass
// may read.
void fill_flat(Model& m, Tensor& flat, uint64_t seed, double scale) {
  auto rnd = test::random_vec(static_cast<size_t>(flat.numel()), seed, -scale, scale);
  std::vector<float> v(rnd.size(), std::nanf(""));
  for (const auto& r : m.param_refs())
    for (int64_t i = 0; i < shape_numel(r.param->shape); ++i) v[r.param->offset + i] = rnd[r.param->offset + i];
  flat.copy_from(Tensor::from_vector(v, flat.shape(), flat.device()));
}

std::vector<float> tensor_values(Model& m, Tensor& flat) {
  std::vector<float> all = flat.to_vector(), out;
  for (const auto& r : m.param_refs())
    out.insert(out.end(), all.begin() + r.param->offset, all.begin() + r.param->offset + shape_numel(r.param->shape));
  return out;
}

void compare_fused_with_reference(const OptimOptions& o, const std::string& what, double grad_scale = 2.0) {
  Rig cpu(odd_specs(), Device::CPU), gpu(odd_specs(), Device::CUDA);
  fill_flat(cpu.model, cpu.model.flat_params(), 11, 1.0);
  fill_flat(gpu.model, gpu.model.flat_params(), 11, 1.0);
  auto oc = make_optimizer(o, cpu.model), og = make_optimizer(o, gpu.model);
  Context cc(Device::CPU), gc(Device::CUDA);
  for (int step = 0; step < 3; ++step) {
    fill_flat(cpu.model, cpu.model.flat_grads(), 100 + step, grad_scale);
    fill_flat(gpu.model, gpu.model.flat_grads(), 100 + step, grad_scale);
    float lr = o.lr * (1.0f + 0.5f * step);
    oc->step(cc, lr, step == 2 ? 0.8f : -1.0f);
    og->step(gc, lr, step == 2 ? 0.8f : -1.0f);
    SCOPED_TRACE(what + ", step " + std::to_string(step + 1));
    EXPECT_TRUE(test::all_close(tensor_values(gpu.model, gpu.model.flat_params()),
                                tensor_values(cpu.model, cpu.model.flat_params()), 1e-5, 1e-4));
    auto sc = oc->state(), sg = og->state();
    ASSERT_EQ(sc.size(), sg.size());
    for (size_t i = 0; i < sc.size(); ++i)
      EXPECT_TRUE(test::all_close(sg[i].second.to_vector(), sc[i].second.to_vector(), 1e-5, 1e-4)) << sc[i].first;
    StepStats a = oc->stats(cc), b = og->stats(gc);
    EXPECT_FALSE(b.nonfinite);
    EXPECT_NEAR(b.grad_norm, a.grad_norm, 1e-4 * a.grad_norm);
    EXPECT_NEAR(b.l1_penalty, a.l1_penalty, 1e-4 * a.l1_penalty + 1e-6);
    EXPECT_NEAR(b.l2_penalty, a.l2_penalty, 1e-4 * a.l2_penalty + 1e-6);
    EXPECT_TRUE(test::all_close(b.tensor_grad_norms, a.tensor_grad_norms, 1e-6, 1e-4));
    EXPECT_TRUE(test::all_close(b.tensor_weight_norms, a.tensor_weight_norms, 1e-6, 1e-4));
  }
}

}  // namespace

// sgd and rmsprop with and without momentum (plain SGD, the commonest setting, takes the
// kernel's no-momentum path until the third step's scheduled momentum turns it on).
TEST(OptimGpu, FusedStepMatchesReferenceEveryOptimizerAndClipMode) {
  KILN_SKIP_WITHOUT_GPU();
  for (const char* name : {"sgd", "adam", "adamw", "rmsprop"}) {
    const bool adam = std::string(name) == "adam" || std::string(name) == "adamw";
    for (float momentum : {0.9f, 0.0f}) {
      if (adam && momentum != 0) continue;
      for (int clip = 0; clip < 4; ++clip) {
        OptimOptions o = opt(name, std::string(name) == "sgd" ? 0.05f : 0.01f);
        o.momentum = momentum;
        o.nesterov = std::string(name) == "sgd" && clip == 1 && momentum != 0;
        o.weight_decay = 0.01f;
        o.l1 = 1e-4f;
        o.l2 = 1e-3f;
        if (clip == 1) o.clipvalue = 0.5f;
        if (clip == 2) o.clipnorm = 3.0f;
        if (clip == 3) o.global_clipnorm = 10.0f;
        compare_fused_with_reference(o, std::string(name) + " momentum " + std::to_string(momentum) +
                                            " clip mode " + std::to_string(clip));
      }
    }
  }
}

TEST(OptimGpu, HugeFiniteGradientClippedLikeReference) {
  // |g| up to 1e19 / 1e30: finite, but a float sum of g^2 over a chunk overflows. The device must
  // clip and apply the step like the reference (double sums), not see an infinite norm.
  KILN_SKIP_WITHOUT_GPU();
  for (double scale : {1e19, 1e30})
    for (const char* name : {"sgd", "adam"})
      for (int clip = 2; clip < 4; ++clip) {
        OptimOptions o = opt(name, 0.01f);
        o.momentum = std::string(name) == "sgd" ? 0.9f : 0.0f;
        o.weight_decay = 0.01f;
        (clip == 2 ? o.clipnorm : o.global_clipnorm) = 3.0f;
        compare_fused_with_reference(o, std::string(name) + " clip mode " + std::to_string(clip) + " |g| ~ " +
                                            std::to_string(scale), scale);
      }
}

TEST(OptimGpu, NonFiniteGradientSkipsStepOnDevice) {
  KILN_SKIP_WITHOUT_GPU();
  Rig gpu(odd_specs(), Device::CUDA);
  fill_flat(gpu.model, gpu.model.flat_params(), 3, 1.0);
  fill_flat(gpu.model, gpu.model.flat_grads(), 4, 1.0);
  OptimOptions o = opt("adam", 0.01f);
  auto op = make_optimizer(o, gpu.model);
  Context ctx(Device::CUDA);
  op->step(ctx, 0.01f);
  auto before = tensor_values(gpu.model, gpu.model.flat_params());
  auto state_before = op->state()[1].second.to_vector();
  std::vector<float> g = gpu.model.flat_grads().to_vector();
  g[gpu.model.param_refs()[13].param->offset + 20000] = INFINITY;  // last element of a big tensor
  gpu.model.flat_grads().copy_from(Tensor::from_vector(g, gpu.model.flat_grads().shape(), Device::CPU).to(Device::CUDA));
  op->step(ctx, 0.01f);
  StepStats s = op->stats(ctx);
  EXPECT_TRUE(s.nonfinite);
  EXPECT_EQ(tensor_values(gpu.model, gpu.model.flat_params()), before);
  EXPECT_EQ(op->state()[1].second.to_vector(), state_before);
  int flag = 0;
  copy_bytes(&flag, Device::CPU, op->nonfinite_flag(), Device::CUDA, sizeof(int));
  EXPECT_EQ(flag, 2);  // the first bad step's 1-based count, kept through later bad steps
  op->step(ctx, 0.01f);
  copy_bytes(&flag, Device::CPU, op->nonfinite_flag(), Device::CUDA, sizeof(int));
  EXPECT_EQ(flag, 2);
  op->reset_nonfinite_flag(ctx);
  ctx.sync();
  copy_bytes(&flag, Device::CPU, op->nonfinite_flag(), Device::CUDA, sizeof(int));
  EXPECT_EQ(flag, 0);
}

TEST(OptimGpu, TwoLaunchesPerStepAndDeterministic) {
  KILN_SKIP_WITHOUT_GPU();
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Rig gpu(odd_specs(), Device::CUDA);
    fill_flat(gpu.model, gpu.model.flat_params(), 7, 1.0);
    OptimOptions o = opt("sgd", 0.1f);
    o.momentum = 0.9f;
    o.global_clipnorm = 1.0f;
    auto op = make_optimizer(o, gpu.model);
    Context ctx(Device::CUDA);
    int64_t before = optim_launch_count();
    for (int i = 0; i < 3; ++i) {
      fill_flat(gpu.model, gpu.model.flat_grads(), 8 + i, 1.0);
      op->step(ctx, 0.1f);
    }
    EXPECT_EQ(optim_launch_count() - before, 6);
    auto w = tensor_values(gpu.model, gpu.model.flat_params());
    std::vector<float> n = op->stats(ctx).tensor_grad_norms;
    w.insert(w.end(), n.begin(), n.end());
    if (run == 0) first = w;
    else EXPECT_EQ(w, first) << "two identical runs differ";
  }
}

// A model without parameters (every layer parameter-free): the step has no chunks, so it
// launches nothing (a zero-block grid is a launch error on a device), through the argument and
// the device-argument paths; the statistics are those of the CPU step over nothing: zero norms,
// no non-finite gradient, flag 0.
TEST(OptimGpuEmpty, NoParametersLaunchesNothingAndMatchesCpu) {
  KILN_SKIP_WITHOUT_GPU();
  for (const char* name : {"sgd", "adam"}) {
    SCOPED_TRACE(name);
    Rig cpu({}, Device::CPU), gpu({}, Device::CUDA);
    OptimOptions o = opt(name, 0.1f);
    o.global_clipnorm = 1.0f;
    auto oc = make_optimizer(o, cpu.model), og = make_optimizer(o, gpu.model);
    Context cc(Device::CPU), gc(Device::CUDA);
    const int64_t before = optim_launch_count();
    oc->step(cc, 0.1f);
    og->step(gc, 0.1f);
    Buffer args(512, Device::CUDA);
    OptimStepArgs h;
    og->device_step_args(0.1f, -1.0f, &h);
    copy_bytes(args.data(), Device::CUDA, &h, Device::CPU, sizeof h);
    og->step_device(gc, static_cast<const OptimStepArgs*>(args.data()));
    gc.sync();
    EXPECT_EQ(optim_launch_count() - before, 0);
    StepStats a = oc->stats(cc), b = og->stats(gc);
    EXPECT_EQ(b.grad_norm, a.grad_norm);
    EXPECT_EQ(a.grad_norm, 0.0f);
    EXPECT_EQ(b.nonfinite, a.nonfinite);
    EXPECT_FALSE(b.nonfinite);
    EXPECT_TRUE(b.tensor_grad_norms.empty());
    int flag = -1;
    copy_bytes(&flag, Device::CPU, og->nonfinite_flag(), Device::CUDA, sizeof(int));
    EXPECT_EQ(flag, *oc->nonfinite_flag());
    EXPECT_EQ(flag, 0);
  }
}
