// Sweeps: YAML validation, grid order, random sampling (determinism, ranges, distributions),
// results round trip, resume, stale-lock reclaim, worker sharding and concurrent workers (none
// lost, none duplicated), median pruning and failed trials, all with a fake trial runner; plus
// parameter importance on synthetic results where one parameter drives the metric.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "engine/error.h"
#include "tuning/importance.h"
#include "tuning/run_checkpoint.h"
#include "tuning/sweep.h"

namespace kiln {
namespace {

// A sweep directory of this process, removed when the test process exits.
std::string fresh_dir(const std::string& name) {
  struct Scratch {
    std::vector<std::string> dirs;
    ~Scratch() {
      std::error_code ec;
      for (const std::string& d : dirs) std::filesystem::remove_all(d, ec);
    }
  };
  static Scratch scratch;
  std::string d = ::testing::TempDir() + "kiln_sweep_" + name + "_" + std::to_string(getpid());
  std::error_code ec;
  std::filesystem::remove_all(d, ec);
  scratch.dirs.push_back(d);
  return d;
}

std::string usage_error(const std::string& yaml) {
  try {
    parse_sweep(yaml, "s.yaml");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.message();
    return e.message();
  }
  return "(no error)";
}

TEST(SweepSpec, GridIsCartesianProductLastParameterFastest) {
  SweepSpec s = parse_sweep(
      "method: grid\nparameters:\n  optimizer: {values: [sgd, adam]}\n  lr: {values: [0.1, 0.01, "
      "0.001]}\n"
      "  width: {value: 64}\n",
      "s.yaml");
  ASSERT_EQ(num_trials(s), 6);
  std::vector<std::string> got;
  for (int i = 0; i < 6; ++i) {
    auto p = trial_params(s, i);
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[2].second, "64");
    got.push_back(p[0].second + "/" + p[1].second);
  }
  EXPECT_EQ(got, (std::vector<std::string>{"sgd/0.1", "sgd/0.01", "sgd/0.001", "adam/0.1",
                                           "adam/0.01", "adam/0.001"}));
  SweepSpec capped = parse_sweep(
      "method: grid\nrun_cap: 4\nparameters:\n  lr: {values: [1, 2, 3, 4, 5, 6]}\n", "s.yaml");
  EXPECT_EQ(num_trials(capped), 4);
  // run_cap takes the first points of a grid of any size: 8^14 = 2^42 points here ("the grid has
  // more than 2^40 points" refused it, though the file's check had let it through for its cap).
  std::string huge = "method: grid\nrun_cap: 3\nparameters:\n";
  for (const char* name : {"lr", "momentum", "width", "depth", "epochs", "seed", "t-max", "l1",
                           "l2", "weight-decay", "dropout", "batch-size", "gamma", "step-size"})
    huge += std::string("  ") + name + ": {values: [1, 2, 3, 4, 5, 6, 7, 8]}\n";
  SweepSpec big = parse_sweep(huge, "s.yaml");
  EXPECT_EQ(num_trials(big), 3);
  EXPECT_EQ(trial_params(big, 2).back().second, "3");
  EXPECT_EQ(trial_params(big, 2).front().second, "1");
}

TEST(SweepSpec, MetricGoalDefaultsFollowTheMetric) {
  SweepSpec a = parse_sweep("parameters: {lr: {values: [0.1]}}\n", "s.yaml");
  EXPECT_EQ(a.metric, "test_acc");
  EXPECT_TRUE(a.maximize);
  SweepSpec b =
      parse_sweep("metric: {name: test_loss}\nparameters: {lr: {values: [0.1]}}\n", "s.yaml");
  EXPECT_FALSE(b.maximize);
}

const char* kRandom =
    "method: random\nseed: 7\nrun_cap: 2000\nparameters:\n"
    "  lr: {min: 0.0001, max: 1.0, distribution: log_uniform}\n"
    "  momentum: {min: 0.5, max: 0.99, distribution: uniform}\n"
    "  batch_size: {min: 2, max: 5, distribution: int_uniform}\n"
    "  optimizer: {values: [sgd, adam, rmsprop]}\n";

TEST(SweepSpec, RandomSamplingIsDeterministicPerSeedAndTrial) {
  SweepSpec s = parse_sweep(kRandom, "s.yaml");
  EXPECT_EQ(s.params[2].name, "batch-size");  // YAML underscores map to the option name
  SweepSpec again = parse_sweep(kRandom, "s.yaml");
  std::string small = kRandom;
  small.replace(small.find("2000"), 4, "10");
  SweepSpec capped = parse_sweep(small, "s.yaml");
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(trial_params(s, i), trial_params(again, i));
    EXPECT_EQ(trial_params(s, i), trial_params(capped, i)) << "trial i must not depend on run_cap";
  }
  SweepSpec other = s;
  other.seed = 8;
  int same = 0;
  for (int i = 0; i < 10; ++i) same += trial_params(s, i)[0] == trial_params(other, i)[0];
  EXPECT_LT(same, 2);
}

TEST(SweepSpec, RandomSamplingRangesAndDistributions) {
  SweepSpec s = parse_sweep(kRandom, "s.yaml");
  int below_geo_mean = 0, below_mid = 0;
  std::map<std::string, int> bs, opt;
  for (int i = 0; i < 2000; ++i) {
    auto p = trial_params(s, i);
    double lr = std::stod(p[0].second), mom = std::stod(p[1].second);
    ASSERT_GE(lr, 1e-4);
    ASSERT_LE(lr, 1.0);
    ASSERT_GE(mom, 0.5);
    ASSERT_LE(mom, 0.99);
    below_geo_mean += lr < 1e-2;  // log-uniform: half below the geometric mean
    below_mid += mom < 0.745;
    bs[p[2].second]++;
    opt[p[3].second]++;
  }
  EXPECT_NEAR(below_geo_mean / 2000.0, 0.5, 0.05);
  EXPECT_NEAR(below_mid / 2000.0, 0.5, 0.05);
  EXPECT_EQ(bs.size(), 4u);  // 2, 3, 4, 5 all drawn, nothing else
  for (const auto& kv : bs) {
    EXPECT_TRUE(kv.first == "2" || kv.first == "3" || kv.first == "4" || kv.first == "5")
        << kv.first;
    EXPECT_NEAR(kv.second / 2000.0, 0.25, 0.05) << kv.first;
  }
  EXPECT_EQ(opt.size(), 3u);
  for (const auto& kv : opt) EXPECT_NEAR(kv.second / 2000.0, 1.0 / 3, 0.05) << kv.first;
}

