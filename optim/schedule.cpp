// LR schedules with PyTorch/Keras semantics. Each class states its formula and whether it is a
// function of the epoch (per-epoch: constant over an epoch) or of the optimizer step (per-step).
// `epoch` is 0-based; `step` counts optimizer steps since the start of the run (0-based).
#include "optim/schedule.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <locale>
#include <sstream>

#include "engine/error.h"
#include "engine/file_io.h"
#include "engine/json.h"
#include "engine/numtext.h"
#include "optim/optimizer.h"

namespace kiln {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Per-epoch: lr0.
class ConstantLR : public Schedule {
 public:
  explicit ConstantLR(float lr0) : lr0_(lr0) {}
  float lr(int, long long) override { return lr0_; }

 private:
  float lr0_;
};

// Per-epoch: StepLR lr0 * gamma^floor(epoch / step_size).
class StepLR : public Schedule {
 public:
  StepLR(float lr0, float gamma, int step_size) : lr0_(lr0), gamma_(gamma), step_size_(step_size) {}
  float lr(int epoch, long long) override {
    return static_cast<float>(lr0_ * std::pow(double(gamma_), epoch / step_size_));
  }

 private:
  float lr0_, gamma_;
  int step_size_;
};

// Per-epoch: MultiStepLR lr0 * gamma^(number of milestones <= epoch).
class MultiStepLR : public Schedule {
 public:
  MultiStepLR(float lr0, float gamma, std::vector<int> m) : lr0_(lr0), gamma_(gamma), m_(std::move(m)) {}
  float lr(int epoch, long long) override {
    int n = static_cast<int>(std::count_if(m_.begin(), m_.end(), [&](int e) { return e <= epoch; }));
    return static_cast<float>(lr0_ * std::pow(double(gamma_), n));
  }

 private:
  float lr0_, gamma_;
  std::vector<int> m_;
};

// lr0 * gamma^t with t the 0-based epoch (ExponentialLR) or optimizer step (Keras
// ExponentialDecay with decay_steps 1, staircase off).
class ExponentialLR : public Schedule {
 public:
  ExponentialLR(float lr0, float gamma, bool by_step)
      : lr0_(lr0), gamma_(gamma), by_step_(by_step) {}
  float lr(int epoch, long long step) override {
    return static_cast<float>(lr0_ *
                              std::pow(double(gamma_), by_step_ ? double(step) : double(epoch)));
  }
  bool per_step() const override { return by_step_; }

 private:
  float lr0_, gamma_;
  bool by_step_;
};

// lr0 / (1 + d * t) with t the 0-based epoch (Keras InverseTimeDecay, staircase by epoch) or
// optimizer step (Keras's legacy SGD(decay=d): lr / (1 + d * iterations)).
class InverseTimeLR : public Schedule {
 public:
  InverseTimeLR(float lr0, float d, bool by_step) : lr0_(lr0), d_(d), by_step_(by_step) {}
  float lr(int epoch, long long step) override {
    return static_cast<float>(lr0_ /
                              (1.0 + double(d_) * (by_step_ ? double(step) : double(epoch))));
  }
  bool per_step() const override { return by_step_; }

 private:
  float lr0_, d_;
  bool by_step_;
};

// k / sqrt(t + 1) * lr0 with t the 0-based epoch (per-epoch) or optimizer step (per-step). The
// +1 makes the first epoch/step 1-based (k/sqrt(1) = k), so t = 0 does not divide by zero.
class InverseSqrtLR : public Schedule {
 public:
  InverseSqrtLR(float lr0, float k, bool by_step) : lr0_(lr0), k_(k), by_step_(by_step) {}
  float lr(int epoch, long long step) override {
    double t = by_step_ ? double(step) : double(epoch);
    return static_cast<float>(k_ / std::sqrt(t + 1.0) * lr0_);
  }
  bool per_step() const override { return by_step_; }

 private:
  float lr0_, k_;
  bool by_step_;
};

// Per-epoch: CosineAnnealingLR closed form eta_min + (lr0 - eta_min) * (1 + cos(pi*e/T)) / 2
// with T = t_max (the run's epochs when 0). Past T the closed form rises again, as PyTorch's.
class CosineLR : public Schedule {
 public:
  CosineLR(float lr0, float eta_min, int t_max) : lr0_(lr0), eta_min_(eta_min), t_max_(t_max) {}
  float lr(int epoch, long long) override {
    return static_cast<float>(eta_min_ + (lr0_ - eta_min_) * (1 + std::cos(kPi * epoch / t_max_)) / 2);
  }

