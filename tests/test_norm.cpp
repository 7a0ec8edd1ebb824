// Batch norm and group norm: hand-computed values, running statistics, double-precision gradient
// checks of the CPU references, the GroupNorm divisibility error, the block-tail builders, and
// GPU-vs-reference comparisons (skipped without a GPU; cuDNN as a second oracle when present).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels/norm/norm.h"
#include "layers/activation.h"
#include "layers/conv.h"
#include "layers/models.h"
#include "layers/norm.h"
#include "test_util.h"
#include "tests/model_grads.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>
#endif
#ifdef KILN_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace kiln {
namespace {

using test::dot;
using test::random_vec;

// ---- CPU: values ------------------------------------------------------------------------------
TEST(BatchNormRef, TrainForwardMatchesHandFormula) {
  // n=2, c=2, hw=2: channel 0 holds {1,2,3,4}, channel 1 holds {-1,1,-1,1}.
  NormShape s{2, 2, 2, 1};
  std::vector<float> x = {1, 2, -1, 1, 3, 4, -1, 1}, w = {2, 1}, b = {0.5f, -1};
  std::vector<float> y(8), mean(2), invstd(2), rm = {0, 0}, rv = {1, 1}, nbt = {0, 0};
  batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(),
                                 invstd.data(), rm.data(), rv.data(), nbt.data(), 0.1, 1e-5, s,
                                 nullptr);
  const double is0 = 1 / std::sqrt(1.25 + 1e-5), is1 = 1 / std::sqrt(1.0 + 1e-5);
  std::vector<float> want = {float((1 - 2.5) * is0 * 2 + 0.5), float((2 - 2.5) * is0 * 2 + 0.5),
                             float(-1 * is1 - 1), float(1 * is1 - 1),
                             float((3 - 2.5) * is0 * 2 + 0.5), float((4 - 2.5) * is0 * 2 + 0.5),
                             float(-1 * is1 - 1), float(1 * is1 - 1)};
  EXPECT_TRUE(test::all_close(y, want, 1e-6, 1e-6));
  EXPECT_TRUE(test::all_close(mean, {2.5f, 0.0f}, 1e-7, 0));
  // running_var uses the unbiased variance: 5/3 and 4/3
  EXPECT_TRUE(test::all_close(rm, {0.25f, 0.0f}, 1e-7, 1e-6));
  EXPECT_TRUE(test::all_close(rv, {float(0.9 + 0.1 * 5.0 / 3), float(0.9 + 0.1 * 4.0 / 3)}, 1e-7, 1e-6));
  EXPECT_EQ(nbt[0], 1.0f);
  // The count is [count mod 2^24, count / 2^24]: one float stopped counting at 2^24 batches.
  nbt = {16777215, 2};
  batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), invstd.data(),
                                 rm.data(), rv.data(), nbt.data(), 0.1, 1e-5, s, nullptr);
  EXPECT_EQ(nbt, (std::vector<float>{0, 3}));
}

TEST(BatchNormLayer, EvalUsesRunningStatsAfterTwoTrainingSteps) {
  Model m({1});
  auto& bn = static_cast<BatchNorm&>(m.add(std::make_unique<BatchNorm>(1, false)));
  m.build(Device::CPU, 1);
  Context ctx(Device::CPU);
  ctx.training = true;
  // step 1: {1, 3}: mean 2, unbiased var 2 -> running_mean 0.2, running_var 0.9 + 0.2 = 1.1
  m.forward(ctx, Tensor::from_vector({1, 3}, {2, 1}, Device::CPU));
  // step 2: {2, 6}: mean 4, unbiased var 8 -> running_mean 0.18 + 0.4 = 0.58,
  //                                           running_var 0.99 + 0.8 = 1.79
  m.forward(ctx, Tensor::from_vector({2, 6}, {2, 1}, Device::CPU));
  EXPECT_NEAR(bn.running_mean().to_vector()[0], 0.58, 1e-6);
  EXPECT_NEAR(bn.running_var().to_vector()[0], 1.79, 1e-6);
  EXPECT_EQ(bn.num_batches_tracked().to_vector()[0], 2.0f);
  ctx.training = false;
  auto y = m.forward(ctx, Tensor::from_vector({0.58f, 2.0f, -1.0f}, {3, 1}, Device::CPU)).to_vector();
  const double sd = std::sqrt(1.79 + 1e-5);
  EXPECT_NEAR(y[0], 0.0, 1e-6);
  EXPECT_NEAR(y[1], (2.0 - 0.58) / sd, 1e-6);
  EXPECT_NEAR(y[2], (-1.0 - 0.58) / sd, 1e-6);
  // eval mode leaves the running statistics alone
  EXPECT_NEAR(bn.running_mean().to_vector()[0], 0.58, 1e-6);
  EXPECT_EQ(bn.num_batches_tracked().to_vector()[0], 2.0f);
  auto names = m.state_dict();
  ASSERT_EQ(names.size(), 5u);
  EXPECT_EQ(names[0].first, "0.weight");
  EXPECT_EQ(names[2].first, "0.running_mean");
  EXPECT_EQ(names[4].first, "0.num_batches_tracked");
}

TEST(GroupNormRef, ForwardMatchesHandFormula) {
  // n=1, c=4, groups=2, hw=1: groups {1,3} (mean 2, var 1) and {0,4} (mean 2, var 4)
  NormShape s{1, 4, 1, 2};
  std::vector<float> x = {1, 3, 0, 4}, w = {1, 2, 1, 1}, b = {0, 0, 1, 0}, y(4), mean(2), is(2);
  groupnorm_fwd_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(), 1e-5, s);
  const double i0 = 1 / std::sqrt(1 + 1e-5), i1 = 1 / std::sqrt(4 + 1e-5);
  EXPECT_TRUE(test::all_close(y, {float(-i0), float(2 * i0), float(-2 * i1 + 1), float(2 * i1)}, 1e-6, 1e-6));
  EXPECT_TRUE(test::all_close(mean, {2, 2}, 0, 0));
}

// ---- CPU: gradient checks in double ------------------------------------------------------------
enum class Op { BnTrain, BnEval, Gn };

// Loss = <r, norm(x; w, b)>; checks d/dx, d/dw, d/db of the reference backward.
void check_grads(Op op, NormShape s, uint64_t seed) {
  const size_t n = static_cast<size_t>(s.numel()), c = static_cast<size_t>(s.c);
  auto x = random_vec<double>(n, seed, -2, 2);
  auto w = random_vec<double>(c, seed + 1, 0.5, 1.5);
  auto b = random_vec<double>(c, seed + 2, -0.5, 0.5);
  auto r = random_vec<double>(n, seed + 3);
  auto rm = random_vec<double>(c, seed + 4, -0.5, 0.5);
  auto rv = random_vec<double>(c, seed + 5, 0.5, 2.0);
  const size_t stats = op == Op::Gn ? static_cast<size_t>(s.n * s.groups) : c;
  auto loss = [&](const std::vector<double>& xx, const std::vector<double>& ww,
                  const std::vector<double>& bb) {
    std::vector<double> y(n), mean(stats), is(stats);
    if (op == Op::BnTrain)
      batchnorm_fwd_train_ref<double>(xx.data(), ww.data(), bb.data(), y.data(), mean.data(),
                                      is.data(), nullptr, nullptr, nullptr, 0.1, 1e-5, s, nullptr);
    else if (op == Op::BnEval)
      batchnorm_fwd_eval_ref<double>(xx.data(), ww.data(), bb.data(), rm.data(), rv.data(),
                                     y.data(), 1e-5, s);
    else
      groupnorm_fwd_ref<double>(xx.data(), ww.data(), bb.data(), y.data(), mean.data(), is.data(),
                                1e-5, s);
    return dot(r, y);
  };
  std::vector<double> y(n), mean(stats), is(stats), dx(n), dw(c), db(c);
  if (op == Op::BnTrain) {
    batchnorm_fwd_train_ref<double>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                    nullptr, nullptr, nullptr, 0.1, 1e-5, s, nullptr);
    batchnorm_bwd_ref<double>(x.data(), r.data(), w.data(), mean.data(), is.data(), dx.data(),
                              dw.data(), db.data(), true, s, nullptr);
  } else if (op == Op::BnEval) {
    batchnorm_invstd_ref<double>(rv.data(), is.data(), 1e-5, s.c);
    batchnorm_bwd_ref<double>(x.data(), r.data(), w.data(), rm.data(), is.data(), dx.data(),
                              dw.data(), db.data(), false, s, nullptr);
  } else {
    groupnorm_fwd_ref<double>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(), 1e-5, s);
    groupnorm_bwd_ref<double>(x.data(), r.data(), w.data(), mean.data(), is.data(), dx.data(),
                              dw.data(), db.data(), s, nullptr);
  }
  EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(v, w, b); }, x, dx));
  EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(x, v, b); }, w, dw));
  EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(x, w, v); }, b, db));
}

