// Fused ReLU (Conv2d + ReLU, BatchNorm + ReLU, the model's fusion pass): the fused CPU references
// equal the unfused chain (op, then the ReLU kernels) exactly, forward and every gradient, and are
// gradient-checked in double away from the kink; whole models give the same logits, gradients and
// running statistics fused and unfused; checkpoints load across the two; the summary marks the
// folded ReLUs. With a GPU: the fused kernels against the fused references over awkward shapes
// with poisoned outputs, and fused-vs-unfused models on the device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/context.h"
#include "engine/error.h"
#include "kernels/activation/activation.h"
#include "kernels/conv/conv.h"
#include "kernels/norm/norm.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/model.h"
#include "layers/models.h"
#include "tests/conv_shapes.h"
#include "tests/test_util.h"
#include "tuning/options.h"
#include "tuning/run.h"

namespace kiln {
namespace {

using test::conv_shape;
using FusedShape = test::NamedConvShape;

// N=1, odd sizes, stride 2, padding, 1x1 (both paths), channels off multiples of 4 and 32, and
// one shape large enough for split-K in backward-filter and several tiles on every axis.
std::vector<FusedShape> fused_shapes() {
  return {
      {"N1Odd3x3", conv_shape(1, 3, 7, 9, 5, 3, 3, 1, 0)},
      {"Stride2Pad1", conv_shape(2, 5, 9, 8, 7, 3, 3, 2, 1)},
      {"Pad2K5", conv_shape(2, 3, 11, 10, 6, 5, 5, 1, 2)},
      {"OneByOne", conv_shape(3, 7, 5, 6, 9, 1, 1, 1, 0)},
      {"OneByOneStride2", conv_shape(2, 6, 7, 7, 5, 1, 1, 2, 0)},
      {"Channels33x37", conv_shape(2, 33, 6, 5, 37, 3, 3, 1, 1)},
      {"SplitK", conv_shape(8, 3, 30, 30, 10, 3, 3, 1, 0)},
  };
}

template <typename T>
struct Grads {
  std::vector<T> y, dx, dw, db;
};

// Conv2d (+ bias) then ReLU on the CPU, forward and backward with dy: fused (the conv references
// with relu / relu_y) or unfused (conv, then the ReLU kernels' references).
template <typename T>
Grads<T> conv_relu(const ConvShape& s, const std::vector<T>& x, const std::vector<T>& w,
                   const std::vector<T>& b, const std::vector<T>& dy, bool fused) {
  Grads<T> g;
  const int64_t ny = s.y_numel();
  g.y.resize(ny);
  g.dx.resize(s.x_numel());
  g.dw.resize(s.w_numel());
  g.db.resize(s.k);
  if (fused) {
    conv2d_fwd_ref<T>(s, x.data(), w.data(), b.data(), g.y.data(), true);
    conv2d_bwd_data_ref<T>(s, dy.data(), w.data(), g.dx.data(), g.y.data());
    conv2d_bwd_filter_ref<T>(s, x.data(), dy.data(), g.dw.data(), g.db.data(), g.y.data());
  } else {
    std::vector<T> pre(ny), dpre(ny);
    conv2d_fwd_ref<T>(s, x.data(), w.data(), b.data(), pre.data());
    activation_fwd_ref<T>(Act::ReLU, pre.data(), g.y.data(), ny);
    activation_bwd_ref<T>(Act::ReLU, g.y.data(), dy.data(), dpre.data(), ny);
    conv2d_bwd_data_ref<T>(s, dpre.data(), w.data(), g.dx.data());
    conv2d_bwd_filter_ref<T>(s, x.data(), dpre.data(), g.dw.data(), g.db.data());
  }
  return g;
}

// Fraction of zeros: the ReLU must clip a fair share or a test of the mask cannot fail.
template <typename T>
double zero_fraction(const std::vector<T>& y) {
  return double(std::count(y.begin(), y.end(), T(0))) / double(y.size());
}

// Fused and unfused results (forward output and the gradients y, dx, dw, db, any Grads-like
// struct) agree exactly, and the ReLU clips a real share of the outputs (10%..90%), so the mask
// is exercised on both sides of zero.
template <typename G>
void expect_fused_equals_unfused(const G& f, const G& u) {
  const double z = zero_fraction(f.y);
  EXPECT_GT(z, 0.1);
  EXPECT_LT(z, 0.9);
  EXPECT_TRUE(test::all_close(f.y, u.y, 0, 0)) << "forward";
  EXPECT_TRUE(test::all_close(f.dx, u.dx, 0, 0)) << "dx";
  EXPECT_TRUE(test::all_close(f.dw, u.dw, 0, 0)) << "dweight";
  EXPECT_TRUE(test::all_close(f.db, u.db, 0, 0)) << "dbias";
}

class ConvReluRef : public ::testing::TestWithParam<FusedShape> {};

TEST_P(ConvReluRef, FusedEqualsConvThenRelu) {
  const ConvShape s = GetParam().s;
  auto x = test::random_vec<float>(s.x_numel(), 11), w = test::random_vec<float>(s.w_numel(), 12);
  auto b = test::random_vec<float>(s.k, 13), dy = test::random_vec<float>(s.y_numel(), 14);
  expect_fused_equals_unfused(conv_relu(s, x, w, b, dy, true), conv_relu(s, x, w, b, dy, false));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvReluRef, ::testing::ValuesIn(fused_shapes()),
                         [](const auto& info) { return info.param.name; });

// d/d(x, w, b) of sum r * relu(conv(x, w) + b) through the fused double reference. Every
// pre-activation is kept at least 1e-4 from 0 (a 1e-6 step moves it by far less), so the
// central differences never straddle the kink.
TEST(ConvReluRef, GradCheckDouble) {
  for (const ConvShape& s : {conv_shape(2, 3, 6, 5, 4, 3, 3, 2, 1), conv_shape(2, 5, 3, 4, 3, 1, 1, 1, 0)}) {
    auto x = test::random_vec<double>(s.x_numel(), 21), w = test::random_vec<double>(s.w_numel(), 22);
    auto b = test::random_vec<double>(s.k, 23), r = test::random_vec<double>(s.y_numel(), 24);
    std::vector<double> pre(s.y_numel());
    conv2d_fwd_ref<double>(s, x.data(), w.data(), b.data(), pre.data());
    double closest = 1e9;
    for (double v : pre) closest = std::min(closest, std::fabs(v));
    ASSERT_GT(closest, 1e-4) << "pick another seed: a pre-activation sits on the kink";
    const Grads<double> g = conv_relu(s, x, w, b, r, true);
    ASSERT_GT(zero_fraction(g.y), 0.1);
    auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww,
                    const std::vector<double>& bb) {
      std::vector<double> y(s.y_numel());
      conv2d_fwd_ref<double>(s, xx.data(), ww.data(), bb.data(), y.data(), true);
      return test::dot(y, r);
    };
    EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(v, w, b); }, x, g.dx)) << "dx";
    EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(x, v, b); }, w, g.dw)) << "dw";
    EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(x, w, v); }, b, g.db)) << "db";
  }
}

