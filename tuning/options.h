// RunConfig and the option table: one list of named options that the command line
// (--batch-size 128), YAML configs (batch_size: 128) and sweep parameters all set through, so
// a name means the same thing everywhere and a misspelled key is caught with a suggestion.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/dataset.h"
#include "engine/error.h"
#include "engine/trainer.h"
#include "layers/models.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace kiln {

struct RunConfig {
  DataOptions data;
  ModelOptions model;
  OptimOptions optim;
  ScheduleOptions sched;
  TrainOptions train;
  std::string device = "auto";  // auto | cpu | cuda
  uint64_t seed = 0;
  bool deterministic = false;
  int threads = 0;  // CPU path threads (0: every CPU this process may use); results do not change
  std::string precision = "fp32";  // fp32 | tf32 (cuBLAS TF32 tensor cores for dense layers)
  // auto | on | off: ReLUs folded into the conv/norm before them (ModelOptions::fuse). auto
  // folds them on the CPU, where the results are the same bits and the epoch is shorter, and
  // not on CUDA, until a GPU run measures the fused kernels (docs/PERFORMANCE.md). A
  // model.fuse set true in code fuses whatever this says (model_on).
  std::string fuse = "auto";
  bool summary = false;         // print the per-layer table and exit
  // Checkpoints
  std::string save;             // final checkpoint path
  std::string resume;           // checkpoint to resume from
  std::string checkpoint_dir;   // periodic checkpoints go here
  int checkpoint_every = 0;     // epochs (0: off)
  long long checkpoint_every_steps = 0;  // optimizer steps (0: off); mid-epoch, resumes exactly
  int keep_last = 0;            // periodic checkpoints kept (0: all)
  // LR range test
  bool lr_find = false;
  float start_lr = 1e-7f, end_lr = 10.0f;
  int num_it = 100;
  std::string lr_find_csv;
  bool lr_find_val = false;     // smooth the loss of a held-out slice, not the batch loss
  // Where the run came from, for checkpoint metadata
  std::string config_path;
  void validate() const;
  // The per-sample input shape of the dataset before any data is read ([1, 28, 28], or
  // [3, 32, 32] for cifar10).
  Shape input_shape() const;
  // The model these options build, set up but never built (Model::check_setup): its layers'
  // shape checks have run; returns the number of ReLUs --fuse folds.
  int check_model() const;
  // Whether the model is built fused on device d (--fuse, auto resolved).
  bool fuse_on(Device d) const { return fuse == "on" || (fuse == "auto" && d == Device::CPU); }
  // The model options a run on device d builds: `model` with --fuse resolved (a model.fuse set
  // true in code stays). make_session, --summary and kiln_eval all build from it.
  ModelOptions model_on(Device d) const {
    ModelOptions m = model;
    m.fuse = m.fuse || fuse_on(d);
    return m;
  }
};

// What an option means to the tools that compare or ignore options; each row of the table
// says it once, so a new option cannot be forgotten in a list kept elsewhere.
enum OptionTrait : unsigned {
  // Where the run happens and what it writes on the side; the results do not change. A resumed
  // run or a sweep's later worker may change it freely.
  kSideEffect = 1u << 0,
  // How far this invocation goes (--epochs, --resume, --target-acc, --log...): a resumed run
  // may change it without a note; a sweep's trials must agree on it.
  kInvocation = 1u << 1,
  // Decides which rows make up each batch of an epoch: a mid-epoch checkpoint resumes only
  // with the same values.
  kBatchOrder = 1u << 2,
  // The LR range test never reads it (its ramp replaces --lr and the schedule; it writes only
  // its CSV): lr_find names it when set.
  kRangeTestUnused = 1u << 3,
  // Only the LR range test reads it: a training run names it when set.
  kRangeTestOnly = 1u << 4,
};

struct OptionSpec {
  std::string name;     // canonical, hyphenated: "batch-size" (YAML may write batch_size)
  std::string type;     // float | int | bool | string | list
  std::string help;
  std::function<void(RunConfig&, const std::string&)> set;  // value parsed by type first
  std::function<std::string(const RunConfig&)> get;
  unsigned traits = 0;  // OptionTrait bits
};

class OptionTable {
 public:
  void add(OptionSpec spec, unsigned traits = 0);
  const OptionSpec* find(const std::string& name) const;  // accepts '_' for '-'
  // The bool option that "no-NAME" turns off, or nullptr when `key` is no such form.
  const OptionSpec* negated_bool(const std::string& key) const;
  // Sets key=value; `origin` ("--lr", "config.yaml: key 'lr'") prefixes any error.
  void set(RunConfig& cfg, const std::string& key, const std::string& value,
           const std::string& origin) const;
  std::string closest(const std::string& name) const;  // best suggestion for a typo, or ""
  // One line per option; with `defaults` (the app's), each says what leaving it out means.
  // (hide: options the app leaves out of its list, e.g. lr_find's own --lr-find)
  std::string help(const RunConfig* defaults = nullptr,
                   const std::vector<std::string>& hide = {}) const;
  const std::vector<OptionSpec>& specs() const { return specs_; }