// Eval mode's dx is w * invstd * dy: it reads no x, so an inf or NaN in x reaches dweight (as in
// torch) but not dx, nor the sign of a zero dx (the CUDA kernel's rule, NormGpu.EvalBackward*).
TEST(BatchNormRef, EvalBackwardDxReadsNoInput) {
  const NormShape s{2, 3, 5};
  std::vector<float> x = random_vec(s.numel(), 31);
  x[1] = std::numeric_limits<float>::infinity();
  x[2 * s.hw + 3] = std::numeric_limits<float>::quiet_NaN();  // channel 2
  std::vector<float> dy = random_vec(s.numel(), 32), w = random_vec(s.c, 33, -1.5, -0.5);
  dy[4] = 0.f;  // w < 0: dx must be -0, as w * is * 0
  const std::vector<float> mean = random_vec(s.c, 34), is = random_vec(s.c, 35, 0.5, 2);
  std::vector<float> dx(s.numel()), dw(s.c), db(s.c);
  batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                           dw.data(), db.data(), false, s, nullptr);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t k = 0; k < s.hw; ++k) {
        const size_t i = static_cast<size_t>((n * s.c + c) * s.hw + k);
        const float want = static_cast<float>(double(w[c]) * double(is[c]) * double(dy[i]));
        EXPECT_EQ(dx[i], want) << "element " << i;
        EXPECT_EQ(std::signbit(dx[i]), std::signbit(want)) << "element " << i;
      }
  EXPECT_FALSE(std::isfinite(dw[0]));
  EXPECT_TRUE(std::isfinite(dw[1]));
  EXPECT_FALSE(std::isfinite(dw[2]));
}

// The backward reads planes in chunks of 512 with dy masked by the fused ReLU first (its sums
// must still add every element once, in its lane): planes of 1100 and 1031 values (two whole
// chunks and a tail, one not a multiple of 8) against the formula summed plainly, with a ReLU
// output that stops about half the gradient and without one, in training and in eval mode.
TEST(BatchNormRef, BackwardOfPlanesLongerThanAChunkMatchesTheFormula) {
  for (const NormShape s : {NormShape{2, 3, 1100}, NormShape{3, 2, 1031}})
    for (bool train : {true, false})
      for (bool relu : {true, false}) {
        SCOPED_TRACE(testing::Message() << "hw=" << s.hw << (train ? " train" : " eval")
                                        << (relu ? " relu" : ""));
        const size_t n = static_cast<size_t>(s.numel()), c = static_cast<size_t>(s.c);
        const auto x = random_vec<double>(n, 61, -2, 2), dy = random_vec<double>(n, 62);
        const auto ry = random_vec<double>(n, 63), w = random_vec<double>(c, 64, 0.5, 1.5);
        const auto mean = random_vec<double>(c, 65, -0.3, 0.3);
        const auto is = random_vec<double>(c, 66, 0.5, 2);
        std::vector<double> dx(n), dw(c), db(c);
        batchnorm_bwd_ref<double>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                                  dw.data(), db.data(), train, s, nullptr,
                                  relu ? ry.data() : nullptr);
        const double m = static_cast<double>(s.n * s.hw);
        for (int64_t ch = 0; ch < s.c; ++ch) {
          auto g = [&](size_t i) { return relu && ry[i] <= 0 ? 0.0 : dy[i]; };
          double sdy = 0, sdyx = 0, stopped = 0;
          for (int64_t b = 0; b < s.n; ++b)
            for (int64_t k = 0; k < s.hw; ++k) {
              const size_t i = static_cast<size_t>((b * s.c + ch) * s.hw + k);
              sdy += g(i);
              sdyx += g(i) * (x[i] - mean[ch]) * is[ch];
              stopped += relu && ry[i] <= 0;
            }
          if (relu) EXPECT_GT(stopped, m / 3) << "channel " << ch;  // (the mask matters)
          EXPECT_NEAR(db[ch], sdy, 1e-9 * (1 + std::abs(sdy))) << "channel " << ch;
          EXPECT_NEAR(dw[ch], sdyx, 1e-9 * (1 + std::abs(sdyx))) << "channel " << ch;
          const double a = w[ch] * is[ch];
          for (int64_t b = 0; b < s.n; ++b)
            for (int64_t k = 0; k < s.hw; ++k) {
              const size_t i = static_cast<size_t>((b * s.c + ch) * s.hw + k);
              const double want = train ? a * (g(i) - (sdy + (x[i] - mean[ch]) * is[ch] * sdyx) / m)
                                        : a * g(i);
              ASSERT_NEAR(dx[i], want, 1e-9) << "image " << b << " channel " << ch << " k " << k;
            }
        }
      }
}

// The float batch- and group-norm passes are compiled for several instruction sets (AVX-512 and
// AVX2 on x86-64, and the build's own): each one this CPU runs must write the generic loop's bits
// in every output (batch norm forward in training with the running statistics, and in eval;
// backward in both modes, with and without the fused ReLU's output, with and without dx; group
// norm with one group and with a group per channel, with and without dx), on shapes with planes
// of 1, odd lengths and more than a backward chunk, 1 and 3 threads, NaN and inf in x and dy.
TEST(NormRef, EveryInstructionSetWritesTheSameBits) {
  struct Restore {
    ~Restore() { set_norm_ref_isa(""); }
  } restore;
  const auto isas = norm_ref_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), "generic");
  EXPECT_EQ(norm_ref_isa(), isas.front());
  EXPECT_THROW(set_norm_ref_isa("sse9"), Error);
  // The outputs cannot tell the loops apart (they are the same bits): the choice is asked, so a
  // selector that ignored it (every run the best's) fails here (until 2026-12-07 it passed).
  for (const std::string& isa : isas) {
    set_norm_ref_isa(isa);
    EXPECT_EQ(norm_ref_isa(), isa);
  }
  set_norm_ref_isa("");
  EXPECT_EQ(norm_ref_isa(), isas.front());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const NormShape s : {NormShape{5, 3, 1}, NormShape{3, 4, 13}, NormShape{2, 3, 1031}})
    for (int threads : {1, 3}) {
      test::ThreadCount tc(threads);
      const size_t n = static_cast<size_t>(s.numel()), c = static_cast<size_t>(s.c);
      auto x = random_vec(n, 71, -2, 2), dy = random_vec(n, 72);
      x[n / 2] = nan;  // (non-finite values in x and in dy)
      dy[n - 2] = inf;
      const auto w = random_vec(c, 73, 0.5, 1.5), b = random_vec(c, 74);
      const auto rm = random_vec(c, 75), rv = random_vec(c, 76, 0.5, 2);
      // every output of every pass, in order, as bytes
      auto run = [&](const std::string& isa) {
        set_norm_ref_isa(isa);
        std::vector<float> out;
        auto keep = [&](const std::vector<float>& v) { out.insert(out.end(), v.begin(), v.end()); };
        for (bool relu : {false, true}) {
          std::vector<float> y(n, -77.f), mean(c, -77.f), is(c, -77.f), run_m = rm, run_v = rv;
          float nbt[2] = {0, 0};
          batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(),
                                         is.data(), run_m.data(), run_v.data(), nbt, 0.1, 1e-5, s,
                                         nullptr, relu);
          keep(y), keep(mean), keep(is), keep(run_m), keep(run_v);
          for (bool train : {true, false})
            for (bool with_dx : {true, false}) {
              std::vector<float> dx(n, -77.f), dw(c, -77.f), db(c, -77.f);
              batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(),
                                       with_dx ? dx.data() : nullptr, dw.data(), db.data(), train,
                                       s, nullptr, relu ? y.data() : nullptr);
              keep(dx), keep(dw), keep(db);
            }
          std::vector<float> ye(n, -77.f);
          batchnorm_fwd_eval_ref<float>(x.data(), w.data(), b.data(), rm.data(), rv.data(),
                                        ye.data(), 1e-5, s, relu);
          keep(ye);
        }
        for (int64_t groups : {int64_t{1}, s.c}) {
          NormShape gs = s;
          gs.groups = groups;
          const size_t stats = static_cast<size_t>(s.n * groups);
          std::vector<float> y(n, -77.f), mean(stats, -77.f), is(stats, -77.f);
          groupnorm_fwd_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                   1e-5, gs);
          keep(y), keep(mean), keep(is);
          for (bool with_dx : {true, false}) {
            std::vector<float> dx(n, -77.f), dw(c, -77.f), db(c, -77.f);
            groupnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(),
                                     with_dx ? dx.data() : nullptr, dw.data(), db.data(), gs,
                                     nullptr);
            keep(dx), keep(dw), keep(db);
          }
        }
        return out;
      };
      const std::vector<float> want = run("generic");
      for (const std::string& isa : isas) {
        const std::vector<float> got = run(isa);
        ASSERT_EQ(got.size(), want.size());
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
            << isa << ", " << s.n << "x" << s.c << "x" << s.hw << ", " << threads << " threads";
      }
    }
}

TEST(BatchNormRef, GradCheckTrain1d) { check_grads(Op::BnTrain, {5, 3, 1, 1}, 11); }
TEST(BatchNormRef, GradCheckTrain2d) { check_grads(Op::BnTrain, {2, 3, 6, 1}, 12); }
TEST(BatchNormRef, GradCheckTrain2dN1) { check_grads(Op::BnTrain, {1, 2, 7, 1}, 13); }
TEST(BatchNormRef, GradCheckEval2d) { check_grads(Op::BnEval, {3, 2, 5, 1}, 14); }
TEST(GroupNormRef, GradCheck2d) { check_grads(Op::Gn, {2, 6, 5, 3}, 15); }
TEST(GroupNormRef, GradCheck1d) { check_grads(Op::Gn, {3, 4, 1, 2}, 16); }
TEST(GroupNormRef, GradCheckOneGroupIsLayerNorm) { check_grads(Op::Gn, {2, 3, 4, 1}, 17); }