 private:
  float lr0_, eta_min_;
  int t_max_;
};

// Per-epoch: SGDR (CosineAnnealingWarmRestarts) with T_0 = t_max, T_i = T_0 * t_mult^i:
// eta_min + (lr0 - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2, T_cur = epochs since the restart.
class CosineRestartsLR : public Schedule {
 public:
  CosineRestartsLR(float lr0, float eta_min, int t0, int t_mult)
      : lr0_(lr0), eta_min_(eta_min), t0_(t0), t_mult_(t_mult) {}
  float lr(int epoch, long long) override {
    long long cur = epoch, ti = t0_;
    while (cur >= ti) {  // walk the periods: exact in integers, unlike the log formula
      cur -= ti;
      ti *= t_mult_;
    }
    return static_cast<float>(eta_min_ + (lr0_ - eta_min_) * (1 + std::cos(kPi * cur / ti)) / 2);
  }

 private:
  float lr0_, eta_min_;
  int t0_, t_mult_;
};

// Per-step: CyclicLR. cycle = floor(1 + t/(2s)), x = 1 + t/(2s) - cycle, scale = x <= 0.5 ? 2x :
// 2(1-x); lr = base + (max - base) * scale * f, f = 1 (triangular), 1/2^(cycle-1) (triangular2),
// gamma^t (exp_range). Momentum (cycle_momentum) = max_m - (max_m - base_m) * scale * f.
class CyclicLR : public Schedule {
 public:
  CyclicLR(const ScheduleOptions& o, float base, float max, long long s)
      : o_(o), base_(base), max_(max), s_(s) {}
  float lr(int, long long t) override { return static_cast<float>(base_ + (max_ - base_) * height(t)); }
  float momentum(int, long long t) override {
    if (!o_.cycle_momentum) return -1.0f;
    return static_cast<float>(o_.max_momentum - (o_.max_momentum - o_.base_momentum) * height(t));
  }
  bool per_step() const override { return true; }

 private:
  double height(long long t) const {
    double c = std::floor(1.0 + double(t) / (2.0 * s_));
    double x = 1.0 + double(t) / (2.0 * s_) - c;
    double scale = x <= 0.5 ? x / 0.5 : (x - 1.0) / (0.5 - 1.0);
    double f = 1.0;
    if (o_.cyclic_mode == "triangular2") f = 1.0 / std::pow(2.0, c - 1);
    else if (o_.cyclic_mode == "exp_range") f = std::pow(double(o_.gamma), double(t));
    return scale * f;
  }
  ScheduleOptions o_;
  double base_, max_;
  long long s_;
};

// Per-step: OneCycleLR (two phases). total = epochs * steps_per_epoch; initial = max/div_factor,
// final = initial/final_div_factor. Phase 1 (steps 0 .. pct_start*total - 1): initial -> max,
// momentum max_m -> base_m; phase 2 (.. total - 1): max -> final, momentum base_m -> max_m.
// anneal cos(a, b, p) = b + (a - b)/2 * (1 + cos(pi p)); linear: a + (b - a) p.
class OneCycleLR : public Schedule {
 public:
  OneCycleLR(const ScheduleOptions& o, float max_lr, long long total) : o_(o), total_(total) {
    max_ = max_lr;
    initial_ = max_ / o.div_factor;
    final_ = initial_ / o.final_div_factor;
    end1_ = double(o.pct_start) * double(total) - 1.0;
    end2_ = double(total) - 1.0;
  }
  float lr(int, long long t) override { return static_cast<float>(at(t, initial_, max_, final_)); }
  float momentum(int, long long t) override {
    if (!o_.cycle_momentum) return -1.0f;
    return static_cast<float>(at(t, o_.max_momentum, o_.base_momentum, o_.max_momentum));
  }
  bool per_step() const override { return true; }

