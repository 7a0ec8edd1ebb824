// Learning-rate (and momentum) schedules with PyTorch/Keras semantics. A schedule is asked
// for the lr at (epoch, step-in-run) and told about epoch ends (for plateau and manual files).
#pragma once
#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace kiln {

struct ScheduleOptions {
  std::string name = "constant";  // constant|step|multistep|exponential|inverse-time|
                                  // exponential-step|inverse-time-step|
                                  // inverse-sqrt-epoch|inverse-sqrt-step|cosine|cosine-restarts|
                                  // cyclic|one-cycle|plateau|manual
  // NaN (not given): filled by resolved(): 0.1 for step and multistep (StepLR's and
  // MultiStepLR's default) and for exponential (ExponentialLR has no default: the run notes it
  // and suggests 0.95), 1.0 for cyclic (CyclicLR's exp_range gamma).
  float gamma = NAN;              // step/multistep/exponential/exp_range factor
  int step_size = 10;             // StepLR period in epochs
  std::vector<int> milestones;    // MultiStepLR epochs
  float decay = 0.0f;             // inverse-time d
  float k = 1.0f;                 // inverse-sqrt multiplier
  int t_max = 0;                  // cosine period in epochs (0: the run's epochs)
  int t_mult = 1;                 // cosine warm restarts period multiplier
  float eta_min = 0.0f;
  float max_lr = 0.0f;            // cyclic/one-cycle peak (0: 10x base for cyclic, lr for one-cycle)
  float base_lr = 0.0f;           // cyclic lower bound (0: lr)
  int step_size_up = 0;           // cyclic half cycle in steps (0: step_size_up_epochs epochs)
  int step_size_up_epochs = 2;    // cyclic half cycle in epochs (of the first epoch's steps)
  std::string cyclic_mode = "triangular";  // triangular|triangular2|exp_range
  bool cycle_momentum = true;     // cyclic/one-cycle momentum cycling
  // NaN (not given): PyTorch's defaults, 0.8/0.9 for CyclicLR and 0.85/0.95 for OneCycleLR.
  float base_momentum = NAN, max_momentum = NAN;
  float pct_start = 0.3f, div_factor = 25.0f, final_div_factor = 1e4f;  // one-cycle
  std::string anneal_strategy = "cos";
  float factor = 0.1f;            // plateau
  int patience = 10, cooldown = 0;
  float min_lr = 0.0f;
  double threshold = 1e-4;  // a double, as the metric it compares (torch's float is one)
  std::string threshold_mode =
      "rel";  // plateau: rel (best * (1 -+ threshold)) | abs (best -+ threshold)
  std::string mode = "min";       // plateau watches the loss (min) or the accuracy (max)
  std::string file;               // manual: "epoch lr" lines, re-read every epoch
  int warmup_steps = 0;           // linear warm-up composed with any schedule
  int warmup_epochs = 0;
  void validate() const;
  ScheduleOptions resolved() const;  // the NaN (not given) fields filled with their defaults
  // Options set away from `defaults` that the chosen schedule never reads (--gamma with
  // cosine, --patience without plateau, ...): one sentence each, for a "note:" line.
  std::vector<std::string> ignored(const ScheduleOptions& defaults) const;
};

class Schedule {
 public:
  virtual ~Schedule() = default;
  // epoch is 0-based; step counts optimizer steps since the start of the run.
  virtual float lr(int epoch, long long step) = 0;
  // Momentum for this step, or < 0 when the schedule does not drive momentum.
  virtual float momentum(int /*epoch*/, long long /*step*/) { return -1.0f; }
  // After each epoch with the metric the plateau schedule watches: an accuracy when
  // watches_accuracy() (plateau mode max), else a loss. In double: 0.2 -> 0.3 is no gain of
  // more than 0.1 (torch's doubles), but it is in float (0.30000001 > 0.2f + 0.1f).
  virtual void on_epoch_end(int /*epoch*/, double /*metric*/) {}
  // What the last on_epoch_end has to say (a manual file's re-read that failed and was not
  // taken), once, then "": the trainer logs it as a warning.
  virtual std::string take_note() { return ""; }
  virtual bool watches_accuracy() const { return false; }
  // True when the LR is a function of the step within the epoch, not just of the epoch.
  virtual bool per_step() const { return false; }
  // Mutable state for checkpoints: "" for schedules that are pure functions of (epoch, step);
  // set_state() takes what state() returned and throws on text it cannot read.
  virtual std::string state() const { return ""; }
  virtual void set_state(const std::string& /*s*/) {}
  // A run resumed with another --lr: the schedules that compute their lr from it follow it; one
  // that keeps its lr in its state (plateau, after its cuts) scales that lr by new / old instead,
  // so its cuts carry over. Returns the lr it now holds, or < 0 where it holds none.
  virtual double rescale_lr(double /*ratio*/) { return -1.0; }
};

// base_lr: the optimizer's lr; steps: the optimizer steps of each epoch of the run (they differ
// under a batch-size schedule). One-cycle spans their sum, --warmup-epochs the first entries,
// and the cyclic half cycle without step_size_up is step_size_up_epochs of the first epoch's.
std::unique_ptr<Schedule> make_schedule(const ScheduleOptions& opts, float base_lr,
                                        const std::vector<long long>& steps);
// The same for `epochs` epochs of `steps_per_epoch` steps each.
std::unique_ptr<Schedule> make_schedule(const ScheduleOptions& opts, float base_lr,
                                        long long steps_per_epoch, int epochs);

}  // namespace kiln
