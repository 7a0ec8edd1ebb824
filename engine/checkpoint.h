// Checkpoints in the safetensors format: an 8-byte little-endian header length, a JSON header
// {"<name>": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
// and the raw little-endian tensor bytes. Model tensors carry their PyTorch state_dict names
// (so torch/safetensors load them directly), optimizer state is under "optimizer.<name>", and
// the run position, schedule state, config and checksums are strings in __metadata__.
// Files are written atomically (temp file in the same directory, fsync, rename, fsync of the
// directory), so a crash never leaves a partial file under the final name. docs/FORMATS.md
// lists every key.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/context.h"
#include "engine/error.h"  // (what the functions below throw)
#include "engine/file_io.h"
#include "engine/tensor.h"
#include "layers/model.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace kiln {

// ---- The container --------------------------------------------------------------------------

struct StTensor {
  std::string name;
  std::string dtype;           // "F32", "I64", ... as in the safetensors spec
  Shape shape;
  std::vector<uint8_t> data;   // little-endian bytes, numel * element size
};

struct SafetensorsFile {
  std::vector<StTensor> tensors;  // in file order
  std::vector<std::pair<std::string, std::string>> metadata;
  const StTensor* find(const std::string& name) const;
  const std::string* meta(const std::string& key) const;
};

// Bytes per element of a safetensors dtype name, 0 when unknown.
size_t st_dtype_size(const std::string& dtype);
// A shape as the header writes it: "[16,1,3,3]", "[]" for a scalar.
std::string shape_json(const Shape& s);
// Header padded with spaces to a multiple of 8 bytes (as the reference implementation does).
std::vector<uint8_t> encode_safetensors(const SafetensorsFile& f);
// Full structural validation (header length within the file, JSON, dtypes, shapes, offsets in
// range, sized by shape, non-overlapping and covering the data section). `what` starts every
// error message ("checkpoint run.safetensors").
SafetensorsFile decode_safetensors(const uint8_t* data, size_t size, const std::string& what);
SafetensorsFile read_safetensors(const std::string& path);
// The JSON header text of the safetensors file at `path`, read without its data section and
// unvalidated; "" when `path` is no regular file or its header length is not plausible (past
// the file or the 100,000,000-byte limit).
std::string read_safetensors_header(const std::string& path);

// Temp file next to `path` (<path>.tmp.<host>.<pid>.<k>, host a hash of this machine's name),
// write, fsync, rename over `path`, fsync the directory. On failure the temp file is removed,
// `path` is untouched, and a runtime Error names `path`. Temp files for `path` that a killed
// process of this machine left behind are removed first.
// A symbolic link at `path` is written through, as open() and torch.save do: the file it leads
// to is replaced, the link stays.
void write_file_atomic(const std::string& path, const void* data, size_t size);
// Where a write to `path` lands: `path`, or where the symbolic links at its last component lead
// (a dangling link gives its missing target; relative targets are taken from the link's
// directory). "" when 40 links do not end (a loop), where open() fails with ELOOP.
std::string link_target(const std::string& path);
// Whether directory entry `name` is a write_file_atomic temp file of a process of this machine
// that no longer runs (another machine's, on a shared directory, is never stale here).
bool is_stale_temp_file(const std::string& name);
// The temp file write_file_atomic uses for `path` in process `pid`, its k-th write.
std::string atomic_temp_name(const std::string& path, long pid, unsigned k);

uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);  // IEEE 802.3 (as zlib)

// ---- kiln checkpoints -----------------------------------------------------------------------

// 2 since 2026-12-02 (the data checksum covers names, dtypes and shapes, in name order);
// version-1 files still load.
constexpr int kCheckpointFormatVersion = 2;
const char* kiln_version();

// Where a run stands: enough to continue it bit for bit.
// Keras EarlyStopping's rule: higher is better when maximize (mode max), an improvement must
// beat the reference by more than min_delta, epochs up to start_from_epoch (1-based) are not
// watched, and with a baseline (not NaN) the wait only starts over once the metric beats it.
struct EarlyStopRule {
  bool maximize = false;
  double min_delta = 0;
  double baseline = NAN;
  int start_from_epoch = 0;
  // metric is better than ref by more than min_delta (never when either is NaN).
  bool beats(double metric, double ref) const {
    return maximize ? metric > ref + min_delta : metric < ref - min_delta;
  }
};

// Keras EarlyStopping's state: the best watched value so far (NaN: none yet), the watched
// epochs since the wait last started over, and the 1-based epoch that set the best.
struct EarlyStopState {
  double best = NAN;
  int wait = 0, best_epoch = 0;
  // One epoch's metric (as Keras's on_epoch_end): wait grows; an improvement on best becomes
  // the best and, when it also beats the baseline, sets wait back to 0. Returns whether best
  // improved (the epoch whose weights --restore-best keeps).
  bool update(double metric, const EarlyStopRule& rule, int epoch);
  // Whether the run stops after `finished_epoch` (1-based, already passed to update) with this
  // patience: Keras stops once wait reaches it, but never after an epoch that improved on the
  // best (one short of the baseline still counts toward wait) nor after the first epoch.
  bool stops(int patience, int finished_epoch) const {
    return patience > 0 && wait >= patience && best_epoch != finished_epoch && finished_epoch > 1;
  }
};

