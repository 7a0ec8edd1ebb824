// The option table. Each row binds a name to a field of RunConfig through a setter/getter,
// parsing the text by type with errors that name the option and the bad value.
#include "tuning/options.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <limits>
#include <locale>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <type_traits>

#include "engine/error.h"
#include "engine/json.h"
#include "engine/numtext.h"
#include "engine/parallel.h"
#include "engine/precision.h"

namespace kiln {

double parse_float(const std::string& v, const std::string& origin) {
  // Decimal only: strtod also reads hex ("0x10" = 16), which no YAML or Python user means.
  KILN_USAGE_CHECK(v.find_first_of("xX") == std::string::npos,
                   origin << ": '" << v << "' is not a finite number");
  char* end = nullptr;
  errno = 0;
  double d = strtod_c(v.c_str(), &end);
  KILN_USAGE_CHECK(!v.empty() && end && *end == 0 && errno == 0 && std::isfinite(d),
                   origin << ": '" << v << "' is not a finite number");
  return d;
}

namespace {

// A double headed for a float field: past FLT_MAX it would be inf, below FLT_MIN 0 (or a
// denormal), each silently.
float to_float(double d, const std::string& v) {
  // Judged after the rounding: FLT_MAX written exactly ("3.4028235e+38", as a checkpoint's config
  // records it) is a little above FLT_MAX as a double, and must read back.
  KILN_USAGE_CHECK(std::isfinite(static_cast<float>(d)),
                   ": '" << v << "' is out of range (a float holds at most 3.4e38)");
  KILN_USAGE_CHECK(d == 0 || std::fpclassify(static_cast<float>(d)) == FP_NORMAL,
                   ": '" << v << "' is too small for a float (|x| >= 1.2e-38, or 0)");
  return static_cast<float>(d);
}

long long parse_int(const std::string& v, const std::string& origin) {
  KILN_USAGE_CHECK(v.find_first_of("xX") == std::string::npos,  // strtod would read hex
                   origin << ": '" << v << "' is not an integer");
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  KILN_USAGE_CHECK(errno != ERANGE,
                   origin << ": '" << v << "' is out of range (at most 9223372036854775807)");
  if (end && *end != 0) {  // accept 1e3-style integers from YAML/sweeps when exact
    char* fend = nullptr;
    double d = strtod_c(v.c_str(), &fend);
    KILN_USAGE_CHECK(fend && *fend == 0 && std::isfinite(d) && d == std::floor(d),
                     origin << ": '" << v << "' is not an integer");
    // (below 2^53 every integer and no fraction rounds to one: a sweep's int_uniform bounds,
    // written shortest, reach 2^53 - 2 as 9.00719925474099e+15; 2^53 comes as digits)
    KILN_USAGE_CHECK(std::fabs(d) < 9007199254740992.0,
                     origin << ": '" << v
                            << "' is not an integer a double holds exactly (from 2^53 on, write "
                               "integers in plain digits)");
    return static_cast<long long>(d);
  }
  KILN_USAGE_CHECK(!v.empty() && errno == 0, origin << ": '" << v << "' is not an integer");
  return x;
}

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  return s;
}

}  // namespace

// 1 or 0 for a word YAML 1.1 reads as a boolean (any case), -1 for anything else.
int bool_word(const std::string& v) {
  const std::string s = lowercase(v);
  if (s == "true" || s == "1" || s == "yes" || s == "on") return 1;
  if (s == "false" || s == "0" || s == "no" || s == "off") return 0;
  return -1;
}