// ---- errors and builders -----------------------------------------------------------------------
// A one-hidden-layer mlp of width 8 on 1x4x4 input with group norm in `groups` groups.
std::unique_ptr<Model> mlp8_group_norm(int groups) {
  ModelOptions o;
  o.model = "mlp";
  o.width = 8;
  o.depth = 1;
  o.norm = "group";
  o.groups = groups;
  return make_model(o, {1, 4, 4}, 10);
}

TEST(GroupNormLayer, GroupsNotDividingChannelsIsUsageErrorNamingLayer) {
  try {
    mlp8_group_norm(3)->build(Device::CPU, 1);
    FAIL() << "expected a usage error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("layer 2 (GroupNorm(3 groups, 8 channels)): 8 channels are not "
                               "divisible by --groups 3"),
              std::string::npos)
        << e.message();
  }
}

TEST(GroupNormLayer, OneValuePerGroupIsUsageErrorNamingLayer) {
  // width 8 with 8 groups on 1-D features: every group is one value, normalised to 0.
  try {
    mlp8_group_norm(8)->build(Device::CPU, 1);
    FAIL() << "expected a usage error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("layer 2 (GroupNorm(8 groups, 8 channels)): input [8] leaves 1 "
                               "value per group"),
              std::string::npos)
        << e.message();
  }
  mlp8_group_norm(4)->build(Device::CPU, 1);  // two values per group build
  // Spatial input: 4 channels, 4 groups, but 2x2 positions per channel is 4 values per group.
  Model s({4, 2, 2});
  s.add(std::make_unique<GroupNorm>(4, 4));
  s.build(Device::CPU, 1);
  Model s1({4, 1, 1});
  s1.add(std::make_unique<GroupNorm>(4, 4));
  EXPECT_THROW(s1.build(Device::CPU, 1), Error);
}

TEST(BatchNormLayer, WrongChannelsAndSingleValueTrainingAreUsageErrors) {
  Model m({4, 3, 3});
  m.add(std::make_unique<BatchNorm>(5, true));
  try {
    m.build(Device::CPU, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("BatchNorm2d(5)"), std::string::npos) << e.message();
  }
  Model m1({3});
  m1.add(std::make_unique<BatchNorm>(3, false));
  m1.build(Device::CPU, 1);
  Context ctx(Device::CPU);
  try {
    m1.forward(ctx, Tensor::zeros({1, 3}, Device::CPU));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    // A last partial batch of 1 is the usual cause: the message says what to change.
    EXPECT_NE(e.message().find("more than 1 value per channel"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("--batch-size"), std::string::npos) << e.message();
  }
}

TEST(NormIndexRange, ProductPastTwoTo31Minus1IsNamed) {
  EXPECT_EQ(norm_index_range_error(NormShape{1, 1, 2147483647, 1}), "");
  EXPECT_EQ(norm_index_range_error(NormShape{2, 3, 400000000, 1}), "N*C*HW = 2*3*400000000 = 2400000000 exceeds 2^31-1");
  EXPECT_EQ(norm_index_range_error(NormShape{1 << 30, 1 << 30, int64_t(1) << 40, 1}),
            "N*C*HW = 1073741824*1073741824*1099511627776 exceeds 2^31-1");  // past int64 too
  // batch norm's coefficients [2C + c]: a 1-D batch of two with 715,827,883 features
  EXPECT_EQ(norm_index_range_error(NormShape{2, 715827882, 1, 1}), "");
  EXPECT_EQ(norm_index_range_error(NormShape{2, 715827883, 1, 1}),
            "3*C = 3*715827883 = 2147483649 exceeds 2^31-1");
}

// An empty batch (a library caller's) gives an empty output and zero parameter gradients, as
// torch returns an empty tensor: group norm in training, batch norm in evaluation (training
// needs statistics and is refused). On CUDA both were refused with "N*C*HW = 0*4*64 exceeds
// 2^31-1"; the CPU always took it.
TEST(NormLayerGpu, EmptyBatchGivesEmptyOutputAndZeroGradientsOnEveryDevice) {
  std::vector<Device> devices = {Device::CPU};
  if (cuda_available()) devices.push_back(Device::CUDA);
  for (Device d : devices)
    for (bool group : {true, false}) {
      Model m({4, 8, 8});
      if (group)
        m.add(std::make_unique<GroupNorm>(2, 4));
      else
        m.add(std::make_unique<BatchNorm>(4, true));
      m.build(d, 1);
      Context ctx(d);
      if (group)
        m.train(ctx);
      else
        m.eval(ctx);
      const Tensor x = Tensor::zeros({0, 4, 8, 8}, d);
      const Tensor y = m.forward(ctx, x);
      EXPECT_EQ(y.shape(), Shape({0, 4, 8, 8})) << device_name(d) << " group " << group;
      const std::vector<float> poison(static_cast<size_t>(m.flat_grads().numel()), std::nanf(""));
      copy_bytes(m.flat_grads().data(), d, poison.data(), Device::CPU,
                 poison.size() * sizeof(float));
      m.backward(ctx, Tensor::zeros({0, 4, 8, 8}, d));
      ASSERT_EQ(m.param_refs().size(), 2u);
      for (const ParamRef& p : m.param_refs())
        EXPECT_EQ(p.param->grad.to_vector(), std::vector<float>(4, 0.f))
            << device_name(d) << " group " << group << " " << p.name;
    }
  // Batch norm's training refuses it (no statistics), saying so; so does its reference, which
  // wrote NaN running statistics.
  Model bn({4, 8, 8});
  bn.add(std::make_unique<BatchNorm>(4, true));
  bn.build(Device::CPU, 1);
  Context cpu(Device::CPU);
  bn.train(cpu);
  try {
    bn.forward(cpu, Tensor::zeros({0, 4, 8, 8}, Device::CPU));
    ADD_FAILURE() << "trained on an empty batch";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("got input [0, 4, 8, 8] (an empty batch: no statistics)"),
              std::string::npos)
        << e.message();
  }
  std::vector<float> rm(4, 0.f), rv(4, 1.f), nbt(2, 0.f), w(4, 1.f), b(4, 0.f), mean(4), is(4);
  EXPECT_THROW(batchnorm_fwd_train_ref<float>(nullptr, w.data(), b.data(), nullptr, mean.data(),
                                              is.data(), rm.data(), rv.data(), nbt.data(), 0.1,
                                              1e-5, NormShape{0, 4, 64, 1}, nullptr),
               Error);
  EXPECT_EQ(rm, std::vector<float>(4, 0.f));
  EXPECT_EQ(nbt, std::vector<float>(2, 0.f));
#ifdef KILN_WITH_CUDA
  // The launcher refuses training statistics of nothing by name.
  if (cuda_available()) {
    try {
      batchnorm_fwd_train(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                          nullptr, 0.1, 1e-5, NormShape{0, 4, 64, 1}, nullptr, nullptr);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("batchnorm_fwd_train: an empty batch"), std::string::npos)
          << e.message();
    }
  }
#endif
}

TEST(NormLayer, SamplePastIndexRangeIsUsageErrorAtSetup) {
  // Shape level: build() fails in setup, nothing of the input's size is allocated.
  for (bool group : {false, true}) {
    Model m({2, 40000, 40000});  // 2*1.6e9 per sample
    if (group) m.add(std::make_unique<GroupNorm>(1, 2));
    else m.add(std::make_unique<BatchNorm>(2, true));
    try {
      m.build(Device::CPU, 1);
      ADD_FAILURE() << "build did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find(group ? "layer 0 (GroupNorm(1 groups, 2 channels))" : "layer 0 (BatchNorm2d(2))"),
                std::string::npos) << e.message();
      EXPECT_NE(e.message().find("[2, 40000, 40000] (one sample): N*C*HW = 1*2*1600000000 = 3200000000 exceeds 2^31-1"),
                std::string::npos) << e.message();
    }
  }
}

TEST(ModelBlocks, NormPositionAndKinds) {
  ModelOptions o;
  o.model = "mlp";
  o.width = 6;
  o.depth = 1;
  o.norm = "batch";
  o.dropout = 0.25f;
  auto types = [](Model& m) {
    std::string t;
    for (auto* l : m.layers()) t += l->type() + " ";
    return t;
  };
  auto m = make_model(o, {4}, 3);
  EXPECT_EQ(types(*m), "Flatten Linear BatchNorm1d ReLU Dropout Linear ");
  o.norm_position = "after";
  o.norm = "group";
  m = make_model(o, {4}, 3);
  EXPECT_EQ(types(*m), "Flatten Linear ReLU GroupNorm Dropout Linear ");
  Model sp({8, 5, 5});
  o.dropout_kind = "channel";
  o.norm = "batch";
  add_block_tail(sp, o, 8, true);
  EXPECT_EQ(types(sp), "ReLU BatchNorm2d Dropout2d ");
  o.norm = "layer";
  Model bad({4});
  EXPECT_THROW(add_norm(bad, o, 4, false), Error);
  o.norm = "none";
  o.dropout_kind = "spatial";
  EXPECT_THROW(add_dropout(bad, o, false), Error);
}