 private:
  double anneal(double a, double b, double p) const {
    if (o_.anneal_strategy == "linear") return a + (b - a) * p;
    return b + (a - b) / 2.0 * (1.0 + std::cos(kPi * p));
  }
  double at(long long t, double a, double peak, double b) const {
    double s = double(std::min(t, total_ - 1));  // past the end: hold the last value
    if (s <= end1_) return anneal(a, peak, end1_ > 0 ? s / end1_ : 1.0);
    return anneal(peak, b, (s - end1_) / (end2_ - end1_));
  }
  ScheduleOptions o_;
  long long total_;
  double max_, initial_, final_, end1_, end2_;
};

// Per-epoch: ReduceLROnPlateau. After each epoch: better = metric < best*(1 - threshold) (min)
// or > best*(1 + threshold) (max), with threshold_mode abs metric < best - threshold or
// > best + threshold; a non-better epoch counts as bad; in cooldown bad epochs are
// not counted; more than `patience` bad epochs: lr = max(lr*factor, min_lr), cooldown starts.
class PlateauLR : public Schedule {
 public:
  PlateauLR(const ScheduleOptions& o, float lr0) : o_(o), lr_(lr0) {
    best_ = o.mode == "max" ? -INFINITY : INFINITY;
  }
  float lr(int, long long) override { return lr_; }
  bool watches_accuracy() const override { return o_.mode == "max"; }
  void on_epoch_end(int, double metric) override {
    const double m = metric;
    const double t = o_.threshold;
    const bool rel = o_.threshold_mode == "rel";
    bool better = o_.mode == "max" ? m > (rel ? best_ * (1.0 + t) : best_ + t)
                                   : m < (rel ? best_ * (1.0 - t) : best_ - t);
    if (better) {
      best_ = m;
      bad_ = 0;
    } else {
      ++bad_;
    }
    if (cooldown_left_ > 0) {
      --cooldown_left_;
      bad_ = 0;
    }
    if (bad_ > o_.patience) {
      float next = std::max(lr_ * o_.factor, o_.min_lr);
      if (lr_ - next > 1e-8f) lr_ = next;
      cooldown_left_ = o_.cooldown;
      bad_ = 0;
    }
  }
  // Hex floats: exact round trip, and inf (the initial best) reads back.
  std::string state() const override {
    // (+ the mode, from 2026-12-07: a best of the other mode is no best of this one)
    return format_c("plateau %a %a %d %d %s", static_cast<double>(lr_), best_, bad_, cooldown_left_,
                    o_.mode.c_str());
  }
  void set_state(const std::string& s) override {
    std::istringstream in(s);
    in.imbue(std::locale::classic());
    std::string tag, lr, best, mode;
    int bad = -1, cd = -1;
    std::string rest;
    // every field read (a failed count reads as 0), then the mode or nothing (older states),
    // nothing after them
    const bool read = static_cast<bool>(in >> tag >> lr >> best >> bad >> cd) &&
                      (!(in >> mode) || ((mode == "min" || mode == "max") && !(in >> rest)));
    // (counts up to 2^30, as epochs: bad_ is incremented, and INT_MAX wrapped)
    KILN_CHECK(read && tag == "plateau" && bad >= 0 && cd >= 0 && bad <= (1 << 30) &&
                   cd <= (1 << 30) && !lr.empty() && !best.empty(),
               "plateau schedule state " << printable(s) << " is not readable");
    char *lr_end = nullptr, *best_end = nullptr;
    const double lr_read = strtod_c(lr.c_str(), &lr_end),
                 best_read = strtod_c(best.c_str(), &best_end);
    KILN_CHECK(*lr_end == 0 && *best_end == 0 && std::isfinite(lr_read),
               "plateau schedule state " << printable(s) << " is not readable");
    KILN_CHECK(lr_read >= 0 && std::isfinite(static_cast<float>(lr_read)),
               "plateau schedule state " << printable(s) << ": lr " << lr_read
                                         << " is not a float lr >= 0");
    lr_ = static_cast<float>(lr_read);
    best_ = best_read;
    bad_ = bad;
    cooldown_left_ = cd;
    // Resumed with the other --plateau-mode: a loss is no best accuracy (an accuracy of 0.9
    // under a best loss of 2.3 counted as a bad epoch); the lr and cooldown carry over.
    if (!mode.empty() && mode != o_.mode) {
      best_ = o_.mode == "max" ? -INFINITY : INFINITY;
      bad_ = 0;
    }
  }
  double rescale_lr(double ratio) override {
    lr_ = std::max(static_cast<float>(lr_ * ratio), o_.min_lr);
    return lr_;
  }

