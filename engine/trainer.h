// Trainer: epochs over a device-resident dataset. Per step: gather batch, forward, fused
// softmax-CE (+ accuracy, summed on the device), backward, optimizer step. Nothing inside an
// epoch waits for the device except where asked (--detect-anomaly, per-step logging): the
// non-finite flag is copied back asynchronously and checked a step later, which is safe
// because the fused step skips non-finite updates on the device.
#pragma once
#include <cmath>
#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/context.h"
#include "engine/dataset.h"
#include "layers/model.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace kiln {

class JsonlWriter;

class StepGraph;

// Each field is the apps' option of the same name (batch_size is --batch-size, early_stop
// --early-stop), and the library's errors name fields by that flag: a library caller reads
// "--batch-size 0: must be >= 1" as TrainOptions::batch_size.
struct TrainOptions {
  int epochs = 1;
  int64_t batch_size = 64;
  int64_t eval_batch_size = 1000;
  bool shuffle = true;
  // CIFAR-10 (3x32x32) training batches: random crop from the image padded by 4 black pixels +
  // horizontal flip (torchvision RandomCrop(32, padding=4), RandomHorizontalFlip()). Evaluation
  // never augments.
  bool augment = false;
  std::string batch_schedule;    // "0:512,5:256,10:128" (epoch:batch), empty: fixed
  bool scale_lr_with_batch = false;  // lr * batch / first batch (linear scaling rule)
  int log_every = 0;             // steps between per-step JSONL records (0: per epoch only)
  // The caller stops the run after this many steps (the LR range test's --num-it; 0: none):
  // batches past it are not checked before training (min_training_batch).
  long long step_limit = 0;
  bool detect_anomaly = false;   // check every step; name the first non-finite layer, and
                                 // warn (to the log) at an epoch's first step past max_loss
  bool grad_report = false;      // per-layer gradient/weight norm table after each epoch
  double target_acc = 0.0;       // stop once val (else test) accuracy reaches it (0: off;
                                 // a double: as a float, 0.86 lay above 86 of 100)
  // Keras EarlyStopping: stop after `early_stop` epochs in a row in which the val (else test,
  // else train) loss (or accuracy) did not improve on its best by more than the delta. 0: off.
  int early_stop = 0;
  double early_stop_delta = 0.0;  // a double, as the metrics (0.01f let 86 -> 87 of 100 count)
  std::string early_stop_metric = "loss";  // loss | acc
  // Keras baseline: the wait only starts over once the metric beats this (NaN: no baseline).
  double early_stop_baseline = NAN;
  // Keras start_from_epoch: the first this many epochs are not watched (a warm-up).
  int early_stop_start = 0;
  EarlyStopRule early_stop_rule() const {
    return {early_stop_metric == "acc", early_stop_delta, early_stop_baseline, early_stop_start};
  }
  // Keras restore_best_weights: keep the weights (and norm buffers) of the best epoch and load
  // them back when the run ends, stopped early or not. Needs early_stop > 0.
  bool restore_best = false;
  // Weights with |w| below this count as zero in the per-epoch weight_sparsity metric.
  float sparsity_threshold = 1e-3f;
  // A finite loss this large also counts as divergence (exit 3): bounded activations (sigmoid)
  // let logits grow without ever overflowing, so a NaN check alone never fires. 0: auto,
  // 100x the chance-level loss ln(classes); < 0: off.
  float max_loss = 0.0f;
  std::string log_path;          // JSONL metrics
  int progress = -1;             // 1 bar, 0 plain lines, -1 auto (bar on a TTY)
  // Replay the full-batch step from a CUDA graph (engine/step_graph.h); ignored on the CPU.
  bool cuda_graphs = false;
  void validate() const;
};

struct EpochRecord {
  int epoch = 0;  // 1-based, as printed
  long long step = 0;
  float lr = 0, momentum = -1;  // as the optimizer used them
  double train_loss = 0, train_acc = 0, test_loss = NAN, test_acc = NAN;
  double val_loss = NAN, val_acc = NAN;  // with a validation split (Trainer::val_set)
  double grad_norm = 0, l1_penalty = 0, l2_penalty = 0;
  double weight_sparsity = 0;  // fraction of weights with |w| < TrainOptions::sparsity_threshold
  // Weight tensors whose gradient was exactly 0 at the epoch's last step: dead ReLUs (every
  // activation <= 0) cut the gradient off; such a net only learns the layers after them.
  int zero_grad_weights = 0;
  double seconds = 0, images_per_s = 0;
  int64_t batch_size = 0;
  std::string to_json() const;
  // What the plateau schedule, --target-acc and --early-stop watch: the validation split's
  // accuracy (acc) or loss, else the test set's, else the training set's.
  double held_out(bool acc) const;
};

struct EvalResult {
  double loss = 0, acc = 0;
  int64_t count = 0;
};

// The one-line warning the trainer logs when weight tensors got an exactly-zero gradient.
std::string dead_gradient_warning(int epoch, int count, const std::string& last);

class Trainer {
 public:
  Trainer(Model& model, Optimizer& opt, Schedule& sched, Context& ctx, const TrainOptions& opts);
  ~Trainer();

  EvalResult evaluate(const Dataset& ds);
  // Runs epochs [start_epoch, opts.epochs); returns the records. Throws Error(Diverged) on a
  // non-finite loss/gradient, naming the first layer (backward order) that went non-finite.
  std::vector<EpochRecord> fit(const Dataset& train, const Dataset* test, int start_epoch = 0);
  // Continues from a checkpoint's position: skips the batches of `from.epoch` already done
  // (same permutation), restores the epoch's train-metric sums, appends to the JSONL log.
  std::vector<EpochRecord> fit(const Dataset& train, const Dataset* test, const TrainPosition& from);

