// Hyperparameter sweeps (schema close to a W&B sweep): grid or seeded random search over any
// run option, median pruning, results appended per trial (fsync) to DIR/results.jsonl and
// DIR/results.csv, --resume, and --worker i/N sharding over one directory with a lock file
// per trial, so any scheduler can spread a sweep over processes and machines. Trials are
// numbered; trial i's parameters depend only on the spec (and, for random, on (seed, i)).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/trainer.h"
#include "tuning/options.h"

namespace kiln {

struct SweepParam {
  std::string name;                 // canonical option name ("batch-size")
  std::vector<std::string> values;  // values: [...] (or one fixed value); labels for bundles
  // A named comparison (the name is not an option): each value is a mapping of options set
  // together, e.g. variant: {values: [{optimizer: sgd}, {optimizer: sgd, momentum: 0.9}]}.
  std::vector<std::vector<std::pair<std::string, std::string>>> bundles;
  std::string distribution;  // "" for values; uniform | log_uniform | int_uniform
  double min = 0, max = 0;
  bool is_range() const { return !distribution.empty(); }
};

struct SweepSpec {
  std::string path;             // the YAML file, for messages
  std::string method = "grid";  // grid | random
  uint64_t seed = 0;
  int64_t run_cap = 0;              // 0: grid size (random needs it)
  std::string metric = "test_acc";  // test_acc|test_loss|val_acc|val_loss|train_acc|train_loss
  bool maximize = true;
  std::vector<std::pair<std::string, std::string>> base;  // fixed options, YAML order
  std::vector<SweepParam> params;                         // YAML order
  bool median_stop = false;  // early_terminate: {type: median, min_epochs, min_trials}
  int min_epochs = 1, min_trials = 3;
  // What the file sets that changes nothing (a grid's seed, a value listed twice), one sentence
  // each, for the app's "note:" lines.
  std::vector<std::string> notes;
};

// Loads and validates a sweep YAML: unknown keys/options are usage errors naming the file and
// the key (with a suggestion), and every value is type-checked against its option.
// `text`, when given, receives the file's text as parsed (read once: a pipe cannot be re-read).
SweepSpec load_sweep(const std::string& path, std::string* text = nullptr);
constexpr int64_t kMaxTrials = 1000000;  // run_cap and grid sizes above it are usage errors
SweepSpec parse_sweep(const std::string& yaml_text, const std::string& path);

// The parameter that sets option `opt` (canonical, "data-dir") per trial: named so, or setting it
// in its bundles; "" when none does.
std::string swept_by(const SweepSpec& spec, const std::string& opt);
int64_t grid_size(const SweepSpec& spec);   // product of the value counts
int64_t num_trials(const SweepSpec& spec);  // grid: min(grid size, run_cap); random: run_cap
// Parameters of trial i (name, value as text), in YAML order.
std::vector<std::pair<std::string, std::string>> trial_params(const SweepSpec& spec, int64_t i);

struct TrialRecord {
  int64_t trial = -1;
  std::string status;  // ok | pruned | failed
  double metric = NAN;
  std::vector<std::pair<std::string, std::string>> params;
  double val_acc = NAN, val_loss = NAN;  // with a validation split (val_split)
  double test_acc = NAN, test_loss = NAN, train_loss = NAN, train_acc = NAN;
  double seconds = 0;            // wall time of the trial (setup, epochs, evaluation), failed ones too
  double weight_sparsity = NAN;  // of the last epoch (EpochRecord::weight_sparsity)
  int epochs = 0;
  std::vector<double> curve;  // the metric after each epoch (median pruning reads it)
  std::string message;        // why it failed or was pruned
  std::string test_data;      // the test set it was scored on (RunResult::test_data), or ""
  std::string to_json() const;
  static bool from_json(const std::string& line, TrialRecord& out);  // false: not a record
};

// Thrown by the default runner when SIGINT/SIGTERM stopped a trial: the trial is not recorded
// (a --resume reruns it) and the sweep stops.
struct TrialInterrupted : std::runtime_error {
  int signal;
  explicit TrialInterrupted(int sig) : std::runtime_error("interrupted"), signal(sig) {}
};

// What a trial's run gives the sweep: its epochs, and the epoch whose weights it ended with
// when the trainer loaded an earlier one back (--restore-best; 0: the last epoch's). The
// trainer decides (a run that --target-acc stops keeps its own weights): the sweep scores the
// trial on that epoch rather than replaying the rule. A runner may return the epochs alone.
struct TrialRun {
  std::vector<EpochRecord> epochs;
  int restored_epoch = 0;
  std::string test_data;  // RunResult::test_data ("" when the runner does not say)
  TrialRun() = default;
  TrialRun(std::vector<EpochRecord> e, int restored = 0)  // NOLINT(google-explicit-constructor)
      : epochs(std::move(e)), restored_epoch(restored) {}
};
// Runs one trial. on_epoch returns false to stop it (pruning). Throws like run_training.
using TrialRunner = std::function<TrialRun(
    const RunConfig& cfg, const std::function<bool(const EpochRecord&)>& on_epoch)>;
// run_training; with `defaults` (the app's), each trial's option_notes open its trial log.
// A note on the data (Dataset::note: the files look like another dataset than --dataset says)
// goes to the trial log and, each distinct one once per runner, to `data_note`.
TrialRunner default_trial_runner(std::optional<RunConfig> defaults = std::nullopt,
                                 std::function<void(const std::string&)> data_note = nullptr);

struct SweepOptions {
  std::string dir;
  bool resume = false;
  int worker = 0, num_workers = 1;
  RunConfig base;         // defaults + the spec's base + command-line overrides; params go on top
  std::string spec_text;  // the sweep file, kept as DIR/sweep.yaml (a resume must match it)
  std::function<void(const std::string&)> log;
};

struct SweepOutcome {
  int64_t ran = 0, skipped_done = 0, skipped_other = 0;
  std::vector<TrialRecord> results;  // everything in results.jsonl at the end
};

// Why a sweep refuses a run option in its base, its parameters or on its command line, or ""
// when it takes it: every trial logs to DIR/trials (log) and trains (lr-find, summary).
std::string sweep_refused_option(const std::string& key);

// Applies the spec's base mapping (origin: the sweep file); apps do it before command-line
// overrides so flags win over the file.
void apply_sweep_base(const SweepSpec& spec, RunConfig& cfg);
// The trial's config: base (already holding the spec's base mapping), then the trial's
// parameters; per-trial metrics go to DIR/trials/trial-<id>.jsonl.
RunConfig trial_config(const SweepSpec& spec, const RunConfig& base, int64_t i,
                       const std::string& dir);
// The trials' option_notes against `defaults`, one line per note (notes that differ only in
// their numbers are one), for the console: the first trial's note with the number of trials
// that have it ("... [trial 0; 4 of 4 trials]"). Reads at most `max_trials` trials.
std::vector<std::string> sweep_option_notes(const SweepSpec& spec, const RunConfig& base,
                                            const RunConfig& defaults, int64_t max_trials = 10000);

// The checks of a trial's options that RunConfig::validate does not make, made before any trial
// runs (check_sweep_trials; --dry-run for each trial it lists): it trains an epoch to be scored
// by, and one that continues a checkpoint (resume: FILE in the sweep's base) has --epochs, a
// model and an optimizer that fit the file, and, from a mid-epoch file, its batch-order options,
// each file read once and each model checked once.
class TrialChecks {
 public:
  // A usage error when the trial trains no epoch to be scored by (--epochs 0) or cannot
  // continue c.resume.
  void check(const RunConfig& c);