 private:
  std::vector<OptionSpec> specs_;
};

// All options of train_mnist/train_cifar/lr_find/sweep trials.
const OptionTable& run_options();
// Whether run option `name` (either spelling) has any of the OptionTrait bits in `traits`;
// false for a name the table does not have.
bool option_has(const std::string& name, unsigned traits);
std::string normalize_key(const std::string& k);  // "batch_size" -> "batch-size"
// Levenshtein, with a swap of two neighbours as one edit (optimal string alignment)
size_t edit_distance(const std::string& a, const std::string& b);
// The name in `names` nearest to k, for "did you mean", or "": within 2 edits and half k's
// length (one for a short k), else the one name k begins with (k of 3 or more characters).
std::string closest_name(const std::string& k, const std::vector<std::string>& names);
// The suggestion for an unknown option `name` among `names` (an app's flags without their
// dashes): a PyTorch/Keras name's option where `names` has it (--learning-rate: 'lr', --gpu:
// 'device'), else closest_name. OptionTable::closest is this over the run options.
std::string closest_option(const std::string& name, const std::vector<std::string>& names);

// Applies a flat YAML mapping of option: value (lists allowed for list options). Unknown keys,
// wrong types and unreadable files are errors naming the file and the key. With `keys`, records
// each option the file set: canonical name -> the key as written.
void apply_yaml_config(RunConfig& cfg, const std::string& path,
                       std::map<std::string, std::string>* keys = nullptr);

struct ParsedArgs {
  bool help = false;
  std::vector<std::string> positional;
  std::string config_path;                         // --config, or ""
  std::map<std::string, std::string> config_keys;  // options the file set: name -> key as written
  std::vector<std::string> flag_keys;  // options set by flags (canonical names; a flag wins)
};
// A usage error raised after parsing (validation, model building) names options as flags
// ("--lr must be >= 0"); when the values it names came from the --config file, the same error
// prefixed with the file and keys ("run.yaml: key 'lr': --lr must be >= 0"). Unchanged when
// any option it names was set by a flag (the flag may be the culprit), and for other errors.
// A flag is "--name" at the start of the message or after a space, '/' or '('.
Error with_config_origin(const Error& e, const ParsedArgs& args);
// The option names an error message quotes as flags ("--lr", "--no-shuffle": "no-shuffle"), in
// order; a "--" inside a path is not one.
std::vector<std::string> flags_named_in(const std::string& message);
// The same for the options a resume took from its checkpoint (`adopted`: adopt_resume_options'
// "name value" list): "--resume run.st: its recorded --init (give --init to set it): ..."; the
// file may be another version's, or edited. Unchanged when any option it names was given now.
Error with_resume_origin(const Error& e, const ParsedArgs& args,
                         const std::vector<std::string>& adopted, const std::string& resume);
// A flag's value taken from the next argument: one that starts with "--" is a flag, the value
// forgotten (`--save --no-shuffle` saved to a file named --no-shuffle; argparse refuses it too),
// a usage error naming both; such a value is written --name=VALUE.
void check_separate_value(const std::string& flag, const std::string& next);
// A finite decimal number (no hex, no overflow or underflow to 0/inf); anything else is a
// usage error "ORIGIN: 'V' is not a finite number".
double parse_float(const std::string& v, const std::string& origin);
// true|false, yes|no, on|off, 1|0 in any case (the words YAML 1.1 reads as booleans); anything
// else is a usage error naming `origin`.
bool parse_bool(const std::string& v, const std::string& origin);
// 1 or 0 for a word parse_bool takes, -1 for anything else (no error).
int bool_word(const std::string& v);
// A bool flag given without '=' (`flag`, as typed; `name`, canonical) followed by a boolean word
// ("--shuffle false", argparse's habit): a usage error saying how to write it.
void check_bool_flag_next(const std::string& flag, const std::string& name,
                          const std::string& next);
// A negated bool flag (`flag` as typed, "--no-shuffle"; `name` canonical, "shuffle") given a
// value: after '=' (`inline_value`, always refused) or as the next argument when that is a
// boolean word. A usage error saying how to write it.
void check_negated_bool_value(const std::string& flag, const std::string& name,
                              const std::string& value, bool inline_value);
// --key value, --key=value, --flag / --no-flag for bools; --config FILE applied first so
// flags override it. Unknown flags are usage errors with a suggestion.
ParsedArgs parse_args(RunConfig& cfg, int argc, char** argv, const OptionTable& table);

// Resolves "auto" to cuda when a GPU answers.
Device resolve_device(const std::string& d);
// --threads resolved: 0 means every CPU this process may use.
int resolve_threads(int threads);

}  // namespace kiln