struct TrainPosition {
  int epoch = 0;          // 0-based epoch in progress (batch == 0: not started yet)
  int64_t batch = 0;      // batches of `epoch` already done
  long long step = 0;     // optimizer steps since the start of the run
  double train_sums[3] = {0, 0, 0};  // loss sum, correct, count over those batches
  float last_lr = 0, last_momentum = -1;
  EarlyStopState early_stop;  // checkpointed so a resumed run stops where the whole run would
  // The held-out accuracy --target-acc watched after the last finished epoch (NaN: none), so a
  // run resumed from the checkpoint of the epoch that reached the target stops too.
  double watched_acc = NAN;
  // The optimizer steps each finished epoch took (epoch_steps.size() == epoch), so a resume
  // sizes a step-based schedule (one-cycle, cyclic, warm-up) from what the run did even when
  // an earlier resume changed the batch options; empty when unknown (checkpoints before
  // 2026-12-05, where the schedule is sized from the step count alone).
  std::vector<long long> epoch_steps = {};
};

struct CheckpointInfo {
  TrainPosition pos;
  uint64_t seed = 0;
  std::string config;        // the caller's JSON object (the run's options), stored verbatim
  std::string kiln_version;  // filled by load
  // --restore-best: the model's state_dict at the best epoch so far (host tensors), stored as
  // "early_stop.best.<name>"; empty when the run keeps none.
  std::vector<std::pair<std::string, Tensor>> early_stop_best;
  // --restore-best loaded epoch N's weights back before this (final) checkpoint was written:
  // the weights are epoch N's, the position and optimizer state the last epoch's. 0: not so.
  int restored_epoch = 0;
  // What the run trained on, "N images, labels crc32 XXXXXXXX" (run_checkpoint.cpp): a resume
  // on other data is named (a mid-epoch one refused). "": unknown (checkpoints before
  // 2026-12-04, or a caller that does not say).
  std::string train_data;
  // The run the checkpoint belongs to (16 hex digits, a hash of the first invocation's options,
  // kept across its resumes): --keep-last deletes only its own run's checkpoints from a
  // directory other runs share. "": unknown
  // (checkpoints before 2026-12-05, or a caller that does not say).
  std::string run_id;
};

// Writes model tensors, optimizer state (when opt) and schedule state (when sched). Waits for
// ctx's stream first so device tensors are complete.
void save_checkpoint(const std::string& path, Context& ctx, Model& model, Optimizer* opt,
                     const Schedule* sched, const CheckpointInfo& info);
// Builds the checkpoint bytes without writing them (tests, fuzzing).
std::vector<uint8_t> encode_checkpoint(Context& ctx, Model& model, Optimizer* opt,
                                       const Schedule* sched, const CheckpointInfo& info);
// Validates everything against the model (and optimizer) first: format version, checksums,
// every expected tensor present with the right dtype and shape, nothing unexpected. Only then
// restores parameters, buffers, optimizer state and steps, and schedule state. Errors are one
// line starting "checkpoint <path>: " (runtime, exit 1; a different model shape is a usage
// error, exit 2).
// A kiln checkpoint's container with its format version and both checksums verified, before
// anything in it is trusted (kiln_eval reads the config through this).
SafetensorsFile decode_checkpoint(const std::vector<uint8_t>& bytes, const std::string& what);
SafetensorsFile read_checkpoint(const std::string& path);
CheckpointInfo load_checkpoint(const std::string& path, Context& ctx, Model& model,
                               Optimizer* opt, Schedule* sched);
CheckpointInfo load_checkpoint_bytes(const std::vector<uint8_t>& bytes, const std::string& what,
                                     Context& ctx, Model& model, Optimizer* opt, Schedule* sched);
// The same from a container read_checkpoint/decode_checkpoint has already verified (a resume
// reads its position first, to size the schedule, and the file only once).
CheckpointInfo load_checkpoint_file(const SafetensorsFile& f, const std::string& what, Context& ctx,
                                    Model& model, Optimizer* opt, Schedule* sched);
// The model's tensors against a verified checkpoint's, before anything loads (a sweep checks
// each trial's model before its first trial): each present with the model's shape, and no model
// tensor the model lacks. Usage errors, as load_checkpoint's.
void check_checkpoint_model(const SafetensorsFile& f, const std::string& what, Model& model);
// The optimizer a checkpoint was saved with (its __metadata__ "optimizer", `saved`; "" for one
// saved without optimizer state) against this run's `name`: a usage error when one was saved
// and it is another (load_checkpoint's check; a sweep makes it for each trial before the first).
void check_checkpoint_optimizer(const std::string& saved, const std::string& what,
                                const std::string& name);
// The position's epoch, batch and step from a verified checkpoint's metadata.
TrainPosition checkpoint_position(const SafetensorsFile& f, const std::string& what);
// The run_id and step in the __metadata__ of the checkpoint at `path`, reading its header only
// (no checksum is verified); "" and -1 for what the file lacks or when it is no readable
// safetensors file.
struct CheckpointTag {
  std::string run_id;
  long long step = -1;
};
CheckpointTag checkpoint_tag(const std::string& path);
std::string checkpoint_run_id(const std::string& path);  // checkpoint_tag(path).run_id

}  // namespace kiln