// ---- batch norm + ReLU ---------------------------------------------------------------------------

template <typename T>
struct BnGrads {
  std::vector<T> y, dx, dw, db, mean, invstd, rmean, rvar;
};

// BatchNorm then ReLU on the CPU (train: batch statistics and running-stat update; eval: the
// given running statistics), forward and backward with dy, fused or unfused.
template <typename T>
BnGrads<T> bn_relu(const NormShape& s, bool train, const std::vector<T>& x, const std::vector<T>& w,
                   const std::vector<T>& b, const std::vector<T>& dy, bool fused) {
  BnGrads<T> g;
  const int64_t n = s.numel();
  g.y.resize(n), g.dx.resize(n), g.dw.resize(s.c), g.db.resize(s.c);
  g.mean.resize(s.c), g.invstd.resize(s.c);
  g.rmean = test::random_vec<T>(s.c, 31, -0.3, 0.3);
  g.rvar = test::random_vec<T>(s.c, 32, 0.5, 1.5);
  std::vector<T> pre(n), dpre(n);
  T* out = fused ? g.y.data() : pre.data();
  T nbt[2] = {0, 0};
  if (train) {
    batchnorm_fwd_train_ref<T>(x.data(), w.data(), b.data(), out, g.mean.data(), g.invstd.data(),
                               g.rmean.data(), g.rvar.data(), nbt, 0.1, 1e-5, s, nullptr, fused);
  } else {
    batchnorm_fwd_eval_ref<T>(x.data(), w.data(), b.data(), g.rmean.data(), g.rvar.data(), out,
                              1e-5, s, fused);
    batchnorm_invstd_ref<T>(g.rvar.data(), g.invstd.data(), 1e-5, s.c);
    g.mean = g.rmean;
  }
  const T* g_in = dy.data();
  if (!fused) {
    activation_fwd_ref<T>(Act::ReLU, pre.data(), g.y.data(), n);
    activation_bwd_ref<T>(Act::ReLU, g.y.data(), dy.data(), dpre.data(), n);
    g_in = dpre.data();
  }
  batchnorm_bwd_ref<T>(x.data(), g_in, w.data(), g.mean.data(), g.invstd.data(), g.dx.data(),
                       g.dw.data(), g.db.data(), train, s, nullptr, fused ? g.y.data() : nullptr);
  return g;
}