// ---- GPU vs reference ---------------------------------------------------------------------------
#ifdef KILN_WITH_CUDA
struct Dev {
  float* p = nullptr;
  explicit Dev(const std::vector<float>& v) {
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(float)), cudaSuccess);
    cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice);
  }
  explicit Dev(size_t n) : Dev(std::vector<float>(n, std::nanf(""))) {}  // poisoned
  ~Dev() { cudaFree(p); }
  std::vector<float> get(size_t n) const {
    std::vector<float> v(n);
    cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost);
    return v;
  }
};

void* dev_workspace(size_t bytes) {
  void* w = nullptr;
  EXPECT_EQ(cudaMalloc(&w, std::max<size_t>(bytes, 16)), cudaSuccess);
  return w;
}

void bn_gpu_vs_ref(NormShape s, uint64_t seed, double offset = 0, float scale = 1) {
  const size_t n = s.numel(), c = s.c;
  auto x = random_vec(n, seed, -3 + offset, 3 + offset);
  for (float& v : x) v *= scale;
  auto w = random_vec(c, seed + 1, 0.5, 1.5), b = random_vec(c, seed + 2);
  auto dy = random_vec(n, seed + 3);
  auto rm = random_vec(c, seed + 4), rv = random_vec(c, seed + 5, 0.5, 2);
  // Every other channel's running variance near eps (a dead channel's): there, eval mode that
  // drops or misplaces eps is off by up to sqrt(2), not by 1e-5.
  for (size_t i = 0; i < c; i += 2) rv[i] *= 1e-5f;
  std::vector<float> y(n), mean(c), is(c), dx(n), dw(c), db(c), rm_ref = rm, rv_ref = rv,
                                                                nbt = {3, 0};
  batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                 rm_ref.data(), rv_ref.data(), nbt.data(), 0.1, 1e-5, s, nullptr);
  batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                           dw.data(), db.data(), true, s, nullptr);
  Dev gx(x), gw(w), gb(b), gdy(dy), grm(rm), grv(rv), gnbt(std::vector<float>{3, 0});
  Dev gy(n), gmean(c), gis(c), gdx(n), gdw(c), gdb(c);
  void* ws = dev_workspace(batchnorm_workspace_bytes(s));
  batchnorm_fwd_train(gx.p, gw.p, gb.p, gy.p, gmean.p, gis.p, grm.p, grv.p, gnbt.p, 0.1, 1e-5, s,
                      ws, nullptr);
  batchnorm_bwd(gx.p, gdy.p, gw.p, gmean.p, gis.p, gdx.p, gdw.p, gdb.p, true, s, ws, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(test::all_close(gy.get(n), y, 1e-5, 1e-4));
  EXPECT_TRUE(test::all_close(gmean.get(c), mean, 1e-5, 1e-5));
  EXPECT_TRUE(test::all_close(gis.get(c), is, 1e-5, 1e-4));
  EXPECT_TRUE(test::all_close(grm.get(c), rm_ref, 1e-5, 1e-5));
  EXPECT_TRUE(test::all_close(grv.get(c), rv_ref, 1e-5, 1e-4));
  EXPECT_EQ(gnbt.get(2), (std::vector<float>{4, 0}));
  Dev gnbt_carry(std::vector<float>{16777215, 2});  // the carry into the high float
  batchnorm_fwd_train(gx.p, gw.p, gb.p, gy.p, gmean.p, gis.p, grm.p, grv.p, gnbt_carry.p, 0.1, 1e-5,
                      s, ws, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(gnbt_carry.get(2), (std::vector<float>{0, 3}));
  const double m = static_cast<double>(s.n * s.hw);
  EXPECT_TRUE(test::all_close(gdx.get(n), dx, 1e-4, 1e-3));
  EXPECT_TRUE(test::all_close(gdw.get(c), dw, std::max(1e-5, 1e-6 * m), 1e-4));
  EXPECT_TRUE(test::all_close(gdb.get(c), db, std::max(1e-5, 1e-6 * m), 1e-4));
  // eval mode: forward with the running statistics, affine-only backward
  std::vector<float> ye(n), ise(c);
  batchnorm_fwd_eval_ref<float>(x.data(), w.data(), b.data(), rm.data(), rv.data(), ye.data(), 1e-5, s);
  batchnorm_invstd_ref<float>(rv.data(), ise.data(), 1e-5, s.c);
  batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), rm.data(), ise.data(), dx.data(),
                           dw.data(), db.data(), false, s, nullptr);
  // (fresh poisoned gradients: the bias gradient is sum(dy) in both modes, so training's left in
  // place would pass for an eval pass that never wrote it)
  Dev grm0(rm), grv0(rv), gye(n), gise(c), gdxe(n), gdwe(c), gdbe(c);
  batchnorm_fwd_eval(gx.p, gw.p, gb.p, grm0.p, grv0.p, gye.p, 1e-5, s, nullptr);
  batchnorm_invstd(grv0.p, gise.p, 1e-5, s.c, nullptr);
  batchnorm_bwd(gx.p, gdy.p, gw.p, grm0.p, gise.p, gdxe.p, gdwe.p, gdbe.p, false, s, ws, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(test::all_close(gye.get(n), ye, 1e-5, 1e-5));
  EXPECT_TRUE(test::all_close(gdxe.get(n), dx, 1e-5, 1e-5));
  EXPECT_TRUE(test::all_close(gdwe.get(c), dw, std::max(1e-5, 1e-6 * m), 1e-4));
  EXPECT_TRUE(test::all_close(gdbe.get(c), db, std::max(1e-5, 1e-6 * m), 1e-4));
  cudaFree(ws);
}

// Both settings of groupnorm_set_cached (registers or two passes): each against the reference,
// and the forward's bits equal between them.
void gn_gpu_vs_ref(NormShape s, uint64_t seed, float scale = 1) {
  const size_t n = s.numel(), c = s.c, st = s.n * s.groups;
  auto x = random_vec(n, seed, -2, 4), w = random_vec(c, seed + 1, 0.5, 1.5);
  for (float& v : x) v *= scale;
  auto b = random_vec(c, seed + 2), dy = random_vec(n, seed + 3);
  std::vector<float> y(n), mean(st), is(st), dx(n), dw(c), db(c);
  groupnorm_fwd_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(), 1e-5, s);
  groupnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                           dw.data(), db.data(), s, nullptr);
  struct Restore {
    ~Restore() { groupnorm_set_cached(true); }
  } restore;
  std::vector<float> y_cached;
  for (bool cached : {true, false}) {
    SCOPED_TRACE(cached ? "registers" : "two passes");
    groupnorm_set_cached(cached);
    Dev gx(x), gw(w), gb(b), gdy(dy), gy(n), gmean(st), gis(st), gdx(n), gdw(c), gdb(c);
    void* ws = dev_workspace(groupnorm_workspace_bytes(s));
    groupnorm_fwd(gx.p, gw.p, gb.p, gy.p, gmean.p, gis.p, 1e-5, s, ws, nullptr);
    groupnorm_bwd(gx.p, gdy.p, gw.p, gmean.p, gis.p, gdx.p, gdw.p, gdb.p, s, ws, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_TRUE(test::all_close(gy.get(n), y, 1e-5, 1e-4));
    EXPECT_TRUE(test::all_close(gmean.get(st), mean, 1e-5, 1e-5));
    EXPECT_TRUE(test::all_close(gis.get(st), is, 1e-5, 1e-4));
    EXPECT_TRUE(test::all_close(gdx.get(n), dx, 1e-4, 1e-3));
    const double m = static_cast<double>(s.n * s.hw);
    EXPECT_TRUE(test::all_close(gdw.get(c), dw, std::max(1e-5, 1e-6 * m), 1e-4));
    EXPECT_TRUE(test::all_close(gdb.get(c), db, std::max(1e-5, 1e-6 * m), 1e-4));
    if (cached)
      y_cached = gy.get(n);
    else
      EXPECT_TRUE(test::all_close(gy.get(n), y_cached, 0, 0))
          << "the forward's bits depend on the cache";
    cudaFree(ws);
  }
}

