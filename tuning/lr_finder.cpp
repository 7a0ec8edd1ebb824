// LR range test: a Schedule that returns the exponential ramp drives a Trainer built over the
// session's model and optimizer; the Trainer's on_step hook reads each step's loss and decides
// when to stop. Suggestion rules follow fastai (fastai/callback/schedule.py) line by line where
// noted, so results can be compared with a fastai run on the same curve.
#include "tuning/lr_finder.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <locale>
#include <sstream>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/numtext.h"
#include "tuning/run_checkpoint.h"

namespace kiln {

double ramp_lr(double start, double end, double pos) {
  return start * std::pow(end / start, pos);
}

double DebiasedEma::add(double x) {
  avg = beta * avg + (1 - beta) * x;
  ++n;
  return avg / (1 - std::pow(beta, static_cast<double>(n)));
}

std::vector<double> debiased_ema(const std::vector<double>& raw, double beta) {
  DebiasedEma ema(beta);
  std::vector<double> out;
  out.reserve(raw.size());
  for (double x : raw) out.push_back(ema.add(x));
  return out;
}

namespace {

std::string steps_text(long long n) {
  return std::to_string(n) + (n == 1 ? " step" : " steps");
}

LrSuggestion none(const char* method) {
  LrSuggestion s;
  s.method = method;
  s.lr = NAN;
  return s;
}

LrSuggestion at(const char* method, const std::vector<double>& lrs, int64_t i, double scale = 1.0) {
  LrSuggestion s;
  s.method = method;
  s.index = i;
  s.lr = lrs[static_cast<size_t>(i)] * scale;
  return s;
}

// The ramp as a schedule: the trainer asks for the lr of step `step` (0-based) before taking it.
class RampSchedule : public Schedule {
 public:
  RampSchedule(double start, double end, double span) : start_(start), end_(end), span_(span) {}
  float lr(int, long long step) override {
    return static_cast<float>(ramp_lr(start_, end_, static_cast<double>(step) / span_));
  }
  bool per_step() const override { return true; }

 private:
  double start_, end_, span_;
};

// Copies of everything a training step changes, so the test leaves no trace.
struct Snapshot {
  std::vector<std::pair<Tensor, Tensor>> saved;  // (live tensor, copy)
  int64_t opt_steps = 0;
  uint64_t ctx_step = 0;
  bool training = true;

