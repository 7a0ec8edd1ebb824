// LR range test: the suggestion rules on synthetic curves whose valley/steepest point/minimum
// are known by construction, the ramp and the EMA against their formulas, and a real run on
// tests/data that must leave weights, BN buffers and optimizer state exactly as they were.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "engine/error.h"
#include "test_util.h"
#include "tuning/lr_finder.h"

namespace kiln {
namespace {

TEST(LrFinder, RampEndpointsAndGeometricSpacing) {
  EXPECT_DOUBLE_EQ(ramp_lr(1e-5, 1.0, 0.0), 1e-5);
  EXPECT_NEAR(ramp_lr(1e-5, 1.0, 1.0), 1.0, 1e-12);
  EXPECT_NEAR(ramp_lr(1e-5, 1.0, 0.5), std::sqrt(1e-5), 1e-12);
  EXPECT_NEAR(ramp_lr(1e-5, 1.0, 0.3) / ramp_lr(1e-5, 1.0, 0.2), std::pow(1e5, 0.1), 1e-9);
}

TEST(LrFinder, DebiasedEmaMatchesFormula) {
  std::vector<double> raw = {2.0, 1.0, 3.0, 0.5};
  std::vector<double> s = debiased_ema(raw, 0.98);
  EXPECT_DOUBLE_EQ(s[0], 2.0);  // debiasing makes the first value the first loss
  double avg = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    avg = 0.98 * avg + 0.02 * raw[i];
    EXPECT_NEAR(s[i], avg / (1 - std::pow(0.98, i + 1.0)), 1e-12);
  }
}

// x = log10(lr) from -6 to 1. Loss: strictly decreasing (tanh step centred at x = -3, so the
// steepest descent is at -3) down to a minimum at x = -1, then rising fast.
struct Curve {
  std::vector<double> lrs, losses;
  int64_t imin = 0;
};
Curve synthetic(int n) {
  Curve c;
  for (int i = 0; i < n; ++i) {
    double x = -6.0 + 7.0 * i / (n - 1);
    double l = 2.0 - std::tanh((x + 3.0) * 2.0) - 0.01 * (x + 6.0);
    if (x > -1.0) l += 5.0 * (x + 1.0) * (x + 1.0) + 0.05 * (x + 1.0);
    c.lrs.push_back(std::pow(10.0, x));
    c.losses.push_back(l);
  }
  c.imin = std::min_element(c.losses.begin(), c.losses.end()) - c.losses.begin();
  return c;
}

TEST(LrFinder, SuggestionsOnSyntheticCurve) {
  Curve c = synthetic(141);  // x step 0.05
  ASSERT_NEAR(std::log10(c.lrs[c.imin]), -1.0, 0.051);
  LrSuggestion steep = suggest_steep(c.lrs, c.losses);
  EXPECT_NEAR(std::log10(steep.lr), -3.0, 0.06);
  LrSuggestion mn = suggest_minimum(c.lrs, c.losses);
  EXPECT_EQ(mn.index, c.imin);
  EXPECT_NEAR(mn.lr, c.lrs[c.imin] / 10, 1e-12);
  // Strictly decreasing from index 0 to imin: lds[imin] = imin + 1, so fastai's start is
  // imin - (imin + 1) = -1 and the rule picks -1 + floor(L/3) + floor(L/6) with L = imin + 1.
  LrSuggestion v = suggest_valley(c.lrs, c.losses);
  int64_t L = c.imin + 1;
  EXPECT_EQ(v.index, -1 + L / 3 + static_cast<int64_t>(L / 3.0 / 2));
  EXPECT_DOUBLE_EQ(v.lr, c.lrs[v.index]);
  // Slide: the 15-point window walks left from the right wall until the np.gradient values at
  // its ends agree to 0.005. A literal Python transcription of fastai's slide() on this curve
  // stops with the left end at index 85 (x = -1.75), just left of the minimum.
  LrSuggestion sl = suggest_slide(c.lrs, c.losses);
  EXPECT_EQ(sl.index, 85);
  EXPECT_LT(sl.index, c.imin);
}

TEST(LrFinder, ValleyIgnoresNoiseBumps) {
  // A descending stretch interrupted by a small bump: the longest decreasing subsequence
  // skips the bump, so the valley still spans start..minimum.
  std::vector<double> lrs, losses;
  for (int i = 0; i < 30; ++i) {
    lrs.push_back(std::pow(10.0, -5 + i * 0.2));
    losses.push_back(i < 20 ? 3.0 - 0.1 * i + (i == 7 ? 0.25 : 0.0) : 1.0 + 0.5 * (i - 19));
  }
  LrSuggestion v = suggest_valley(lrs, losses);
  // longest decreasing: indices 0..19 without 7 -> 19 elements ending at 19, start = 19-19 = 0
  EXPECT_EQ(v.index, 19 / 3 + static_cast<int64_t>(19 / 3.0 / 2));
}

TEST(LrFinder, ValleyStartIsEndMinusTheRunLength) {
  // 3, 1, 2.5, 2, 0.5: the longest decreasing subsequence is 3 2.5 2 0.5, ending at index 4
  // with length 4, so start = 4 - 4 = 0, L = 4 and the index is 0 + 1 + 0 = 1. (The synthetic
  // curve above, falling from its first point, is the case where start is -1.)
  const std::vector<double> lrs = {1, 2, 3, 4, 5}, losses = {3, 1, 2.5, 2, 0.5};
  EXPECT_EQ(suggest_valley(lrs, losses).index, 1);
  // A curve whose only fall is its first step: start -1, L = 2, index -1 + 0 + 0, which
  // Python reads as the last point; kiln clamps it to the first.
  EXPECT_EQ(suggest_valley({1, 2, 3}, {3, 2, 4}).index, 0);
}

TEST(LrFinder, TrimmingFollowsFastaiOnEarlyStopsAndNaN) {
  // Stopped early at 40 of 100 planned steps: the first 10% of the *planned* steps (10) and the
  // last 5 recorded points are skipped, so every rule looks at points 10..34.
  Curve c = synthetic(141);
  std::vector<LrFindPoint> pts;
  for (size_t i = 0; i < 40; ++i)
    pts.push_back({static_cast<long long>(i), c.lrs[i], c.losses[i], c.losses[i]});
  LrFindOptions o;
  std::vector<LrSuggestion> s = suggest_all(pts, 100, o);
  ASSERT_TRUE(s[2].ok());
  EXPECT_EQ(s[2].index, 34);  // the curve falls throughout: its minimum is the last point kept
  // Strictly falling over 10..34: lds = 25, start 34 - 25 = 9, L = 25: 9 + 8 + 4.
  EXPECT_EQ(s[0].index, 21);
  // A NaN at point 30 (the test stops there): fastai would have run on and cut its window at
  // the NaN, so points 10..29 count, not 10..24.
  pts.resize(31);
  pts[30].loss = pts[30].smoothed = NAN;
  s = suggest_all(pts, 100, o);
  EXPECT_EQ(s[2].index, 29);
  // An infinite loss stops fastai too (inf > 4x best): the last 5 points are dropped.
  pts[30].loss = pts[30].smoothed = INFINITY;
  s = suggest_all(pts, 100, o);
  EXPECT_EQ(s[2].index, 25);
}

TEST(LrFinder, TrimmingSkipsFirstTenthAndLastFive) {
  Curve c = synthetic(141);
  std::vector<LrFindPoint> pts;
  for (size_t i = 0; i < c.lrs.size(); ++i)
    pts.push_back({static_cast<long long>(i), c.lrs[i], c.losses[i], c.losses[i]});
  LrFindOptions o;
  std::vector<LrSuggestion> s = suggest_all(pts, 141, o);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].method, "valley");
  for (const auto& x : s) {
    ASSERT_TRUE(x.ok()) << x.method;
    EXPECT_GE(x.index, 14) << x.method;
    EXPECT_LT(x.index, 141 - 5) << x.method;
  }
  EXPECT_EQ(s[2].index, c.imin);
  // Too few points after trimming: no suggestion, not a crash.
  pts.resize(6);
  for (const auto& x : suggest_all(pts, 6, o)) EXPECT_FALSE(x.ok()) << x.method;
}