// Batch norm's persistent kernel (batchnorm_set_persistent) against the three-kernel path:
// every output bit for bit (training forward with running statistics and a fused ReLU,
// backward in training and eval mode, with a fused ReLU's mask), under grid and cache limits
// that give several items per block and blocks cached fully, partly or not at all; and that the
// persistent kernel did run (its launch count; no fallback), or with `too_large` (a forced grid
// that cannot be resident at once) that the first call fell back to the three kernels with no
// error left behind and later calls planned them.
void bn_persistent_vs_three_kernels(NormShape s, uint64_t seed, int max_blocks, size_t cache_bytes,
                                    bool too_large = false) {
  SCOPED_TRACE(testing::Message() << s.n << "x" << s.c << "x" << s.hw << " blocks<=" << max_blocks
                                  << " cache=" << cache_bytes);
  const size_t n = s.numel(), c = s.c;
  auto x = random_vec(n, seed, -2, 5), dy = random_vec(n, seed + 1);
  auto w = random_vec(c, seed + 2, 0.5, 1.5), b = random_vec(c, seed + 3);
  auto rm = random_vec(c, seed + 4), rv = random_vec(c, seed + 5, 0.5, 2);
  struct Restore {
    ~Restore() {
      batchnorm_set_persistent(false);
      batchnorm_persistent_limits(0, SIZE_MAX);
    }
  } restore;
  batchnorm_persistent_limits(max_blocks, cache_bytes);
  std::vector<std::vector<float>> outs[2];
  for (int persistent = 0; persistent < 2; ++persistent) {
    batchnorm_set_persistent(persistent == 1);
    EXPECT_EQ(batchnorm_persistent_grid(s, false) > 0, persistent == 1);
    EXPECT_EQ(batchnorm_persistent_grid(s, true) > 0, persistent == 1);
    if (max_blocks > 0) EXPECT_LE(batchnorm_persistent_grid(s, false), max_blocks);
    const BnPersistentCounts before = batchnorm_persistent_counts();
    for (bool relu : {false, true}) {
      Dev gx(x), gw(w), gb(b), gdy(dy), grm(rm), grv(rv), gnbt(std::vector<float>{16777215, 2});
      Dev gy(n), gmean(c), gis(c), gdx(n), gdw(c), gdb(c), gdxe(n), gdwe(c), gdbe(c);
      void* ws = dev_workspace(batchnorm_workspace_bytes(s));
      batchnorm_fwd_train(gx.p, gw.p, gb.p, gy.p, gmean.p, gis.p, grm.p, grv.p, gnbt.p, 0.1, 1e-5,
                          s, ws, nullptr, relu);
      batchnorm_bwd(gx.p, gdy.p, gw.p, gmean.p, gis.p, gdx.p, gdw.p, gdb.p, true, s, ws, nullptr,
                    relu ? gy.p : nullptr);
      batchnorm_bwd(gx.p, gdy.p, gw.p, grm.p, gis.p, gdxe.p, gdwe.p, gdbe.p, false, s, ws, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      for (const Dev* d : {&gy, &gdx, &gdxe}) outs[persistent].push_back(d->get(n));
      for (const Dev* d : {&gmean, &gis, &grm, &grv, &gdw, &gdb, &gdwe, &gdbe})
        outs[persistent].push_back(d->get(c));
      outs[persistent].push_back(gnbt.get(2));
      cudaFree(ws);
    }
    const BnPersistentCounts after = batchnorm_persistent_counts();
    if (persistent == 0 || too_large)
      EXPECT_EQ(after.launches, before.launches) << "persistent launches on the three-kernel path";
    else
      EXPECT_EQ(after.launches - before.launches, 6) << "2 x (forward, backward, eval backward)";
    EXPECT_EQ(after.fallbacks - before.fallbacks, persistent == 1 && too_large ? 1 : 0);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    if (persistent == 1 && too_large)
      EXPECT_EQ(batchnorm_persistent_grid(s, false), 0) << "not sticky";
  }
  const char* names[] = {"y",
                         "dx",
                         "dx (eval)",
                         "mean",
                         "invstd",
                         "running_mean",
                         "running_var",
                         "dweight",
                         "dbias",
                         "dweight (eval)",
                         "dbias (eval)",
                         "num_batches_tracked"};
  ASSERT_EQ(outs[0].size(), outs[1].size());
  for (size_t i = 0; i < outs[0].size(); ++i) {
    const auto& a = outs[0][i];
    EXPECT_TRUE(std::none_of(a.begin(), a.end(), [](float v) { return std::isnan(v); }))
        << names[i % 12];
    EXPECT_EQ(0, std::memcmp(a.data(), outs[1][i].data(), a.size() * sizeof(float)))
        << names[i % 12] << (i >= 12 ? " (fused ReLU)" : "")
        << " differs from the three-kernel path";
  }
}
#endif

TEST(BatchNormGpu, Mnist2d) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  bn_gpu_vs_ref({64, 16, 28 * 28, 1}, 21);
#endif
}
TEST(BatchNormGpu, AwkwardShapes) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  bn_gpu_vs_ref({1, 3, 7 * 5, 1}, 22);        // N=1, odd spatial, C=3
  bn_gpu_vs_ref({3, 5, 13 * 13, 1}, 23);      // odd everything
  bn_gpu_vs_ref({2, 1, 33, 1}, 24);           // one channel
  bn_gpu_vs_ref({7, 300, 1, 1}, 25);          // BatchNorm1d, not a multiple of anything
  bn_gpu_vs_ref({4, 520, 3 * 3, 1}, 26);      // large C
  bn_gpu_vs_ref({5, 8, 64 * 64, 1}, 27, 50);  // many splits per channel, mean far from 0
  // |x - shift| past 1.8e19: a float square overflows (the layer then output its bias alone
  // with zero gradients); the CPU reference squares in double, and so must the kernels.
  bn_gpu_vs_ref({4, 3, 5 * 5, 1}, 28, 0, 1e19f);
  bn_gpu_vs_ref({4, 2, 64, 1}, 29, 0, 1e19f);  // the float4 path
#endif
}
TEST(BatchNormGpu, PersistentKernelGivesTheThreeKernelPathsBits) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  bn_persistent_vs_three_kernels({4, 2, 64, 1}, 51, 0,
                                 SIZE_MAX);  // one split a channel, all cached
  bn_persistent_vs_three_kernels({5, 8, 64 * 64, 1}, 52, 0,
                                 SIZE_MAX);                      // 3 splits a channel, 24 blocks
  bn_persistent_vs_three_kernels({5, 8, 64 * 64, 1}, 53, 5, 0);  // 5 items a block, nothing cached
  // 5 blocks of 5 or 4 items (24 = 5 x 5 - 1) of 1,707 float4s: 32 KiB of cache holds the first
  // item and part of the second forward, part of the first backward (x and dy)
  bn_persistent_vs_three_kernels({5, 8, 64 * 64, 1}, 54, 5, 32768);
  bn_persistent_vs_three_kernels({7, 300, 4, 1}, 55, 16, 1000);  // 300 channels, short rows
  bn_persistent_vs_three_kernels({16, 12, 28 * 28, 1}, 56, 7,
                                 60 * 1024);  // above 48 KiB: the opt-in
#ifndef KILN_CUDA_EMU
  // On a device, no limits and more items (2,048 channels) than blocks fit at once: the grid
  // from the occupancy query must launch (a planner that overestimates it falls back to the
  // three kernels, which the launch count shows; the emulator would run 135,168 fibers for it).
  bn_persistent_vs_three_kernels({2, 2048, 64, 1}, 57, 0, SIZE_MAX);
#endif
  // Not taken: rows that are no multiple of four (the three-kernel path's scalar loads).
  struct Off {
    ~Off() { batchnorm_set_persistent(false); }
  } off;
  batchnorm_set_persistent(true);
#ifdef KILN_CUDA_EMU
  // The plan on the emulated H100 (132 SMs, 228 KiB of shared memory, 2,048 threads each): four
  // blocks an SM (55 KiB of cache each) give 528 at most; 64 channels x 25 splits = 1,600 items
  // need 4 a block, which 400 blocks hold.
  EXPECT_EQ(batchnorm_persistent_grid({64, 64, 56 * 56, 1}, false), 400);
  EXPECT_EQ(batchnorm_persistent_grid({64, 64, 56 * 56, 1}, true), 400);
  EXPECT_EQ(batchnorm_persistent_grid({4, 2, 64, 1}, false), 2);  // one item a block
#endif
  EXPECT_EQ(batchnorm_persistent_grid({3, 5, 13 * 13, 1}, false), 0);
#endif
}
// A persistent grid that cannot be resident at once (100,000 blocks): the launch fails with
// cudaErrorCooperativeLaunchTooLarge, the call runs the three kernels (their bits, no error left),
// later calls plan them. Its own suite: the failed API call is on purpose, and scripts/gpu_run.sh
// keeps *LaunchErrorGpu* from compute-sanitizer, which counts it as an error.
TEST(BatchNormLaunchErrorGpu, PersistentGridTooLargeFallsBackToTheThreeKernels) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  bn_persistent_vs_three_kernels({5, 8, 64 * 64, 1}, 58, -100000, SIZE_MAX, true);
#endif
}

// The persistent kernels captured into a CUDA graph on a stream of their own (as --cuda-graphs
// captures a training step) give the eager launch's bits.
TEST(BatchNormGpu, PersistentKernelInACapturedGraphGivesTheEagerBits) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const NormShape s{5, 8, 64 * 64, 1};
  const size_t n = s.numel(), c = s.c;
  auto x = random_vec(n, 61, -2, 5), dy = random_vec(n, 62), w = random_vec(c, 63, 0.5, 1.5),
       b = random_vec(c, 64);
  struct Restore {
    ~Restore() {
      batchnorm_set_persistent(false);
      batchnorm_persistent_limits(0, SIZE_MAX);
    }
  } restore;
  batchnorm_set_persistent(true);
#ifdef KILN_CUDA_EMU
  batchnorm_persistent_limits(6, SIZE_MAX);  // few fibers