 private:
  ScheduleOptions o_;
  float lr_;
  double best_;
  int bad_ = 0, cooldown_left_ = 0;
};

// Per-epoch: a file of "epoch lr" lines ('#' comments, blank lines allowed), read at start and
// re-read at each epoch end so the lr can be changed while training runs. Epochs are 0-based
// (Keras's LearningRateScheduler(epoch)): the lr for epoch e is that of the line with the
// largest epoch <= e (the later line on ties); before any line: lr0. A bad first read is an
// error; a re-read that fails (a typo, a file caught empty or missing half way through an
// editor's save) keeps the lines read before and says so in a note, so a slip in a file being
// edited never ends a run that was training well.
class ManualLR : public Schedule {
 public:
  ManualLR(std::string file, float lr0) : file_(std::move(file)), lr0_(lr0) {
    // A pipe (--schedule-file <(...)) gives its lines once: re-reading it found it empty and
    // warned after every epoch (until 2026-12-07). Only a regular file is read again.
    struct stat st;
    reread_ = stat(file_.c_str(), &st) == 0 && S_ISREG(st.st_mode);
    entries_ = load();
  }
  float lr(int epoch, long long) override {
    float v = lr0_;
    int best = -1;
    for (auto& [e, l] : entries_)
      if (e <= epoch && e >= best) {
        best = e;
        v = l;
      }
    return v;
  }
  void on_epoch_end(int, double) override {
    if (!reread_) return;
    std::string why;
    try {
      std::vector<std::pair<int, float>> entries = load();
      if (!entries.empty() || entries_.empty()) {
        entries_ = std::move(entries);
        return;
      }
      why = "schedule file " + file_ + ": no 'epoch lr' line (still being written?)";
    } catch (const Error& e) {
      why = e.message();
    }
    note_ = why + "; kept the " + std::to_string(entries_.size()) + " line" +
            (entries_.size() == 1 ? "" : "s") + " read before (read again after the next epoch)";
  }
  std::string take_note() override { return std::exchange(note_, std::string()); }

 private:
  std::vector<std::pair<int, float>> load() const {
    const std::string dir = directory_error(file_);
    KILN_CHECK(dir.empty(), "schedule file " << file_ << ": " << dir);
    // Read whole, and at most 16 MiB, as a YAML file (about a million 'epoch lr' lines):
    // /dev/zero, or a large file named by mistake, filled memory. A FIFO is not waited on.
    std::string text;
    const FileRead r = read_text_file(file_, size_t{16} << 20, text);
    KILN_CHECK(r.failure == FileRead::kNone,
               "schedule file " << file_ << ": "
                                << (r.failure == FileRead::kTooLarge
                                        ? "more than 16 MiB: not a schedule file"
                                    : r.failure == FileRead::kOpen ? std::string("cannot open")
                                                                   : r.why));
    std::istringstream in(text);
    std::vector<std::pair<int, float>> entries;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      auto hash = line.find('#');
      if (hash != std::string::npos) line.erase(hash);
      std::istringstream ls(line);
      std::string first;
      if (!(ls >> first)) continue;
      std::istringstream row(line);
      row.imbue(std::locale::classic());  // '.' decimals whatever the host's locale
      long long e;
      double l;
      std::string rest;
      bool ok = static_cast<bool>(row >> e >> l) && !(row >> rest);
      // (an lr past a float's range would train at inf; the line is echoed printable)
      // (an lr below a float's normal range would silently train at 0, as --lr refuses it)
      KILN_CHECK(ok && e >= 0 && e <= 1000000000 && std::isfinite(l) &&
                     (l == 0 || (l >= std::numeric_limits<float>::min() &&
                                 l <= std::numeric_limits<float>::max())),
                 "schedule file " << file_ << ":" << n
                                  << ": expected 'epoch lr' (epoch >= 0 counting from 0, lr 0 or "
                                     "1.2e-38..3.4e38), got '"
                                  << printable(line) << "'");
      entries.emplace_back(static_cast<int>(e), static_cast<float>(l));
    }
    return entries;
  }
  std::string file_;
  bool reread_ = true;  // a regular file: read again after each epoch
  float lr0_;
  std::vector<std::pair<int, float>> entries_;
  std::string note_;
};