RunConfig small_config() {
  RunConfig cfg;
  cfg.data.data_dir = test::data_dir();
  cfg.data.train_limit = 512;
  cfg.data.test_limit = 200;
  cfg.device = "cpu";
  cfg.model.model = "mlp";
  cfg.model.width = 32;
  cfg.model.depth = 2;
  cfg.model.norm = "batch";  // BN running stats must be restored too
  cfg.optim.name = "adam";
  cfg.train.batch_size = 64;
  cfg.train.progress = 0;
  return cfg;
}

std::vector<std::vector<float>> all_state(RunSession& s) {
  std::vector<std::vector<float>> out;
  for (auto& kv : s.model->state_dict()) out.push_back(kv.second.to_vector());
  for (auto& kv : s.opt->state()) out.push_back(kv.second.to_vector());
  return out;
}

// Without restore the weights move; with it, weights, BN buffers and optimizer state are back
// bit for bit and the recorded losses are the same. Returns the restored run's losses.
std::vector<double> expect_restores_state(const std::string& device) {
  RunConfig cfg = small_config();
  cfg.device = device;
  auto s = make_session(cfg);
  auto before = all_state(*s);
  LrFindOptions o;
  o.start_lr = 1e-5f;
  // Up to 0.01: Adam steps at lr 0.1-1 amplify the last-bit differences between the CPU and GPU
  // sums past the GPU test's 1e-3 (0.15% at step 11 on the emulator once the ramp became
  // fastai's); below 0.01 they stay under 2e-6.
  o.end_lr = 0.01f;
  o.num_it = 12;  // more than one epoch of 8 batches: crosses an epoch boundary
  o.restore = false;
  LrFindResult r = lr_find(*s, o);
  EXPECT_GE(r.points.size(), 2u);
  if (r.points.size() < 2) return {};
  EXPECT_NEAR(r.points[0].lr, 1e-5, 1e-10);
  EXPECT_NE(all_state(*s), before) << "without restore the test must change the weights";
  EXPECT_GT(s->opt->steps_taken(), 0);

  auto s2 = make_session(cfg);
  o.restore = true;
  LrFindResult r2 = lr_find(*s2, o);
  EXPECT_EQ(r2.points.size(), r.points.size());
  EXPECT_EQ(all_state(*s2), before);
  EXPECT_EQ(s2->opt->steps_taken(), 0);
  EXPECT_EQ(r2.points.size(), 12u) << r2.stop_reason;
  std::vector<double> losses;
  for (size_t i = 0; i < r2.points.size() && i < r.points.size(); ++i) {
    EXPECT_EQ(r2.points[i].loss, r.points[i].loss) << i;
    losses.push_back(r2.points[i].loss);
  }
  return losses;
}