#endif
  ASSERT_GT(batchnorm_persistent_grid(s, false), 0);
  const BnPersistentCounts before = batchnorm_persistent_counts();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  std::vector<float> got[2];
  for (int captured = 0; captured < 2; ++captured) {
    Dev gx(x), gw(w), gb(b), gdy(dy), grm(c), grv(c), gy(n), gmean(c), gis(c), gdx(n), gdw(c),
        gdb(c);
    void* ws = dev_workspace(batchnorm_workspace_bytes(s));
    const auto step = [&] {
      batchnorm_fwd_train(gx.p, gw.p, gb.p, gy.p, gmean.p, gis.p, nullptr, nullptr, nullptr, 0.1,
                          1e-5, s, ws, stream);
      batchnorm_bwd(gx.p, gdy.p, gw.p, gmean.p, gis.p, gdx.p, gdw.p, gdb.p, true, s, ws, stream);
    };
    if (captured) {
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
      step();
      ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
      ASSERT_EQ(cudaGraphInstantiateWithFlags(&exec, graph, 0), cudaSuccess);
      ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
    } else {
      step();
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    }
    for (const Dev* d : {&gy, &gdx}) {
      const auto v = d->get(n);
      got[captured].insert(got[captured].end(), v.begin(), v.end());
    }
    for (const Dev* d : {&gmean, &gis, &gdw, &gdb}) {
      const auto v = d->get(c);
      got[captured].insert(got[captured].end(), v.begin(), v.end());
    }
    cudaFree(ws);
  }
  cudaStreamDestroy(stream);
  const BnPersistentCounts after = batchnorm_persistent_counts();
  EXPECT_EQ(after.launches - before.launches, 4) << "two eager, two captured";
  EXPECT_EQ(after.fallbacks, before.fallbacks);
  EXPECT_TRUE(std::none_of(got[0].begin(), got[0].end(), [](float v) { return std::isnan(v); }));
  ASSERT_EQ(got[0].size(), got[1].size());
  EXPECT_EQ(0, std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float)));
#endif
}

TEST(GroupNormGpu, AwkwardShapes) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  gn_gpu_vs_ref({8, 16, 28 * 28, 4}, 31);
  gn_gpu_vs_ref({1, 6, 7 * 5, 3}, 32);    // N=1, odd spatial
  gn_gpu_vs_ref({3, 9, 13, 3}, 33);
  gn_gpu_vs_ref({5, 64, 1, 8}, 34);       // features, hw = 1
  gn_gpu_vs_ref({2, 512, 7 * 7, 1}, 35);  // one group of many channels
  gn_gpu_vs_ref({2, 32, 56 * 56, 32}, 36);
  gn_gpu_vs_ref({2, 4, 5 * 5, 2}, 37, 1e19f);  // squares past float's range, as for batch norm
  gn_gpu_vs_ref({2, 4, 64, 2}, 38, 1e19f);     // the same on the per-plane kernels
  gn_gpu_vs_ref({64, 4, 64, 2}, 42, 1e19f);    // and on the whole-group kernel's float4 path
  // groupnorm_splits_planes: above, every shape with n*groups < 128, c/groups >= 2 and hw >= 32
  // takes the per-plane kernels (8x16x784/4, 1x6x35/3, 2x512x49/1, 2x4x64/2); here the
  // whole-group kernels with such planes (n*groups >= 128), and a LayerNorm-like one group over
  // 64 channels of odd planes on the per-plane kernels.
  gn_gpu_vs_ref({64, 4, 40, 2}, 39);
  gn_gpu_vs_ref({128, 3, 33, 1}, 40);
  gn_gpu_vs_ref({3, 64, 11 * 13, 1}, 41);
  // Groups held in registers (groupnorm_set_cached): 4 float4s a thread up to 4,096 values a
  // group (2x32x56x56/32 and the n*groups >= 128 shapes of 64 and 40 values above), 8 up to
  // 8,192 (here 4,608, the last thread's share partly past the end), none past that (9,216).
  gn_gpu_vs_ref({64, 4, 48 * 48, 2}, 44);
  gn_gpu_vs_ref({128, 2, 72 * 64, 1}, 45);
#endif
}

// The GroupNorm layer on the device (its workspace, both kernel paths): a conv, group norm and
// ReLU, then a second conv so the norm layer passes dx on; outputs and every gradient as on the
// CPU. 2 samples x 2 groups of 64-value planes take the per-plane kernels, 70 samples x 2 groups
// the whole-group ones.
TEST(GroupNormLayerGpu, ModelForwardBackwardMatchCpu) {
  KILN_SKIP_WITHOUT_GPU();
  for (int64_t n : {2, 70}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    ASSERT_EQ(groupnorm_splits_planes(NormShape{n, 6, 64, 2}), n == 2);
    auto run = [n](Device d, std::vector<float>* out, std::vector<float>* grads) {
      Model m({3, 10, 10});
      m.add(std::make_unique<Conv2d>(3, 6, 3));
      m.add(std::make_unique<GroupNorm>(2, 6));
      m.add(std::make_unique<Activation>(Act::ReLU));
      m.add(std::make_unique<Conv2d>(6, 4, 3));
      m.build(d, 9);
      test::forward_backward(m, d, {n, 3, 10, 10}, 43, out, grads);
    };
    std::vector<float> yc, gc, yg, gg;
    run(Device::CPU, &yc, &gc);
    run(Device::CUDA, &yg, &gg);
    EXPECT_TRUE(test::all_close(yg, yc, 1e-4, 1e-4));
    EXPECT_TRUE(test::all_close(gg, gc, 1e-3, 1e-4));
  }
}

// Without dx (a norm layer that is the model's first layer: need_dx false): the parameter
// gradients as the reference computes them, and dx's memory untouched, for batch norm in
// training and eval mode and group norm (both of its backward kernels' plane sizes).
TEST(NormGpu, BackwardWithoutDxGivesParameterGradientsOnly) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  uint64_t seed = 61;
  for (NormShape s : {NormShape{3, 5, 7 * 5, 1}, NormShape{4, 2, 64, 1}}) {
    SCOPED_TRACE("batch norm n=" + std::to_string(s.n) + " c=" + std::to_string(s.c));
    const size_t n = s.numel(), c = s.c;
    auto x = random_vec(n, seed++, -3, 3), w = random_vec(c, seed++, 0.5, 1.5),
         b = random_vec(c, seed++);
    auto dy = random_vec(n, seed++), rv = random_vec(c, seed++, 0.5, 2);
    std::vector<float> y(n), mean(c), is(c), rm(c, 0.f), rv2 = rv, nbt = {0, 0};
    batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                   rm.data(), rv2.data(), nbt.data(), 0.1, 1e-5, s, nullptr);
    Dev gx(x), gw(w), gdy(dy), gmean(mean), gis(is), gdx(n);
    void* ws = dev_workspace(batchnorm_workspace_bytes(s));
    const double m = static_cast<double>(s.n * s.hw);
    for (bool train : {true, false}) {
      // Fresh poisoned gradients for each mode: given the batch's mean and invstd, the eval
      // gradients equal training's, so the training pass's left in place would pass for an eval
      // pass that wrote nothing.
      Dev gdw(c), gdb(c);
      std::vector<float> dw(c), db(c);
      batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), nullptr,
                               dw.data(), db.data(), train, s, nullptr);
      batchnorm_bwd(gx.p, gdy.p, gw.p, gmean.p, gis.p, nullptr, gdw.p, gdb.p, train, s, ws,
                    nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_TRUE(test::all_close(gdw.get(c), dw, std::max(1e-5, 1e-6 * m), 1e-4)) << train;
      EXPECT_TRUE(test::all_close(gdb.get(c), db, std::max(1e-5, 1e-6 * m), 1e-4)) << train;
    }
    for (float v : gdx.get(n)) ASSERT_TRUE(std::isnan(v)) << "dx written";
    cudaFree(ws);
  }
  // planes under / past 32 (the whole-group kernel's two branches: 33 values, and 36 in
  // registers), and the per-plane kernels
  for (NormShape s : {NormShape{3, 6, 5, 3}, NormShape{64, 8, 33, 2}, NormShape{64, 8, 36, 2},
                      NormShape{2, 8, 36, 2}}) {
    SCOPED_TRACE("group norm hw=" + std::to_string(s.hw));
    const size_t n = s.numel(), c = s.c, st = s.n * s.groups;
    auto x = random_vec(n, seed++, -2, 4), w = random_vec(c, seed++, 0.5, 1.5),
         b = random_vec(c, seed++);
    auto dy = random_vec(n, seed++);
    std::vector<float> y(n), mean(st), is(st), dw(c), db(c);
    groupnorm_fwd_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(), 1e-5,
                             s);
    groupnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), nullptr,
                             dw.data(), db.data(), s, nullptr);
    Dev gx(x), gw(w), gdy(dy), gmean(mean), gis(is), gdw(c), gdb(c), gdx(n);
    void* ws = dev_workspace(groupnorm_workspace_bytes(s));
    groupnorm_bwd(gx.p, gdy.p, gw.p, gmean.p, gis.p, nullptr, gdw.p, gdb.p, s, ws, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const double m = static_cast<double>(s.n * s.hw);
    EXPECT_TRUE(test::all_close(gdw.get(c), dw, std::max(1e-5, 1e-6 * m), 1e-4));
    EXPECT_TRUE(test::all_close(gdb.get(c), db, std::max(1e-5, 1e-6 * m), 1e-4));
    for (float v : gdx.get(n)) ASSERT_TRUE(std::isnan(v)) << "dx written";
    cudaFree(ws);
  }
  // Zero channels: batchnorm_invstd launches nothing (a zero-block grid is a launch error).
  Dev var(1), invstd(1);
  batchnorm_invstd(var.p, invstd.p, 1e-5, 0, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_TRUE(std::isnan(invstd.get(1)[0]));
#endif
}