namespace {

// on|off switches (YAML 1.1 booleans accepted too: true/false, yes/no, 1/0, any case).
bool parse_on_off(const std::string& v) {
  const int b = bool_word(v);
  KILN_USAGE_CHECK(b >= 0, ": '" << v << "' is not on|off");
  return b == 1;
}

std::string fmt(double v) {
  ClassicOStringStream os;
  os << v;
  return os.str();
}

// The shortest text that reads back as exactly v (a checkpoint's config must rebuild the same
// validation split): "0.1", not "0.10000000000000001".
std::string fmt_exact(double v) {
  CLocaleScope c;  // '.' whatever the host's locale
  char buf[32];
  for (int p = 6; p <= 17; ++p) {
    std::snprintf(buf, sizeof(buf), "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// The same for a float field: "0.0012345678" stays that, not "0.00123457" (6 digits, which
// reads back as another float: a checkpoint's config must rebuild the run, and a resume with
// another value must be told it changed). Non-finite values (unset NaN defaults) as fmt.
std::string fmt_exact_float(float v) {
  if (!std::isfinite(v)) return fmt(v);
  CLocaleScope c;
  char buf[32];
  for (int p = 6; p <= 9; ++p) {
    std::snprintf(buf, sizeof(buf), "%.*g", p, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}

// Row builders: the accessor returns a reference to the field.
template <typename F>
OptionSpec opt_float(const std::string& name, const std::string& help, F field) {
  return {name, "float", help,
          [field](RunConfig& c, const std::string& v) {
            using T = std::remove_reference_t<decltype(field(c))>;  // float, or double
            const double d = parse_float(v, "");
            if constexpr (std::is_same_v<T, float>)
              field(c) = to_float(d, v);
            else
              field(c) = d;
          },
          [field](const RunConfig& c) {
            auto v = field(const_cast<RunConfig&>(c));
            if constexpr (std::is_same_v<decltype(v), double>)
              return fmt_exact(v);
            else
              return fmt_exact_float(v);
          }};
}
template <typename F>
OptionSpec opt_int(const std::string& name, const std::string& help, F field) {
  return {name, "int", help,
          [field](RunConfig& c, const std::string& v) {
            using T = std::remove_reference_t<decltype(field(c))>;
            const long long x = parse_int(v, "");
            // A value past the field's type is refused, not wrapped (2^32 + 1 epochs was 1).
            bool fits;
            if constexpr (std::is_signed_v<T>)
              fits = x >= std::numeric_limits<T>::min() && x <= std::numeric_limits<T>::max();
            else
              fits = x >= 0 && static_cast<unsigned long long>(x) <= std::numeric_limits<T>::max();
            // Both ends named: "--seed -1 ... (at most 2^63-1)" read as a number too large.
            KILN_USAGE_CHECK(
                fits, ": '" << v << "' is out of range ("
                            << (std::is_signed_v<T>
                                    ? static_cast<long long>(std::numeric_limits<T>::min())
                                    : 0LL)
                            << " to "
                            << std::min<unsigned long long>(std::numeric_limits<T>::max(),
                                                            std::numeric_limits<long long>::max())
                            << ")");
            field(c) = static_cast<T>(x);
          },
          [field](const RunConfig& c) { return std::to_string(field(const_cast<RunConfig&>(c))); }};
}
template <typename F>
OptionSpec opt_bool(const std::string& name, const std::string& help, F field) {
  return {name, "bool", help, [field](RunConfig& c, const std::string& v) { field(c) = parse_bool(v, ""); },
          [field](const RunConfig& c) { return std::string(field(const_cast<RunConfig&>(c)) ? "true" : "false"); }};
}
template <typename F>
OptionSpec opt_str(const std::string& name, const std::string& help, F field) {
  return {name, "string", help, [field](RunConfig& c, const std::string& v) { field(c) = v; },
          [field](const RunConfig& c) { return field(const_cast<RunConfig&>(c)); }};
}

// A file or directory name: an empty one would silently mean "not set" (no checkpoint, no
// log), so it is a usage error; leave the option out instead. `read_back` names the later run
// that opens the path a checkpoint recorded (kiln_eval's default data-dir, the --schedule-file a
// --resume adopts): such a path must be UTF-8 text, since the checkpoint records options as
// JSON text, which cannot hold a byte such as 0xff (a Latin-1 name): it was written as U+00FF
// and read back as "\xc3\xbf", another path, which the later run then failed to open.
template <typename F>
OptionSpec opt_path(const std::string& name, const std::string& help, F field,
                    const char* read_back = nullptr) {
  OptionSpec o = opt_str(name, help, field);
  auto set = o.set;
  o.set = [set, name, read_back](RunConfig& c, const std::string& v) {
    KILN_USAGE_CHECK(!v.empty(), "an empty path (leave --" << name << " out instead)");
    if (read_back) {
      const size_t bad = utf8_error_offset(v);
      if (bad != std::string::npos) {
        char byte[8];
        std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(v[bad]));
        KILN_USAGE_FAIL(printable(v)
                        << " is not UTF-8 text (byte " << byte << " at offset " << bad
                        << "): a checkpoint records it as JSON text, which cannot "
                           "hold that byte, and "
                        << read_back << " would read back another path; rename it or use a link");
      }
    }
    set(c, v);
  };
  return o;
}

OptionTable build_table() {
  OptionTable t;
  // data
  t.add(opt_str("dataset", "mnist | fashion-mnist | cifar10",
                [](RunConfig& c) -> std::string& { return c.data.dataset; }),
        kBatchOrder);
  t.add(opt_path(
            "data-dir", "directory holding the datasets (scripts/fetch_data.sh fills data/)",
            [](RunConfig& c) -> std::string& { return c.data.data_dir; },
            "kiln_eval (without --data-dir)"),
        kSideEffect);
  t.add(opt_bool("normalize", "per-dataset mean/std input normalisation", [](RunConfig& c) -> bool& { return c.data.normalize; }));
  t.add(opt_int("train-limit", "use only the first N training samples (0: all)",
                [](RunConfig& c) -> int64_t& { return c.data.train_limit; }),
        kBatchOrder);
  t.add(opt_int("test-limit", "use only the first N test samples (0: all)", [](RunConfig& c) -> int64_t& { return c.data.test_limit; }));
  t.add(opt_float("val-split",
                  "hold out this last fraction of the training samples for validation (Keras "
                  "validation_split); plateau and --target-acc then watch it",
                  [](RunConfig& c) -> double& { return c.data.val_split; }),
        kBatchOrder);
  t.add(opt_bool("augment",
                 "CIFAR-10 training batches: random crop (padding 4, black) + horizontal flip",
                 [](RunConfig& c) -> bool& { return c.train.augment; }));
  // model
  t.add(opt_str("model", "mlp | cnn | cifar", [](RunConfig& c) -> std::string& { return c.model.model; }));
  t.add(opt_int("width", "MLP hidden width", [](RunConfig& c) -> int& { return c.model.width; }));
  t.add(opt_int("depth", "MLP hidden layers", [](RunConfig& c) -> int& { return c.model.depth; }));
  t.add(opt_str("activation", "relu | sigmoid | tanh", [](RunConfig& c) -> std::string& { return c.model.activation; }));
  t.add(opt_str(
      "norm",
      "none | batch | group (torch's: batch norm's running stats with momentum 0.1, i.e. Keras "
      "momentum=0.9 (Keras' default 0.99 is torch's 0.01), eps 1e-5, unbiased running variance)",
      [](RunConfig& c) -> std::string& { return c.model.norm; }));
  t.add(opt_int("groups", "group norm groups", [](RunConfig& c) -> int& { return c.model.groups; }));
  t.add(opt_str("norm-position", "before | after the activation", [](RunConfig& c) -> std::string& { return c.model.norm_position; }));
  t.add(opt_float("dropout", "dropout probability after each block", [](RunConfig& c) -> float& { return c.model.dropout; }));
  t.add(opt_str("dropout-kind",
                "element | channel (Dropout2d: one draw per sample and channel after conv blocks)",
                [](RunConfig& c) -> std::string& { return c.model.dropout_kind; }));
  t.add(opt_int("pool-after", "cnn: conv layers before the maxpool (0..7; 4: after the 1x1, RF 7)", [](RunConfig& c) -> int& { return c.model.pool_after; }));
  t.add(opt_str("init",
                "default (PyTorch's) | kaiming | kaiming_normal (ReLU gain sqrt 2, fan_in) | "
                "xavier | xavier_normal (gain 1), torch's; kaiming = Keras he_uniform, xavier = "
                "glorot_uniform (both names taken); biases keep PyTorch's default",
                [](RunConfig& c) -> std::string& { return c.model.init; }));
  // optimizer
  t.add(opt_str("optimizer", "sgd | adam | adamw | rmsprop", [](RunConfig& c) -> std::string& { return c.optim.name; }));
  t.add(opt_float("lr", "learning rate", [](RunConfig& c) -> float& { return c.optim.lr; }),
        kRangeTestUnused);
  t.add(opt_float("momentum", "SGD/RMSprop momentum", [](RunConfig& c) -> float& { return c.optim.momentum; }));
  t.add(opt_float("dampening", "SGD dampening", [](RunConfig& c) -> float& { return c.optim.dampening; }));
  t.add(opt_bool("nesterov", "Nesterov momentum", [](RunConfig& c) -> bool& { return c.optim.nesterov; }));
  t.add(opt_float("beta1", "Adam beta1", [](RunConfig& c) -> float& { return c.optim.beta1; }));
  t.add(opt_float("beta2", "Adam beta2", [](RunConfig& c) -> float& { return c.optim.beta2; }));
  t.add(opt_float("eps",
                  "Adam/RMSprop epsilon, added to sqrt(v) as torch does (Keras' RMSprop adds it "
                  "under the root)",
                  [](RunConfig& c) -> float& { return c.optim.eps; }));
  t.add(opt_float("alpha", "RMSprop smoothing (torch's alpha, Keras' rho)",
                  [](RunConfig& c) -> float& { return c.optim.alpha; }));
  t.add(
      opt_float("weight-decay",
                "weight decay on the weights (coupled for sgd/adam/rmsprop, decoupled for adamw; "
                "default 0, adamw 0.01 as in PyTorch; not biases and norm parameters: --decay-all "
                "decays them too, as PyTorch's single parameter group does)",
                [](RunConfig& c) -> float& { return c.optim.weight_decay; }));
  t.add(opt_bool("decay-all", "also decay biases and norm parameters", [](RunConfig& c) -> bool& { return c.optim.decay_all; }));
  t.add(opt_float("clipnorm", "clip each gradient tensor to this L2 norm (Keras clipnorm)", [](RunConfig& c) -> float& { return c.optim.clipnorm; }));
  t.add(opt_float("global-clipnorm", "clip the global gradient norm (clip_grad_norm_)", [](RunConfig& c) -> float& { return c.optim.global_clipnorm; }));
  t.add(opt_float("clipvalue", "clip each gradient element to [-x, x]", [](RunConfig& c) -> float& { return c.optim.clipvalue; }));
  t.add(opt_float("l1",
                  "L1 penalty on weights (l1 * sum |w| in the objective; logged as l1_penalty, not "
                  "in train_loss, val_loss or test_loss, which early stopping and plateau watch; "
                  "Keras' val_loss includes it)",
                  [](RunConfig& c) -> float& { return c.optim.l1; }));
  t.add(opt_float("l2",
                  "L2 penalty on weights (l2 * sum w^2 in the objective, Keras' l2(x); logged as "
                  "l2_penalty, not in the losses, as --l1)",
                  [](RunConfig& c) -> float& { return c.optim.l2; }));
  t.add(opt_bool("penalize-all", "L1/L2 on biases and norm parameters too", [](RunConfig& c) -> bool& { return c.optim.penalize_all; }));
  // schedule
  t.add(
      opt_str(
          "schedule",
          "constant|step|multistep|exponential|exponential-step|inverse-time|"
          "inverse-time-step|inverse-sqrt-epoch|inverse-sqrt-step|cosine|cosine-restarts|"
          "cyclic|one-cycle|plateau|manual (per optimizer step: the -step ones, cyclic, one-cycle; "
          "the others per epoch)",
          [](RunConfig& c) -> std::string& { return c.sched.name; }),
      kRangeTestUnused);
  t.add(opt_float("gamma",
                  "step/multistep/exponential(-step)/exp_range factor (default 0.1; cyclic 1.0)",
                  [](RunConfig& c) -> float& { return c.sched.gamma; }),
        kRangeTestUnused);
  t.add(opt_int("step-size", "StepLR period (epochs)",
                [](RunConfig& c) -> int& { return c.sched.step_size; }),
        kRangeTestUnused);
  t.add({"milestones", "list", "MultiStepLR epochs, e.g. 30,60",
         [](RunConfig& c, const std::string& v) {
           // ("" is none; an empty item, "1,,2" or "30,", is a slip: it was dropped)
           KILN_USAGE_CHECK(v.empty() || (v.front() != ',' && v.back() != ',' &&
                                          v.find(",,") == std::string::npos),
                            ": '" << v << "' has an empty item (epochs and commas, e.g. 30,60)");
           c.sched.milestones.clear();
           std::stringstream ss(v);
           std::string item;
           while (std::getline(ss, item, ',')) {
             const long long m = parse_int(item, "");  // an int: 2^32 + 1 wrapped to 1
             KILN_USAGE_CHECK(m >= INT_MIN && m <= INT_MAX,
                              ": '" << item << "' is out of range (at most 2147483647)");
             c.sched.milestones.push_back(static_cast<int>(m));
           }
         },
         [](const RunConfig& c) {
           std::string s;
           for (int m : c.sched.milestones) s += (s.empty() ? "" : ",") + std::to_string(m);
           return s;
         }},
        kRangeTestUnused);
  t.add(opt_float("decay",
                  "inverse-time decay d: lr0/(1+d*t), t the 0-based epoch (inverse-time-step: the "
                  "step, as Keras SGD(decay=d))",
                  [](RunConfig& c) -> float& { return c.sched.decay; }),
        kRangeTestUnused);
  t.add(opt_float(
            "k",
            "inverse-sqrt multiplier: k/sqrt(t)*lr0, t the 1-based epoch (-step: the 1-based step)",
            [](RunConfig& c) -> float& { return c.sched.k; }),
        kRangeTestUnused);
  t.add(opt_int("t-max",
                "cosine: epochs from the lr to eta-min (torch's T_max, half a period); "
                "cosine-restarts: the first period (T_0). 0: the run's epochs",
                [](RunConfig& c) -> int& { return c.sched.t_max; }),
        kRangeTestUnused);
  t.add(opt_int("t-mult", "cosine warm-restart period multiplier",
                [](RunConfig& c) -> int& { return c.sched.t_mult; }),
        kRangeTestUnused);
  t.add(opt_float("eta-min", "cosine minimum lr",
                  [](RunConfig& c) -> float& { return c.sched.eta_min; }),
        kRangeTestUnused);
  t.add(opt_float("max-lr", "cyclic/one-cycle peak lr (0: one-cycle --lr, cyclic 10x the base lr)",
                  [](RunConfig& c) -> float& { return c.sched.max_lr; }),
        kRangeTestUnused);
  t.add(opt_float("base-lr", "cyclic lower lr (0: --lr)",
                  [](RunConfig& c) -> float& { return c.sched.base_lr; }),
        kRangeTestUnused);
  t.add(opt_int("step-size-up", "cyclic half cycle in steps (torch's; 0: --step-size-up-epochs)",
                [](RunConfig& c) -> int& { return c.sched.step_size_up; }),
        kRangeTestUnused);
  t.add(opt_int("step-size-up-epochs",
                "cyclic half cycle in epochs (of the first epoch's steps); a run of whole cycles "
                "(--epochs a multiple of twice this) ends at the low lr, as Smith's recipe stops",
                [](RunConfig& c) -> int& { return c.sched.step_size_up_epochs; }),
        kRangeTestUnused);
  t.add(opt_str("cyclic-mode", "triangular | triangular2 | exp_range",
                [](RunConfig& c) -> std::string& { return c.sched.cyclic_mode; }),
        kRangeTestUnused);
  t.add(opt_bool("cycle-momentum", "cycle momentum inversely to lr (cyclic, one-cycle)",
                 [](RunConfig& c) -> bool& { return c.sched.cycle_momentum; }),
        kRangeTestUnused);
  t.add(opt_float("base-momentum",
                  "lower momentum when cycling (default: cyclic 0.8, one-cycle 0.85)",
                  [](RunConfig& c) -> float& { return c.sched.base_momentum; }),
        kRangeTestUnused);
  t.add(
      opt_float("max-momentum", "upper momentum when cycling (default: cyclic 0.9, one-cycle 0.95)",
                [](RunConfig& c) -> float& { return c.sched.max_momentum; }),
      kRangeTestUnused);
  t.add(opt_float("pct-start", "one-cycle warm-up fraction",
                  [](RunConfig& c) -> float& { return c.sched.pct_start; }),
        kRangeTestUnused);
  t.add(opt_float("div-factor", "one-cycle initial lr = max_lr/div_factor",
                  [](RunConfig& c) -> float& { return c.sched.div_factor; }),
        kRangeTestUnused);
  t.add(opt_float("final-div-factor", "one-cycle final lr = initial/final_div_factor",
                  [](RunConfig& c) -> float& { return c.sched.final_div_factor; }),
        kRangeTestUnused);
  t.add(opt_str("anneal-strategy", "one-cycle cos | linear",
                [](RunConfig& c) -> std::string& { return c.sched.anneal_strategy; }),
        kRangeTestUnused);
  t.add(opt_float("factor", "plateau reduction factor",
                  [](RunConfig& c) -> float& { return c.sched.factor; }),
        kRangeTestUnused);
  t.add(opt_int("patience",
                "plateau patience: the lr is cut after patience+1 epochs without improvement "
                "(torch's ReduceLROnPlateau; Keras cuts after patience)",
                [](RunConfig& c) -> int& { return c.sched.patience; }),
        kRangeTestUnused);
  t.add(opt_int("cooldown", "plateau cooldown (epochs)",
                [](RunConfig& c) -> int& { return c.sched.cooldown; }),
        kRangeTestUnused);
  t.add(opt_float("min-lr", "plateau lower bound",
                  [](RunConfig& c) -> float& { return c.sched.min_lr; }),
        kRangeTestUnused);
  t.add(opt_float("threshold",
                  "plateau improvement threshold (relative, or absolute with --threshold-mode abs)",
                  [](RunConfig& c) -> double& { return c.sched.threshold; }),
        kRangeTestUnused);
  t.add(opt_str("threshold-mode",
                "plateau: rel (better than best * (1 - threshold)) | abs (best - threshold), as "
                "torch's threshold_mode",
                [](RunConfig& c) -> std::string& { return c.sched.threshold_mode; }),
        kRangeTestUnused);
  t.add(opt_str("plateau-mode",
                "plateau watches the validation (--val-split) or else the test loss (min) or "
                "accuracy (max)",
                [](RunConfig& c) -> std::string& { return c.sched.mode; }),
        kRangeTestUnused);
  t.add(opt_path(
            "schedule-file",
            "manual schedule: 'epoch lr' lines, epochs from 0 (Keras LearningRateScheduler), "
            "re-read after each epoch",
            [](RunConfig& c) -> std::string& { return c.sched.file; },
            "a --resume (without --schedule-file)"),
        kRangeTestUnused);
  t.add(
      opt_int(
          "warmup-steps",
          "linear warm-up steps, multiplying the schedule (which runs on: torch's chained warm-up)",
          [](RunConfig& c) -> int& { return c.sched.warmup_steps; }),
      kRangeTestUnused);
  t.add(opt_int("warmup-epochs",
                "linear warm-up epochs, multiplying the schedule (as --warmup-steps)",
                [](RunConfig& c) -> int& { return c.sched.warmup_epochs; }),
        kRangeTestUnused);
  // training
  t.add(opt_int("epochs", "training epochs (at most 10^6)",
                [](RunConfig& c) -> int& { return c.train.epochs; }),
        kInvocation);
  t.add(opt_int("batch-size", "mini-batch size",
                [](RunConfig& c) -> int64_t& { return c.train.batch_size; }),
        kBatchOrder);
  t.add(opt_int("eval-batch-size", "batch size for evaluation (halved while it runs out of memory)",
                [](RunConfig& c) -> int64_t& { return c.train.eval_batch_size; }));
  t.add(opt_bool("shuffle", "shuffle the training set every epoch",
                 [](RunConfig& c) -> bool& { return c.train.shuffle; }),
        kBatchOrder);
  t.add(opt_str("batch-schedule",
                "epoch:batch list, epochs from 0 as in the lr schedules: 0:512,5:256 trains the "
                "first 5 epochs at 512, then 256",
                [](RunConfig& c) -> std::string& { return c.train.batch_schedule; }),
        kBatchOrder | kRangeTestUnused);
  t.add(opt_bool("scale-lr", "scale lr linearly with the batch size of the batch schedule",
                 [](RunConfig& c) -> bool& { return c.train.scale_lr_with_batch; }),
        kRangeTestUnused);
  t.add(opt_int("log-every", "write per-step records (per-layer norms) every N steps",
                [](RunConfig& c) -> int& { return c.train.log_every; }),
        kRangeTestUnused);
  t.add(opt_bool("detect-anomaly",
                 "check every step: stop at the first non-finite loss or gradient, naming the "
                 "layer (a run without it stops there too, a step later), and warn at each epoch's "
                 "first step whose loss exceeds --max-loss, naming the layer with the largest "
                 "gradient (the epoch's mean train loss still decides)",
                 [](RunConfig& c) -> bool& { return c.train.detect_anomaly; }),
        kSideEffect | kRangeTestUnused);
  t.add(opt_bool("grad-report", "per-layer gradient/weight norm table after each epoch",
                 [](RunConfig& c) -> bool& { return c.train.grad_report; }),
        kSideEffect | kRangeTestUnused);
  t.add(
      opt_float("sparsity-threshold", "|w| below which a weight counts as zero in weight_sparsity",
                [](RunConfig& c) -> float& { return c.train.sparsity_threshold; }),
      kRangeTestUnused);  // (the range test reports no sparsity)
  t.add(opt_float("target-acc",
                  "stop once the validation (--val-split) or else the test accuracy reaches this",
                  [](RunConfig& c) -> double& { return c.train.target_acc; }),
        kInvocation | kRangeTestUnused);
  t.add(opt_int("early-stop",
                "stop after N epochs without improvement of the validation (else test) loss (Keras "
                "EarlyStopping patience; 0: off)",
                [](RunConfig& c) -> int& { return c.train.early_stop; }),
        kRangeTestUnused);
  t.add(opt_float(
            "early-stop-delta",
            "early stopping: the smallest change that counts as an improvement (Keras min_delta)",
            [](RunConfig& c) -> double& { return c.train.early_stop_delta; }),
        kRangeTestUnused);
  t.add(opt_bool("restore-best",
                 "with --early-stop: end with the weights of the best epoch it saw, also when "
                 "the run reaches --epochs without stopping (Keras 3's restore_best_weights; "
                 "Keras 2 restored only when it stopped the run); a run --target-acc stops "
                 "keeps that epoch's",
                 [](RunConfig& c) -> bool& { return c.train.restore_best; }),
        kRangeTestUnused);
  t.add(opt_str("early-stop-metric",
                "early stopping watches the loss (lower is better) or acc (higher)",
                [](RunConfig& c) -> std::string& { return c.train.early_stop_metric; }),
        kRangeTestUnused);
  t.add({"early-stop-baseline", "float|none",
         "early stopping: the patience only starts over once the metric beats this (Keras "
         "baseline; none: off)",
         [](RunConfig& c, const std::string& v) {
           c.train.early_stop_baseline = v == "none" ? NAN : parse_float(v, "");
         },
         [](const RunConfig& c) {
           const double b = c.train.early_stop_baseline;
           return std::isnan(b) ? std::string("none") : fmt_exact(b);
         }},
        kRangeTestUnused);
  t.add(opt_int("early-stop-start",
                "early stopping: the first N epochs are not watched (Keras start_from_epoch)",
                [](RunConfig& c) -> int& { return c.train.early_stop_start; }),
        kRangeTestUnused);
  t.add(opt_float("max-loss",
                  "a finite train loss above this counts as divergence (0: 100x chance level, <0: "
                  "no bound; a non-finite loss always does)",
                  [](RunConfig& c) -> float& { return c.train.max_loss; }),
        kRangeTestUnused);  // (the range test stops on its own rules)
  t.add(opt_path("log", "JSONL metrics file",
                 [](RunConfig& c) -> std::string& { return c.train.log_path; }),
        kInvocation | kRangeTestUnused);
  // run
  t.add(
      opt_str("device", "auto | cpu | cuda", [](RunConfig& c) -> std::string& { return c.device; }),
      kSideEffect);
  t.add(opt_int("seed", "seed for init, shuffling, augmentation and dropout",
                [](RunConfig& c) -> uint64_t& { return c.seed; }),
        kBatchOrder);
  t.add(opt_bool("deterministic",
                 "accepted for scripts that pass it: kiln is always deterministic (no "
                 "order-dependent atomics, fixed algorithms, one cuBLAS workspace; on a GPU "
                 "checked by a bitwise resume on an H200 and on the emulator, see "
                 "docs/FORMATS.md)",
                 [](RunConfig& c) -> bool& { return c.deterministic; }));
  // performance (docs/PERFORMANCE.md)
  t.add(opt_int("threads",
                "threads for the CPU path (0: every CPU this process may use); the results are "
                "the same bit for bit whatever the count",
                [](RunConfig& c) -> int& { return c.threads; }),
        kSideEffect);
  t.add({"cuda-graphs", "on|off",
         "replay the full-batch training step from a CUDA graph (CUDA only; default off until "
         "verified on a GPU, see docs/PERFORMANCE.md)",
         [](RunConfig& c, const std::string& v) { c.train.cuda_graphs = parse_on_off(v); },
         [](const RunConfig& c) { return std::string(c.train.cuda_graphs ? "on" : "off"); }},
        kSideEffect);
  t.add({"fuse", "auto|on|off",
         "fold a ReLU into the Conv2d/BatchNorm before it (auto: on the CPU, where the results "
         "are the same bits and the epoch shorter; not on CUDA until a GPU run measures it, see "
         "docs/PERFORMANCE.md)",
         [](RunConfig& c, const std::string& v) {
           const int b = bool_word(v);  // (any case, as the bool words)
           KILN_USAGE_CHECK(b >= 0 || lowercase(v) == "auto", ": '" << v << "' is not auto|on|off");
           c.fuse = b < 0 ? "auto" : b ? "on" : "off";
         },
         [](const RunConfig& c) { return c.fuse; }},
        kSideEffect);  // the same arithmetic (on the CPU the same bits: FusionModel.*)
  t.add(opt_str("precision", "fp32 | tf32 (TF32 tensor cores for the dense layers' cuBLAS GEMMs; convs stay fp32)", [](RunConfig& c) -> std::string& { return c.precision; }));
  t.add(opt_bool("summary", "print the per-layer table (shapes, params, receptive field) and exit",
                 [](RunConfig& c) -> bool& { return c.summary; }),
        kInvocation);
  t.add(opt_path("save", "write the final checkpoint (safetensors) here",
                 [](RunConfig& c) -> std::string& { return c.save; }),
        kSideEffect | kRangeTestUnused);
  t.add(opt_path("resume",
                 "resume from this checkpoint; options not given take the values it recorded, "
                 "but for where the run is and what it writes (device, threads, data-dir, "
                 "precision, cuda-graphs, detect-anomaly, grad-report, save, log, the "
                 "checkpoint options)",
                 [](RunConfig& c) -> std::string& { return c.resume; }),
        kInvocation);
  t.add(opt_path("checkpoint-dir",
                 "directory for periodic checkpoints and the one a SIGINT/SIGTERM writes "
                 "(default: the directory of --save, else checkpoints)",
                 [](RunConfig& c) -> std::string& { return c.checkpoint_dir; }),
        kSideEffect | kRangeTestUnused);
  t.add(opt_int("checkpoint-every", "write a checkpoint every N epochs",
                [](RunConfig& c) -> int& { return c.checkpoint_every; }),
        kSideEffect | kRangeTestUnused);
  t.add(opt_int("checkpoint-every-steps",
                "also write a checkpoint every N optimizer steps (resumes mid-epoch exactly)",
                [](RunConfig& c) -> long long& { return c.checkpoint_every_steps; }),
        kSideEffect | kRangeTestUnused);
  t.add(opt_int("keep-last", "keep only the last K periodic checkpoints (0: all)",
                [](RunConfig& c) -> int& { return c.keep_last; }),
        kSideEffect | kRangeTestUnused);
  t.add(opt_bool("lr-find", "run the LR range test instead of training", [](RunConfig& c) -> bool& { return c.lr_find; }));
  t.add(opt_float("start-lr", "LR range test start",
                  [](RunConfig& c) -> float& { return c.start_lr; }),
        kRangeTestOnly);
  t.add(opt_float("end-lr", "LR range test end", [](RunConfig& c) -> float& { return c.end_lr; }),
        kRangeTestOnly);
  t.add(opt_int("num-it", "LR range test steps (0: use --epochs)",
                [](RunConfig& c) -> int& { return c.num_it; }),
        kRangeTestOnly);
  t.add(opt_path("lr-find-csv", "LR range test CSV output",
                 [](RunConfig& c) -> std::string& { return c.lr_find_csv; }),
        kRangeTestOnly);
  t.add(opt_bool("lr-find-val",
                 "LR range test on the loss of the first 500 validation (--val-split) or else test "
                 "samples",
                 [](RunConfig& c) -> bool& { return c.lr_find_val; }),
        kRangeTestOnly);
  return t;
}

}  // namespace

// argparse's habit, "--shuffle false": the word is not this flag's value.
void check_bool_flag_next(const std::string& flag, const std::string& name,
                          const std::string& next) {
  KILN_USAGE_CHECK(bool_word(next) < 0, flag << " takes no value (it got '" << next
                                             << "'): write --" << name << " or --no-" << name
                                             << ", or --" << name << "=" << next);
}

// "--no-shuffle false" and "--no-shuffle=false": the negated form takes no value either. The
// first was "unexpected argument 'false'" (sweep: "more than one sweep file"), the second
// "unknown option 'no-shuffle'". Whether "--no-shuffle false" meant off or on is unclear, so the
// error gives the forms, not a guess.
void check_negated_bool_value(const std::string& flag, const std::string& name,
                              const std::string& value, bool inline_value) {
  KILN_USAGE_CHECK(!inline_value && bool_word(value) < 0,
                   flag << " takes no value (it got '" << value << "'): write --no-" << name
                        << " or --" << name << ", or --" << name << "=true|false");
}

bool parse_bool(const std::string& v, const std::string& origin) {
  const int b = bool_word(v);
  KILN_USAGE_CHECK(b >= 0, origin << ": '" << v << "' is not a boolean (true|false)");
  return b == 1;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  // Rows i-2, i-1 and i of the table (optimal string alignment: Levenshtein's insert, delete
  // and change, and a swap of two neighbouring characters as one edit: "esp" is one from "eps").
  std::vector<size_t> before(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] =
          std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], before[j - 2] + 1);
    }
    std::swap(before, prev);  // (before: row i-1; prev, then cur: free)
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string normalize_key(const std::string& k) {
  std::string s = k;
  std::replace(s.begin(), s.end(), '_', '-');
  return s;
}

void OptionTable::add(OptionSpec spec, unsigned traits) {
  spec.traits |= traits;
  specs_.push_back(std::move(spec));
}

const OptionSpec* OptionTable::find(const std::string& name) const {
  std::string n = normalize_key(name);
  for (const auto& s : specs_)
    if (s.name == n) return &s;
  return nullptr;
}

std::string closest_name(const std::string& k, const std::vector<std::string>& names) {
  // Near misses only: fewer than 3 edits, and at most half the name (one for a short one) and
  // fewer than its length, so a short name is not "corrected" into an unrelated one (--wd and
  // --bs were "did you mean 'lr'?", --gpu and --cpu 'eps', --x 'k').
  const size_t limit = std::min<size_t>(2, std::max<size_t>(1, k.size() / 2));
  std::string best;
  size_t bd = limit + 1;
  for (const auto& n : names) {
    const size_t d = edit_distance(k, n);
    if (d < bd && d < k.size()) {
      bd = d;
      best = n;
    }
  }
  if (!best.empty() || k.size() < 3) return best;
  // Else the one name that begins with k (--optim: 'optimizer').
  for (const auto& n : names)
    if (n.size() > k.size() && n.compare(0, k.size(), k) == 0) {
      if (!best.empty()) return "";  // (several: none)
      best = n;
    }
  return best;
}

const OptionSpec* OptionTable::negated_bool(const std::string& name) const {
  const std::string key = normalize_key(name);  // --no_shuffle as --batch_size is accepted
  if (key.rfind("no-", 0) != 0 || find(key)) return nullptr;
  const OptionSpec* b = find(key.substr(3));
  return b && b->type == "bool" ? b : nullptr;
}

std::string closest_option(const std::string& name, const std::vector<std::string>& names) {
  // PyTorch/Keras/argparse names for kiln's options, which no edit distance finds (each where
  // `names` has its option: kiln_eval's --gpu is 'device' too).
  static const std::pair<const char*, const char*> kAliases[] = {
      {"learning-rate", "lr"},
      {"learningrate", "lr"},
      {"wd", "weight-decay"},
      {"bs", "batch-size"},
      {"batch", "batch-size"},
      {"num-epochs", "epochs"},
      {"n-epochs", "epochs"},
      {"max-epochs", "epochs"},
      {"nb-epoch", "epochs"},
      {"scheduler", "schedule"},
      {"lr-scheduler", "schedule"},
      {"lr-schedule", "schedule"},
      {"data-path", "data-dir"},   // (torchvision's references)
      {"dataroot", "data-dir"},    // (pytorch/examples' dcgan)
      {"num-threads", "threads"},  // (torch.set_num_threads)
      {"gpu", "device"},
      {"cuda", "device"},
      {"cpu", "device"},
      {"no-cuda", "device"},
      {"validation-split", "val-split"},
      {"grad-clip", "global-clipnorm"},
      {"clip-grad-norm", "global-clipnorm"},
      {"max-grad-norm", "global-clipnorm"},
      {"gradient-clip-val", "global-clipnorm"},
      {"epsilon", "eps"},
      {"rho", "alpha"},
      {"dropout-rate", "dropout"},
      {"initializer", "init"},
      {"kernel-initializer", "init"},
      {"weight-init", "init"},
      {"min-delta", "early-stop-delta"},
      {"restore-best-weights", "restore-best"},
      {"start-from-epoch", "early-stop-start"},
      {"test-batch-size", "eval-batch-size"},
      // (not log-interval: in torch's examples it prints; --log-every writes records to --log)
      {"val-batch-size", "eval-batch-size"}};
  const std::string key = normalize_key(name);
  for (const auto& a : kAliases)
    if (key == a.first && std::find(names.begin(), names.end(), a.second) != names.end())
      return a.second;
  return closest_name(key, names);
}

std::string OptionTable::closest(const std::string& name) const {
  std::vector<std::string> names;
  for (const auto& s : specs_) names.push_back(s.name);
  return closest_option(name, names);
}

void OptionTable::set(RunConfig& cfg, const std::string& key, const std::string& value,
                      const std::string& origin) const {
  const OptionSpec* s = find(key);
  if (!s) {
    std::string near = closest(key);
    KILN_USAGE_FAIL(origin << ": unknown option '" << key << "'"
                           << (near.empty() ? "" : " (did you mean '" + near + "'?)"));
  }
  for (unsigned char ch : value)  // one-line errors: a YAML block scalar ("lr: |") ends in \n
    KILN_USAGE_CHECK((ch >= 0x20 || ch == '\t') && ch != 0x7f,  // (DEL too)
                     origin << ": the value has a line break or control character ("
                            << printable(value) << "); write it on one line");
  try {
    s->set(cfg, value);
  } catch (const Error& e) {
    // The row parsers do not know where the value came from; say it here.
    std::string m = e.message();
    if (m.rfind(": ", 0) == 0) m = m.substr(2);
    KILN_USAGE_FAIL(origin << ": " << m);
  }
}

std::string OptionTable::help(const RunConfig* defaults,
                              const std::vector<std::string>& hide) const {
  ClassicOStringStream os;
  for (const auto& s : specs_) {
    if (std::find(hide.begin(), hide.end(), s.name) != hide.end()) continue;
    const bool is_bool = s.type == "bool";
    std::string flag = "--" + s.name + (is_bool ? "" : " <" + s.type + ">");
    std::string text = s.help;
    if (defaults) {  // what leaving the option out means; a bool that is on shows its --no- form
      const std::string d = s.get(*defaults);
      if (is_bool && d == "true") flag = "--[no-]" + s.name;
      if (is_bool)
        text += d == "true" ? " [default on]" : "";
      else if (!d.empty() && d != "nan" && !(d == "none" && s.type == "float|none"))
        text += " [default " + d + "]";
    }
    os << "  " << std::left << std::setw(30) << flag << (flag.size() >= 30 ? " " : "") << text
       << "\n";
  }
  if (defaults)
    os << "A bool option: --NAME turns it on, --no-NAME off (--NAME=true|false also works).\n";
  return os.str();
}

const OptionTable& run_options() {
  static const OptionTable t = build_table();
  return t;
}

bool option_has(const std::string& name, unsigned traits) {
  const OptionSpec* s = run_options().find(name);
  return s && (s->traits & traits) != 0;
}

Device resolve_device(const std::string& d) {
  if (d == "auto") return cuda_available() ? Device::CUDA : Device::CPU;
  return parse_device(d);
}

int resolve_threads(int threads) {
  return threads > 0 ? threads : available_cpus();
}

void RunConfig::validate() const {
  KILN_USAGE_CHECK(threads >= 0 && threads <= 1024,
                   "--threads " << threads << ": expected 0 (every CPU) to 1024");
  KILN_USAGE_CHECK(device == "auto" || device == "cpu" || device == "cuda",
                   "--device " << device << ": expected auto|cpu|cuda");
  // (a sweep would otherwise record every trial as failed, and --resume skip them)
  KILN_USAGE_CHECK(device != "cuda" || built_with_cuda(),
                   "--device cuda: this kiln was built without CUDA; use --device cpu");
  KILN_USAGE_CHECK(data.dataset == "mnist" || data.dataset == "fashion-mnist" || data.dataset == "cifar10",
                   "--dataset " << data.dataset << ": expected mnist|fashion-mnist|cifar10");
  KILN_USAGE_CHECK(data.train_limit >= 0, "--train-limit " << data.train_limit << ": must be >= 0");
  KILN_USAGE_CHECK(data.test_limit >= 0, "--test-limit " << data.test_limit << ": must be >= 0");
  KILN_USAGE_CHECK(data.val_split >= 0 && data.val_split < 1,
                   "--val-split " << data.val_split << ": must be in [0, 1)");
  KILN_USAGE_CHECK(checkpoint_every >= 0, "--checkpoint-every " << checkpoint_every << ": must be >= 0");
  KILN_USAGE_CHECK(keep_last >= 0, "--keep-last " << keep_last << ": must be >= 0");
  KILN_USAGE_CHECK(checkpoint_every_steps >= 0,
                   "--checkpoint-every-steps " << checkpoint_every_steps << ": must be >= 0");
  KILN_USAGE_CHECK(start_lr > 0 && end_lr > start_lr,
                   "--start-lr " << start_lr << " / --end-lr " << end_lr << ": need 0 < start < end");
  KILN_USAGE_CHECK(num_it >= 0, "--num-it " << num_it << ": must be >= 0");
  parse_precision(precision);
  // Explicit --device cpu with a CUDA-only switch is a mistake worth stopping for; with
  // --device auto on a machine without a GPU the switches are ignored (the run stays portable).
  KILN_USAGE_CHECK(!(device == "cpu" && train.cuda_graphs),
                   "--cuda-graphs on needs --device cuda (or auto); got --device cpu");
  KILN_USAGE_CHECK(!(device == "cpu" && precision != "fp32"),
                   "--precision " << precision << " needs --device cuda (or auto); got --device cpu");
  model.validate();
  optim.validate();
  sched.validate();
  train.validate();
  // The layers' own checks (--groups dividing each layer's channels, ...) are found here, not
  // when the run builds its model: a sweep's up-front check and --dry-run see them too.
  check_model();
}

Shape RunConfig::input_shape() const {
  return data.dataset == "cifar10" ? Shape{3, 32, 32} : Shape{1, 28, 28};
}

int RunConfig::check_model() const {
  // validate() runs once per trial in a sweep's up-front check (up to 100,000) and --dry-run,
  // where the model options rarely change: each distinct model is set up once (about 1 us a
  // layer), its verdict kept (a bounded cache; a usage error is thrown again as it was).
  struct Verdict {
    int fused = 0;
    std::optional<Error> error;
  };
  static std::mutex mu;
  static std::map<std::string, Verdict> seen;
  const Shape in = input_shape();
  ModelOptions m = model;
  m.fuse = fuse != "off";  // (what --fuse on would fold: run.cpp's note)
  const std::string key = m.key() + '|' + shape_str(in);
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = seen.find(key); it != seen.end()) {
      if (it->second.error) throw *it->second.error;
      return it->second.fused;
    }
  }
  Verdict v;
  try {
    v.fused = make_model(m, in, 10)->check_setup();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Usage) throw;
    v.error = e;
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    if (seen.size() >= 4096) seen.clear();
    seen.emplace(key, v);
  }
  if (v.error) throw *v.error;
  return v.fused;
}