// Linear warm-up composed with any schedule: for step t < W (W = warmup_steps, or
// warmup_epochs * steps_per_epoch), lr = inner(epoch, t) * (t + 1) / W; then inner unchanged.
class WarmupLR : public Schedule {
 public:
  WarmupLR(std::unique_ptr<Schedule> inner, long long w) : inner_(std::move(inner)), w_(w) {}
  float lr(int epoch, long long t) override {
    float v = inner_->lr(epoch, t);
    if (t < w_) v = static_cast<float>(double(v) * double(t + 1) / double(w_));
    return v;
  }
  float momentum(int epoch, long long t) override { return inner_->momentum(epoch, t); }
  void on_epoch_end(int epoch, double metric) override { inner_->on_epoch_end(epoch, metric); }
  std::string take_note() override { return inner_->take_note(); }
  bool watches_accuracy() const override { return inner_->watches_accuracy(); }
  bool per_step() const override { return true; }
  std::string state() const override { return inner_->state(); }
  void set_state(const std::string& s) override { inner_->set_state(s); }
  double rescale_lr(double ratio) override { return inner_->rescale_lr(ratio); }

 private:
  std::unique_ptr<Schedule> inner_;
  long long w_;
};

}  // namespace

void ScheduleOptions::validate() const {
  static const char* names[] = {"constant",
                                "step",
                                "multistep",
                                "exponential",
                                "exponential-step",
                                "inverse-time",
                                "inverse-time-step",
                                "inverse-sqrt-epoch",
                                "inverse-sqrt-step",
                                "cosine",
                                "cosine-restarts",
                                "cyclic",
                                "one-cycle",
                                "plateau",
                                "manual"};
  bool known = std::any_of(std::begin(names), std::end(names), [&](const char* n) { return name == n; });
  KILN_USAGE_CHECK(known, "--schedule "
                              << name
                              << ": expected constant|step|multistep|exponential|"
                                 "exponential-step|inverse-time|inverse-time-step|"
                                 "inverse-sqrt-epoch|inverse-sqrt-step|cosine|cosine-restarts|"
                                 "cyclic|one-cycle|plateau|manual (lower case)");
  const ScheduleOptions r = resolved();
  // A library caller's infinity made the lr NaN, reported as a divergence (the apps' float
  // options are finite already). NaN means "not given" for the momentum pair and gamma.
  for (const auto& [flag, v] : {std::pair<const char*, double>{"--gamma", r.gamma},
                                {"--decay", decay},
                                {"--k", k},
                                {"--eta-min", eta_min},
                                {"--max-lr", max_lr},
                                {"--base-lr", base_lr},
                                {"--pct-start", pct_start},
                                {"--div-factor", div_factor},
                                {"--final-div-factor", final_div_factor},
                                {"--factor", factor},
                                {"--min-lr", min_lr},
                                {"--threshold", threshold}})
    KILN_USAGE_CHECK(std::isfinite(v), flag << " must be finite, got " << v);
  KILN_USAGE_CHECK(r.gamma > 0, "--gamma must be > 0, got " << r.gamma);
  KILN_USAGE_CHECK(name != "step" || step_size > 0, "--step-size must be > 0, got " << step_size);
  for (int m : milestones) KILN_USAGE_CHECK(m >= 0, "--milestones must be >= 0, got " << m);
  // torch's MultiStepLR takes its milestones as a required argument; without any the schedule
  // would be a constant one under another name.
  KILN_USAGE_CHECK(name != "multistep" || !milestones.empty(),
                   "--schedule multistep needs --milestones (epochs, e.g. 30,80)");
  KILN_USAGE_CHECK(decay >= 0, "--decay must be >= 0, got " << decay);
  KILN_USAGE_CHECK(k > 0, "--k must be > 0, got " << k);
  KILN_USAGE_CHECK(t_max >= 0, "--t-max must be >= 0, got " << t_max);
  KILN_USAGE_CHECK(t_mult >= 1, "--t-mult must be >= 1, got " << t_mult);
  KILN_USAGE_CHECK(eta_min >= 0, "--eta-min must be >= 0, got " << eta_min);
  KILN_USAGE_CHECK(max_lr >= 0 && base_lr >= 0, "--max-lr/--base-lr must be >= 0, got " << max_lr << "/" << base_lr);
  KILN_USAGE_CHECK(step_size_up >= 0, "--step-size-up must be >= 0, got " << step_size_up);
  KILN_USAGE_CHECK(step_size_up_epochs >= 1 && step_size_up_epochs <= 1000000,
                   "--step-size-up-epochs must be in [1, 1000000], got " << step_size_up_epochs);
  KILN_USAGE_CHECK(
      step_size_up == 0 || step_size_up_epochs == ScheduleOptions{}.step_size_up_epochs,
      "--step-size-up " << step_size_up << " and --step-size-up-epochs " << step_size_up_epochs
                        << ": give the half cycle one way");
  KILN_USAGE_CHECK(cyclic_mode == "triangular" || cyclic_mode == "triangular2" || cyclic_mode == "exp_range",
                   "unknown --cyclic-mode '" << cyclic_mode << "' (expected triangular|triangular2|exp_range)");
  // Checked where the momentum cycles: elsewhere the two are ignored, with a note (a range
  // refused beside --no-cycle-momentum, naming a default --base-momentum never given).
  if ((name == "cyclic" || name == "one-cycle") && cycle_momentum)
    KILN_USAGE_CHECK(
        r.base_momentum >= 0 && r.max_momentum >= r.base_momentum && r.max_momentum < 1,
        "--base-momentum " << r.base_momentum << (std::isnan(base_momentum) ? " (its default)" : "")
                           << " / --max-momentum " << r.max_momentum
                           << (std::isnan(max_momentum) ? " (its default)" : "")
                           << ": the range must satisfy 0 <= base <= max < 1");
  KILN_USAGE_CHECK(pct_start > 0 && pct_start < 1, "--pct-start must be in (0, 1), got " << pct_start);
  KILN_USAGE_CHECK(div_factor > 0 && final_div_factor > 0,
                   "--div-factor/--final-div-factor must be > 0, got " << div_factor << "/" << final_div_factor);
  KILN_USAGE_CHECK(anneal_strategy == "cos" || anneal_strategy == "linear",
                   "unknown --anneal-strategy '" << anneal_strategy << "' (expected cos|linear)");
  KILN_USAGE_CHECK(factor > 0 && factor < 1, "--factor must be in (0, 1), got " << factor);
  KILN_USAGE_CHECK(patience >= 0 && cooldown >= 0, "--patience/--cooldown must be >= 0");
  KILN_USAGE_CHECK(min_lr >= 0, "--min-lr must be >= 0, got " << min_lr);
  KILN_USAGE_CHECK(threshold >= 0, "--threshold must be >= 0, got " << threshold);
  KILN_USAGE_CHECK(threshold_mode == "rel" || threshold_mode == "abs",
                   "--threshold-mode " << threshold_mode << ": expected rel|abs");
  KILN_USAGE_CHECK(mode == "min" || mode == "max",
                   "--plateau-mode must be min or max, got '" << mode << "'");
  KILN_USAGE_CHECK(name != "manual" || !file.empty(), "--schedule manual needs --schedule-file");
  KILN_USAGE_CHECK(warmup_steps >= 0 && warmup_epochs >= 0, "--warmup-steps/--warmup-epochs must be >= 0");
  KILN_USAGE_CHECK(warmup_steps == 0 || warmup_epochs == 0,
                   "--warmup-steps and --warmup-epochs are mutually exclusive");
}