// The launchers hold double partial sums in the workspace: a null one, or one not 8-byte
// aligned (which faults on a GPU; UBSan aborts the emulator build), is refused by name before
// anything is launched or written.
TEST(NormGpu, LaunchersRefuseAMissingOrMisalignedWorkspace) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const NormShape bs{2, 3, 40, 1}, gs{2, 4, 36, 2};  // gs: group norm's per-plane path
  ASSERT_TRUE(groupnorm_splits_planes(gs));
  const size_t n = 2 * 4 * 40;
  Dev x(random_vec(n, 71)), dy(random_vec(n, 72)), w(std::vector<float>(4, 1.f)),
      b(std::vector<float>(4, 0.f)), y(n), mean(4), is(4), rm(std::vector<float>(4, 0.f)),
      rv(std::vector<float>(4, 1.f)), nbt(std::vector<float>(2, 0.f)), dx(n), dw(4), db(4);
  char* ws = static_cast<char*>(dev_workspace(
      std::max(batchnorm_workspace_bytes(bs), groupnorm_workspace_bytes(gs)) + 16));
  auto refused = [](const char* what, const std::function<void()>& call, const std::string& want) {
    SCOPED_TRACE(what);
    try {
      call();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(want), std::string::npos) << e.message();
    }
  };
  for (void* bad : {static_cast<void*>(nullptr), static_cast<void*>(ws + 4)}) {
    const std::string want =
        bad ? "the workspace must be 8-byte aligned (it holds doubles)" : "needs a workspace of";
    refused("batchnorm_fwd_train", [&] {
      batchnorm_fwd_train(x.p, w.p, b.p, y.p, mean.p, is.p, rm.p, rv.p, nbt.p, 0.1, 1e-5, bs, bad,
                          nullptr);
    }, "batchnorm_fwd_train: " + want);
    refused("batchnorm_bwd", [&] {
      batchnorm_bwd(x.p, dy.p, w.p, mean.p, is.p, dx.p, dw.p, db.p, true, bs, bad, nullptr);
    }, "batchnorm_bwd: " + want);
    refused("groupnorm_fwd", [&] {
      groupnorm_fwd(x.p, w.p, b.p, y.p, mean.p, is.p, 1e-5, gs, bad, nullptr);
    }, "groupnorm_fwd: " + want);
    refused("groupnorm_bwd", [&] {
      groupnorm_bwd(x.p, dy.p, w.p, mean.p, is.p, dx.p, dw.p, db.p, gs, bad, nullptr);
    }, "groupnorm_bwd: " + want);
  }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (float v : y.get(n)) ASSERT_TRUE(std::isnan(v)) << "y written";
  for (float v : dx.get(n)) ASSERT_TRUE(std::isnan(v)) << "dx written";
  EXPECT_EQ(rm.get(4), std::vector<float>(4, 0.f));
  EXPECT_EQ(nbt.get(2), std::vector<float>(2, 0.f));
  // Any 8-byte aligned pointer into a larger block will do.
  batchnorm_fwd_train(x.p, w.p, b.p, y.p, mean.p, is.p, rm.p, rv.p, nbt.p, 0.1, 1e-5, bs, ws + 8,
                      nullptr);
  groupnorm_bwd(x.p, dy.p, w.p, mean.p, is.p, dx.p, dw.p, db.p, gs, ws + 8, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(nbt.get(2)[0], 1.f);
  cudaFree(ws);
#endif
}

TEST(NormGpu, RandomShapesMatchReference) {
  // Twelve seeded random shapes per kind on top of the chosen ones, each named in the failure
  // message.
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  test::SeededInts draw(7);
  for (int i = 0; i < 12; ++i) {
    const NormShape s{draw(1, 6), draw(1, 40), draw(1, 200), 1};
    const double offset = draw(0, 1) ? 20.0 : 0.0;
    SCOPED_TRACE("batch norm n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " hw=" + std::to_string(s.hw) +
                 " offset=" + std::to_string(offset));
    if (s.n * s.hw > 1) bn_gpu_vs_ref(s, 100 + i, offset);  // training needs two values per channel
  }
  for (int i = 0; i < 12; ++i) {
    const int c = draw(1, 40);
    std::vector<int> divisors;
    for (int g = 1; g <= c; ++g)
      if (c % g == 0) divisors.push_back(g);
    const NormShape s{draw(1, 6), c, draw(1, 200), divisors[draw(0, static_cast<int>(divisors.size()) - 1)]};
    SCOPED_TRACE("group norm n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) + " hw=" +
                 std::to_string(s.hw) + " groups=" + std::to_string(s.groups));
    gn_gpu_vs_ref(s, 200 + i);
  }
#endif
}

// Non-finite inputs: the device's statistics and outputs are NaN where the reference's are (a
// variance of inf - inf is NaN, not clamped to 0 into an invstd of 1/sqrt(eps)), finite and
// close where they are finite. An inf statistic may come out NaN (batch norm's mean, when the
// inf is the channel's first element, the shift its sums are taken from). Outputs start finite
// (-7), so an unwritten one cannot pass as NaN. Each shape has an inf in one channel (group), a NaN
// in another and finite values in the rest.
#ifdef KILN_WITH_CUDA
::testing::AssertionResult same_nans_else_close(const std::vector<float>& got,
                                                const std::vector<float>& want) {
  for (size_t i = 0; i < got.size(); ++i) {
    const bool ok = std::isnan(want[i]) ? std::isnan(got[i])
                    : !std::isfinite(want[i])
                        ? !std::isfinite(got[i])
                        : std::fabs(got[i] - want[i]) <= 1e-4 + 1e-4 * std::fabs(want[i]);
    if (!ok)
      return ::testing::AssertionFailure() << "[" << i << "] got " << got[i] << " want " << want[i];
  }
  return ::testing::AssertionSuccess();
}

std::vector<float> with_non_finite(NormShape s, uint64_t seed, int64_t inf_at, int64_t nan_at) {
  auto x = random_vec(s.numel(), seed, -2, 2);
  x[inf_at] = std::numeric_limits<float>::infinity();
  x[nan_at] = std::nanf("");
  return x;
}
#endif

TEST(NormGpu, NonFiniteInputGivesNanStatisticsAsTheReference) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  struct Restore {
    ~Restore() {
      batchnorm_set_persistent(false);
      groupnorm_set_cached(true);
    }
  } restore;
  // batch norm: the inf past a channel's first element (its shift) and at it
  for (NormShape s : {NormShape{2, 3, 20}, NormShape{4, 3, 64}}) {
    for (int64_t inf_at : {int64_t{7}, s.hw}) {
      const auto x = with_non_finite(s, 91, inf_at, 2 * s.hw + 5);  // channels 0 or 1, and 2
      const size_t n = s.numel(), c = s.c;
      const std::vector<float> w(c, 1.f), b(c, 0.f), start(n, -7.f), start_c(c, -7.f);
      std::vector<float> y(n), mean(c), is(c), rm(c, 0.f), rv(c, 1.f);
      batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                     rm.data(), rv.data(), nullptr, 0.1, 1e-5, s, nullptr);
      const int inf_c = inf_at == 7 ? 0 : 1;
      ASSERT_TRUE(std::isnan(is[inf_c]) && std::isnan(is[2]) && std::isfinite(is[1 - inf_c]));
      for (bool persistent : {false, true}) {
        SCOPED_TRACE(testing::Message()
                     << "batch norm " << s.n << "x" << s.c << "x" << s.hw << " inf at " << inf_at
                     << (persistent ? " persistent" : ""));
        batchnorm_set_persistent(persistent);
        Dev gx(x), gw(w), gb(b), gy(start), gmean(start_c), gis(start_c);
        Dev grm(std::vector<float>(c, 0.f)), grv(std::vector<float>(c, 1.f));
        void* ws = dev_workspace(batchnorm_workspace_bytes(s));
        batchnorm_fwd_train(gx.p, gw.p, gb.p, gy.p, gmean.p, gis.p, grm.p, grv.p, nullptr, 0.1,
                            1e-5, s, ws, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        EXPECT_TRUE(same_nans_else_close(gmean.get(c), mean)) << "mean";
        EXPECT_TRUE(same_nans_else_close(gis.get(c), is)) << "invstd";
        EXPECT_TRUE(same_nans_else_close(grm.get(c), rm)) << "running_mean";
        EXPECT_TRUE(same_nans_else_close(grv.get(c), rv)) << "running_var";
        EXPECT_TRUE(same_nans_else_close(gy.get(n), y)) << "y";
        cudaFree(ws);
      }
    }
  }
  // group norm: whole groups (scalar and float4, registers and two passes) and per plane
  for (NormShape s : {NormShape{2, 4, 25, 2}, NormShape{64, 4, 64, 2}, NormShape{2, 4, 64, 2}}) {
    const auto x = with_non_finite(s, 92, 3, 2 * s.hw + 1);  // groups (0, 0) and (0, 1)
    const size_t n = s.numel(), c = s.c, st = s.n * s.groups;
    const std::vector<float> w(c, 1.f), b(c, 0.f), start(n, -7.f), start_st(st, -7.f);
    std::vector<float> y(n), mean(st), is(st);
    groupnorm_fwd_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(), 1e-5,
                             s);
    ASSERT_TRUE(std::isnan(is[0]) && std::isnan(is[1]) && std::isfinite(is[2]));
    for (bool cached : {true, false}) {
      SCOPED_TRACE(testing::Message() << "group norm " << s.n << "x" << s.c << "x" << s.hw
                                      << (cached ? " registers" : " two passes"));
      groupnorm_set_cached(cached);
      Dev gx(x), gw(w), gb(b), gy(start), gmean(start_st), gis(start_st);
      void* ws = dev_workspace(groupnorm_workspace_bytes(s));
      groupnorm_fwd(gx.p, gw.p, gb.p, gy.p, gmean.p, gis.p, 1e-5, s, ws, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_TRUE(same_nans_else_close(gmean.get(st), mean)) << "mean";
      EXPECT_TRUE(same_nans_else_close(gis.get(st), is)) << "invstd";
      EXPECT_TRUE(same_nans_else_close(gy.get(n), y)) << "y";
      cudaFree(ws);
    }
  }