TEST(BatchNormReluRef, FusedEqualsBatchNormThenRelu) {
  for (const NormShape& s : {NormShape{3, 5, 6, 1}, NormShape{7, 5, 1, 1}, NormShape{1, 3, 7, 1}})
    for (bool train : {true, false}) {
      SCOPED_TRACE("n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " hw=" +
                   std::to_string(s.hw) + (train ? " train" : " eval"));
      auto x = test::random_vec<float>(s.numel(), 41, -2, 2), w = test::random_vec<float>(s.c, 42, 0.5, 1.5);
      auto b = test::random_vec<float>(s.c, 43), dy = test::random_vec<float>(s.numel(), 44);
      const BnGrads<float> f = bn_relu(s, train, x, w, b, dy, true), u = bn_relu(s, train, x, w, b, dy, false);
      expect_fused_equals_unfused(f, u);
      EXPECT_TRUE(test::all_close(f.rmean, u.rmean, 0, 0) && test::all_close(f.rvar, u.rvar, 0, 0));
    }
}

// d/d(x, weight, bias) of sum r * relu(bn(x)) through the fused double reference, in training
// mode (through the batch statistics) and eval mode, pre-activations kept off the kink.
TEST(BatchNormReluRef, GradCheckDouble) {
  for (const NormShape& s : {NormShape{3, 4, 5, 1}, NormShape{6, 3, 1, 1}})
    for (bool train : {true, false}) {
      SCOPED_TRACE(std::string(train ? "train" : "eval") + " hw=" + std::to_string(s.hw));
      auto x = test::random_vec<double>(s.numel(), 51, -2, 2), w = test::random_vec<double>(s.c, 52, 0.5, 1.5);
      auto b = test::random_vec<double>(s.c, 53, -0.5, 0.5), r = test::random_vec<double>(s.numel(), 54);
      const BnGrads<double> unf = bn_relu(s, train, x, w, b, r, false);
      auto forward = [&](const std::vector<double>& xx, const std::vector<double>& ww,
                         const std::vector<double>& bb, bool relu) {
        std::vector<double> y(s.numel()), mean(s.c), is(s.c);
        if (train) {
          batchnorm_fwd_train_ref<double>(xx.data(), ww.data(), bb.data(), y.data(), mean.data(),
                                          is.data(), nullptr, nullptr, nullptr, 0.1, 1e-5, s, nullptr, relu);
        } else {  // the running statistics bn_relu used (eval leaves them unchanged)
          batchnorm_fwd_eval_ref<double>(xx.data(), ww.data(), bb.data(), unf.rmean.data(),
                                         unf.rvar.data(), y.data(), 1e-5, s, relu);
        }
        return y;
      };
      double closest = 1e9;
      for (double v : forward(x, w, b, false)) closest = std::min(closest, std::fabs(v));
      ASSERT_GT(closest, 1e-4) << "pick another seed: a pre-activation sits on the kink";
      const BnGrads<double> g = bn_relu(s, train, x, w, b, r, true);
      ASSERT_GT(zero_fraction(g.y), 0.1);
      auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww,
                      const std::vector<double>& bb) { return test::dot(forward(xx, ww, bb, true), r); };
      EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(v, w, b); }, x, g.dx)) << "dx";
      EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(x, v, b); }, w, g.dw)) << "dweight";
      EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(x, w, v); }, b, g.db)) << "dbias";
    }
}

