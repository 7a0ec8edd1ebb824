// run_training: the whole of a training run from a RunConfig (data, model, optimizer,
// schedule, trainer, checkpoints), shared by train_mnist, train_cifar, lr_find and sweep trials.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/trainer.h"
#include "tuning/options.h"

namespace kiln {

struct RunHooks {
  std::function<void(const std::string&)> log;           // user-facing lines
  std::function<bool(const EpochRecord&)> on_epoch;       // false stops the run
  // What the data files look like against --dataset (Dataset::note, e.g. Fashion-MNIST's files
  // read as MNIST); when unset these go to `log` with the other notes.
  std::function<void(const std::string&)> data_note;
  // Called once the run's outputs, data, resume checkpoint and fit are checked, before the first
  // step (Trainer::on_start): the apps print their device line here, after any such error.
  std::function<void()> ready;
  // A sweep's trial: a --resume that leaves no epoch to train is a usage error (nothing to score).
  bool must_train = false;
};

struct RunResult {
  Device device = Device::CPU;
  std::vector<EpochRecord> epochs;
  double test_acc = NAN, test_loss = NAN, train_seconds = 0;
  int64_t num_params = 0;
  int stop_signal = 0;          // SIGINT/SIGTERM stopped the run (after a checkpoint)
  std::string last_checkpoint;  // the newest checkpoint this run wrote (periodic or signal)
  int restored_epoch = 0;  // --restore-best loaded this epoch's weights back at the end (0: none)
  std::string test_data;   // the test set scored: "N images, labels crc32 X" (a sweep compares)
};

// Everything a run holds, built from a config; apps that need more than run_training (the LR
// finder) build one and drive its parts.
struct RunSession {
  RunConfig cfg;
  Device device;
  std::unique_ptr<Context> ctx;
  Dataset train, val, test;  // val: empty without --val-split
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<Schedule> sched;
  std::unique_ptr<Trainer> trainer;
  // This run's identity in its checkpoints (a hash of its options; a resume takes its
  // checkpoint's): pruning with --keep-last deletes only checkpoints that carry it.
  std::string run_id;
};
// load_data false: only the model (for --summary). `resume_at`: the position the run resumes
// from (schedule_steps).
std::unique_ptr<RunSession> make_session(const RunConfig& cfg, bool load_data = true,
                                         const TrainPosition* resume_at = nullptr);

// The optimizer steps of each epoch a schedule is sized by. From the batch each epoch uses;
// for a run resumed in epoch E (`resume_at`) whose first E epochs took another number of steps
// than these options give (the batch size, the batch schedule or the training set changed on an
// earlier resume), the past epochs take the steps the checkpoint records for each (older
// checkpoints: the steps before epoch E shared out), so a schedule
// sized by the run (one-cycle, warm-up in epochs, cyclic's default half cycle) continues its
// curve from where it is instead of jumping (torch's OneCycleLR keeps its total_steps so).
std::vector<long long> schedule_steps(long long samples, const TrainOptions& t,
                                      const TrainPosition* resume_at);

RunResult run_training(const RunConfig& cfg, const RunHooks& hooks);

// The notes a run prints before it trains ("note: ..." lines): options set away from
// `defaults` that the chosen model, optimizer or schedule never reads, --precision on a CPU, a
// cycling schedule that gives SGD/RMSprop a momentum, and early stopping or plateau watching the
// test set. Empty for a run that needs none.
std::vector<std::string> option_notes(const RunConfig& cfg, const RunConfig& defaults);

}  // namespace kiln