TEST(SweepSpec, WandbRequiredKeysAndOneParameterPerOption) {
  // W&B requires metric.name and early_terminate.type: without them a goal applied to the
  // default metric (minimize ranked test_acc's worst model first) and pruning stayed off.
  EXPECT_EQ(usage_error("metric: {goal: minimize}\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml: key 'metric': 'name' is missing (e.g. {name: val_acc, goal: maximize})");
  EXPECT_EQ(usage_error("early_terminate: {min_epochs: 1}\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml: key 'early_terminate': 'type' is missing (expected {type: median, "
            "min_epochs: k})");
  // Two grouped parameters setting one option: the later won, the results credited the other.
  EXPECT_EQ(usage_error("parameters:\n  a: {values: [{lr: 0.001}, {lr: 0.5}]}\n"
                        "  b: {values: [{lr: 0.3}, {momentum: 0.5}]}\n"),
            "s.yaml: 'lr' is set by parameters 'a' and 'b'; one option, one parameter");
  EXPECT_NO_THROW(
      parse_sweep("parameters:\n  a: {values: [{lr: 0.1, momentum: 0.9}, {lr: 0.5}]}\n", "s.yaml"));
}

TEST(SweepSpec, ValueOrValuesAndWandbDistributionNames) {
  // Both keys: which one won depended on their order in the file.
  for (const char* p : {"{value: 0.5, values: [0.01, 0.02]}", "{values: [0.01, 0.02], value: 0.5}"})
    EXPECT_EQ(usage_error(std::string("parameters: {lr: ") + p + "}\n"),
              "s.yaml: parameter 'lr': give values: [...] (a list) or value: x (one), not both");
  // W&B names a list categorical and one value constant.
  SweepSpec s = parse_sweep(
      "parameters:\n  optimizer: {values: [sgd, adam], distribution: categorical}\n"
      "  lr: {value: 0.1, distribution: constant}\n",
      "s.yaml");
  EXPECT_EQ(num_trials(s), 2);
  EXPECT_EQ(trial_params(s, 1), (std::vector<std::pair<std::string, std::string>>{
                                    {"optimizer", "adam"}, {"lr", "0.1"}}));
  EXPECT_EQ(usage_error("parameters: {lr: {min: 0.1, max: 1, distribution: categorical}}\n"),
            "s.yaml: parameter 'lr': distribution categorical takes values: [...]");
  EXPECT_EQ(usage_error("parameters: {lr: {values: [0.1], distribution: constant}}\n"),
            "s.yaml: parameter 'lr': distribution constant takes value: x");
  // yaml-cpp reads the first document only: keys after a '...' end marker were dropped.
  EXPECT_EQ(usage_error("parameters: {lr: {values: [0.1]}}\n...\nmethod: random\n"),
            "s.yaml: line 3: text after the end of the YAML document ('...' on line 2) would be "
            "dropped; the file is one mapping");
  EXPECT_NO_THROW(parse_sweep("parameters: {lr: {values: [0.1]}}\n...\n# done\n\n", "s.yaml"));
  try {  // read to 16 MiB, not until memory runs out
    load_sweep("/dev/zero");
    ADD_FAILURE() << "/dev/zero read as a sweep";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "/dev/zero: more than 16 MiB: not a sweep file");
  }
}

// What a sweep file sets that changes nothing is said: a grid's seed (it seeds random
// sampling), a grid value listed twice (the same run, twice).
TEST(SweepSpec, NotesOnWhatChangesNothing) {
  SweepSpec s = parse_sweep(
      "seed: 3\nparameters:\n  lr: {values: [0.01, 0.1, 1e-2, 0.010]}\n"
      "  width: {values: [8, 16]}\n",
      "s.yaml");
  EXPECT_EQ(num_trials(s), 8);
  ASSERT_EQ(s.notes.size(), 2u);
  EXPECT_EQ(s.notes[0],
            "seed: 3 is ignored by a grid sweep (it seeds random sampling; the runs' own seed is a "
            "base key or a parameter)");
  EXPECT_EQ(s.notes[1],
            "parameter 'lr' lists 0.01 3 times (0.01, 1e-2, 0.010): each is a trial "
            "of its own, the same run again");
  EXPECT_TRUE(parse_sweep("method: random\nseed: 3\nrun_cap: 4\nparameters: {lr: {values: [0.1, "
                          "0.1, 1]}}\n",
                          "s.yaml")
                  .notes.empty());
  EXPECT_TRUE(parse_sweep("parameters: {lr: {values: [0.1, 1]}}\n", "s.yaml").notes.empty());
}

// A listed value no trial can run with (a typo) is refused before any trial runs, naming the
// parameter; a combination only some trials hit stays a failed trial.
TEST(SweepSpec, AValueNoTrialCanRunWithIsRefusedUpFront) {
  RunConfig base;
  auto refused = [&](const std::string& yaml) {
    try {
      check_sweep_trials(parse_sweep(yaml, "s.yaml"), base);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.message();
      return e.message();
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(
      refused("parameters:\n  optimizer: {values: [sgd, adamm]}\n  lr: {values: [0.1, 0.2]}\n"),
      "s.yaml: parameter 'optimizer' value 'adamm' cannot run (nor can the 2 trials with "
      "it): --optimizer adamm: expected sgd|adam|adamw|rmsprop (lower case)");
  EXPECT_NE(
      refused("parameters: {dropout: {values: [0.1, 1.5]}}\n")
          .find(
              "s.yaml: parameter 'dropout' value '1.5' cannot run (nor can the 1 trial with it): "),
      std::string::npos);
  // Random search: the listed values the sampled trials drew.
  EXPECT_NE(refused("method: random\nrun_cap: 6\nparameters: {lr: {values: [-0.1, 0.01]}}\n")
                .find("s.yaml: parameter 'lr' value '-0.1' cannot run (nor can the "),
            std::string::npos);
  // nesterov=true fails only beside momentum 0: a combination, left to its trial.
  base.optim.name = "sgd";
  SweepSpec combo = parse_sweep(
      "parameters:\n  nesterov: {values: [true, false]}\n  momentum: {values: [0, 0.9]}\n",
      "s.yaml");
  EXPECT_EQ(check_sweep_trials(combo, base), 1);  // trial 0 (true, 0) cannot run
  // ...also where the draws put a value only beside the one partner it cannot run with
  // (seed 1: momentum 0 is drawn once, beside nesterov true).
  SweepSpec drawn = parse_sweep(
      "method: random\nseed: 1\nrun_cap: 8\nparameters:\n  nesterov: {values: [true, false]}\n"
      "  momentum: {values: [0, 0.5, 0.9]}\n",
      "s.yaml");
  int with_zero = 0;
  for (int64_t i = 0; i < 8; ++i) {
    const auto t = trial_params(drawn, i);
    if (t[1].second == "0") {
      ++with_zero;
      EXPECT_EQ(t[0].second, "true") << "the case no longer draws what it tests";
    }
  }
  EXPECT_GE(with_zero, 1);
  EXPECT_NO_THROW(check_sweep_trials(drawn, base));
  // ...and where nesterov true cannot run beside the base (sgd's momentum 0) either, but can
  // beside a listed momentum that run_cap (grid) or the draws (random) never put it with.
  SweepSpec capped = parse_sweep(
      "run_cap: 2\nparameters:\n  momentum: {values: [0, 0.9]}\n  nesterov: {values: [true, "
      "false]}\n",
      "s.yaml");
  EXPECT_EQ(check_sweep_trials(capped, base), 1);  // (0, true) fails alone, (0, false) runs
  SweepSpec drawn3 = parse_sweep(
      "method: random\nseed: 3\nrun_cap: 3\nparameters:\n  momentum: {values: [0, 0.9]}\n"
      "  nesterov: {values: [true, false]}\n",
      "s.yaml");
  bool true_beside_09 = false;
  for (int64_t i = 0; i < 3; ++i) {
    const auto t = trial_params(drawn3, i);
    true_beside_09 |= t[0].second == "0.9" && t[1].second == "true";
  }
  EXPECT_FALSE(true_beside_09) << "the case no longer draws what it tests";
  EXPECT_NO_THROW(check_sweep_trials(drawn3, base));
  // ...and where its partner is listed alone (every trial has momentum 0.9): nesterov true's
  // one trial (of run_cap 5) fails for its groups, not for want of momentum.
  base.model.norm = "group";
  SweepSpec single = parse_sweep(
      "run_cap: 5\nparameters:\n  model: {values: [mlp]}\n  momentum: {values: [0.9]}\n  nesterov: "
      "{values: [false, "
      "true]}\n  width: {values: [8, 12]}\n  groups: {values: [3, 2]}\n",
      "s.yaml");
  EXPECT_EQ(check_sweep_trials(single, base), 1);
  base.model.norm = "none";
  // The layers' checks count too (a value --dry-run once listed and every trial then failed).
  base.model.norm = "group";
  EXPECT_EQ(refused("parameters: {groups: {values: [2, 3]}}\n"),
            "s.yaml: parameter 'groups' value '3' cannot run (nor can the 1 trial with it): layer "
            "1 (GroupNorm(3 groups, 16 channels)): 16 channels are not divisible by --groups 3");
  base.model.norm = "none";
  // Beside a base that rules it out, a value can run nowhere: refused with the base's reason.
  base.optim.nesterov = true;
  EXPECT_EQ(refused("parameters: {momentum: {values: [0, 0.9]}}\n"),
            "s.yaml: parameter 'momentum' value '0' cannot run (nor can the 1 trial with it): "
            "--nesterov needs --momentum > 0 and zero dampening (momentum 0, dampening 0)");
  base.optim.nesterov = false;
  // A sampled number is one trial's: a range reaching below 0 is left to those trials.
  SweepSpec range = parse_sweep(
      "method: random\nrun_cap: 8\nparameters: {lr: {min: -0.5, max: 0.5}}\n", "s.yaml");
  int64_t first_positive = -1, negatives = 0;
  for (int64_t i = 0; i < 8; ++i) {
    const bool neg = std::stod(trial_params(range, i)[0].second) <= 0;
    negatives += neg;
    if (!neg && first_positive < 0) first_positive = i;
  }
  ASSERT_GT(negatives, 0) << "no sampled lr below 0: the case tests nothing";
  EXPECT_EQ(check_sweep_trials(range, base), first_positive);
  // Options no trial can run with are named as such.
  base.model.width = 0;
  EXPECT_EQ(refused("parameters: {lr: {values: [0.1, 0.2]}}\n")
                .rfind("every trial of s.yaml has invalid options (the sweep file's, a --config "
                       "file's or the command line's); first: ",
                       0),
            0u);
}

TEST(SweepSpec, SampledValuesAreTheValuesTheTrialRuns) {
  // A sample is recorded as the option holds it (lr is a float: the float's shortest text),
  // not rounded to 6 digits, which put every sample of this range outside it, on two values.
  SweepSpec s = parse_sweep(
      "method: random\nrun_cap: 200\nparameters:\n"
      "  lr: {min: 0.00123456123, max: 0.00123456999, distribution: uniform}\n"
      "  momentum: {min: 0.3, max: 0.30000004, distribution: log_uniform}\n",
      "s.yaml");
  std::set<std::string> lrs, moms;
  const float lo = 0.00123456123f, hi = 0.00123456999f;
  for (int i = 0; i < 200; ++i) {
    auto p = trial_params(s, i);
    RunConfig c;
    c.optim.lr = std::stof(p[0].second);
    EXPECT_GE(c.optim.lr, lo) << p[0].second;
    EXPECT_LE(c.optim.lr, hi) << p[0].second;
    EXPECT_EQ(run_options().find("lr")->get(c), p[0].second);  // the text is the float's
    lrs.insert(p[0].second);
    moms.insert(p[1].second);
  }
  EXPECT_GT(lrs.size(), 20u);
  EXPECT_GT(moms.size(), 1u);
}

// A list is a value only for a list option (run configs already said so): anything else given
// one was joined with commas (save: {values: [[a, b]]} ran a trial with save=a,b; base
// {width: [16]} passed). Numbers are decimal, as the options read them (run_cap: 0x3 gave 3
// trials, min: 0x1p-10 a bound of 2^-10).
TEST(SweepSpec, ListsOnlyForListOptionsAndNumbersDecimal) {
  for (const char* yaml :
       {"base: {width: [16]}\nparameters: {lr: {values: [0.1]}}\n",
        "parameters: {lr: {value: [0.1]}}\n", "parameters: {lr: {values: [[0.1], [0.2]]}}\n",
        "parameters: {save: {values: [[a, b]]}}\n",
        "parameters: {both: {values: [{lr: [0.1], width: 8}]}}\n"}) {
    const std::string m = usage_error(yaml);
    EXPECT_NE(m.find(", got a list"), std::string::npos) << yaml << ": " << m;
  }
  EXPECT_NE(usage_error("parameters: {lr: {values: [[0.1]]}}\n")
                .find("s.yaml: parameter 'lr': expected a single float, got a list"),
            std::string::npos);
  const SweepSpec ok =
      parse_sweep("parameters: {milestones: {values: [[30, 60], [10]]}}\n", "s.yaml");
  ASSERT_EQ(ok.params.size(), 1u);
  EXPECT_EQ(ok.params[0].values, (std::vector<std::string>{"30,60", "10"}));
  for (const char* yaml :
       {"method: random\nrun_cap: 0x3\nparameters: {lr: {min: 0.1, max: 1}}\n",
        "method: random\nrun_cap: 3\nparameters: {lr: {min: 0x1p-10, max: 1}}\n",
        "method: random\nrun_cap: 3\nearly_terminate: {type: median, min_epochs: 0x2}\n"
        "parameters: {lr: {min: 0.1, max: 1}}\n",
        // underflow: read as 0 (a log-uniform's min) before it was the options' parse_float
        "method: random\nrun_cap: 3\nparameters: {lr: {min: 1e-400, max: 1, distribution: "
        "log_uniform}}\n"}) {
    const std::string m = usage_error(yaml);
    EXPECT_NE(m.find("is not a finite number"), std::string::npos) << yaml << ": " << m;
  }
}

TEST(SweepSpec, YamlErrorsNameFileAndKey) {
  std::string m = usage_error("parameters:\n  lrr: {values: [0.1]}\n");
  EXPECT_NE(m.find("s.yaml"), std::string::npos) << m;
  EXPECT_NE(m.find("'lrr'"), std::string::npos) << m;
  EXPECT_NE(m.find("did you mean 'lr'"), std::string::npos) << m;
  m = usage_error("methd: grid\nparameters: {lr: {values: [0.1]}}\n");
  EXPECT_NE(m.find("did you mean 'method'"), std::string::npos) << m;
  m = usage_error("parameters: {lr: {values: [fast]}}\n");
  EXPECT_NE(m.find("'fast'"), std::string::npos) << m;
  m = usage_error("method: grid\nparameters: {lr: {min: 0.1, max: 1}}\n");
  EXPECT_NE(m.find("grid search needs values"), std::string::npos) << m;
  m = usage_error("method: random\nparameters: {lr: {values: [0.1]}}\n");
  EXPECT_NE(m.find("run_cap"), std::string::npos) << m;
  // (a grid ran whole: no cap; until 2026-12-07). A random sweep needs run_cap: the advice to
  // leave it out was a grid's only.
  for (const char* method : {"grid", "random"})
    EXPECT_EQ(
        usage_error(std::string("method: ") + method +
                    "\nrun_cap: 0\nparameters: {lr: {values: [0.1, 0.2]}}\n"),
        "s.yaml: key 'run_cap': expected 1 or more trials (a grid without run_cap runs whole)")
        << method;
  // A typo's 10^11 trials (--dry-run printed them forever) and a grid past a million points.
  m = usage_error("method: random\nrun_cap: 99999999999\nparameters: {lr: {values: [0.1]}}\n");
  EXPECT_NE(m.find("run_cap 99999999999 is past the limit of 1000000 trials"), std::string::npos)
      << m;
  m = usage_error(
      "method: grid\nparameters:\n  lr: {values: [1,2,3,4,5,6,7,8,9,10]}\n"
      "  momentum: {values: [1,2,3,4,5,6,7,8,9,10]}\n  width: {values: [1,2,3,4,5,6,7,8,9,10]}\n"
      "  depth: {values: [1,2,3,4,5,6,7,8,9,10]}\n  epochs: {values: [1,2,3,4,5,6,7,8,9,10]}\n"
      "  seed: {values: [1,2,3,4,5,6,7,8,9,10]}\n  t_max: {values: [1,2,3,4,5,6,7,8,9,10]}\n");
  EXPECT_NE(m.find("the grid has 10000000 points, past the limit of 1000000 trials"),
            std::string::npos)
      << m;
  m = usage_error(
      "method: random\nrun_cap: 3\nparameters: {lr: {min: 0, max: 1, distribution: "
      "log_uniform}}\n");
  EXPECT_NE(m.find("min > 0"), std::string::npos) << m;
  // W&B's older log_uniform took natural-log exponents: a negative min is read as one.
  m = usage_error(
      "method: random\nrun_cap: 3\nparameters: {lr: {min: -9.2, max: -2.3, distribution: "
      "log_uniform}}\n");
  EXPECT_NE(m.find("W&B's log_uniform_values"), std::string::npos) << m;
  EXPECT_NE(m.find("write min: exp(-9.2) = 0.000101"), std::string::npos) << m;
  // int_uniform on a float option needs integer bounds (0.2..0.8 holds no integer at all).
  m = usage_error(
      "method: random\nrun_cap: 3\nparameters: {dropout: {min: 0.2, max: 0.8, distribution: "
      "int_uniform}}\n");
  EXPECT_NE(m.find("int_uniform needs integer min and max (got 0.2, 0.8)"), std::string::npos) << m;
  // ...that a long long holds exactly (1e20 was cast to -9.2e18 and refused as negative)
  m = usage_error(
      "method: random\nrun_cap: 3\nparameters: {weight_decay: {min: 1e20, max: 1e20, "
      "distribution: int_uniform}}\n");
  EXPECT_NE(m.find("int_uniform bounds must lie within +-2^53 (got 1e+20, 1e+20)"),
            std::string::npos)
      << m;
  // ...and bounds within it are taken on an integer option (2^53 - 2 was passed on as
  // 9.00719925474099e+15, then refused as "not an integer")
  EXPECT_NO_THROW(
      parse_sweep("method: random\nrun_cap: 3\nparameters: {seed: {min: "
                  "9007199254740990, max: 9007199254740992, distribution: "
                  "int_uniform}}\n",
                  "s.yaml"));
  m = usage_error(
      "method: random\nrun_cap: 3\nparameters: {width: {min: 8, max: 64.5, distribution: "
      "uniform}}\n");
  EXPECT_NE(m.find("int_uniform"), std::string::npos) << m;
  m = usage_error("metric: {name: accuracy}\nparameters: {lr: {values: [0.1]}}\n");
  EXPECT_NE(m.find("test_acc"), std::string::npos) << m;
  m = usage_error("base: {lr: 0.1}\nparameters: {lr: {values: [0.1]}}\n");
  EXPECT_NE(m.find("both in base and in parameters"), std::string::npos) << m;
  m = usage_error("base: {epoch: 2}\nparameters: {lr: {values: [0.1]}}\n");
  EXPECT_NE(m.find("base key 'epoch'"), std::string::npos) << m;
  m = usage_error("parameters: {lr: [0.1, 0.2]}\n");
  EXPECT_NE(m.find("expected {values"), std::string::npos) << m;
  m = usage_error("parameters: {lr: {values: [0.1], min: 1}}\n");
  EXPECT_NE(m.find("not both"), std::string::npos) << m;
  m = usage_error("parameters: [lr]\n");
  EXPECT_NE(m.find("parameters"), std::string::npos) << m;
  // A run config handed to sweep is named as one, not answered with the list of sweep keys.
  m = usage_error("lr_find: true\nmodel: cnn\n");
  EXPECT_NE(m.find("key 'lr_find': a run option at the top level"), std::string::npos) << m;
  EXPECT_NE(m.find("train_mnist --config s.yaml"), std::string::npos) << m;
  m = usage_error("seed: 3\nlr: 0.1\nparameters: {momentum: {values: [0.9]}}\n");
  EXPECT_NE(m.find("key 'lr': a run option"), std::string::npos) << m;
  // Options a trial cannot honour: its log goes to DIR/trials, and it trains.
  m = usage_error("base: {log: x.jsonl}\nparameters: {lr: {values: [0.1]}}\n");
  EXPECT_NE(m.find("base key 'log': each trial logs to DIR/trials"), std::string::npos) << m;
  m = usage_error("parameters: {lr_find: {values: [true, false]}}\n");
  EXPECT_NE(m.find("parameter 'lr-find': a sweep's trials train"), std::string::npos) << m;
  m = usage_error("parameters: {setup: {values: [{summary: true}]}}\n");
  EXPECT_NE(m.find("parameter 'setup' sets 'summary'"), std::string::npos) << m;
  // yaml-cpp keeps a repeated key's last value and ignores a second document: refused, as in
  // run configs; a number past 2^53 was cast with undefined behaviour; a list is no method.
  EXPECT_EQ(usage_error("base: {epochs: 1, epochs: 3}\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml in base: key 'epochs' (line 1): already set at line 1");
  EXPECT_EQ(usage_error("seed: 1\nseed: 2\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml: key 'seed' (line 2): already set at line 1");
  EXPECT_EQ(usage_error("parameters: {g: {values: [{lr: 0.1, lr: 0.2}]}}\n"),
            "s.yaml in parameter 'g': key 'lr' (line 1): already set at line 1");
  EXPECT_EQ(usage_error("parameters: {lr: {values: [0.1]}}\n---\nmethod: grid\n"),
            "s.yaml: line 2: a second YAML document (---); the file is one mapping");
  // ... also when the first starts on its own --- line (the second was dropped without a word).
  EXPECT_EQ(usage_error("--- {parameters: {lr: {values: [0.1]}}}\n--- {method: grid}\n"),
            "s.yaml: line 2: a second YAML document (---); the file is one mapping");
  EXPECT_EQ(usage_error("--- # a comment\nparameters: {lr: {values: [0.1]}}\n---\n"),
            "s.yaml: line 3: a second YAML document (---); the file is one mapping");
  parse_sweep("---\nparameters: {lr: {values: [0.1]}}\n", "s.yaml");  // one document: fine
  // yaml-cpp's own message quotes the bad character raw (an ESC here): escaped in kiln's.
  EXPECT_EQ(usage_error("method: \"\\\x1b\"\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml: not valid YAML at line 1: \"unknown escape character: \\u001b\"");
  // A directive before the document is no content (it was taken for a first document).
  parse_sweep("%YAML 1.2\n---\nparameters: {lr: {values: [0.1]}}\n", "s.yaml");
  // A range whose span is past a double's: every uniform draw was inf, reported as an 'inf'
  // the file never held.
  EXPECT_EQ(
      usage_error(
          "method: random\nrun_cap: 3\nparameters: {target_acc: {min: -1e308, max: 1e308}}\n"),
      "s.yaml: parameter 'target_acc': the range -1e+308 to 1e+308 is wider than a double holds");
  EXPECT_EQ(usage_error("method: random\nrun_cap: 1e30\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml: key 'run_cap': expected a non-negative integer (at most 2^53)");
  EXPECT_EQ(usage_error("method: [grid]\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml: key 'method': expected grid|random");
  EXPECT_EQ(usage_error("parameters:\n  ? \"l\\nr\"\n  : {values: [0.1]}\n"),
            "s.yaml in parameters: line 2: key \"l\\nr\" has a line break or control character");
  // DEL is a terminal control too, and a name that is not UTF-8 is escaped: both were echoed
  // raw (found by fuzz_sweep's one-line check).
  EXPECT_EQ(usage_error("base: {\"l\x7fr\": 0.1}\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml in base: line 1: key \"l\\u007fr\" has a line break or control character");
  EXPECT_EQ(usage_error("base: {\"l\xffr\": 0.1}\nparameters: {lr: {values: [0.1]}}\n"),
            "s.yaml: base key '\"l\\u00ffr\"' is not a run option (did you mean 'lr'?); see "
            "train_mnist --help for the list");
}

TEST(SweepSpec, TrialConfigAppliesParameters) {
  SweepSpec s = parse_sweep(
      "parameters:\n  optimizer: {values: [sgd]}\n  lr: {values: [0.25]}\n  batch_size: {values: "
      "[16]}\n"
      "  milestones: {values: [[2, 4]]}\n",
      "s.yaml");
  RunConfig base;
  RunConfig c = trial_config(s, base, 0, "/tmp/x");
  EXPECT_EQ(c.optim.name, "sgd");
  EXPECT_FLOAT_EQ(c.optim.lr, 0.25f);
  EXPECT_EQ(c.train.batch_size, 16);
  EXPECT_EQ(c.sched.milestones, (std::vector<int>{2, 4}));
  EXPECT_EQ(c.train.log_path, "/tmp/x/trials/trial-0.jsonl");
  EXPECT_EQ(c.checkpoint_dir, "/tmp/x/trials/trial-0-checkpoints");  // not the caller's cwd
  base.checkpoint_dir = "/elsewhere";
  // One folder per trial under it: trials writing ckpt-epoch-1 into one folder replaced each
  // other's (until 2026-12-04).
  EXPECT_EQ(trial_config(s, base, 0, "/tmp/x").checkpoint_dir, "/elsewhere/trial-0");
  EXPECT_EQ(trial_config(s, base, 7, "/tmp/x").checkpoint_dir, "/elsewhere/trial-7");
  EXPECT_EQ(c.save, "");
  base.save = "out/m.v1/best.safetensors";
  EXPECT_EQ(trial_config(s, base, 0, "/tmp/x").save, "out/m.v1/best.trial-0.safetensors");
  base.save = "out/m.v1/best";
  EXPECT_EQ(trial_config(s, base, 0, "/tmp/x").save, "out/m.v1/best.trial-0");
}

TEST(SweepSpec, BundleParameterSetsSeveralOptionsTogether) {
  SweepSpec s = parse_sweep(
      "base: {lr: 0.05}\nparameters:\n  variant:\n    values:\n      - {optimizer: sgd}\n"
      "      - {optimizer: sgd, momentum: 0.9, nesterov: true}\n      - {optimizer: adam, lr: "
      "0.001}\n"
      "  batch_size: {values: [32, 64]}\n",
      "s.yaml");
  ASSERT_EQ(num_trials(s), 6);
  EXPECT_EQ(trial_params(s, 2)[0].second, "optimizer=sgd momentum=0.9 nesterov=true");
  RunConfig base;
  apply_sweep_base(s, base);
  RunConfig c = trial_config(s, base, 3, "/tmp/x");  // variant 1, batch 64
  EXPECT_EQ(c.optim.name, "sgd");
  EXPECT_FLOAT_EQ(c.optim.momentum, 0.9f);
  EXPECT_TRUE(c.optim.nesterov);
  EXPECT_FLOAT_EQ(c.optim.lr, 0.05f);
  EXPECT_EQ(c.train.batch_size, 64);
  RunConfig a = trial_config(s, base, 4, "/tmp/x");  // the bundle's lr beats base
  EXPECT_EQ(a.optim.name, "adam");
  EXPECT_FLOAT_EQ(a.optim.lr, 0.001f);
  std::string m = usage_error("parameters:\n  variant: {values: [{optimizr: sgd}]}\n");
  EXPECT_NE(m.find("did you mean 'optimizer'"), std::string::npos) << m;
  m = usage_error("parameters:\n  variant: {values: [{lr: 0.1}]}\n  lr: {values: [0.2]}\n");
  EXPECT_NE(m.find("also a parameter"), std::string::npos) << m;
}

// The console's option notes: one line per note the trials share (numbers aside), counting
// trials. An option with two notes (--early-stop on the test set, and too few epochs to stop)
// showed as one line, the other note lost, counted per note: "[trial 0; 4 of 2 trials]" (until
// 2026-12-07).
TEST(SweepSpec, OptionNotesAreOneLinePerNoteCountingTrials) {
  SweepSpec s = parse_sweep(
      "base: {epochs: 1, early_stop: 1, optimizer: adam}\nparameters:\n"
      "  momentum: {values: [0.5, 0.9]}\n  seed: {values: [0, 1]}\n",
      "s.yaml");
  RunConfig base;
  apply_sweep_base(s, base);
  const std::vector<std::string> notes = sweep_option_notes(s, base, RunConfig{});
  std::string all;
  for (const std::string& n : notes) all += n + "\n";
  const auto line_of = [&](const std::string& part) {
    for (const std::string& n : notes)
      if (n.find(part) != std::string::npos) return n;
    return std::string();
  };
  EXPECT_EQ(notes.size(), 3u) << all;
  const std::string stop = line_of("--early-stop 1 never stops this run");
  const std::string test = line_of("--early-stop watches the test set");
  const std::string momentum = line_of("--momentum 0.5 is ignored");
  for (const std::string& n : {stop, test, momentum}) {
    EXPECT_NE(n.find(" [trial 0; 4 of 4 trials]"), std::string::npos) << all;
    EXPECT_EQ(n.find('\n'), std::string::npos) << all;
  }
}

TEST(SweepResults, JsonRoundTripKeepsNaNAndEscapes) {
  TrialRecord r;
  r.trial = 12;
  r.status = "failed";
  r.params = {{"lr", "0.1"}, {"optimizer", "adam"}};
  r.curve = {0.5, NAN};
  r.weight_sparsity = 0.25;
  r.message = "diverged: \"loss\" is nan,\nat step 3";
  TrialRecord back;
  ASSERT_TRUE(TrialRecord::from_json(r.to_json(), back)) << r.to_json();
  EXPECT_EQ(back.trial, 12);
  EXPECT_EQ(back.status, "failed");
  EXPECT_EQ(back.params, r.params);
  EXPECT_TRUE(std::isnan(back.metric));
  EXPECT_EQ(back.weight_sparsity, 0.25);
  ASSERT_EQ(back.curve.size(), 2u);
  EXPECT_TRUE(std::isnan(back.curve[1]));
  EXPECT_EQ(back.message, r.message);
  EXPECT_FALSE(TrialRecord::from_json("{\"trial\": 3, \"stat", back));
  // Counts out of range or not whole: a trial id makes the line unreadable, epochs reads as 0.
  for (const char* t : {"1e300", "-1", "2.5", "\"7\""})
    EXPECT_FALSE(
        TrialRecord::from_json(std::string("{\"trial\": ") + t + ", \"status\": \"ok\"}", back))
        << t;
  ASSERT_TRUE(TrialRecord::from_json("{\"trial\": 4, \"status\": \"ok\", \"epochs\": 1e30}", back));
  EXPECT_EQ(back.trial, 4);
  EXPECT_EQ(back.epochs, 0);
}

// A fake training run: test_acc = 1 - |log10(lr) + 2| / 10, the same for every epoch, so the
// best lr is 0.01. Records which trials ran.
struct FakeRunner {
  std::mutex mu;
  std::vector<float> lrs;
  int sleep_ms = 0;
  int throw_after = -1;  // throw a Runtime error (a "kill") once this many trials ran
  float oom_lr = 0;      // a trial with this lr runs out of memory
  TrialRunner fn() {
    return [this](const RunConfig& cfg, const std::function<bool(const EpochRecord&)>& on_epoch) {
      if (cfg.optim.lr == oom_lr)
        KILN_OUT_OF_MEMORY("out of memory: cudaMalloc of 294518848 bytes failed (simulated)");
      {
        std::lock_guard<std::mutex> g(mu);
        if (throw_after >= 0 && static_cast<int>(lrs.size()) >= throw_after)
          KILN_FAIL("simulated kill");
        lrs.push_back(cfg.optim.lr);
      }
      if (sleep_ms) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
      std::vector<EpochRecord> out;
      for (int e = 0; e < cfg.train.epochs; ++e) {
        EpochRecord r;
        r.epoch = e + 1;
        r.test_acc = 1.0 - std::fabs(std::log10(cfg.optim.lr) + 2.0) / 10.0;
        r.test_loss = 1.0 - r.test_acc;
        r.train_loss = r.test_loss;
        r.seconds = 0.01;
        out.push_back(r);
        if (on_epoch && !on_epoch(r)) break;
      }
      return out;
    };
  }
};

const char* kGrid8 =
    "method: grid\nparameters:\n  lr: {values: [1, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003]}\n";

std::multiset<int64_t> ids(const std::vector<TrialRecord>& rs) {
  std::multiset<int64_t> s;
  for (const auto& r : rs) s.insert(r.trial);
  return s;
}
std::multiset<int64_t> range_ids(int n) {
  std::multiset<int64_t> s;
  for (int i = 0; i < n; ++i) s.insert(i);
  return s;
}

TEST(SweepRun, BundleNamesAreQuotedCsvColumnsAndZeroEpochTrialsFail) {
  SweepSpec s =
      parse_sweep("parameters:\n  \"opt,lr\": {values: [{lr: 0.1}, {lr: 0.01}]}\n", "s.yaml");
  SweepOptions o;
  o.dir = fresh_dir("bundle_csv");
  FakeRunner f;
  run_sweep(s, o, f.fn());
  std::ifstream csv(o.dir + "/results.csv");
  std::string header, row;
  std::getline(csv, header);
  std::getline(csv, row);
  EXPECT_EQ(header.rfind("trial,status,metric,\"opt,lr\",epochs_run,", 0), 0u) << header;
  EXPECT_EQ(row.rfind("0,ok,", 0), 0u) << row;
  // A carriage return in a message would end a CSV reader's row: an Error's message holds none
  // (it is escaped, as every control character since 2026-12-06; it was quoted and blanked).
  o.dir = fresh_dir("message_cr");
  run_sweep(s, o, [](const RunConfig&, const std::function<bool(const EpochRecord&)>&) -> TrialRun {
    KILN_USAGE_FAIL("a\rb");
  });
  std::ifstream csv_cr(o.dir + "/results.csv");
  std::string text((std::istreambuf_iterator<char>(csv_cr)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_NE(text.find(",usage: a\\rb\n"), std::string::npos) << text;
  // Nor may it be one of the fixed columns (a sweep file with one still parses, for --report).
  SweepSpec clash = parse_sweep("parameters:\n  status: {values: [{lr: 0.1}]}\n", "s.yaml");
  o.dir = fresh_dir("bundle_clash");
  try {
    run_sweep(clash, o, f.fn());
    FAIL() << "ran a bundle named like a results column";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("parameter 'status': the name of one of the results' own columns"),
              std::string::npos)
        << e.message();
  }
  // --epochs 0 leaves a trial nothing to be ranked by: failed, with why.
  o.dir = fresh_dir("zero_epochs");
  o.base.train.epochs = 0;
  std::vector<TrialRecord> rs = run_sweep(s, o, f.fn()).results;
  ASSERT_EQ(rs.size(), 2u);
  for (const TrialRecord& r : rs) {
    EXPECT_EQ(r.status, "failed");
    EXPECT_NE(r.message.find("no epoch ran"), std::string::npos) << r.message;
  }
}

// --worker i/N: digits only, no overflow (sscanf's %d wrapped 4294967297 to 1: one shard ran
// every trial), no spaces or signs.
TEST(SweepWorker, ParsesDigitsOnly) {
  EXPECT_EQ(parse_worker("0/4"), std::make_pair(0, 4));
  EXPECT_EQ(parse_worker("3/4"), std::make_pair(3, 4));
  EXPECT_EQ(parse_worker("12/100"), std::make_pair(12, 100));
  for (const char* bad : {"0/4294967297", "0/99999999999", "4/4", "1/0", " 1/2", "1/ 2", "+1/2",
                          "-1/2", "1/2x", "1", "/2", "1/", "", "1//2", "1/2/3"}) {
    try {
      parse_worker(bad);
      ADD_FAILURE() << "'" << bad << "' accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_EQ(e.message(),
                std::string("--worker '") + bad + "': expected i/N with 0 <= i < N (e.g. 0/4)");
    }
  }
}

// A trial that runs out of memory (a width or batch size that does not fit) is recorded as
// failed with the allocation's message and the sweep goes on: it neither stops nor leaves the
// trial for --resume to run, and fail, again; three in a row stop it (below).
TEST(SweepRun, OutOfMemoryFailsThatTrialAndTheSweepGoesOn) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  SweepOptions o;
  o.dir = fresh_dir("oom");
  FakeRunner f;
  f.oom_lr = 0.3f;
  SweepOutcome out = run_sweep(s, o, f.fn());
  EXPECT_EQ(out.ran, 8);
  ASSERT_EQ(ids(out.results), range_ids(8));
  for (const TrialRecord& r : out.results) {
    if (r.trial == 1) {
      EXPECT_EQ(r.status, "failed");
      EXPECT_EQ(r.message.rfind("out of memory: cudaMalloc", 0), 0u) << r.message;
    } else {
      EXPECT_EQ(r.status, "ok") << r.trial;
    }
  }
  EXPECT_EQ(f.lrs.size(), 7u);
  // Three trials in a row out of memory: the device is short of memory, not each trial too
  // large. The sweep stops with the third unrecorded (the first two failed), and --resume
  // runs it again once memory is back.
  o.dir = fresh_dir("oom_streak");
  FakeRunner g;
  std::atomic<int> left{3};
  TrialRunner short_of_memory = [&](const RunConfig& cfg,
                                    const std::function<bool(const EpochRecord&)>& on_epoch) {
    if (cfg.optim.lr < 0.2f && left-- > 0) KILN_OUT_OF_MEMORY("out of memory: (simulated)");
    return g.fn()(cfg, on_epoch);
  };
  try {
    run_sweep(s, o, short_of_memory);
    FAIL() << "ran on through 3 trials in a row out of memory";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Runtime);
    EXPECT_NE(
        e.message().find("trial 4: out of memory: (simulated) (3 trials in a row out of memory"),
        std::string::npos)
        << e.message();
  }
  std::vector<TrialRecord> rs = read_results(o.dir);
  ASSERT_EQ(ids(rs), (std::multiset<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(rs[2].status, "failed");
  EXPECT_EQ(rs[3].status, "failed");
  o.resume = true;
  EXPECT_EQ(run_sweep(s, o, short_of_memory).ran, 4);  // 4 to 7, the third trial included
  EXPECT_EQ(ids(read_results(o.dir)), range_ids(8));
  // A std::bad_alloc (a host vector's allocation: Model::build's) counts as out of memory too:
  // it was recorded, the streak reset, and the sweep ran on.
  o.dir = fresh_dir("oom_streak_bad_alloc");
  o.resume = false;
  FakeRunner h;
  std::atomic<int> bad_allocs{3};
  TrialRunner host_short = [&](const RunConfig& cfg,
                               const std::function<bool(const EpochRecord&)>& on_epoch) {
    if (cfg.optim.lr < 0.2f && bad_allocs-- > 0) throw std::bad_alloc();
    return h.fn()(cfg, on_epoch);
  };
  try {
    run_sweep(s, o, host_short);
    FAIL() << "ran on through 3 trials in a row of std::bad_alloc";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("trial 4: out of memory (3 trials in a row out of memory"),
              std::string::npos)
        << e.message();
  }
  EXPECT_EQ(ids(read_results(o.dir)), (std::multiset<int64_t>{0, 1, 2, 3}));
  // ...and a trial that runs ends the streak: out of memory twice, then fine, then twice more.
  o.dir = fresh_dir("oom_no_streak");
  o.resume = false;
  std::atomic<int> calls{0};
  TrialRunner sometimes = [&](const RunConfig& cfg,
                              const std::function<bool(const EpochRecord&)>& on_epoch) {
    const int k = calls++;
    if (k != 2 && k < 5) KILN_OUT_OF_MEMORY("out of memory: (simulated)");
    return g.fn()(cfg, on_epoch);
  };
  EXPECT_EQ(run_sweep(s, o, sometimes).ran, 8);
  // A grid's value too large fails its trials in a row (the last parameter varies fastest):
  // they share width 999, which no trial that fitted had, so they are recorded and the sweep
  // goes on (it stopped at the third, blaming the device, and width 16 never ran).
  SweepSpec wide = parse_sweep(
      "method: grid\nparameters:\n  width: {values: [8, 999, 16]}\n  lr: {values: [0.1, 0.01, "
      "0.001]}\n",
      "w.yaml");
  o.dir = fresh_dir("oom_one_value");
  FakeRunner w;
  TrialRunner too_wide = [&](const RunConfig& cfg,
                             const std::function<bool(const EpochRecord&)>& on_epoch) {
    if (cfg.model.width == 999) KILN_OUT_OF_MEMORY("out of memory: (simulated)");
    return w.fn()(cfg, on_epoch);
  };
  EXPECT_EQ(run_sweep(wide, o, too_wide).ran, 9);
  for (const TrialRecord& r : read_results(o.dir))
    EXPECT_EQ(r.status, r.trial >= 3 && r.trial <= 5 ? "failed" : "ok") << r.trial;
  // A streak that shares no such value is still the device's: trial 0 fitted, then every
  // allocation fails (trials 1 and 2 width 8, trial 3 width 999, no common lr).
  o.dir = fresh_dir("oom_device_short");
  std::atomic<int> runs{0};
  TrialRunner device_short = [&](const RunConfig& cfg,
                                 const std::function<bool(const EpochRecord&)>& on_epoch) {
    if (runs++ > 0) KILN_OUT_OF_MEMORY("out of memory: (simulated)");
    return w.fn()(cfg, on_epoch);
  };
  // The sweep stops at trial 3 (not recorded), blaming the device.
  auto stops_at_trial_3 = [&](const SweepSpec& spec) {
    try {
      run_sweep(spec, o, device_short);
      ADD_FAILURE() << "ran on through a device short of memory";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("trial 3: out of memory: (simulated) (3 trials in a row"),
                std::string::npos)
          << e.message();
    }
    EXPECT_EQ(ids(read_results(o.dir)), (std::multiset<int64_t>{0, 1, 2}));
  };
  stops_at_trial_3(wide);
  // ...and so is one whose shared value fitted before: width 8 ran (trial 0), then trials 1-3
  // (width 8 beside other lrs) do not.
  SweepSpec narrow = parse_sweep(
      "method: grid\nparameters:\n  width: {values: [8, 16]}\n  lr: {values: [0.1, 0.01, 0.001, "
      "0.0001]}\n",
      "n.yaml");
  o.dir = fresh_dir("oom_device_short_shared");
  runs = 0;
  stops_at_trial_3(narrow);
}

// A SIGTERM outside a trial's training loop (here: while a trial's runner finishes) stops the
// sweep before its next trial, with that trial recorded; in the last trial it ends a finished
// sweep (it threw TrialInterrupted, exit 130, with every trial recorded and no leaderboard).
TEST(SweepRun, ASignalStopsBeforeTheNextTrialNotAfterTheLast) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  for (const int at : {3, 7}) {
    StopSignals scope;  // the app's: the handler records the signal
    SweepOptions o;
    o.dir = fresh_dir("signal_at_" + std::to_string(at));
    FakeRunner f;
    std::atomic<int> calls{0};
    TrialRunner signalled = [&](const RunConfig& cfg,
                                const std::function<bool(const EpochRecord&)>& on_epoch) {
      TrialRun r = f.fn()(cfg, on_epoch);
      if (calls++ == at) std::raise(SIGTERM);
      return r;
    };
    if (at == 7) {
      EXPECT_EQ(run_sweep(s, o, signalled).ran, 8);
    } else {
      try {
        run_sweep(s, o, signalled);
        ADD_FAILURE() << "ran on after the signal";
      } catch (const TrialInterrupted& e) {
        EXPECT_EQ(e.signal, SIGTERM);
      }
    }
    EXPECT_EQ(ids(read_results(o.dir)), range_ids(at + 1)) << at;
  }
}

TEST(SweepRun, WritesResultsAndLeaderboardRanksByMetric) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  SweepOptions o;
  o.dir = fresh_dir("basic");
  FakeRunner f;
  SweepOutcome out = run_sweep(s, o, f.fn());
  EXPECT_EQ(out.ran, 8);
  EXPECT_EQ(ids(out.results), range_ids(8));
  std::ifstream csv(o.dir + "/results.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header.rfind("trial,status,metric,lr,epochs_run,val_acc,val_loss,test_acc,", 0), 0u)
      << header;
  std::set<std::string> columns;
  std::stringstream hs(header);
  for (std::string c; std::getline(hs, c, ',');) EXPECT_TRUE(columns.insert(c).second) << "column " << c << " twice";
  int rows = 0;
  for (std::string l; std::getline(csv, l);) ++rows;
  EXPECT_EQ(rows, 8);
  std::string lb = leaderboard(s, out.results);
  // trial 4 (lr 0.01) is best: the first data row ranks it 1.
  size_t first_row = lb.find('\n', lb.find("epochs")) + 1;
  EXPECT_EQ(lb.substr(first_row, 12).find("1    4"), 0u) << lb;
  // Without --resume, a directory with results is refused.
  EXPECT_THROW(run_sweep(s, o, f.fn()), Error);
}

TEST(SweepRun, ValidationMetricRanksByTheSplitAndNeedsOne) {
  // Selecting on the test set leaks it; metric val_acc ranks by the held-out split instead.
  // The fake run's validation accuracy peaks at lr 0.1, its test accuracy at 0.01.
  TrialRunner runner = [](const RunConfig& cfg,
                          const std::function<bool(const EpochRecord&)>& on_epoch) {
    EXPECT_GT(cfg.data.val_split, 0);
    EpochRecord r;
    r.epoch = 1;
    r.test_acc = 1.0 - std::fabs(std::log10(cfg.optim.lr) + 2.0) / 10.0;
    r.val_acc = 1.0 - std::fabs(std::log10(cfg.optim.lr) + 1.0) / 10.0;
    r.val_loss = 0.25;
    on_epoch(r);
    return std::vector<EpochRecord>{r};
  };
  SweepSpec s = parse_sweep(std::string("metric: {name: val_acc}\n") + kGrid8, "s.yaml");
  EXPECT_TRUE(s.maximize);
  SweepOptions o;
  o.dir = fresh_dir("val_metric");
  o.base.data.val_split = 0.1;
  SweepOutcome out = run_sweep(s, o, runner);
  ASSERT_EQ(out.results.size(), 8u);
  std::string lb = leaderboard(s, out.results);
  size_t first_row = lb.find('\n', lb.find("epochs")) + 1;
  EXPECT_EQ(lb.substr(first_row, 12).find("1    2"), 0u) << lb;  // trial 2: lr 0.1
  // the chosen trial's test score (lr 0.1: 0.9) against the best of any trial (lr 0.01: 1)
  EXPECT_NE(lb.find("chosen by val_acc: trial 2, test_acc 0.9; the best test_acc of any trial is 1 "
                    "(trial 4): choosing on the test set would claim 10 points more"),
            std::string::npos)
      << lb;
  EXPECT_EQ(leaderboard(parse_sweep(kGrid8, "s.yaml"), out.results).find("chosen by"),
            std::string::npos);
  for (const TrialRecord& r : out.results) {
    EXPECT_EQ(r.metric, r.val_acc);
    EXPECT_NE(r.val_acc, r.test_acc);  // both kept: the test score of the chosen trial is honest
    EXPECT_FALSE(std::isnan(r.val_loss));
  }
  std::ifstream csv(o.dir + "/results.csv");
  std::string header, row;
  std::getline(csv, header);
  std::getline(csv, row);
  EXPECT_NE(header.find(",val_acc,val_loss,"), std::string::npos) << header;
  EXPECT_NE(row.find(",0.9,0.25,"), std::string::npos) << row;  // trial 0, lr 1: val_acc 0.9

  // Without a split in every trial: a usage error before anything runs.
  int ran = 0;
  TrialRunner count = [&](const RunConfig&, const std::function<bool(const EpochRecord&)>&) {
    ++ran;
    return std::vector<EpochRecord>{};
  };
  o.dir = fresh_dir("val_metric_no_split");
  o.base.data.val_split = 0;
  try {
    run_sweep(s, o, count);
    ADD_FAILURE() << "expected a usage error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("metric val_acc needs a validation split, but trial 0"),
              std::string::npos)
        << e.message();
  }
  EXPECT_FALSE(std::filesystem::exists(o.dir)) << "a refused sweep leaves no directory behind";
  EXPECT_THROW(check_val_metric(s, o.base), Error);  // what --dry-run calls
  o.base.data.val_split = 0.1;
  EXPECT_NO_THROW(check_val_metric(s, o.base));
  o.base.data.val_split = 0;
  SweepSpec swept = parse_sweep(
      "metric: {name: val_loss}\nparameters:\n  val_split: {values: [0.2, 0]}\n", "s.yaml");
  o.dir = fresh_dir("val_metric_swept_zero");
  try {
    run_sweep(swept, o, count);
    ADD_FAILURE() << "expected a usage error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("trial 1 has val_split 0"), std::string::npos) << e.message();
  }
  EXPECT_EQ(ran, 0);
  EXPECT_NE(usage_error("metric: {name: valid_acc}\nparameters: {lr: {values: [0.1]}}\n")
                .find("val_acc|val_loss"),
            std::string::npos);
}

TEST(SweepRun, RestoreBestTrialsAreScoredOnTheEpochTheirTrainerKept) {
  // With --restore-best a trial ends with the weights of the epoch its trainer loaded back, so
  // its result is that epoch's: here epoch 2 (val_loss 0.3), not the last (0.5). The trainer
  // decides, not a replay of the early-stopping rule: a run that --target-acc stopped keeps its
  // own last epoch (the runner says 0), though epoch 2 was the best loss.
  int restored = 2;
  TrialRunner runner = [&](const RunConfig& cfg, const std::function<bool(const EpochRecord&)>&) {
    std::vector<EpochRecord> out;
    const double val_loss[] = {0.6, 0.3, 0.4, 0.5};
    for (int e = 0; e < 4; ++e) {
      EpochRecord r;
      r.epoch = e + 1;
      r.val_loss = val_loss[e];
      r.val_acc = 1 - val_loss[e];
      r.test_acc = 0.5 + 0.1 * e;
      out.push_back(r);
    }
    return TrialRun(out, cfg.train.restore_best ? restored : 0);
  };
  SweepSpec s =
      parse_sweep("metric: {name: val_loss}\nparameters: {lr: {values: [0.1]}}\n", "s.yaml");
  SweepOptions o;
  o.dir = fresh_dir("restore_best");
  o.base.data.val_split = 0.1;
  o.base.train.early_stop = 2;
  o.base.train.restore_best = true;
  std::vector<TrialRecord> rs = run_sweep(s, o, runner).results;
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_DOUBLE_EQ(rs[0].metric, 0.3);
  EXPECT_DOUBLE_EQ(rs[0].test_acc, 0.6);
  EXPECT_EQ(rs[0].epochs, 4);
  o.dir = fresh_dir("restore_best_target");  // the trainer kept the last epoch's weights
  restored = 0;
  rs = run_sweep(s, o, runner).results;
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_DOUBLE_EQ(rs[0].metric, 0.5);
  EXPECT_DOUBLE_EQ(rs[0].test_acc, 0.8);
  o.dir = fresh_dir("restore_best_off");  // without it: the last epoch
  o.base.train.restore_best = false;
  restored = 2;
  rs = run_sweep(s, o, runner).results;
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_DOUBLE_EQ(rs[0].metric, 0.5);
}

// A process's fields from /proc/<pid>/stat, numbered from 1 (3: state, 22: start time).
std::vector<std::string> stat_fields(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(f, text);
  std::istringstream rest(text.substr(text.rfind(')') + 1));
  std::vector<std::string> out{"", "pid", "comm"};
  for (std::string w; rest >> w;) out.push_back(w);
  return out;
}
char stat_state(pid_t pid) {
  auto f = stat_fields(pid);
  return f.size() > 3 ? f[3][0] : '?';
}
unsigned long long start_time(pid_t pid) {
  auto f = stat_fields(pid);
  return f.size() > 22 ? std::stoull(f[22]) : 0;
}
// The rest of a lock line as a worker of this process's PID namespace and boot writes it.
std::string ns_and_boot() {
  char buf[64] = {};
  std::string ns = readlink("/proc/self/ns/pid", buf, sizeof buf - 1) > 0 ? buf : "";
  ns = ns.substr(ns.find('[') + 1);
  ns = ns.substr(0, ns.find(']'));
  std::ifstream b("/proc/sys/kernel/random/boot_id");
  std::string boot;
  std::getline(b, boot);
  return ns + " " + boot;
}

// A run of the 8-trial grid in a fresh directory whose runner fails (as a kill would) during
// trial 3, leaving trials 0-2 recorded; returns its options for the resumed run.
SweepOptions killed_after_three(const SweepSpec& s, const std::string& name) {
  SweepOptions o;
  o.dir = fresh_dir(name);
  FakeRunner f;
  f.throw_after = 3;
  EXPECT_THROW(run_sweep(s, o, f.fn()), Error);
  return o;
}

TEST(SweepRun, ResumeAfterKillRunsOnlyTheRest) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  SweepOptions o = killed_after_three(s, "resume");
  EXPECT_EQ(ids(read_results(o.dir)), range_ids(3));
  // The killed trial's lock is gone (the claim is released on unwinding); a lock left by a
  // dead process (here: a child that has exited) is reclaimed, a live process's lock is not.
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::ofstream(o.dir + "/locks/trial-5.lock") << child << " " << host << "\n";  // no start time
  // Locks with a start time: a killed worker nobody reaped (a zombie still answers kill(pid,
  // 0)) and an earlier process under this very pid (a restarted container) are dead; the live
  // parent with its own start time is not.
  pid_t zombie = fork();
  if (zombie == 0) _exit(0);
  for (int i = 0; i < 500 && stat_state(zombie) != 'Z'; ++i) usleep(2000);
  ASSERT_EQ(stat_state(zombie), 'Z');
  const std::string tail = " " + ns_and_boot() + "\n";
  std::ofstream(o.dir + "/locks/trial-4.lock")
      << zombie << " " << host << " " << start_time(zombie) << tail;
  std::ofstream(o.dir + "/locks/trial-7.lock")
      << getpid() << " " << host << " " << start_time(getpid()) + 1 << tail;
  std::ofstream(o.dir + "/locks/trial-6.lock")
      << getppid() << " " << host << " " << start_time(getppid()) << tail;
  FakeRunner g;
  o.resume = true;
  SweepOutcome out = run_sweep(s, o, g.fn());
  waitpid(zombie, nullptr, 0);
  EXPECT_EQ(out.ran, 4);  // 3, 4 (zombie), 5 (dead), 7 (reused pid)
  EXPECT_EQ(out.skipped_done, 3);
  EXPECT_EQ(out.skipped_other, 1);  // 6 is held by a live process
  std::multiset<int64_t> want = range_ids(8);
  want.erase(6);
  EXPECT_EQ(ids(out.results), want);
}

// A worker killed while writing its claim leaves the lock's temp file
// (trial-<id>.lock.tmp.<boot>.<pid>); the next worker to claim a trial removes those of this
// boot, and leaves another boot's (another machine's: its workers' flock on .reclaim may not
// reach here) and any other file alone. They used to pile up.
TEST(SweepRun, DeadWorkersLockTempFilesOfThisBootAreRemoved) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  SweepOptions o = killed_after_three(s, "lock-temps");
  const std::string here = ns_and_boot(), boot = here.substr(here.find(' ') + 1);
  const std::string dead = o.dir + "/locks/trial-5.lock.tmp." + boot + ".4242";
  const std::vector<std::string> kept = {o.dir + "/locks/trial-5.lock.tmp.an-other-boot.4242",
                                         o.dir + "/locks/notes.txt"};
  std::ofstream(dead) << "4242 host 1 1 " << boot << " flock\n";
  for (const std::string& k : kept) std::ofstream(k) << "x\n";
  o.resume = true;
  FakeRunner g;
  SweepOutcome out = run_sweep(s, o, g.fn());
  EXPECT_EQ(out.ran, 5);
  EXPECT_NE(access(dead.c_str(), F_OK), 0) << dead;
  for (const std::string& k : kept) EXPECT_EQ(access(k.c_str(), F_OK), 0) << k;
}

// A lock written in another PID namespace of this host (another container: its pid numbers are
// not ours) is left alone even when no process here has that pid, and the skip says how to
// free it; one written before this machine's last boot is stale even when its pid runs now.
TEST(SweepRun, LocksOfOtherPidNamespacesStayAndOfEarlierBootsGo) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  SweepOptions o = killed_after_three(s, "namespaces");
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const std::string here = ns_and_boot(), boot = here.substr(here.find(' ') + 1);
  std::ofstream(o.dir + "/locks/trial-3.lock") << child << " " << host << " 5 1 " << boot << "\n";
  std::ofstream(o.dir + "/locks/trial-4.lock")
      << getppid() << " " << host << " " << start_time(getppid()) << " "
      << here.substr(0, here.find(' ')) << " an-earlier-boot\n";
  // An older kiln's lock ("pid host") naming this very process: this kiln writes none, so its
  // writer is gone and the pid reused (a restarted container's pid 1 is the usual case).
  std::ofstream(o.dir + "/locks/trial-5.lock") << getpid() << " " << host << "\n";
  std::vector<std::string> lines;
  o.log = [&](const std::string& l) { lines.push_back(l); };
  o.resume = true;
  FakeRunner g;
  SweepOutcome out = run_sweep(s, o, g.fn());
  EXPECT_EQ(out.ran, 4);  // 4 (earlier boot), 5 (this pid's old-format lock), 6, 7
  EXPECT_EQ(out.skipped_other, 1);
  bool named = false;
  for (const std::string& l : lines)
    named |= l.find("trial 3: claimed by another worker") != std::string::npos &&
             l.find("in another PID namespace") != std::string::npos &&
             l.find("trial-3.lock") != std::string::npos;
  EXPECT_TRUE(named);
}

// A lock file that names no worker (empty, or text kiln never writes) is not kiln's: it stays,
// as its trial, and the skip line says what to do (it named the path alone until 2026-12-07).
TEST(SweepRun, LocksNamingNoWorkerStayAndTheSkipLineSaysSo) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  SweepOptions o = killed_after_three(s, "foreign");
  std::ofstream(o.dir + "/locks/trial-3.lock").flush();
  std::ofstream(o.dir + "/locks/trial-4.lock") << "claimed by hand\n";
  std::vector<std::string> lines;
  o.log = [&](const std::string& l) { lines.push_back(l); };
  o.resume = true;
  FakeRunner g;
  SweepOutcome out = run_sweep(s, o, g.fn());
  EXPECT_EQ(out.ran, 3);  // 5, 6, 7
  EXPECT_EQ(out.skipped_other, 2);
  for (int i : {3, 4}) {
    const std::string lock = "trial-" + std::to_string(i) + ".lock";
    std::string skip;
    for (const std::string& l : lines)
      if (l.rfind("trial " + std::to_string(i) + ": claimed by another worker", 0) == 0) skip = l;
    EXPECT_NE(skip.find(lock + ": names no worker (not a lock kiln writes); if no worker runs "
                               "this sweep, delete it), skipping"),
              std::string::npos)
        << skip;
    EXPECT_TRUE(std::filesystem::exists(o.dir + "/locks/" + lock)) << lock;
  }
}

// A worker holds its claim's lock under an flock for the trial's whole run and marks the lock
// so; a marked lock is then judged by its flock alone, from any container or machine: a killed
// worker's (the kernel dropped its flock) is reclaimed, a live worker's is not, whatever its pid
// means here, and its skip line does not ask a person to delete it.
TEST(SweepRun, FlockedLocksAreJudgedByTheirFlockFromAnyContainerOrMachine) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  SweepOptions o = killed_after_three(s, "flocked");
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const std::string here = ns_and_boot(), boot = here.substr(here.find(' ') + 1);
  auto lock_of = [&](int i) { return o.dir + "/locks/trial-" + std::to_string(i) + ".lock"; };
  // 3: a live worker on another machine (a child here holds its flock); 4: a killed worker in
  // another container of this host; 5: a killed worker on another machine.
  std::ofstream(lock_of(3)) << "1 other-machine 5 1 boot-x flock\n";
  std::ofstream(lock_of(4)) << "1 " << host << " 5 1 " << boot << " flock\n";
  std::ofstream(lock_of(5)) << "1 other-machine 5 1 boot-x flock\n";
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const std::string l3 = lock_of(3);
  pid_t worker = fork();
  if (worker == 0) {  // async-signal-safe calls only
    int fd = open(l3.c_str(), O_RDONLY);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) _exit(1);
    char c = 1;
    if (write(ready[1], &c, 1) != 1) _exit(1);
    for (;;) pause();
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  close(ready[1]);
  // While a trial runs, its lock carries the mark and its flock is taken.
  const std::vector<double> grid = {1, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 0.0003};
  FakeRunner g;
  std::vector<std::string> during;
  TrialRunner inner = g.fn();
  TrialRunner checking = [&](const RunConfig& cfg,
                             const std::function<bool(const EpochRecord&)>& on) {
    size_t i = 0;
    while (i < grid.size() && std::fabs(cfg.optim.lr / grid[i] - 1) > 1e-5) ++i;
    std::ifstream f(lock_of(static_cast<int>(i)));
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    int fd = open(lock_of(static_cast<int>(i)).c_str(), O_RDONLY);
    const bool taken = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    if (fd >= 0) close(fd);
    during.push_back(std::to_string(i) + (taken ? " flocked" : " free") +
                     (text.find(" flock\n") != std::string::npos ? " marked" : " unmarked"));
    return inner(cfg, on);
  };
  std::vector<std::string> lines;
  o.log = [&](const std::string& l) { lines.push_back(l); };
  o.resume = true;
  SweepOutcome out = run_sweep(s, o, checking);
  EXPECT_EQ(out.ran, 4);  // 4, 5 (their workers are gone), 6, 7
  EXPECT_EQ(out.skipped_other, 1);
  EXPECT_EQ(during, (std::vector<std::string>{"4 flocked marked", "5 flocked marked",
                                              "6 flocked marked", "7 flocked marked"}));
  std::string skip;
  for (const std::string& l : lines)
    if (l.find("trial 3: claimed by another worker") != std::string::npos) skip = l;
  EXPECT_NE(skip.find("trial-3.lock: pid 1 on other-machine)"), std::string::npos) << skip;
  for (int i = 4; i < 8; ++i) EXPECT_FALSE(std::filesystem::exists(lock_of(i))) << i;
  // The worker is killed: its flock goes with it, and the next run takes the trial.
  kill(worker, SIGKILL);
  waitpid(worker, nullptr, 0);
  during.clear();
  out = run_sweep(s, o, checking);
  EXPECT_EQ(out.ran, 1);
  EXPECT_EQ(during, std::vector<std::string>{"3 flocked marked"});
  EXPECT_EQ(ids(read_results(o.dir)), range_ids(8));
}