// ---- the model's fusion pass ---------------------------------------------------------------------

ModelOptions model_opts(const std::string& model, const std::string& norm, const std::string& pos,
                        bool fuse) {
  ModelOptions o;
  o.model = model;
  o.norm = norm;
  o.norm_position = pos;
  o.width = 24;
  o.fuse = fuse;
  return o;
}

Shape input_for(const std::string& model) {
  if (model == "mlp") return {1, 6, 5};
  if (model == "cifar") return {3, 8, 8};
  return {1, 28, 28};
}

struct ModelRun {
  std::vector<float> logits, eval_logits, grads, state;
  int fused = 0;
  std::string summary;
};

// One training forward/backward (random dlogits), then an eval forward; the state dict is read
// after the training forward (running statistics).
ModelRun run_model(const ModelOptions& o, Device d) {
  const Shape in = input_for(o.model);
  auto m = make_model(o, in, 10);
  m->build(d, 7);
  Context ctx(d);
  Shape xs = in;
  xs.insert(xs.begin(), 3);
  Tensor x = Tensor::from_vector(test::random_vec<float>(shape_numel(xs), 61), xs, d);
  ModelRun r;
  m->train(ctx);
  Tensor y = m->forward(ctx, x);
  ctx.sync();
  r.logits = y.to_vector();
  m->backward(ctx, Tensor::from_vector(test::random_vec<float>(y.numel(), 62), y.shape(), d));
  ctx.sync();
  r.grads = m->flat_grads().to_vector();
  for (auto& [name, t] : m->state_dict()) {
    std::vector<float> v = t.to_vector();
    r.state.insert(r.state.end(), v.begin(), v.end());
  }
  m->eval(ctx);
  r.eval_logits = m->forward(ctx, x).to_vector();
  r.fused = m->fused_layers();
  r.summary = m->summary_table();
  return r;
}

struct ModelCase {
  std::string model, norm, pos;
  int want_fused;
};

std::vector<ModelCase> model_cases() {
  return {{"cnn", "none", "before", 7},    // every conv block's ReLU
          {"cnn", "batch", "before", 7},   // folded into BatchNorm2d
          {"cnn", "batch", "after", 7},    // conv, ReLU, BN: folded into the conv
          {"cnn", "group", "before", 0},   // GroupNorm does not fuse
          {"mlp", "batch", "before", 2},   // BatchNorm1d
          {"mlp", "none", "before", 0},    // Linear does not fuse
          {"cifar", "none", "before", 6}};
}

// On the CPU the fused layers do the same arithmetic in the same order, on every conv path this
// CPU runs: the same bits, which is what lets the apps fuse there by default (--fuse auto).
TEST(FusionModel, SameLogitsGradientsAndStateFusedOrNot) {
  for (const std::string& path : conv_ref_paths())
    for (const ModelCase& c : model_cases()) {
      SCOPED_TRACE(c.model + " norm=" + c.norm + " " + c.pos + ", conv " + path);
      set_conv_ref_path(path);
      const ModelRun u = run_model(model_opts(c.model, c.norm, c.pos, false), Device::CPU);
      const ModelRun f = run_model(model_opts(c.model, c.norm, c.pos, true), Device::CPU);
      set_conv_ref_path("");
      EXPECT_EQ(u.fused, 0);
      EXPECT_EQ(f.fused, c.want_fused);
      EXPECT_TRUE(test::all_close(f.logits, u.logits, 0, 0)) << "logits";
      EXPECT_TRUE(test::all_close(f.grads, u.grads, 0, 0)) << "gradients";
      EXPECT_TRUE(test::all_close(f.state, u.state, 0, 0)) << "state dict";
      EXPECT_TRUE(test::all_close(f.eval_logits, u.eval_logits, 0, 0)) << "eval logits";
    }
}