 private:
  std::map<std::string, std::pair<SafetensorsFile, TrainPosition>> files_;
  std::map<std::string, std::string> fits_;  // path + model key -> the error, or ""
};

// Validates the trials (at most max_trials) before any runs and returns the first valid one's
// index (-1 for an empty sweep). Usage errors, either of which would fill the directory with
// failed trials that --resume then skips: every trial invalid (options no trial can run with,
// --width 0), or a listed value that no trial holding it can run with and that cannot run
// beside the base alone either (a typo: optimizer 'adamm', dropout 1.5), named with the
// parameter. A combination only some trials hit stays a failed trial, and so does a sampled
// (min/max) value.
int64_t check_sweep_trials(const SweepSpec& spec, const RunConfig& base,
                           int64_t max_trials = 100000);

// Throws TrialInterrupted when a SIGINT/SIGTERM arrives (StopSignals: the caller should hold one
// for the whole sweep): a trial in training checkpoints and stops, otherwise the sweep stops
// before its next trial; finished trials are recorded.
SweepOutcome run_sweep(const SweepSpec& spec, const SweepOptions& opts, const TrialRunner& runner);
// Usage error when a parameter (a bundle) is named like one of the results' own columns
// (trial, status, test_acc, ...): run_sweep and --dry-run refuse such a file.
void check_param_names(const SweepSpec& spec);
// Usage error when the metric is val_acc/val_loss and a trial holds out no validation split
// (run_sweep and --dry-run check it before anything is written).
void check_val_metric(const SweepSpec& spec, const RunConfig& base);

// For sweep --dry-run: what run_sweep checks of o.dir before its first trial, writing nothing:
// a directory (or none yet), and where it holds recorded trials, this sweep's file
// (o.spec_text), these run options (o.base), and that the run continues them (o.resume) or
// shares them (o.num_workers > 1). Returns those trials.
std::vector<TrialRecord> check_sweep_dir(const SweepSpec& spec, const SweepOptions& o);
// results.jsonl of a sweep directory (unparseable lines, e.g. a torn last line, are skipped).
std::vector<TrialRecord> read_results(const std::string& dir);
// Ranked table: ok trials by the metric, then pruned, then failed.
std::string leaderboard(const SweepSpec& spec, std::vector<TrialRecord> results, size_t top = 20);
// Seed repeats: when the sweep has a "seed" parameter, trials that differ only in the seed form
// one configuration; the table ranks configurations by the mean metric of their ok trials and
// gives the sample standard deviation, min and max over seeds (the noise a difference between
// configurations has to exceed). The seed fixes both the initial weights and the data order, so
// configurations are also compared with the best one seed by seed (paired): the mean of the
// per-seed differences and on how many shared seeds the best one is ahead. Empty when there is
// no seed parameter or no configuration has two finished seeds.
struct SeedGroup {
  std::vector<std::pair<std::string, std::string>> params;  // all but the seed, YAML order
  std::vector<double> metrics;                              // ok trials with a finite metric
  std::vector<std::string> seeds;                           // the seed of each metric
  int not_ok = 0;                                           // pruned or failed trials
  // Trials with an earlier trial's configuration and seed (a random sweep draws with
  // replacement): the same run again, counted once, by the first.
  int repeats = 0;
  double mean = NAN, stddev = NAN, min = NAN, max = NAN;    // over metrics; stddev needs 2
  // Against the first (best) group, over the seeds both finished: mean of (this - best), the
  // number of such seeds and on how many the best group is strictly better.
  double paired_diff = NAN;
  int paired_n = 0, best_ahead = 0;
};
// A line saying the records were scored on more than one test set (TrialRecord::test_data: a
// --resume or a worker with another --data-dir), or "" (also when a parameter sets the data
// directory, the dataset or the test limit); leaderboard() ends with it.
std::string mixed_test_sets_note(const SweepSpec& spec, const std::vector<TrialRecord>& results);
std::vector<SeedGroup> seed_groups(const SweepSpec& spec, const std::vector<TrialRecord>& results);
std::string seed_table(const SweepSpec& spec, const std::vector<TrialRecord>& results);
// "3/8" -> (3, 8), usage errors otherwise.
std::pair<int, int> parse_worker(const std::string& s);

}  // namespace kiln