TEST(SweepRun, RecordedTrialsFixTheSweepFileAndRunOptions) {
  // Until a trial is recorded nothing can be mixed: a usage error fixed by another flag or file
  // runs. Once one is, --resume with another file or other run options is refused (it would rank
  // two recipes in one leaderboard); where it runs may change.
  SweepSpec val = parse_sweep("metric: {name: val_acc}\n" + std::string(kGrid8), "s.yaml");
  SweepOptions o;
  o.dir = fresh_dir("fixed");
  o.spec_text = "first file";
  FakeRunner f;
  EXPECT_THROW(run_sweep(val, o, f.fn()), Error);  // needs a validation split
  o.base.data.val_split = 0.2;
  o.spec_text = "the file, fixed";
  f.throw_after = 2;
  EXPECT_THROW(run_sweep(val, o, f.fn()), Error);  // runs; a "kill" after two trials
  ASSERT_EQ(read_results(o.dir).size(), 2u);
  o.resume = true;
  FakeRunner g;
  SweepOptions other = o;
  other.base.train.epochs = 2;
  try {
    run_sweep(val, other, g.fn());
    FAIL() << "resumed with --epochs 2 over trials of 1";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("holds trials run with other options (--epochs 1 -> 2)"),
              std::string::npos)
        << e.message();
  }
  other = o;
  other.spec_text = "yet another file";
  try {
    run_sweep(val, other, g.fn());
    FAIL() << "resumed with another sweep file";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("holds a different sweep"), std::string::npos) << e.message();
    // naming where they part (the copy's first line, then the new file's)
    EXPECT_NE(e.message().find(" at line 1: '"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("' -> 'yet another file'); use another --dir"), std::string::npos)
        << e.message();
  }
  // Nor with the directory's copy gone (or never written): whose results they are is unknown.
  std::filesystem::rename(o.dir + "/sweep.yaml", o.dir + "/sweep.yaml.moved");
  try {
    run_sweep(val, o, g.fn());
    FAIL() << "resumed a directory of results without its sweep file";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(e.message().find("holds 2 results but no " + o.dir + "/sweep.yaml"),
              std::string::npos)
        << e.message();
  }
  std::filesystem::rename(o.dir + "/sweep.yaml.moved", o.dir + "/sweep.yaml");
  other = o;
  other.base.data.data_dir = "elsewhere";  // where the data lives may change
  EXPECT_EQ(run_sweep(val, other, g.fn()).results.size(), 8u);
  // Recorded trials without run_options.json (a directory from before the file existed): a
  // note says their options cannot be checked, and the file is written.
  std::filesystem::remove(o.dir + "/run_options.json");
  std::vector<std::string> lines;
  other.log = [&](const std::string& l) { lines.push_back(l); };
  run_sweep(val, other, g.fn());
  bool noted = false;
  for (const std::string& l : lines)
    noted |= l.find("holds trials recorded before kiln kept") != std::string::npos &&
             l.find("the options they ran with are not known") != std::string::npos;
  EXPECT_TRUE(noted);
  EXPECT_TRUE(std::filesystem::exists(o.dir + "/run_options.json"));
}