// The fused kernels on the device: the same model fused and unfused agrees (the kernels do the
// same arithmetic, the mask only moves into the loads), and fused GPU agrees with fused CPU.
TEST(FusionModelGpu, FusedMatchesUnfusedAndCpu) {
  KILN_SKIP_WITHOUT_GPU();
  for (const ModelCase& c : model_cases()) {
    SCOPED_TRACE(c.model + " norm=" + c.norm + " " + c.pos);
    const ModelRun u = run_model(model_opts(c.model, c.norm, c.pos, false), Device::CUDA);
    const ModelRun f = run_model(model_opts(c.model, c.norm, c.pos, true), Device::CUDA);
    const ModelRun fc = run_model(model_opts(c.model, c.norm, c.pos, true), Device::CPU);
    EXPECT_EQ(f.fused, c.want_fused);
    EXPECT_TRUE(test::all_close(f.logits, u.logits, 1e-6, 1e-6)) << "logits";
    EXPECT_TRUE(test::all_close(f.grads, u.grads, 1e-6, 1e-6)) << "gradients";
    EXPECT_TRUE(test::all_close(f.state, u.state, 1e-6, 1e-6)) << "state dict";
    EXPECT_TRUE(test::all_close(f.eval_logits, u.eval_logits, 1e-6, 1e-6)) << "eval logits";
    EXPECT_TRUE(test::all_close(f.logits, fc.logits, 1e-4, 1e-4)) << "logits vs CPU";
    EXPECT_TRUE(test::all_close(f.grads, fc.grads, 1e-3, 1e-3)) << "gradients vs CPU";
  }
}

// torch.relu(nan) is nan: a NaN in the first weight must reach every logit through every ReLU,
// fused into a conv or a batch norm or not (it used to become 0 and train on silently).
void expect_nan_reaches_every_logit(Device d) {
  for (const ModelCase& c : model_cases())
    for (bool fuse : {false, true}) {
      SCOPED_TRACE(c.model + " norm=" + c.norm + " " + c.pos + (fuse ? " fused" : ""));
      const ModelOptions o = model_opts(c.model, c.norm, c.pos, fuse);
      const Shape in = input_for(o.model);
      auto m = make_model(o, in, 10);
      m->build(d, 7);
      Param* w0 = m->param_refs()[0].param;
      std::vector<float> w = w0->value.to_vector();
      w[0] = std::nanf("");
      w0->value.copy_from(Tensor::from_vector(w, w0->shape, Device::CPU).to(d));
      Context ctx(d);
      Shape xs = in;
      xs.insert(xs.begin(), 3);
      Tensor x = Tensor::from_vector(test::random_vec<float>(shape_numel(xs), 61), xs, d);
      for (bool training : {true, false}) {
        training ? m->train(ctx) : m->eval(ctx);
        const std::vector<float> y = m->forward(ctx, x).to_vector();
        EXPECT_TRUE(std::all_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }))
            << (training ? "training" : "eval") << " forward: a logit is not NaN";
      }
    }
}

TEST(FusionModel, NanWeightReachesEveryLogitFusedOrNot) {
  expect_nan_reaches_every_logit(Device::CPU);
}

TEST(FusionModelGpu, NanWeightReachesEveryLogitFusedOrNot) {
  KILN_SKIP_WITHOUT_GPU();
  expect_nan_reaches_every_logit(Device::CUDA);
}

