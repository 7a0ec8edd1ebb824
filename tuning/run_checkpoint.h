// The checkpoint side of a training run: --save, --resume, --checkpoint-every(-steps) into
// --checkpoint-dir with --keep-last, and SIGINT/SIGTERM (finish the step, checkpoint, stop).
// run_training() wires these into the Trainer; apps turn RunResult::stop_signal into exit
// code 128 + signal.
#pragma once
#include <signal.h>

#include <csignal>
#include <functional>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/json.h"
#include "tuning/options.h"

namespace kiln {

struct RunSession;
struct Dataset;

// All option values of the run as a JSON object of strings (checkpoint metadata "config").
std::string run_config_json(const RunConfig& cfg);
// The options whose value in `now` differs from `was` (both run_config_json objects), as
// "<prefix>key old -> new, ..." ("?" for an old value that is not a string): keys `skip` accepts
// are left out. A key `was` lacks (an option a later kiln added) is compared with the option's
// default, which is how the older kiln ran: "key (not recorded: the default D) -> new".
std::string config_diffs(const JsonValue& was, const JsonValue& now,
                         const std::function<bool(const std::string&)>& skip,
                         const std::string& prefix = "");
// The run options a checkpoint recorded (its "config" metadata, a JSON object of strings), from
// a file read_checkpoint verified; errors start "<what>: ".
JsonValue checkpoint_config(const SafetensorsFile& f, const std::string& what);
// --resume FILE continues FILE's run, as loading a PyTorch optimizer's state_dict restores its
// hyperparameters: each option that neither a flag nor the --config file gives takes the value
// FILE recorded (where FILE predates the option, this kiln's default stands, as that kiln ran).
// Not taken: where and how this invocation runs and what it writes (the kSideEffect options:
// device, data-dir, --save, the checkpoint options...; precision, log, lr-find-csv), summary,
// resume, lr-find, and options with any of `skip_traits` (the ones this invocation does not
// read; for an LR range test, also a training run's epochs and target). Returns "name value"
// for each option whose value it changed.
std::vector<std::string> adopt_resume_options(RunConfig& cfg, const ParsedArgs& args,
                                              unsigned skip_traits);
// --checkpoint-dir, else the directory of --save, else "checkpoints".
std::string checkpoint_dir_for(const RunConfig& cfg);
// ckpt-epoch-<E>.safetensors at an epoch boundary, ckpt-step-<S>.safetensors mid-epoch.
std::string checkpoint_name(const TrainPosition& p);
// Deletes all but the newest `keep` periodic checkpoints in dir (by modification time) among
// those this run has reached: ckpt-epoch-E with E <= upto.epoch, ckpt-step-S with S <= upto.step.
// Returns "" or what could not be deleted ("<dir>/ckpt-epoch-1.safetensors: Is a directory"),
// which the run reports once: the disk then fills as if --keep-last were not given.
// With `run_id`, only checkpoints whose metadata carries it count (another run's in a shared
// directory are left alone).
std::string prune_checkpoints(const std::string& dir, int keep, const TrainPosition& upto,
                              const std::string& run_id = "");
// A fresh run's identity: 16 hex digits hashed from its options (run_config_json), so the same
// command writes the same bytes; a run with other options (seed, data, outputs, ...) differs.
std::string run_id_of(const std::string& config_json);
// Fails early (usage error), before any work, when an output (--save, --log, --lr-find-csv)
// cannot be written: its directory is missing, it is a directory, two outputs or an output and
// an input (--resume, --config, --schedule-file) are the same file; or when the checkpoint
// directory cannot be made. An output directly in `made_dir`, a directory the caller makes
// before the run when it does not exist yet (a sweep's --dir), passes without its directory.
void check_output_paths(const RunConfig& cfg, const std::string& made_dir = "");
namespace detail {
// Test seam, null outside tests: check_output_paths calls it before each look (lstat or stat)
// at a part of the checkpoint directory's path, with that part (a test makes the part before a
// second look at it, as a sweep worker's mkdir can, to show the walk takes no part made
// meanwhile for a broken link, whatever the order of its looks).
extern void (*checkpoint_dir_before_look)(const std::string& part);
}  // namespace detail
// The same outputs against the data files the run has read (Dataset::files; once loaded): an
// output over one of them, or at a name the loader reads for one, is a usage error (--save
// over train-images-idx3-ubyte.gz, or at train-images-idx3-ubyte beside it).
void check_outputs_spare_data(const RunConfig& cfg, const std::vector<const Dataset*>& data);
// What an output at `out` would clobber of `d`: the data file it is (its path), or "a name the
// loader reads before <file>" (a raw t10k-images-idx3-ubyte beside the .gz read: every later
// run would read the output instead); "" when neither.
std::string data_file_clash(const std::string& out, const Dataset& d);
// One output file `path` (named by option `opt`, for messages): its directory exists and takes a
// new file (or, when `in_place` and the file exists, the file takes writes), the name is not
// too long, it is not a directory, and a file replaced by rename is a regular one; with
// `companion`, path + companion is not too long either. Usage errors.
void check_output_file(const char* opt, const std::string& path, bool in_place = false,
                       const char* companion = nullptr);
// Whether two paths name the same existing file (same inode), or, neither existing yet, the
// same name in the same directory however spelt (./x, d/../x).
bool same_file(const std::string& a, const std::string& b);
// A note for a run that starts fresh in a checkpoint directory already holding periodic
// checkpoints (another run's, whose same-named files it will replace), or "".
std::string existing_checkpoints_note(const RunConfig& cfg);

// "N images, labels crc32 XXXXXXXX" (just "N images" without host labels): the training set a
// checkpoint records (CheckpointInfo::train_data) and a resume compares.
std::string train_data_signature(const Dataset& d);
// --epochs against where the --resume checkpoint is (`at`, its position): it counts the whole
// run, so it must cover what the checkpoint has done; with `must_train` (a sweep's trial, which
// is scored by the epochs it runs) it must also leave an epoch to train. A usage error.
void check_resume_epochs(const RunConfig& cfg, const TrainPosition& at, bool must_train = false);
// A mid-epoch checkpoint (`at`, its position; nothing to check at an epoch's end) continues
// only with the batch-order options it was cut from: its recorded config `saved` against this
// run's `now` (run_config_json). A usage error naming the differences (resume_session's check;
// a sweep makes it for each trial before the first).
void check_resume_batches(const std::string& resume, const TrainPosition& at,
                          const JsonValue& saved, const JsonValue& now);
// The model cfg's options build (cfg validated) against the --resume checkpoint `file`
// (verified): the tensors' names and shapes, before anything loads (a sweep checks its trials
// before the first runs). Usage errors.
void check_resume_model(const RunConfig& cfg, const SafetensorsFile& file);
// Restores the session from cfg.resume (model, optimizer, schedule, step), given as `file`
// (read_checkpoint(cfg.resume)); returns where to continue. Differences between the
// checkpoint's config and this run are reported via `log`.
TrainPosition resume_session(RunSession& s, const SafetensorsFile& file,
                             const std::function<void(const std::string&)>& log);
// Writes a checkpoint of the session at p; returns its path.
std::string write_session_checkpoint(RunSession& s, const std::string& path, const TrainPosition& p);
// checkpoint_dir_for(cfg)/checkpoint_name(p), creating the directory, then --keep-last (what
// it could not delete goes to *prune_failed when given); returns the checkpoint's path.
std::string write_periodic_checkpoint(RunSession& s, const TrainPosition& p,
                                      std::string* prune_failed = nullptr);

// SIGINT/SIGTERM handlers for the lifetime of the object (the previous ones are put back).
// The first signal only sets flag(); a second one more than a second later acts as usual
// (a second Ctrl-C kills), which is safe because checkpoints are written atomically; one within
// the second is the same stop delivered twice (GNU timeout signals the process and then its
// process group) and is ignored. SA_RESTART: a system call the signal lands
// in goes on (a write to a pipe its reader has not drained, the epoch line on stdout, would
// otherwise fail with EINTR and lose its text). Objects nest: only the outermost installs
// the handlers and clears the flag, so an app that holds one from its start (data loading,
// between sweep trials) keeps a signal that lands outside a training loop for the next check.
// The last out clears it too: once the previous handlers are back, no stop is pending (a
// library caller's next run_sweep stopped at once on an earlier run's signal).
// Signals are the process's: objects in several threads share the handlers (the first in
// installs them, the last out restores them) and one signal stops every run in the process.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static const volatile std::sig_atomic_t* flag();  // the signal number, 0 while none came
};

}  // namespace kiln