TEST(LrFinder, RealRunRestoresWeightsBuffersAndOptimizerState) { expect_restores_state("cpu"); }

TEST(LrFinderGpu, RestoresDeviceStateAndFollowsCpuLosses) {
  KILN_SKIP_WITHOUT_GPU();
  const std::vector<double> gpu = expect_restores_state("cuda"), cpu = expect_restores_state("cpu");
  ASSERT_EQ(gpu.size(), cpu.size());
  for (size_t i = 0; i < gpu.size(); ++i) EXPECT_NEAR(gpu[i], cpu[i], 1e-3 * std::fabs(cpu[i])) << "step " << i;
}

TEST(LrFinder, ValidationModeAndEpochRamp) {
  RunConfig cfg = small_config();
  auto s = make_session(cfg);
  LrFindOptions o;
  o.start_lr = 1e-4f;
  o.end_lr = 1e-2f;
  o.num_it = 0;  // two full epochs of 8 batches
  o.epochs = 2;
  o.use_val = true;
  o.val_size = 100;
  LrFindResult r = lr_find(*s, o);
  ASSERT_EQ(r.points.size(), 16u) << r.stop_reason;
  // keras_lr_finder: lr_mult = (end/start)^(1/num_batches), num_batches = epochs*N/batch = 16,
  // and step i trains at start * lr_mult^i: the last of the 16 steps just below end_lr.
  const double mult = std::pow(100.0, 1.0 / 16);
  for (size_t i = 0; i < r.points.size(); ++i)
    EXPECT_NEAR(r.points[i].lr, 1e-4 * std::pow(mult, static_cast<double>(i)), 1e-9) << i;
  // Evaluating a fixed slice: at a tiny lr the first two losses are nearly equal, and they are
  // not the (noisier) batch losses.
  EXPECT_NEAR(r.points[0].loss, r.points[1].loss, 0.05);
}