// Two workers started together on one directory, the second with other options (or another
// sweep file): while nothing is recorded the second's files replace the first's, so the first
// must refuse its records rather than rank its trials under the other recipe.
TEST(SweepRun, AWorkerWhoseFilesWereReplacedRecordsNothing) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  for (bool spec_file : {false, true}) {
    SweepOptions o;
    o.dir = fresh_dir(spec_file ? "replaced_spec" : "replaced_options");
    o.spec_text = "the first worker's file";
    FakeRunner f;
    TrialRunner inner = f.fn();
    TrialRunner runner = [&](const RunConfig& cfg,
                             const std::function<bool(const EpochRecord&)>& on_epoch) {
      // The other worker starts while trial 0 trains and, finding no result, writes its files.
      SweepOptions other = o;
      if (spec_file)
        other.spec_text = "another sweep";
      else
        other.base.model.width = 8;
      other.num_workers = 2;
      other.worker = 1;
      FakeRunner quiet;
      quiet.throw_after = 0;  // its own first trial "is killed": it only wrote its files
      EXPECT_THROW(run_sweep(s, other, quiet.fn()), Error);
      return inner(cfg, on_epoch);
    };
    try {
      run_sweep(s, o, runner);
      FAIL() << "recorded a trial under another worker's files";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find(
                    spec_file ? "sweep.yaml was replaced by a different sweep while trial 0 ran"
                              : "run_options.json was replaced by other options (--width 8 -> 128) "
                                "while trial 0 ran"),
                std::string::npos)
          << e.message();
    }
    EXPECT_TRUE(read_results(o.dir).empty());
  }
}