#endif
}

// Backward after an eval-mode forward: dx = weight * invstd * dy, x does not enter it (the
// reference's formula), so an infinite or NaN x still gets a finite dx; the parameter gradients
// see x and are non-finite as the reference's. The device used to compute 0 * (x - mean) and
// gave NaN there.
TEST(NormGpu, EvalBackwardDxIgnoresNonFiniteInputAsTheReference) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  struct Restore {
    ~Restore() { batchnorm_set_persistent(false); }
  } restore;
  for (NormShape s : {NormShape{2, 3, 20}, NormShape{4, 3, 64}}) {
    const auto x = with_non_finite(s, 93, 7, 2 * s.hw + 5);  // channels 0 and 2
    const size_t n = s.numel(), c = s.c;
    const auto dy = random_vec(n, 94), w = random_vec(c, 95, 0.5, 1.5);
    const auto mean = random_vec(c, 96), rv = random_vec(c, 97, 0.5, 2);
    std::vector<float> is(c), dx(n), dw(c), db(c);
    batchnorm_invstd_ref<float>(rv.data(), is.data(), 1e-5, s.c);
    batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                             dw.data(), db.data(), false, s, nullptr);
    for (float v : dx) ASSERT_TRUE(std::isfinite(v));
    ASSERT_FALSE(std::isfinite(dw[0]) || std::isfinite(dw[2]) || !std::isfinite(dw[1]));
    for (bool persistent : {false, true}) {
      SCOPED_TRACE(testing::Message()
                   << s.n << "x" << s.c << "x" << s.hw << (persistent ? " persistent" : ""));
      batchnorm_set_persistent(persistent);
      Dev gx(x), gdy(dy), gw(w), gmean(mean), gis(is), gdx(n), gdw(c), gdb(c);
      void* ws = dev_workspace(batchnorm_workspace_bytes(s));
      batchnorm_bwd(gx.p, gdy.p, gw.p, gmean.p, gis.p, gdx.p, gdw.p, gdb.p, false, s, ws, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_TRUE(same_nans_else_close(gdx.get(n), dx)) << "dx";
      EXPECT_TRUE(same_nans_else_close(gdw.get(c), dw)) << "dweight";
      EXPECT_TRUE(same_nans_else_close(gdb.get(c), db)) << "dbias";
      cudaFree(ws);
    }
  }
#endif
}

TEST(NormGpu, BitwiseDeterministicAcrossRuns) {
  // group norm on both its paths: whole groups (32 x 4) and planes (2 x 2)
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  for (const NormShape s : {NormShape{32, 8, 30 * 30, 4}, NormShape{2, 8, 30 * 30, 2}}) {
    SCOPED_TRACE("n=" + std::to_string(s.n) + " groups=" + std::to_string(s.groups));
    const size_t n = s.numel(), c = s.c;
    Dev x(random_vec(n, 61, -1, 3)), dy(random_vec(n, 62)), w(random_vec(c, 63, 0.5, 1.5)),
        b(random_vec(c, 64));
    void* ws = dev_workspace(std::max(batchnorm_workspace_bytes(s), groupnorm_workspace_bytes(s)));
    std::vector<float> first;
    for (int run = 0; run < 2; ++run) {
      Dev y(n), m(n), is(n), dx(n), dw(c), db(c), gy(n), gdx(n), gdw(c), gdb(c);
      batchnorm_fwd_train(x.p, w.p, b.p, y.p, m.p, is.p, nullptr, nullptr, nullptr, 0.1, 1e-5, s,
                          ws, nullptr);
      batchnorm_bwd(x.p, dy.p, w.p, m.p, is.p, dx.p, dw.p, db.p, true, s, ws, nullptr);
      groupnorm_fwd(x.p, w.p, b.p, gy.p, m.p, is.p, 1e-5, s, ws, nullptr);
      groupnorm_bwd(x.p, dy.p, w.p, m.p, is.p, gdx.p, gdw.p, gdb.p, s, ws, nullptr);
      std::vector<float> all;
      for (auto* d : {&y, &dx, &gy, &gdx}) {
        auto v = d->get(n);
        all.insert(all.end(), v.begin(), v.end());
      }
      for (auto* d : {&dw, &db, &gdw, &gdb}) {
        auto v = d->get(c);
        all.insert(all.end(), v.begin(), v.end());
      }
      if (run == 0)
        first = all;
      else
        EXPECT_EQ(std::memcmp(all.data(), first.data(), all.size() * sizeof(float)), 0);
    }
    cudaFree(ws);
  }
#endif
}

TEST(BatchNormGpu, LayerRunningStatsMatchCpu) {
  KILN_SKIP_WITHOUT_GPU();
  Model cpu({3, 5, 5}), gpu({3, 5, 5});
  auto& bc = static_cast<BatchNorm&>(cpu.add(std::make_unique<BatchNorm>(3, true)));
  auto& bg = static_cast<BatchNorm&>(gpu.add(std::make_unique<BatchNorm>(3, true)));
  cpu.build(Device::CPU, 5);
  gpu.build(Device::CUDA, 5);
  Context cc(Device::CPU), gc(Device::CUDA);
  for (int step = 0; step < 3; ++step) {
    auto x = random_vec(4 * 75, 40 + step, -1, 3);
    cpu.forward(cc, Tensor::from_vector(x, {4, 3, 5, 5}, Device::CPU));
    gpu.forward(gc, Tensor::from_vector(x, {4, 3, 5, 5}, Device::CUDA));
  }
  gc.sync();
  EXPECT_TRUE(test::all_close(bg.running_mean().to_vector(), bc.running_mean().to_vector(), 1e-6, 1e-5));
  EXPECT_TRUE(test::all_close(bg.running_var().to_vector(), bc.running_var().to_vector(), 1e-6, 1e-5));
  EXPECT_EQ(bg.num_batches_tracked().to_vector()[0], 3.0f);
}

#ifdef KILN_HAVE_CUDNN
// cuDNN's spatial batch norm as a second oracle for the training forward and running stats.
TEST(BatchNormGpu, MatchesCudnnTrainingForward) {
  KILN_SKIP_WITHOUT_GPU();
  NormShape s{6, 5, 9 * 11, 1};
  const size_t n = s.numel(), c = s.c;
  auto x = random_vec(n, 51, -1, 2), w = random_vec(c, 52, 0.5, 1.5), b = random_vec(c, 53);
  auto rm = random_vec(c, 54), rv = random_vec(c, 55, 0.5, 2);
  Dev gx(x), gw(w), gb(b), grm(rm), grv(rv), grm2(rm), grv2(rv), gy(n), gy2(n), gm(c), gi(c),
      gm2(c), gi2(c), gnbt(std::vector<float>{0, 0});
  void* ws = dev_workspace(batchnorm_workspace_bytes(s));
  batchnorm_fwd_train(gx.p, gw.p, gb.p, gy.p, gm.p, gi.p, grm.p, grv.p, gnbt.p, 0.1, 1e-5, s, ws, nullptr);
  cudnnHandle_t h;
  ASSERT_EQ(cudnnCreate(&h), CUDNN_STATUS_SUCCESS);
  cudnnTensorDescriptor_t xd, pd;
  cudnnCreateTensorDescriptor(&xd);
  cudnnCreateTensorDescriptor(&pd);
  cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.n, s.c, 9, 11);
  cudnnSetTensor4dDescriptor(pd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s.c, 1, 1);
  const float one = 1, zero = 0;
  ASSERT_EQ(cudnnBatchNormalizationForwardTraining(h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd, gx.p,
                                                   xd, gy2.p, pd, gw.p, gb.p, 0.1, grm2.p, grv2.p,
                                                   1e-5, gm2.p, gi2.p),
            CUDNN_STATUS_SUCCESS);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(test::all_close(gy.get(n), gy2.get(n), 1e-5, 1e-4));
  EXPECT_TRUE(test::all_close(gm.get(c), gm2.get(c), 1e-6, 1e-5));
  EXPECT_TRUE(test::all_close(gi.get(c), gi2.get(c), 1e-5, 1e-4));
  EXPECT_TRUE(test::all_close(grm.get(c), grm2.get(c), 1e-6, 1e-5));
  EXPECT_TRUE(test::all_close(grv.get(c), grv2.get(c), 1e-6, 1e-4));
  cudnnDestroyTensorDescriptor(xd);
  cudnnDestroyTensorDescriptor(pd);
  cudnnDestroy(h);
  cudaFree(ws);
}
#endif

}  // namespace
}  // namespace kiln