TEST(LrFinderGpu, ValidationModeWithCudaGraphsMatchesGraphsOff) {
  // Each step is followed by an evaluation, whose forward passes replace the layers' buffers:
  // a graph captured after it would free them mid-capture (it did, until 2026-12-02).
  KILN_SKIP_WITHOUT_GPU();
  auto run = [](bool graphs) {
    RunConfig cfg = small_config();
    cfg.device = "cuda";
    cfg.train.cuda_graphs = graphs;
    auto s = make_session(cfg);
    LrFindOptions o;
    o.start_lr = 1e-4f;
    o.end_lr = 1e-2f;
    o.num_it = 6;
    o.use_val = true;
    o.val_size = 100;
    std::vector<double> losses;
    for (const auto& p : lr_find(*s, o).points) losses.push_back(p.loss);
    return losses;
  };
  const std::vector<double> on = run(true), off = run(false);
  ASSERT_EQ(on.size(), 6u);
  EXPECT_EQ(on, off);
}

TEST(LrFinder, EpochRampSpansKerasNumBatchesAlsoWithAPartialLastBatch) {
  // 512 samples at batch 100: 6 batches an epoch, the last of 12; keras_lr_finder's
  // num_batches = 2 * 512 / 100 = 10.24, so the last two steps go past end_lr.
  RunConfig cfg = small_config();
  cfg.train.batch_size = 100;
  auto s = make_session(cfg);
  LrFindOptions o;
  o.start_lr = 1e-4f;
  o.end_lr = 1e-3f;
  o.num_it = 0;
  o.epochs = 2;
  LrFindResult r = lr_find(*s, o);
  ASSERT_EQ(r.points.size(), 12u) << r.stop_reason;
  for (size_t i = 0; i < r.points.size(); ++i)
    EXPECT_FLOAT_EQ(r.points[i].lr, static_cast<float>(1e-4 * std::pow(10.0, i / 10.24))) << i;
  EXPECT_GT(r.points.back().lr, 1e-3);
}

TEST(LrFinder, ValidationModeUsesTheValidationSplitWhenThereIsOne) {
  // With --val-split the held-out loss comes from the validation split, not the test set: at a
  // negligible lr the first point is the loss of the initial model on the split's first 100 rows.
  RunConfig cfg = small_config();
  cfg.model.norm = "none";  // no running statistics to move in the step before the evaluation
  cfg.data.val_split = 0.25;
  auto s = make_session(cfg);
  ASSERT_GT(s->val.size(), 100);
  const double on_val = s->trainer->evaluate(slice_rows(s->val, 0, 100, "v")).loss;
  const double on_test = s->trainer->evaluate(slice_rows(s->test, 0, 100, "t")).loss;
  ASSERT_GT(std::fabs(on_val - on_test), 1e-3) << "the two slices must tell apart";
  LrFindOptions o;
  o.start_lr = 1e-12f;
  o.end_lr = 2e-12f;
  o.num_it = 2;
  o.use_val = true;
  o.val_size = 100;
  LrFindResult r = lr_find(*s, o);
  ASSERT_EQ(r.points.size(), 2u) << r.stop_reason;
  EXPECT_NEAR(r.points[0].loss, on_val, 1e-6);
}