// A kill after a record reached results.jsonl but before results.csv was rewritten (or a CSV
// from an older kiln) leaves the CSV short; the resumed sweep rebuilds it from results.jsonl, so
// both list the same trials in the same order, one header.
TEST(SweepRun, ResumeRepairsACsvLeftShortByAKill) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  SweepOptions o = killed_after_three(s, "csvrepair");
  std::string csv_path = o.dir + "/results.csv";
  auto lines = [&] {
    std::vector<std::string> v;
    std::ifstream in(csv_path);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  };
  ASSERT_EQ(lines().size(), 4u);  // header + trials 0, 1, 2
  {
    std::vector<std::string> keep = lines();
    std::ofstream out(csv_path, std::ios::trunc);
    out << keep[0] << "\n" << keep[1] << "\n";  // the rows of trials 1 and 2 were lost
  }
  // A torn last line in results.jsonl is terminated, not glued to the next record.
  std::ofstream(o.dir + "/results.jsonl", std::ios::app) << "{\"trial\": 9, \"sta";
  FakeRunner g;
  o.resume = true;
  SweepOutcome out = run_sweep(s, o, g.fn());
  EXPECT_EQ(out.ran, 5);
  EXPECT_EQ(ids(read_results(o.dir)), range_ids(8));
  std::vector<std::string> rows = lines();
  ASSERT_EQ(rows.size(), 9u);
  EXPECT_EQ(rows[0].rfind("trial,status,", 0), 0u);
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(rows[i + 1].rfind(std::to_string(i) + ",ok,", 0), 0u) << rows[i + 1];
  for (const auto& e : std::filesystem::directory_iterator(o.dir))  // no temp file left behind
    EXPECT_EQ(e.path().filename().string().find("results.csv.tmp"), std::string::npos) << e.path();
}