ParsedArgs parse_args(RunConfig& cfg, int argc, char** argv, const OptionTable& table) {
  ParsedArgs out;
  std::vector<std::string> args(argv + 1, argv + argc);
  // --config first, so every flag overrides the file whatever the order
  bool have_config = false;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string path;
    if (args[i] == "--config") {
      KILN_USAGE_CHECK(i + 1 < args.size(), "--config needs a file");
      check_separate_value("--config", args[i + 1]);
      path = args[i + 1];
    } else if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
    } else {
      continue;
    }
    KILN_USAGE_CHECK(!path.empty(), "--config: an empty path (leave --config out instead)");
    KILN_USAGE_CHECK(!have_config, "--config given twice (" << cfg.config_path << ", " << path
                                                            << "); a run reads one config file");
    have_config = true;
    apply_yaml_config(cfg, path, &out.config_keys);
    cfg.config_path = path;
    out.config_path = path;
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      out.help = true;
      continue;
    }
    if (a == "--config") {
      ++i;
      continue;
    }
    if (a.rfind("--config=", 0) == 0) continue;
    KILN_USAGE_CHECK(a != "--", "a bare '--': options are --name value (or --name=value)");
    if (a.rfind("--", 0) != 0) {
      out.positional.push_back(a);
      continue;
    }
    std::string key = a.substr(2), value;
    bool has_value = false;
    size_t eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
      has_value = true;
    }
    const OptionSpec* s = table.find(key);
    if (const OptionSpec* b = table.negated_bool(key)) {
      if (has_value || i + 1 < args.size())
        check_negated_bool_value("--" + key, b->name, has_value ? value : args[i + 1], has_value);
      table.set(cfg, b->name, "false", "--" + key);
      out.flag_keys.push_back(b->name);
      continue;
    }
    if (!s) table.set(cfg, key, "", "--" + key);  // throws with a suggestion
    if (!has_value) {
      if (s->type == "bool") {
        if (i + 1 < args.size()) check_bool_flag_next("--" + key, s->name, args[i + 1]);
        value = "true";
      } else {
        KILN_USAGE_CHECK(i + 1 < args.size(), "--" << key << " needs a value (" << s->type << ")");
        check_separate_value("--" + key, args[i + 1]);
        value = args[++i];
      }
    }
    table.set(cfg, s->name, value, "--" + s->name);
    out.flag_keys.push_back(s->name);
  }
  return out;
}