std::vector<std::string> ScheduleOptions::ignored(const ScheduleOptions& d) const {
  auto eq = [](auto a, auto b) { return a == b || (std::isnan(a) && std::isnan(b)); };
  // Each option and the schedules that read it (the warm-up options compose with any).
  struct Use {
    const char* flag;
    bool set;
    std::vector<const char*> by;
  };
  // "cyclic exp_range" names the one cyclic mode that reads --gamma.
  const std::string mode_name = name == "cyclic" ? "cyclic " + cyclic_mode : name;
  const Use uses[] = {
      {"--gamma",
       !eq(gamma, d.gamma),
       {"step", "multistep", "exponential", "exponential-step", "cyclic exp_range"}},
      {"--step-size", step_size != d.step_size, {"step"}},
      {"--milestones", milestones != d.milestones, {"multistep"}},
      {"--decay", !eq(decay, d.decay), {"inverse-time", "inverse-time-step"}},
      {"--k", !eq(k, d.k), {"inverse-sqrt-epoch", "inverse-sqrt-step"}},
      {"--t-max", t_max != d.t_max, {"cosine", "cosine-restarts"}},
      {"--t-mult", t_mult != d.t_mult, {"cosine-restarts"}},
      {"--eta-min", !eq(eta_min, d.eta_min), {"cosine", "cosine-restarts"}},
      {"--max-lr", !eq(max_lr, d.max_lr), {"cyclic", "one-cycle"}},
      {"--base-lr", !eq(base_lr, d.base_lr), {"cyclic"}},
      {"--step-size-up", step_size_up != d.step_size_up, {"cyclic"}},
      {"--step-size-up-epochs", step_size_up_epochs != d.step_size_up_epochs, {"cyclic"}},
      {"--cyclic-mode", cyclic_mode != d.cyclic_mode, {"cyclic"}},
      {"--cycle-momentum", cycle_momentum != d.cycle_momentum, {"cyclic", "one-cycle"}},
      {"--base-momentum", !eq(base_momentum, d.base_momentum), {"cyclic", "one-cycle"}},
      {"--max-momentum", !eq(max_momentum, d.max_momentum), {"cyclic", "one-cycle"}},
      {"--pct-start", !eq(pct_start, d.pct_start), {"one-cycle"}},
      {"--div-factor", !eq(div_factor, d.div_factor), {"one-cycle"}},
      {"--final-div-factor", !eq(final_div_factor, d.final_div_factor), {"one-cycle"}},
      {"--anneal-strategy", anneal_strategy != d.anneal_strategy, {"one-cycle"}},
      {"--factor", !eq(factor, d.factor), {"plateau"}},
      {"--patience", patience != d.patience, {"plateau"}},
      {"--cooldown", cooldown != d.cooldown, {"plateau"}},
      {"--min-lr", !eq(min_lr, d.min_lr), {"plateau"}},
      {"--threshold", !eq(threshold, d.threshold), {"plateau"}},
      {"--threshold-mode", threshold_mode != d.threshold_mode, {"plateau"}},
      {"--plateau-mode", mode != d.mode, {"plateau"}},
      {"--schedule-file", file != d.file, {"manual"}},
  };
  std::vector<std::string> out;
  // The momentum range is read only while the momentum cycles.
  if ((name == "cyclic" || name == "one-cycle") && !cycle_momentum &&
      (!eq(base_momentum, d.base_momentum) || !eq(max_momentum, d.max_momentum)))
    out.push_back(
        "--base-momentum/--max-momentum are ignored with --no-cycle-momentum (they are "
        "the range the momentum cycles over)");
  for (const Use& u : uses) {
    if (!u.set) continue;
    bool read = false;
    std::string by;
    for (const char* s : u.by) {
      read |= name == s || mode_name == s;
      by += (by.empty() ? "" : "|") + std::string(s);
    }
    if (!read)
      out.push_back(std::string(u.flag) + " is ignored by --schedule " + name + " (it is read by " +
                    by + ")");
  }
  return out;
}

