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
};

struct RunResult {
  Device device = Device::CPU;
  std::vector<EpochRecord> epochs;
  double test_acc = NAN, test_loss = NAN, train_seconds = 0;
  int64_t num_params = 0;
  int stop_signal = 0;          // SIGINT/SIGTERM stopped the run (after a checkpoint)
  std::string last_checkpoint;  // the newest checkpoint this run wrote (periodic or signal)
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
};
// load_data false: only the model (for --summary).
std::unique_ptr<RunSession> make_session(const RunConfig& cfg, bool load_data = true);

RunResult run_training(const RunConfig& cfg, const RunHooks& hooks);

// The notes a run prints before it trains ("note: ..." lines): options set away from
// `defaults` that the chosen model, optimizer or schedule never reads, --precision on a CPU, a
// cycling schedule that gives SGD/RMSprop a momentum, and early stopping or plateau watching the
// test set. Empty for a run that needs none.
std::vector<std::string> option_notes(const RunConfig& cfg, const RunConfig& defaults);

}  // namespace kiln