TEST(FusionModel, SummaryMarksFoldedRelu) {
  const ModelRun f = run_model(model_opts("cnn", "batch", "before", true), Device::CPU);
  // layers 0 conv, 1 BN, 2 ReLU
  EXPECT_NE(f.summary.find("ReLU (fused into layer 1)"), std::string::npos) << f.summary;
  const ModelRun u = run_model(model_opts("cnn", "batch", "before", false), Device::CPU);
  EXPECT_EQ(u.summary.find("fused"), std::string::npos) << u.summary;
}

// The layout and names do not change, so checkpoints cross between fused and unfused models.
TEST(FusionModel, CheckpointsLoadAcrossFusion) {
  for (bool save_fused : {false, true}) {
    const ModelOptions so = model_opts("cnn", "batch", "before", save_fused);
    const ModelOptions lo = model_opts("cnn", "batch", "before", !save_fused);
    auto a = make_model(so, {1, 28, 28}, 10), b = make_model(lo, {1, 28, 28}, 10);
    a->build(Device::CPU, 3);
    b->build(Device::CPU, 4);  // different initial values, overwritten by the load
    Context ctx(Device::CPU);
    Tensor x = Tensor::from_vector(test::random_vec<float>(2 * 784, 71), {2, 1, 28, 28}, Device::CPU);
    a->forward(ctx, x);  // moves the running statistics off their initial values
    CheckpointInfo info;
    load_checkpoint_bytes(encode_checkpoint(ctx, *a, nullptr, nullptr, info), "fusion", ctx, *b,
                          nullptr, nullptr);
    auto sa = a->state_dict(), sb = b->state_dict();
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      EXPECT_EQ(sa[i].first, sb[i].first);
      EXPECT_TRUE(test::all_close(sb[i].second.to_vector(), sa[i].second.to_vector(), 0, 0)) << sa[i].first;
    }
    a->eval(ctx);
    b->eval(ctx);
    EXPECT_TRUE(test::all_close(b->forward(ctx, x).to_vector(), a->forward(ctx, x).to_vector(), 1e-6, 1e-6));
  }
}

// --fuse auto (the default) folds the ReLUs on the CPU, where SameLogitsGradientsAndStateFusedOrNot
// shows the same bits, and not on CUDA, whose fused kernels no GPU run has timed yet.
TEST(FusionModel, OptionDefaultsToAutoFusedOnTheCpuOnly) {
  RunConfig cfg;
  EXPECT_EQ(cfg.fuse, "auto");
  EXPECT_FALSE(cfg.model.fuse);  // the library's ModelOptions: off unless asked
  EXPECT_TRUE(cfg.fuse_on(Device::CPU));
  EXPECT_FALSE(cfg.fuse_on(Device::CUDA));
  const OptionSpec* o = run_options().find("fuse");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->get(cfg), "auto");
  o->set(cfg, "on");
  EXPECT_EQ(o->get(cfg), "on");
  EXPECT_TRUE(cfg.fuse_on(Device::CPU));
  EXPECT_TRUE(cfg.fuse_on(Device::CUDA));
  o->set(cfg, "false");  // YAML 1.1 booleans, as every on|off option
  EXPECT_EQ(o->get(cfg), "off");
  EXPECT_FALSE(cfg.fuse_on(Device::CPU));
  EXPECT_FALSE(cfg.fuse_on(Device::CUDA));
  o->set(cfg, "Auto");  // any case, as on|off
  EXPECT_EQ(o->get(cfg), "auto");
  try {
    o->set(cfg, "maybe");
    ADD_FAILURE() << "--fuse maybe was accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("'maybe' is not auto|on|off"), std::string::npos) << e.message();
  }
  // A run on the CPU builds its model fused by default.
  RunConfig run;
  run.device = "cpu";
  EXPECT_EQ(make_session(run, false)->model->fused_layers(), 7);
  run.fuse = "off";
  EXPECT_EQ(make_session(run, false)->model->fused_layers(), 0);
  Model m({1, 4, 4});
  m.add(std::make_unique<Conv2d>(1, 2, 3));
  m.build(Device::CPU, 1);
  EXPECT_THROW(m.set_fusion(true), Error);  // a built model's kernels are already chosen
}

}  // namespace
}  // namespace kiln