std::unique_ptr<Schedule> make_schedule(const ScheduleOptions& o, float base_lr, long long steps_per_epoch,
                                        int epochs) {
  KILN_USAGE_CHECK(steps_per_epoch >= 0 && epochs >= 0,
                   "make_schedule: " << epochs << " epochs of " << steps_per_epoch
                                     << " steps: must not be negative");
  return make_schedule(o, base_lr,
                       std::vector<long long>(static_cast<size_t>(std::max(epochs, 1)),
                                              std::max<long long>(steps_per_epoch, 1)));
}

ScheduleOptions ScheduleOptions::resolved() const {
  ScheduleOptions r = *this;
  const bool cyclic = name == "cyclic";
  if (std::isnan(r.gamma)) r.gamma = cyclic ? 1.0f : 0.1f;
  if (std::isnan(r.base_momentum)) r.base_momentum = cyclic ? 0.8f : 0.85f;
  if (std::isnan(r.max_momentum)) r.max_momentum = cyclic ? 0.9f : 0.95f;
  return r;
}

std::unique_ptr<Schedule> make_schedule(const ScheduleOptions& opts, float base_lr,
                                        const std::vector<long long>& steps) {
  opts.validate();
  const ScheduleOptions o = opts.resolved();
  KILN_USAGE_CHECK(base_lr >= 0, "--lr must be >= 0, got " << base_lr);
  // A run of 0 epochs still builds its schedule (a checkpoint holds its state): one epoch of one
  // step.
  const long long spe = steps.empty() ? 1 : std::max<long long>(steps.front(), 1);
  const int run_epochs = std::max(static_cast<int>(steps.size()), 1);
  long long total = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    KILN_USAGE_CHECK(steps[i] >= 0 && steps[i] <= kMaxStepCount - total,
                     "make_schedule: epoch " << i + 1 << " of " << steps.size() << " takes "
                                             << steps[i]
                                             << " steps: negative, or the run past 1e15 steps");
    total += steps[i];
  }
  total = std::max(total, 1LL);
  // Steps in the first e epochs (past the run: its last epoch's count repeated), the epochs past
  // the run counted at once: a loop over e took 0.6 s for --warmup-epochs 2147483647 (50 s
  // under the asan preset) before the first step. At most LLONG_MAX.
  auto steps_in = [&](int e) {
    const size_t n = std::min(static_cast<size_t>(std::max(e, 0)), steps.size());
    long long t = 0;
    for (size_t i = 0; i < n; ++i) t += steps[i];
    const long long rest = std::max(e, 0) - static_cast<long long>(n);
    const long long per = steps.empty() ? 1 : steps.back();
    if (per > 0 && rest > (std::numeric_limits<long long>::max() - t) / per)
      return std::numeric_limits<long long>::max();
    return t + rest * per;
  };
  std::unique_ptr<Schedule> s;
  const std::string& n = o.name;
  if (n == "constant") s = std::make_unique<ConstantLR>(base_lr);
  else if (n == "step") s = std::make_unique<StepLR>(base_lr, o.gamma, o.step_size);
  else if (n == "multistep") s = std::make_unique<MultiStepLR>(base_lr, o.gamma, o.milestones);
  else if (n == "exponential")
    s = std::make_unique<ExponentialLR>(base_lr, o.gamma, false);
  else if (n == "exponential-step")
    s = std::make_unique<ExponentialLR>(base_lr, o.gamma, true);
  else if (n == "inverse-time")
    s = std::make_unique<InverseTimeLR>(base_lr, o.decay, false);
  else if (n == "inverse-time-step")
    s = std::make_unique<InverseTimeLR>(base_lr, o.decay, true);
  else if (n == "inverse-sqrt-epoch") s = std::make_unique<InverseSqrtLR>(base_lr, o.k, false);
  else if (n == "inverse-sqrt-step") s = std::make_unique<InverseSqrtLR>(base_lr, o.k, true);
  else if (n == "cosine") s = std::make_unique<CosineLR>(base_lr, o.eta_min, o.t_max > 0 ? o.t_max : run_epochs);
  else if (n == "cosine-restarts")
    s = std::make_unique<CosineRestartsLR>(base_lr, o.eta_min, o.t_max > 0 ? o.t_max : run_epochs, o.t_mult);
  else if (n == "cyclic") {
    float base = o.base_lr > 0 ? o.base_lr : base_lr;
    float max = o.max_lr > 0 ? o.max_lr : 10.0f * base;
    long long up = o.step_size_up > 0 ? o.step_size_up : o.step_size_up_epochs * spe;
    s = std::make_unique<CyclicLR>(o, base, max, up);
  } else if (n == "one-cycle") {
    s = std::make_unique<OneCycleLR>(o, o.max_lr > 0 ? o.max_lr : base_lr, total);
  } else if (n == "plateau") s = std::make_unique<PlateauLR>(o, base_lr);
  else s = std::make_unique<ManualLR>(o.file, base_lr);
  long long w = o.warmup_steps > 0 ? o.warmup_steps : steps_in(o.warmup_epochs);
  if (w > 0) s = std::make_unique<WarmupLR>(std::move(s), w);
  return s;
}

}  // namespace kiln