  // A held-out validation split scored after each epoch, before the test set. When set, the
  // plateau schedule and target_acc watch it instead of the test set (Keras monitors val_loss).
  const Dataset* val_set = nullptr;

  // Hooks for apps: called after each epoch (record written to JSONL already), and with log
  // lines meant for the user (progress, grad reports). Return false from on_epoch to stop.
  std::function<bool(const EpochRecord&)> on_epoch;
  std::function<void(const std::string&)> log;
  // Called after every optimizer step (the LR finder records losses through it; it may sync).
  // Return false to stop the run after this step, as Keras's stop_training set in
  // on_train_batch_end: the epoch ends there (its record and on_epoch count the steps run; a
  // checkpoint then marks the epoch done, so a resume starts the next) and no later one starts.
  std::function<bool(long long step, float lr)> on_step;
  // Called by fit() once what it refuses before training is checked (the data against the
  // model, the batches, --log opened), before the first step: the apps print their device line
  // here, so an error knowable before training is not preceded by it.
  std::function<void()> on_start;
  // Loss of the last step, read synchronously (for per-step users such as the LR finder).
  float last_loss();
  long long step() const { return step_; }
  void set_step(long long s) {
    step_ = s;
    ctx_.step = static_cast<uint64_t>(s);  // dropout masks hash the step
  }

  // Checkpointing, driven by the caller: every N epochs and/or N steps the trainer waits for
  // the device and calls on_checkpoint with its position (reason "epoch", "step" or "signal").
  int checkpoint_every_epochs = 0;
  long long checkpoint_every_steps = 0;
  std::function<void(const TrainPosition&, const std::string& reason)> on_checkpoint;
  // Polled after every step and epoch (a signal handler sets it): when non-zero the trainer
  // checkpoints (reason "signal") and returns; stopped() then says so.
  const volatile std::sig_atomic_t* stop_flag = nullptr;
  bool stopped() const { return stopped_; }
  // The position after the last completed step or epoch (train_sums read from the device).
  TrainPosition position();
  const std::vector<EpochRecord>& history() const { return history_; }
  // --restore-best: the best epoch's state_dict (host tensors), for checkpoints; a resumed run
  // sets it back. restored_epoch(): the epoch whose weights fit() loaded back at its end (0:
  // none), with the test set's score of them in restored_test().
  const std::vector<std::pair<std::string, Tensor>>& best_snapshot() const { return best_; }
  void set_best_snapshot(std::vector<std::pair<std::string, Tensor>> s);
  int restored_epoch() const { return restored_epoch_; }
  const EvalResult& restored_test() const { return restored_test_; }
  // The CUDA-graph driver when --cuda-graphs is on for a CUDA context (counters), else null.
  const StepGraph* step_graph() const { return graph_.get(); }

 private:
  std::vector<EpochRecord> fit_epochs(const Dataset& train, const Dataset* test,
                                      const TrainPosition& from, JsonlWriter& jsonl);
  void step_batch(const Tensor& x, const Buffer& labels, int64_t n, float lr, float momentum);
  // *batching turns true once the batches start (their allocations are the ones to retry).
  EvalResult evaluate_impl(const Dataset& ds, bool* batching);
  // Forward..optimizer step; dev: the optimizer reads its step arguments there (graph capture).
  void enqueue_step(const Tensor& x, const Buffer& labels, int64_t n, float lr, float momentum,
                    const OptimStepArgs* dev);
  // Usage error unless the model ends in one vector of class scores per sample, runtime error
  // (naming the dataset and sample) for a label outside [0, classes): the loss would read past
  // its row of logits.
  void check_dataset(const Dataset& ds);
  void check_fit(const Dataset& train, const Dataset* test, const TrainPosition& from);
  void check_nonfinite(bool sync, int epoch);
  void copy_flag();
  void check_loss_bound(double loss, int epoch, const char* what);
  double loss_bound() const;
  bool within_loss_bound(double loss) const;
  std::string loss_bound_text(double loss, int epoch, const char* what);
  std::string divergence_hint() const;  // what to try, leaving out a clipping already on
  std::string largest_grad_layer();
  void loss_and_metrics(const Tensor& logits, const Buffer& labels, int64_t n, float grad_scale,
                        float* dlogits, double* acc);
  std::string grad_report() const;
  // Weight tensors with an exactly-zero last-step gradient: their count, and the name of the last.
  std::string zero_grad_weights(const StepStats& st, int* count) const;

  Model& model_;
  Optimizer& opt_;
  Schedule& sched_;
  Context& ctx_;
  TrainOptions opts_;
  int64_t eval_batch_asked_;  // --eval-batch-size as given (evaluate() halves opts_'s)
  long long step_ = 0;
  Tensor batch_x_;
  Buffer batch_y_;
  Tensor dlogits_, sample_loss_, sample_correct_;
  std::shared_ptr<Buffer> acc_;  // double[3]: loss sum, correct, count (device)
  int acc_epoch_ = -1;           // the epoch whose sums acc_ holds (-1: none in this fit)
  // Pinned copy of the optimizer's non-finite flag, and its event (CUDA builds only).
  [[maybe_unused]] int* host_flag_ = nullptr;
  [[maybe_unused]] cudaEvent_t flag_event_ = nullptr;
  std::vector<EpochRecord> history_;
  TrainPosition pos_;
  std::vector<std::pair<std::string, Tensor>> best_;
  int restored_epoch_ = 0;
  EvalResult restored_test_;
  bool stopped_ = false;
  std::unique_ptr<StepGraph> graph_;
};

}  // namespace kiln