  void take(RunSession& s) {
    for (auto& kv : s.model->state_dict()) saved.emplace_back(kv.second, kv.second.clone());
    for (auto& kv : s.opt->state()) saved.emplace_back(kv.second, kv.second.clone());
    opt_steps = s.opt->steps_taken();
    ctx_step = s.ctx->step;
    training = s.ctx->training;
  }
  void restore(RunSession& s) {
    for (auto& p : saved) p.first.copy_from(p.second, s.ctx->stream());
    s.ctx->sync();
    s.opt->set_steps_taken(opt_steps);
    s.opt->reset_nonfinite_flag(*s.ctx);
    s.ctx->step = ctx_step;
    s.ctx->training = training;
  }
};

}  // namespace

// fastai `valley`: the longest strictly decreasing subsequence of the loss (O(n^2) dynamic
// programme, lds[i] = its length ending at i); pick start + floor(L/3) + floor(L/6) with
// L = end - start, i.e. about half-way down the valley. As in fastai, start = end - lds,
// which is -1 for a run from the first point (the usual smoothed curve). Only the final index
// is clamped, where fastai's Python would wrap round to the last point.
LrSuggestion suggest_valley(const std::vector<double>& lrs, const std::vector<double>& losses) {
  int64_t n = static_cast<int64_t>(losses.size());
  if (n < 2) return none("valley");
  std::vector<int64_t> lds(n, 1);
  int64_t max_start = 0, max_end = 0;
  for (int64_t i = 1; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) {
      if (losses[i] < losses[j] && lds[i] < lds[j] + 1) lds[i] = lds[j] + 1;
      if (lds[max_end] < lds[i]) {
        max_end = i;
        max_start = max_end - lds[max_end];
      }
    }
  double sections = static_cast<double>(max_end - max_start) / 3.0;
  int64_t idx = max_start + static_cast<int64_t>(sections) + static_cast<int64_t>(sections / 2);
  return at("valley", lrs, std::clamp<int64_t>(idx, 0, n - 1));
}

// fastai `steep`: forward differences of loss over log(lr); the lr at the start of the steepest
// descending difference.
LrSuggestion suggest_steep(const std::vector<double>& lrs, const std::vector<double>& losses) {
  int64_t n = static_cast<int64_t>(losses.size());
  if (n < 2) return none("steep");
  int64_t best = 0;
  double best_g = INFINITY;
  for (int64_t i = 0; i + 1 < n; ++i) {
    double g = (losses[i + 1] - losses[i]) / (std::log(lrs[i + 1]) - std::log(lrs[i]));
    if (g < best_g) {
      best_g = g;
      best = i;
    }
  }
  return at("steep", lrs, best);
}

// fastai `minimum`: one tenth of the lr at the lowest smoothed loss.
LrSuggestion suggest_minimum(const std::vector<double>& lrs, const std::vector<double>& losses) {
  if (losses.empty()) return none("minimum");
  int64_t i = std::min_element(losses.begin(), losses.end()) - losses.begin();
  return at("minimum", lrs, i, 0.1);
}

// fastai `slide` (Wright's "slide rule"): np.gradient of the loss over the step index; a window
// of lr_diff points slides left from the end of the curve until the gradients at its two ends
// differ by at most thresh; the suggestion is the lr at the window's left end at that moment.
// With fewer than lr_diff+1 points the window shrinks to the curve.
LrSuggestion suggest_slide(const std::vector<double>& lrs, const std::vector<double>& losses,
                           int lr_diff, double thresh) {
  int64_t n = static_cast<int64_t>(losses.size());
  if (n < 2) return none("slide");
  std::vector<double> g(n);
  g[0] = losses[1] - losses[0];
  g[n - 1] = losses[n - 1] - losses[n - 2];
  for (int64_t i = 1; i + 1 < n; ++i) g[i] = (losses[i + 1] - losses[i - 1]) / 2;
  int64_t diff = std::min<int64_t>(lr_diff, n - 1);
  int64_t r = n - 1, l = r - diff, pick = l;
  while (l >= 0 && std::fabs(g[r] - g[l]) > thresh) {
    pick = l;
    --r;
    --l;
  }
  return at("slide", lrs, pick);
}

std::vector<LrSuggestion> suggest_all(const std::vector<LrFindPoint>& pts, long long planned,
                                      const LrFindOptions& o) {
  // fastai: recorder[num_it//10 : -5], cut at the first NaN. It does not stop on a NaN (its
  // stop test compares against 4x the best, which a NaN never exceeds) but runs on to num_it,
  // so after a NaN the window ends there rather than 5 points earlier.
  int64_t n = static_cast<int64_t>(pts.size());
  int64_t b = static_cast<int64_t>(std::floor(o.skip_start_frac * static_cast<double>(planned)));
  int64_t e = n - o.skip_end;
  if (n > 0 && std::isnan(pts.back().smoothed))
    e = std::min<int64_t>(n - 1, static_cast<int64_t>(planned) - o.skip_end);
  std::vector<double> lrs, losses;
  for (int64_t i = b; i < e; ++i) {
    // Only the last point can be non-finite (the test stops there); guard all the same.
    if (!std::isfinite(pts[i].smoothed)) break;
    lrs.push_back(pts[i].lr);
    losses.push_back(pts[i].smoothed);
  }
  if (lrs.size() < 3) {  // a "curve" of one or two points suggests nothing
    lrs.clear();
    losses.clear();
  }
  std::vector<LrSuggestion> out = {suggest_valley(lrs, losses), suggest_steep(lrs, losses),
                                   suggest_minimum(lrs, losses), suggest_slide(lrs, losses)};
  for (auto& s : out)
    if (s.ok()) s.index += b;
  return out;
}

LrFindOptions lr_find_options(const RunConfig& cfg) {
  LrFindOptions o;
  o.start_lr = cfg.start_lr;
  o.end_lr = cfg.end_lr;
  o.num_it = cfg.num_it;
  o.epochs = cfg.train.epochs;
  o.use_val = cfg.lr_find_val;
  return o;
}

LrFindResult lr_find(RunSession& s, const LrFindOptions& o,
                     const std::function<void(const std::string&)>& log,
                     const std::function<void()>& ready) {
  KILN_USAGE_CHECK(
      o.start_lr > 0 && o.end_lr > o.start_lr,
      "--start-lr " << o.start_lr << " / --end-lr " << o.end_lr << ": need 0 < start < end");
  KILN_USAGE_CHECK(o.num_it > 0 || o.epochs > 0, "--num-it 0 needs --epochs >= 1");
  KILN_CHECK(s.trainer && s.train.size() > 0, "the LR range test's session has no training data");
  TrainOptions topts = s.cfg.train;
  const long long rows = s.train.size(), b = topts.batch_size;
  long long spe = rows / b + (rows % b != 0);  // not (rows + b - 1) / b: overflows near 2^63
  long long n = o.num_it > 0 ? o.num_it : spe * o.epochs;
  // The ramp's span (ramp_lr): fastai's num_it, or keras_lr_finder's epochs*samples/batch_size.
  const double span = o.num_it > 0
                          ? static_cast<double>(o.num_it)
                          : static_cast<double>(o.epochs) * static_cast<double>(s.train.size()) /
                                static_cast<double>(topts.batch_size);
  const long long ramp_epochs = (n + spe - 1) / spe;
  KILN_USAGE_CHECK(ramp_epochs <= 1000000, "--num-it " << n << " spans " << ramp_epochs
                                                       << " epochs of " << rows
                                                       << " samples; at most 1000000");
  topts.epochs = static_cast<int>(ramp_epochs);
  topts.step_limit = n;          // the test stops after n steps (batches past them never run)
  topts.batch_schedule.clear();  // the ramp is over steps of one batch size
  topts.log_path.clear();
  topts.log_every = 0;
  topts.grad_report = false;
  topts.target_acc = 0;
  topts.detect_anomaly = false;
  // The test's own rules end it (the smoothed loss past o.diverge x its best, or non-finite):
  // the trainer's bound on an epoch's mean train loss (--max-loss) called a test that had
  // completed "diverged" when the ramp's last epoch averaged past it (the loss being tested
  // the held-out one), and cut a longer ramp at its first epoch's end, too early to suggest.
  topts.max_loss = -1;
  // Early stopping would watch the ramp's rising train loss and end the test after an epoch
  // (reported as completed); --restore-best would load weights back mid-ramp.
  const TrainOptions plain;
  topts.early_stop = plain.early_stop;
  topts.early_stop_delta = plain.early_stop_delta;
  topts.early_stop_metric = plain.early_stop_metric;
  topts.early_stop_baseline = plain.early_stop_baseline;
  topts.early_stop_start = plain.early_stop_start;
  topts.restore_best = plain.restore_best;

  Dataset val;
  if (o.use_val) {
    // The validation split when the run has one (tuning on the test set leaks it), else the
    // test set; its first val_size samples.
    const Dataset& held = s.val.size() > 0 ? s.val : s.test;
    KILN_USAGE_CHECK(held.size() > 0, "--lr-find-val needs a validation or test set");
    int64_t m = std::min<int64_t>(o.val_size, held.size());
    val = slice_rows(held, 0, m, held.name + "[:" + std::to_string(m) + "]");
  }

  Snapshot snap;
  if (o.restore) snap.take(s);
  RampSchedule ramp(o.start_lr, o.end_lr, span);
  Trainer tr(*s.model, *s.opt, ramp, *s.ctx, topts);
  tr.on_start = ready;
  // The trainer's notes (an evaluation that ran out of memory and halved its batch) reach the
  // user; its epoch lines and warnings are the training run's, not the range test's.
  if (log)
    tr.log = [&log](const std::string& l) {
      if (l.rfind("note: ", 0) == 0) log(l);
    };
  LrFindResult res;
  res.planned = n;
  if (o.use_val) res.held_out = s.val.size() > 0 ? "val" : "test";
  DebiasedEma ema(o.beta);
  double best = INFINITY;
  bool stop = false;
  StopSignals signals;  // SIGINT/SIGTERM end the test after the current step
  tr.on_step = [&](long long step, float lr) {
    long long i = static_cast<long long>(res.points.size());
    double loss = o.use_val ? tr.evaluate(val).loss : tr.last_loss();
    LrFindPoint p;
    p.step = i;
    p.lr = lr;
    p.loss = loss;
    p.smoothed = ema.add(loss);
    res.points.push_back(p);
    (void)step;
    if (const int sig = *StopSignals::flag()) {
      res.stop_signal = sig;
      res.stop_reason = sig == SIGINT ? "interrupted by SIGINT" : "interrupted by SIGTERM";
      stop = true;
    } else if (!std::isfinite(loss) || !std::isfinite(p.smoothed)) {
      ClassicOStringStream os;
      os << "non-finite loss at lr " << lr;
      res.stop_reason = os.str();
      stop = true;
    } else if (i > 0 && p.smoothed > o.diverge * best) {
      ClassicOStringStream os;
      os << "smoothed loss exceeded " << o.diverge << "x the best at lr " << lr;
      res.stop_reason = os.str();
      stop = true;
    } else if (i + 1 >= n) {
      res.stop_reason = "completed " + steps_text(n);
      stop = true;
    }
    best = std::min(best, p.smoothed);
    if (log && (i % 20 == 0 || stop)) {
      ClassicOStringStream os;
      auto num = [&os](double v) -> std::ostream& { return std::isnan(v) ? os << "nan" : os << v; };
      os << "lr_find step " << i << "/" << n << " lr=" << lr << " loss=";
      num(loss) << " smoothed=";
      num(p.smoothed);  // as the CSV: not the stream's "-nan" of a negative-signed NaN
      log(os.str());
    }
    return !stop;
  };
  tr.on_epoch = [&](const EpochRecord&) { return !stop; };
  try {
    tr.fit(s.train, nullptr);
  } catch (const Error& e) {
    // Divergence is how a range test is expected to end; anything else is a real error.
    if (e.kind() != ErrorKind::Diverged) {
      if (o.restore) snap.restore(s);
      throw;
    }
    if (res.stop_reason.empty() || res.stop_reason.rfind("completed", 0) == 0)
      res.stop_reason = "diverged: " + e.message();
  }
  if (res.stop_reason.empty())
    res.stop_reason = "completed " + steps_text(static_cast<long long>(res.points.size()));
  if (o.restore) snap.restore(s);
  res.suggestions = suggest_all(res.points, n, o);
  return res;
}

std::vector<std::string> lr_find_unused_options(const RunConfig& cfg, const RunConfig& defaults) {
  std::vector<std::string> out;
  for (const OptionSpec& spec : run_options().specs())
    if ((spec.traits & kRangeTestUnused) && spec.get(cfg) != spec.get(defaults))
      out.push_back("--" + spec.name);
  // --epochs sizes the test only with --num-it 0 (keras_lr_finder's epochs)
  if (cfg.num_it > 0 && cfg.train.epochs != defaults.train.epochs)
    out.push_back("--epochs (with --num-it " + std::to_string(cfg.num_it) + ")");
  return out;
}

LrFindResult run_lr_find(const RunConfig& cfg, const std::function<void(const std::string&)>& log,
                         const std::function<void()>& ready) {
  RunConfig outputs = cfg;  // only the CSV is written: --save and --log are not used
  outputs.save.clear();
  outputs.train.log_path.clear();
  outputs.lr_find = true;       // the CSV's default name is checked too
  check_output_paths(outputs);  // --lr-find-csv: before the range test, not after
  auto s = make_session(cfg);
  check_outputs_spare_data(outputs, {&s->train, &s->val, &s->test});
  if (log && !s->train.note.empty()) log("note: " + s->train.note);
  if (!cfg.resume.empty()) {  // the weights (and norm buffers) only: a fresh optimizer ramps
    load_checkpoint(cfg.resume, *s->ctx, *s->model, nullptr, nullptr);
    if (log)
      log("lr_find: starting from the weights in " + cfg.resume + " (fresh optimizer state)");
  }
  LrFindResult r = lr_find(*s, lr_find_options(cfg), log, ready);
  write_lr_find_csv(cfg.lr_find_csv.empty() ? "lr_find.csv" : cfg.lr_find_csv, r);
  return r;
}

void write_lr_find_csv(const std::string& path, const LrFindResult& r) {
  // NaN as "nan" (the stream would write "-nan" for a negative-signed one); each file written
  // atomically, so a kill never leaves half a curve under the name.
  auto num = [](std::ostream& os, double v) -> std::ostream& {
    return std::isnan(v) ? os << "nan" : os << v;
  };
  std::ostringstream f, g;  // '.' decimals whatever the host's locale
  f.imbue(std::locale::classic());
  g.imbue(std::locale::classic());
  const std::string loss = r.held_out.empty() ? "loss" : r.held_out + "_loss";
  f << "step,lr," << loss << ",smoothed_" << loss << "\n" << std::setprecision(9);
  for (const auto& p : r.points) {
    f << p.step << ",";
    num(f, p.lr) << ",";
    num(f, p.loss) << ",";
    num(f, p.smoothed) << "\n";
  }
  // The suggestions go to a companion file so the CSV stays a plain table for other tools.
  g << "method,lr,step\n" << std::setprecision(9);
  for (const auto& s : r.suggestions)
    if (s.ok())
      g << s.method << "," << s.lr << "," << r.points[static_cast<size_t>(s.index)].step << "\n";
  const std::string a = f.str(), b = g.str();
  // The old suggestions step aside (under a temp file's name) while the curve is written: a
  // failed curve puts them back beside the old curve; after a new curve they are removed, so a
  // suggestions write that fails, or a kill, never leaves this curve beside another run's
  // suggestions (a killed run's aside file is removed by the next write, as its temp files).
  const std::string sugg = path + ".suggestions", file = link_target(sugg);
  KILN_CHECK(!file.empty(), sugg << ": " << std::strerror(ELOOP));
  const std::string aside = atomic_temp_name(file, ::getpid(), ~0u);
  const bool moved = ::rename(file.c_str(), aside.c_str()) == 0;
  KILN_CHECK(moved || errno == ENOENT,
             sugg << ": cannot move the previous run's aside: " << std::strerror(errno));
  try {
    write_file_atomic(path, a.data(), a.size());
  } catch (...) {
    if (moved) (void)::rename(aside.c_str(), file.c_str());
    throw;
  }
  if (moved) (void)::unlink(aside.c_str());
  write_file_atomic(sugg, b.data(), b.size());
}

std::string lr_find_report(const LrFindResult& r) {
  ClassicOStringStream os;
  os << "lr_find: " << steps_text(static_cast<long long>(r.points.size()))
     << ", stopped: " << r.stop_reason << "\n";
  bool first = true;
  for (const auto& s : r.suggestions) {
    os << "suggestion " << std::left << std::setw(8) << s.method << " ";
    if (s.ok()) {
      os << "lr=" << std::setprecision(3) << s.lr << "  (step "
         << r.points[static_cast<size_t>(s.index)].step << ", smoothed loss "
         << std::setprecision(4) << r.points[static_cast<size_t>(s.index)].smoothed << ")";
    } else {
      os << "none (too few points after trimming)";
    }
    os << (first ? "  <- default\n" : "\n");
    first = false;
  }
  // A range that missed the interesting part says so (fastai's plot would show it; a printed
  // suggestion does not): still falling at the end, or over within its first tenth.
  const size_t n = r.points.size();
  const long long tenth = std::max(1LL, r.planned / 10);
  if (n > 0 && r.stop_reason.rfind("completed", 0) == 0) {
    size_t at = 0;
    for (size_t i = 1; i < n; ++i)
      if (r.points[i].smoothed < r.points[at].smoothed) at = i;
    const double lo = r.points[at].smoothed, last = r.points[n - 1].smoothed;
    if (last <= 1.1 * lo)
      os << "lr_find: note: the smoothed loss had not begun to rise by the end of the range (lr "
         << std::setprecision(3) << r.points[n - 1].lr << ", " << std::setprecision(2)
         << 100 * (last / lo - 1)
         << "% above its lowest): the range may stop short of where training breaks down, and a "
            "flat curve means the lrs are too low to train; try a higher --end-lr\n";
  } else if (n > 0 && r.stop_signal == 0 && static_cast<long long>(n) <= tenth) {
    os << "lr_find: note: stopped after " << n << " of " << r.planned
       << " steps: --start-lr may already be too high (lr " << std::setprecision(3)
       << r.points[0].lr << " at the first step); try a lower one\n";
  }
  return os.str();
}

}  // namespace kiln
