// LR range test (Smith 2015; fastai lr_find, keras_lr_finder): train with an exponentially
// increasing learning rate, record the loss per step, smooth it with a debiased EMA and stop
// once it blows up. Suggestions are computed from the smoothed curve; the model, its buffers
// and the optimizer state are put back afterwards, so a run that follows starts from the same
// weights as if the test had never run.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tuning/run.h"

namespace kiln {

struct LrFindOptions {
  float start_lr = 1e-7f, end_lr = 10.0f;
  int num_it = 100;  // steps; 0: `epochs` full epochs of steps (keras_lr_finder)
  int epochs = 1;
  bool use_val = false;          // smooth the loss on a held-out slice instead of the batch loss
  int64_t val_size = 500;        // first N validation (else test) samples, after every step
  double beta = 0.98;            // EMA smoothing
  double diverge = 4.0;          // stop when smoothed > diverge * best smoothed
  bool restore = true;           // put weights and optimizer state back afterwards
  double skip_start_frac = 0.1;  // suggestions ignore the first 10% of points...
  int skip_end = 5;              // ...and the last 5
};

struct LrFindPoint {
  long long step = 0;  // 0-based
  double lr = 0, loss = 0, smoothed = 0;
};

struct LrSuggestion {
  std::string method;  // valley | steep | minimum | slide
  double lr = 0;
  int64_t index = -1;  // into the full point list; -1: no suggestion (too few points)
  bool ok() const { return index >= 0; }
};

struct LrFindResult {
  std::vector<LrFindPoint> points;
  long long planned = 0;    // the steps the ramp was laid out over (--num-it, or the epochs' steps)
  std::string stop_reason;  // "completed N steps", "smoothed loss exceeded 4x the best ...", ...
  std::vector<LrSuggestion> suggestions;  // valley first (the default)
  int stop_signal = 0;  // SIGINT/SIGTERM stopped the test (StopSignals); 0 otherwise
  // Whose loss the curve is: "" the training batch's, "val" or "test" a held-out slice's
  // (--lr-find-val); the CSV's loss columns are then named val_loss or test_loss.
  std::string held_out;
};

// lr = start * (end/start)^pos. Step i of the test sits at pos = i / span: fastai's LRFinder
// takes span = num_it (its last step, i = num_it - 1, stays just below end_lr), keras_lr_finder
// span = epochs * samples / batch_size (its lr_mult^i, the same curve; a partial last batch
// goes just past end_lr).
double ramp_lr(double start, double end, double pos);
// avg = beta*avg + (1-beta)*loss; smoothed_i = avg / (1 - beta^(i+1)). The streaming form is
// what lr_find uses step by step; debiased_ema applies it to a whole series.
struct DebiasedEma {
  double beta, avg = 0;
  long long n = 0;
  explicit DebiasedEma(double b) : beta(b) {}
  double add(double x);  // the smoothed value after x
};
std::vector<double> debiased_ema(const std::vector<double>& raw, double beta);

// Suggestion rules on (lrs, smoothed losses) that are already trimmed; index is into them.
LrSuggestion suggest_valley(const std::vector<double>& lrs, const std::vector<double>& losses);
LrSuggestion suggest_steep(const std::vector<double>& lrs, const std::vector<double>& losses);
LrSuggestion suggest_minimum(const std::vector<double>& lrs, const std::vector<double>& losses);
LrSuggestion suggest_slide(const std::vector<double>& lrs, const std::vector<double>& losses,
                           int lr_diff = 15, double thresh = 0.005);
// Trims the points as fastai's lr_find does and runs all four rules: the first
// skip_start_frac of the `planned` steps, and the last skip_end points recorded, or, when the
// test stopped on a NaN (which fastai does not stop on), everything from that NaN on.
std::vector<LrSuggestion> suggest_all(const std::vector<LrFindPoint>& pts, long long planned,
                                      const LrFindOptions& o);

// Options from the run config (--start-lr, --end-lr, --num-it, --epochs, --lr-find-val).
LrFindOptions lr_find_options(const RunConfig& cfg);

// Runs the test on a session built by make_session (its schedule is not used).
// `ready`: the trainer's on_start (the apps' device line, after the checks before the ramp).
LrFindResult lr_find(RunSession& s, const LrFindOptions& o,
                     const std::function<void(const std::string&)>& log = {},
                     const std::function<void()>& ready = {});

// The run options the test never reads (the ramp replaces --lr and the schedule; no
// checkpoint, log, early stopping) that cfg sets away from `defaults`, as "--name".
std::vector<std::string> lr_find_unused_options(const RunConfig& cfg, const RunConfig& defaults);

// The whole command: builds the session from cfg (with --resume, the checkpoint's weights and
// a fresh optimizer), runs the test, writes cfg.lr_find_csv (default lr_find.csv) and its
// .suggestions companion. `ready`: called once the outputs, data and checkpoint are checked,
// before the first step (the apps' device line).
LrFindResult run_lr_find(const RunConfig& cfg,
                         const std::function<void(const std::string&)>& log = {},
                         const std::function<void()>& ready = {});

void write_lr_find_csv(const std::string& path, const LrFindResult& r);
// Human-readable lines: the stop reason and one line per suggestion.
std::string lr_find_report(const LrFindResult& r);

}  // namespace kiln