TEST(SweepRun, WorkersSplitTrialsWithNoneLostOrDuplicated) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  std::string dir = fresh_dir("workers");
  FakeRunner f;
  for (int w = 0; w < 3; ++w) {
    SweepOptions o;
    o.dir = dir;
    o.worker = w;
    o.num_workers = 3;
    SweepOutcome out = run_sweep(s, o, f.fn());
    EXPECT_EQ(out.ran, w < 2 ? 3 : 2) << "worker " << w;  // ids 0,3,6 / 1,4,7 / 2,5
  }
  EXPECT_EQ(ids(read_results(dir)), range_ids(8));
  EXPECT_EQ(f.lrs.size(), 8u);
}

TEST(SweepRun, ConcurrentWorkersOnOneDirectoryNeverRunATrialTwice) {
  SweepSpec s = parse_sweep(kGrid8, "s.yaml");
  std::string dir = fresh_dir("concurrent");
  FakeRunner f;
  f.sleep_ms = 20;
  // Three workers with the same shard (all trials): only the lock files keep them apart.
  std::vector<std::thread> ts;
  for (int w = 0; w < 3; ++w)
    ts.emplace_back([&] {
      SweepOptions o;
      o.dir = dir;
      o.resume = true;
      run_sweep(s, o, f.fn());
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ids(read_results(dir)), range_ids(8));
  EXPECT_EQ(f.lrs.size(), 8u);
}

TEST(SweepRun, MedianPruningStopsTrialsWorseThanTheMedian) {
  SweepSpec s = parse_sweep(
      std::string(kGrid8) + "early_terminate: {type: median, min_epochs: 2, min_trials: 3}\n",
      "s.yaml");
  // Order the grid so the first trials are good: reverse 0.01-centred values.
  s.params[0].values = {"0.01", "0.02", "0.005", "1", "0.012", "0.0001"};
  SweepOptions o;
  o.dir = fresh_dir("prune");
  o.base.train.epochs = 4;
  FakeRunner f;
  SweepOutcome out = run_sweep(s, o, f.fn());
  std::map<int64_t, TrialRecord> by;
  for (const auto& r : out.results) by[r.trial] = r;
  for (int i : {0, 1, 2}) EXPECT_EQ(by[i].status, "ok") << i;  // fewer than 3 finished peers
  EXPECT_EQ(by[3].status, "pruned");                           // lr 1: far worse than the median
  EXPECT_EQ(by[3].epochs, 2);
  EXPECT_NE(by[3].message.find("median"), std::string::npos) << by[3].message;
  EXPECT_EQ(by[4].status, "ok");  // lr 0.012 beats the median of 0.01/0.02/0.005
  EXPECT_EQ(by[4].epochs, 4);
  EXPECT_EQ(by[5].status, "pruned");
}

TEST(SweepRun, MedianPruningComparesTheBestSoFarAsOptunaDoes) {
  // Optuna's MedianPruner judges a trial by its best value so far, not its latest: a trial
  // that reached 0.90 and fell back to 0.85 is kept against a median of 0.88 at that epoch.
  // Three finished peers (lr 0.1, 0.01, 0.001) score 0.88 at every epoch; trial 3 (lr 1) scores
  // 0.90, then 0.85, then 0.80; trial 4 (lr 2) stays just under the median (0.8799999), and its
  // message shows the digits that tell the two apart ("0.88 worse than the median 0.88" until
  // 2026-12-07).
  SweepSpec s = parse_sweep(
      "method: grid\nparameters:\n  lr: {values: [0.1, 0.01, 0.001, 1, 2]}\n"
      "early_terminate: {type: median, min_epochs: 2, min_trials: 3}\n",
      "s.yaml");
  SweepOptions o;
  o.dir = fresh_dir("prune_best");
  o.base.train.epochs = 3;
  TrialRunner r = [](const RunConfig& cfg,
                     const std::function<bool(const EpochRecord&)>& on_epoch) {
    std::vector<EpochRecord> out;
    for (int e = 0; e < cfg.train.epochs; ++e) {
      EpochRecord rec;
      rec.epoch = e + 1;
      rec.test_acc = cfg.optim.lr > 1.5f   ? 0.8799999 - 0.01 * e
                     : cfg.optim.lr > 0.5f ? 0.90 - 0.05 * e
                                           : 0.88;
      out.push_back(rec);
      if (!on_epoch(rec)) break;
    }
    return out;
  };
  SweepOutcome out = run_sweep(s, o, r);
  std::map<int64_t, TrialRecord> by;
  for (const auto& t : out.results) by[t.trial] = t;
  EXPECT_EQ(by[3].status, "ok") << by[3].message;  // best 0.90 > 0.88 at epochs 2 and 3
  EXPECT_EQ(by[3].epochs, 3);
  EXPECT_EQ(by[4].status, "pruned");  // best 0.8799999 < 0.88 at epoch 2
  EXPECT_EQ(by[4].epochs, 2);
  EXPECT_EQ(by[4].message,
            "pruned at epoch 2: best test_acc so far 0.8799999 worse than the median 0.88 of 4 "
            "finished trials at that epoch");
}

TEST(SweepRun, DivergedAndUsageErrorsAreFailedTrialsNotFatal) {
  SweepSpec s = parse_sweep("parameters:\n  lr: {values: [0.1, 10, 0.01]}\n", "s.yaml");
  SweepOptions o;
  o.dir = fresh_dir("failed");
  TrialRunner r =
      [](const RunConfig& cfg,
         const std::function<bool(const EpochRecord&)>& on_epoch) -> std::vector<EpochRecord> {
    if (cfg.optim.lr > 5) {
      EpochRecord first;  // epoch 1 finished, then epoch 2 diverged
      first.epoch = 1;
      first.test_acc = 0.4;
      first.train_loss = 1.5;
      on_epoch(first);
      std::this_thread::sleep_for(std::chrono::milliseconds(30));  // diverged mid-epoch, after a while
      throw_error(ErrorKind::Diverged, "training diverged: loss is nan", __FILE__, __LINE__);
    }
    if (cfg.optim.lr < 0.05f) KILN_USAGE_FAIL("--norm group needs --groups dividing the width");
    EpochRecord e;
    e.test_acc = 0.9;
    return {e};
  };
  SweepOutcome out = run_sweep(s, o, r);
  ASSERT_EQ(out.results.size(), 3u);
  EXPECT_EQ(out.results[0].status, "ok");
  EXPECT_EQ(out.results[1].status, "failed");
  EXPECT_EQ(out.results[1].message, "diverged: training diverged: loss is nan");
  EXPECT_GE(out.results[1].seconds, 0.03) << "a failed trial's wall time is recorded too";
  // The scores of the epoch it finished are kept (they were null before 2026-12-02).
  EXPECT_EQ(out.results[1].epochs, 1);
  EXPECT_DOUBLE_EQ(out.results[1].metric, 0.4);
  EXPECT_DOUBLE_EQ(out.results[1].train_loss, 1.5);
  EXPECT_TRUE(std::isnan(out.results[2].metric));
  EXPECT_EQ(out.results[2].status, "failed");
  EXPECT_NE(out.results[2].message.find("--groups"), std::string::npos);
}

TrialRecord seed_trial(int64_t id, const std::string& lr, int seed, const std::string& status,
                       double metric) {
  TrialRecord r;
  r.trial = id;
  r.status = status;
  r.metric = metric;
  r.params = {{"lr", lr}, {"seed", std::to_string(seed)}};
  return r;
}

TEST(SeedGroups, TrialsThatDifferOnlyInTheSeedAreOneConfiguration) {
  SweepSpec s = parse_sweep(
      "method: grid\nparameters:\n  lr: {values: [0.1, 0.01, 1]}\n  seed: {values: [0, 1, 2]}\n",
      "s.yaml");
  std::vector<TrialRecord> rs = {
      seed_trial(0, "0.1", 0, "ok", 0.90),     seed_trial(1, "0.1", 1, "ok", 0.92),
      seed_trial(2, "0.1", 2, "ok", 0.94),     seed_trial(3, "0.01", 0, "ok", 0.95),
      seed_trial(4, "0.01", 1, "failed", NAN), seed_trial(5, "0.01", 2, "ok", 0.97),
      seed_trial(6, "1", 0, "failed", NAN),    seed_trial(7, "1", 1, "pruned", 0.5),
  };
  std::vector<SeedGroup> g = seed_groups(s, rs);
  ASSERT_EQ(g.size(), 3u);
  // Ranked by the mean (higher is better): lr 0.01 (0.96 over 2 seeds), 0.1 (0.92), then 1.
  ASSERT_EQ(g[0].params.size(), 1u);
  EXPECT_EQ(g[0].params[0], (std::pair<std::string, std::string>{"lr", "0.01"}));
  EXPECT_EQ(g[0].metrics.size(), 2u);
  EXPECT_EQ(g[0].not_ok, 1);
  EXPECT_NEAR(g[0].mean, 0.96, 1e-12);
  EXPECT_NEAR(g[0].stddev, 0.02 / std::sqrt(2.0), 1e-12);  // sample std of {0.95, 0.97}
  EXPECT_EQ(g[1].params[0].second, "0.1");
  EXPECT_NEAR(g[1].mean, 0.92, 1e-12);
  EXPECT_NEAR(g[1].stddev, 0.02, 1e-12);  // sample std of {0.90, 0.92, 0.94}
  EXPECT_DOUBLE_EQ(g[1].min, 0.90);
  EXPECT_DOUBLE_EQ(g[1].max, 0.94);
  EXPECT_EQ(g[2].params[0].second, "1");  // a pruned metric is not a finished seed
  EXPECT_TRUE(g[2].metrics.empty());
  EXPECT_EQ(g[2].not_ok, 2);
  EXPECT_TRUE(std::isnan(g[2].mean));

  std::string t = seed_table(s, rs);
  EXPECT_NE(t.find("over seeds (test_acc"), std::string::npos) << t;
  size_t r1 = t.find("\n1    0.01 "), r2 = t.find("\n2    0.1 "), r3 = t.find("\n3    1 ");
  ASSERT_NE(r1, std::string::npos) << t;
  ASSERT_NE(r2, std::string::npos) << t;
  ASSERT_NE(r3, std::string::npos) << t;
  EXPECT_LT(r1, r2);
  EXPECT_LT(r2, r3);
  EXPECT_NE(t.find("0.9600   0.0141   0.9500   0.9700   1       -        -\n"), std::string::npos)
      << t;
  // Paired with rank 1 (lr 0.01) on the seeds both finished (0 and 2): 0.90 - 0.95 and
  // 0.94 - 0.97, mean -0.04; rank 1 is ahead on both.
  EXPECT_EQ(g[1].paired_n, 2);
  EXPECT_EQ(g[1].best_ahead, 2);
  EXPECT_NEAR(g[1].paired_diff, -0.04, 1e-12);
  EXPECT_EQ(g[2].paired_n, 0);
  EXPECT_NE(t.find("0.0200   0.9000   0.9400   0       -0.0400  2/2\n"), std::string::npos) << t;

  // Lower-is-better metrics rank the other way; "ahead" follows the goal.
  s.maximize = false;
  std::vector<SeedGroup> low = seed_groups(s, rs);
  EXPECT_EQ(low[0].params[0].second, "0.1");
  EXPECT_EQ(low[1].params[0].second, "0.01");
  EXPECT_EQ(low[1].best_ahead, 2);
  EXPECT_NEAR(low[1].paired_diff, 0.04, 1e-12);
}

TEST(SeedGroups, TiesRankByTrialIdWhateverOrderTheyFinishedIn) {
  // Workers and resumes append results in other orders: the same results must give the same
  // tables (tied metrics are common with small validation splits).
  SweepSpec s = parse_sweep(
      "method: grid\nparameters:\n  lr: {values: [0.1, 0.01, 1]}\n  seed: {values: [0, 1]}\n",
      "s.yaml");
  std::vector<TrialRecord> rs = {
      seed_trial(0, "0.1", 0, "ok", 0.9),   seed_trial(1, "0.1", 1, "ok", 0.9),
      seed_trial(2, "0.01", 0, "ok", 0.9),  seed_trial(3, "0.01", 1, "ok", 0.9),
      seed_trial(4, "1", 0, "failed", NAN), seed_trial(5, "1", 1, "failed", NAN)};
  std::vector<TrialRecord> reversed(rs.rbegin(), rs.rend());
  EXPECT_EQ(leaderboard(s, reversed), leaderboard(s, rs));
  EXPECT_EQ(seed_table(s, reversed), seed_table(s, rs));
  const std::string lb = leaderboard(s, reversed);
  EXPECT_NE(lb.find("\n1    0      ok"), std::string::npos) << lb;
  EXPECT_NE(lb.find("\n6    5      failed"), std::string::npos) << lb;
  EXPECT_EQ(seed_groups(s, reversed)[0].params[0].second, "0.1");
}

// A diverged loss (3e24) or a ten-digit rank keeps its column apart from the next: they were
// printed as "3190237842883721562161152.00001000" (the metric, then the lr).
TEST(Leaderboard, ALongValueDoesNotRunIntoTheNextColumn) {
  SweepSpec s = parse_sweep(
      "metric: {name: test_loss}\nparameters:\n  lr: {values: [1000, 0.1]}\n  seed: {values: "
      "[0, 1]}\n",
      "s.yaml");
  std::vector<TrialRecord> rs;
  for (int i = 0; i < 4; ++i) {
    TrialRecord r;
    r.trial = i;
    r.status = "ok";
    r.metric = i < 2 ? 3.19e24 + i : 0.25 + i;
    r.params = {{"lr", i < 2 ? "1000" : "0.1"}, {"seed", std::to_string(i % 2)}};
    rs.push_back(r);
  }
  const std::string lb = leaderboard(s, rs);
  EXPECT_NE(lb.find("\n3    0      ok      3.19e+24   1000"), std::string::npos) << lb;
  EXPECT_NE(lb.find("\n1    2      ok      2.2500     0.1"), std::string::npos) << lb;
  const std::string st = seed_table(s, rs);
  EXPECT_NE(st.find(" 3.19e+24 "), std::string::npos) << st;
  EXPECT_EQ(st.find("e+24-"), std::string::npos) << st;
  EXPECT_EQ(st.find("e+243"), std::string::npos) << st;
}

TEST(Leaderboard, TrialsScoredOnDifferentTestSetsAreNoted) {
  // A --resume with another --data-dir ranked scores of a 500-image subset beside full-set
  // ones without a word: each record keeps the test set it was scored on.
  SweepSpec s = parse_sweep("parameters:\n  lr: {values: [0.1, 0.01, 0.001]}\n", "s.yaml");
  std::vector<TrialRecord> rs(3);
  for (int i = 0; i < 3; ++i) {
    rs[i].trial = i;
    rs[i].status = "ok";
    rs[i].metric = 0.5 + 0.1 * i;
    rs[i].params = {{"lr", s.params[0].values[i]}};
    rs[i].test_data =
        i < 2 ? "500 images, labels crc32 0000aaaa" : "10000 images, labels crc32 0000bbbb";
  }
  TrialRecord back;
  ASSERT_TRUE(TrialRecord::from_json(rs[2].to_json(), back));
  EXPECT_EQ(back.test_data, rs[2].test_data);
  const std::string want =
      "note: these trials were scored on 2 test sets (10000 images, labels crc32 0000bbbb: trial "
      "2; 500 images, labels crc32 0000aaaa: trials 0, 1): their scores do not compare (a "
      "--resume or a worker with another --data-dir?)\n";
  EXPECT_EQ(mixed_test_sets_note(s, rs), want);
  const std::string lb = leaderboard(s, rs);
  EXPECT_EQ(lb.substr(lb.size() - want.size()), want) << lb;
  rs[2].test_data = rs[0].test_data;
  EXPECT_EQ(mixed_test_sets_note(s, rs), "");
  rs[2].test_data = "";  // a record from before the field: nothing to compare
  EXPECT_EQ(mixed_test_sets_note(s, rs), "");
  // A sweep over the data itself compares across test sets by design.
  rs[2].test_data = "10000 images, labels crc32 0000bbbb";
  SweepSpec dd = parse_sweep("parameters:\n  data_dir: {values: [a, b, c]}\n", "s.yaml");
  EXPECT_EQ(mixed_test_sets_note(dd, rs), "");
  SweepSpec grouped = parse_sweep(
      "parameters:\n  v: {values: [{test_limit: 100}, {test_limit: 200}, {lr: 0.1}]}\n", "s.yaml");
  EXPECT_EQ(mixed_test_sets_note(grouped, rs), "");
}

TEST(SeedGroups, ARepeatedDrawOfAConfigurationAndSeedCountsOnce) {
  // A random sweep draws with replacement: optimizer {sgd, adam} x seed {0, 1} over 7 trials
  // repeats pairs, each the same run again. Counted once (by its first trial), so n, the std
  // and the pairing with rank 1 are over distinct seeds (they read n 4, 12/12 before).
  SweepSpec s = parse_sweep(
      "method: random\nrun_cap: 7\nparameters:\n  lr: {values: [0.1, 0.01]}\n"
      "  seed: {values: [0, 1]}\n",
      "s.yaml");
  std::vector<TrialRecord> rs = {
      seed_trial(0, "0.1", 0, "ok", 0.90), seed_trial(1, "0.1", 0, "ok", 0.90),
      seed_trial(2, "0.1", 1, "ok", 0.92), seed_trial(3, "0.01", 0, "ok", 0.80),
      seed_trial(4, "0.1", 1, "ok", 0.92), seed_trial(5, "0.01", 1, "ok", 0.84),
      seed_trial(6, "0.01", 0, "ok", 0.80)};
  std::vector<SeedGroup> g = seed_groups(s, rs);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].params[0].second, "0.1");
  EXPECT_EQ(g[0].metrics.size(), 2u);
  EXPECT_EQ(g[0].repeats, 2);
  EXPECT_NEAR(g[0].stddev, 0.02 / std::sqrt(2.0), 1e-12);
  EXPECT_EQ(g[1].metrics.size(), 2u);
  EXPECT_EQ(g[1].repeats, 1);
  EXPECT_EQ(g[1].paired_n, 2);
  EXPECT_EQ(g[1].best_ahead, 2);
  EXPECT_NEAR(g[1].paired_diff, -0.09, 1e-12);
  const std::string t = seed_table(s, rs);
  EXPECT_NE(t.find("2/2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("(3 trials repeat an earlier trial's configuration and seed"), std::string::npos)
      << t;
  // The first trial of a pair decides, whatever order the results arrived in.
  std::vector<TrialRecord> reversed(rs.rbegin(), rs.rend());
  EXPECT_EQ(seed_table(s, reversed), t);
}

TEST(SeedGroups, NoTableWithoutRepeatedSeeds) {
  SweepSpec with_seed = parse_sweep(
      "method: grid\nparameters:\n  lr: {values: [0.1, 0.01]}\n  seed: {values: [0, 1]}\n",
      "s.yaml");
  // Only one finished seed per configuration: nothing to average.
  std::vector<TrialRecord> rs = {seed_trial(0, "0.1", 0, "ok", 0.9),
                                 seed_trial(1, "0.1", 1, "failed", NAN),
                                 seed_trial(2, "0.01", 0, "ok", 0.8)};
  EXPECT_EQ(seed_table(with_seed, rs), "");
  rs.push_back(seed_trial(3, "0.01", 1, "ok", 0.85));
  EXPECT_NE(seed_table(with_seed, rs), "");
  SweepSpec no_seed = parse_sweep(kGrid8, "s.yaml");
  EXPECT_TRUE(seed_groups(no_seed, rs).empty());
  EXPECT_EQ(seed_table(no_seed, rs), "");
}

TEST(Importance, TheParameterThatDrivesTheMetricRanksFirst) {
  std::vector<TrialRecord> rs;
  uint64_t x = 12345;
  auto rnd = [&] {  // xorshift, deterministic
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return static_cast<double>(x % 1000000) / 1e6;
  };
  for (int i = 0; i < 60; ++i) {
    double lr = std::pow(10.0, -4 + 3 * rnd());
    double mom = 0.5 + 0.49 * rnd();
    std::string opt = rnd() < 0.5 ? "sgd" : "adam";
    TrialRecord r;
    r.trial = i;
    r.status = "ok";
    r.params = {{"lr", std::to_string(lr)}, {"momentum", std::to_string(mom)}, {"optimizer", opt}};
    r.metric = 0.5 + 0.1 * std::log10(lr) + 0.002 * rnd();  // lr explains nearly everything
    rs.push_back(r);
  }
  TrialRecord bad;
  bad.trial = 60;
  bad.status = "failed";  // ignored
  bad.params = {{"lr", "100"}, {"momentum", "0.9"}, {"optimizer", "sgd"}};
  rs.push_back(bad);
  auto imp = param_importance({"optimizer", "momentum", "lr"}, rs);
  ASSERT_EQ(imp.size(), 3u);
  EXPECT_EQ(imp[0].name, "lr");
  EXPECT_EQ(imp[0].trials, 60);
  EXPECT_GT(imp[0].explained, 0.85);
  EXPECT_NEAR(imp[0].spearman, 1.0, 0.01);
  EXPECT_EQ(imp[0].bins, 4);
  for (int k = 1; k < 3; ++k) EXPECT_LT(imp[k].explained, 0.2) << imp[k].name;
  const ParamImportance& o = imp[1].name == "optimizer" ? imp[1] : imp[2];
  EXPECT_FALSE(o.numeric);
  EXPECT_EQ(o.bins, 2);
  EXPECT_TRUE(std::isnan(o.spearman));
  std::string t = importance_table(imp, "test_acc");
  EXPECT_LT(t.find("lr"), t.find("momentum")) << t;
  // each row's chance level (k-1)/(n-1): lr's 4 bins of 60 trials, the optimizer's 2
  EXPECT_NE(t.find("\nlr                  0.9"), std::string::npos) << t;
  EXPECT_NE(t.find(" 0.051   "), std::string::npos) << t;  // 3/59
  EXPECT_NE(t.find(" 0.017   "), std::string::npos) << t;  // 1/59
  EXPECT_NE(t.find("(chance: "), std::string::npos) << t;
  // A name longer than the column widens it (a bundle's name ran into its number).
  imp[0].name = "optimizer_and_momentum_variant";
  t = importance_table(imp, "test_acc");
  EXPECT_NE(t.find("\noptimizer_and_momentum_variant  0.9"), std::string::npos) << t;
  EXPECT_NE(t.find("\nparameter                       explained"), std::string::npos) << t;
}

// Every trial with the same score leaves nothing to explain ("-"), whatever the rounding of
// their mean (0.05 six times: the squared deviations sum to a residue, not 0); a share stays <= 1.
TEST(Importance, EqualScoresExplainNothing) {
  std::vector<TrialRecord> rs;
  for (int i = 0; i < 6; ++i) {
    TrialRecord r;
    r.trial = i;
    r.status = "ok";
    r.params = {{"lr", std::to_string(1e-9 * (i + 1))}};
    r.metric = 0.05;
    rs.push_back(r);
  }
  auto imp = param_importance({"lr"}, rs);
  ASSERT_EQ(imp.size(), 1u);
  EXPECT_TRUE(std::isnan(imp[0].explained)) << imp[0].explained;
  for (double m : {std::nextafter(0.05, 1.0), 0.06}) {  // one ulp apart, and clearly apart
    rs[0].metric = m;
    const double e = param_importance({"lr"}, rs)[0].explained;
    EXPECT_GE(e, 0.0) << m;
    EXPECT_LE(e, 1.0) << m;
  }
}

// The same records give the same table whatever order results.jsonl holds them in (workers and
// resumes finish trials in other orders; the sums ran in file order until 2026-12-07, so four
// workers printed another last digit than one process).
TEST(Importance, DoesNotDependOnTheOrderTrialsFinishedIn) {
  std::vector<TrialRecord> rs;
  uint64_t x = 777;
  auto rnd = [&] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return static_cast<double>(x % 1000000) / 1e6;
  };
  for (int i = 0; i < 40; ++i) {
    TrialRecord r;
    r.trial = i;
    r.status = "ok";
    const double lr = std::pow(10.0, -4 + 3 * rnd());
    r.params = {{"lr", std::to_string(lr)}, {"act", rnd() < 0.5 ? "tanh" : "sigmoid"}};
    r.metric = 0.9 + 0.01 * std::log10(lr) + 0.1 * rnd();
    rs.push_back(r);
  }
  const auto a = param_importance({"lr", "act"}, rs);
  std::vector<TrialRecord> shuffled = rs;
  std::reverse(shuffled.begin(), shuffled.end());
  std::rotate(shuffled.begin(), shuffled.begin() + 7, shuffled.end());
  const auto b = param_importance({"lr", "act"}, shuffled);
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].name, b[k].name);
    EXPECT_EQ(std::memcmp(&a[k].explained, &b[k].explained, sizeof(double)), 0)
        << a[k].name << " " << a[k].explained << " vs " << b[k].explained;
    EXPECT_EQ(std::memcmp(&a[k].spearman, &b[k].spearman, sizeof(double)), 0) << a[k].name;
  }
  EXPECT_EQ(importance_table(a, "test_acc"), importance_table(b, "test_acc"));
}

TEST(Importance, SpearmanWithTies) {
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0, 1e-12);
  EXPECT_NEAR(spearman({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0, 1e-12);
  // x ranks 1, 2.5, 2.5, 4 vs y ranks 1..4: rho = 4.5 / sqrt(4.5 * 5)
  EXPECT_NEAR(spearman({1, 2, 2, 3}, {1, 2, 3, 4}), 4.5 / std::sqrt(4.5 * 5.0), 1e-12);
  EXPECT_TRUE(std::isnan(spearman({1, 1, 1}, {1, 2, 3})));
}

}  // namespace
}  // namespace kiln