TEST(LrFinder, DivergenceStopsEarlyAndCsvIsWritten) {
  RunConfig cfg = small_config();
  cfg.optim.name = "sgd";
  cfg.model.norm = "none";
  auto s = make_session(cfg);
  LrFindOptions o;
  o.start_lr = 1e-3f;
  o.end_lr = 1e6f;  // must blow up well before the end
  o.num_it = 200;
  LrFindResult r = lr_find(*s, o);
  EXPECT_LT(r.points.size(), 200u);
  EXPECT_EQ(r.stop_reason.find("completed"), std::string::npos) << r.stop_reason;
  // fastai's ramp: step i at start * (end/start)^(i/num_it), never quite reaching end_lr.
  for (size_t i = 0; i < r.points.size(); ++i)
    EXPECT_FLOAT_EQ(r.points[i].lr, static_cast<float>(1e-3 * std::pow(1e9, i / 200.0))) << i;
  std::string path = test::temp_file("lr_find_test.csv");
  write_lr_find_csv(path, r);
  std::ifstream f(path);
  std::string header;
  std::getline(f, header);
  EXPECT_EQ(header, "step,lr,loss,smoothed_loss");
  size_t rows = 0;
  for (std::string line; std::getline(f, line);) ++rows;
  EXPECT_EQ(rows, r.points.size());
  std::remove(path.c_str());
  std::remove((path + ".suggestions").c_str());
}

TEST(LrFinder, NonFiniteLossStopsTheRangeSaysWhyAndRestoresTheWeights) {
  // --start-lr 1e10 --end-lr 1e12 on five layers without batch norm: Adam's first step moves
  // every weight by about 1e10, and the next forward pass overflows, so the loss goes from
  // finite to NaN in one step (no smoothed-loss rule sees it coming). The range stops there
  // saying so, and leaves weights and optimizer state as they were, with no non-finite flag
  // left over to stop the training that follows.
  RunConfig cfg = small_config();
  cfg.model.norm = "none";
  cfg.model.depth = 4;
  auto s = make_session(cfg);
  const auto before = all_state(*s);
  LrFindOptions o;
  o.start_lr = 1e10f;
  o.end_lr = 1e12f;
  o.num_it = 40;
  LrFindResult r = lr_find(*s, o);
  ASSERT_EQ(r.points.size(), 2u) << r.stop_reason;
  EXPECT_EQ(r.stop_reason.rfind("non-finite loss at lr ", 0), 0u) << r.stop_reason;
  const LrFindPoint& last = r.points.back();
  EXPECT_FALSE(std::isfinite(last.loss)) << "stopped at a finite loss " << last.loss;
  for (size_t i = 0; i + 1 < r.points.size(); ++i)
    EXPECT_TRUE(std::isfinite(r.points[i].loss)) << i;
  std::ostringstream lr;
  lr << static_cast<float>(last.lr);
  EXPECT_EQ(r.stop_reason, "non-finite loss at lr " + lr.str());
  EXPECT_EQ(all_state(*s), before);
  EXPECT_EQ(s->opt->steps_taken(), 0);
  EXPECT_NO_THROW(s->trainer->fit(s->train, nullptr));
}

TEST(LrFinder, AnErrorMidRangeRestoresTheWeightsAndIsRethrown) {
  // A failure that is not divergence (here the held-out slice, read after the first step, has
  // a label past the model's classes) is passed on, after the weights are put back.
  RunConfig cfg = small_config();
  auto s = make_session(cfg);
  s->test.host_labels[3] = 10;
  copy_bytes(s->test.labels->data(), Device::CPU, s->test.host_labels.data(), Device::CPU,
             s->test.host_labels.size() * sizeof(int32_t));
  const auto before = all_state(*s);
  LrFindOptions o;
  o.start_lr = 1e-3f;
  o.end_lr = 1e-1f;
  o.num_it = 10;
  o.use_val = true;
  o.val_size = 100;
  try {
    lr_find(*s, o);
    FAIL() << "a label of 10 was scored";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
    EXPECT_NE(e.message().find("label 10 of sample 3 is outside the model's 10 classes"),
              std::string::npos)
        << e.message();
  }
  EXPECT_EQ(all_state(*s), before) << "the step before the error was not undone";
  EXPECT_EQ(s->opt->steps_taken(), 0);
}

}  // namespace
}  // namespace kiln