void check_separate_value(const std::string& flag, const std::string& next) {
  KILN_USAGE_CHECK(next.rfind("--", 0) != 0, flag << " needs a value, got the flag " << next
                                                  << " (a value that starts with "
                                                  << "-- is written " << flag << "=VALUE)");
}

std::vector<std::string> flags_named_in(const std::string& m) {
  std::vector<std::string> names;
  for (size_t at = m.find("--"); at != std::string::npos; at = m.find("--", at + 2)) {
    if (at > 0 && m[at - 1] != ' ' && m[at - 1] != '/' && m[at - 1] != '(') continue;  // a path
    size_t end = at + 2;
    while (end < m.size() && (std::islower(static_cast<unsigned char>(m[end])) ||
                              std::isdigit(static_cast<unsigned char>(m[end])) || m[end] == '-'))
      ++end;
    names.push_back(m.substr(at + 2, end - at - 2));
  }
  return names;
}

namespace {
bool given_as_flag(const ParsedArgs& args, const std::string& name) {
  return std::find(args.flag_keys.begin(), args.flag_keys.end(), name) != args.flag_keys.end();
}
}  // namespace

Error with_resume_origin(const Error& e, const ParsedArgs& args,
                         const std::vector<std::string>& adopted, const std::string& resume) {
  if (e.kind() != ErrorKind::Usage || adopted.empty()) return e;
  auto taken = [&](const std::string& name) {
    return std::any_of(adopted.begin(), adopted.end(), [&](const std::string& a) {
      return a.compare(0, name.size(), name) == 0 &&
             (a.size() == name.size() || a[name.size()] == ' ');
    });
  };
  std::vector<std::string> names;
  for (std::string name : flags_named_in(e.message())) {
    if (!taken(name) && name.rfind("no-", 0) == 0) name = name.substr(3);
    if (given_as_flag(args, name) || args.config_keys.count(name))
      return e;  // what this invocation gave may be the culprit: the checkpoint is not to blame
    if (taken(name) && std::find(names.begin(), names.end(), "--" + name) == names.end())
      names.push_back("--" + name);
  }
  if (names.empty()) return e;
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  const bool one = names.size() == 1;
  return e.prefixed("--resume " + resume + ": its recorded " + list + " (give " +
                    (one ? list : std::string("them")) + " to set " + (one ? "it" : "them") +
                    "): ");
}

Error with_config_origin(const Error& e, const ParsedArgs& args) {
  if (e.kind() != ErrorKind::Usage || args.config_keys.empty()) return e;
  std::string keys;
  int n = 0;
  for (std::string name : flags_named_in(e.message())) {
    if (!args.config_keys.count(name) && name.rfind("no-", 0) == 0) name = name.substr(3);
    if (given_as_flag(args, name)) return e;  // a flag it names may be the culprit, not the file
    auto it = args.config_keys.find(name);
    const std::string quoted = it == args.config_keys.end() ? "" : "'" + it->second + "'";
    if (quoted.empty() || keys.find(quoted) != std::string::npos) continue;
    keys += (n++ ? ", " : " ") + quoted;
  }
  if (!n) return e;
  return e.prefixed(args.config_path + (n > 1 ? ": keys" : ": key") + keys + ": ");
}

}  // namespace kiln
