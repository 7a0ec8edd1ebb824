// Shared main() plumbing for the apps: the exit-code contract (0 ok, 1 runtime error, 2 usage
// error, 3 diverged) and one-line error messages.
#pragma once
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/error.h"
#include "engine/json.h"
#include "kernels/dense/dense.h"
#include "tuning/lr_finder.h"
#include "tuning/options.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"

namespace kiln::app {

inline bool stderr_is_tty() {
  return isatty(fileno(stderr)) != 0;
}

// The default recipe of every training app (train_mnist, lr_find, sweep trials): Adam with a
// one-cycle schedule peaking at --lr (fast.ai style), 3 epochs of batch 32, MLP width 256.
inline RunConfig default_run_config() {
  RunConfig cfg;
  cfg.train.epochs = 3;
  cfg.train.batch_size = 32;
  cfg.optim.name = "adam";
  cfg.optim.lr = 0.003f;
  cfg.sched.name = "one-cycle";
  cfg.model.width = 256;
  cfg.model.init = "kaiming";  // He init suits the default ReLU nets (--init default: PyTorch's)
  return cfg;
}

// A line the library logs during a run, as the app prints it: a "note: " or "warning: " line
// named by the program ("train_mnist: note: ..."), as the notes before the run are; any other
// (progress, "resumed from ...", the range test's steps) as it is. The one place the apps prefix
// what the trainer, the run and the range test say (the range test's notes said "lr_find: note:"
// also under train_mnist --lr-find, the trainer's none).
inline std::string program_line(const char* prog, const std::string& line) {
  for (const char* head : {"note: ", "warning: "})
    if (line.rfind(head, 0) == 0) return std::string(prog) + ": " + line;
  return line;
}

// A "note:" line on stderr for each of the run's option_notes.
inline void print_ignored_options(const char* prog, const RunConfig& cfg,
                                  const RunConfig& defaults) {
  for (const std::string& n : option_notes(cfg, defaults))
    std::fprintf(stderr, "%s: note: %s\n", prog, n.c_str());
}

// One argument of an app's own flags (sweep, kiln_eval): "--name value" or "--name=value".
struct FlagArg {
  std::string flag;           // "--name", or the whole argument when it is not --name=value
  std::string value;          // what follows '=' in --name=value
  bool inline_value = false;  // the value came with the flag
};
inline FlagArg split_flag(const std::string& a) {
  const size_t eq = a.find('=');
  if (a.rfind("--", 0) != 0 || eq == std::string::npos) return {a, "", false};
  return {a.substr(0, eq), a.substr(eq + 1), true};
}
// The flag's value: the one after '=', else the next argument (i moves past it).
inline std::string flag_value(const FlagArg& f, int argc, char** argv, int& i) {
  if (f.inline_value) return f.value;
  KILN_USAGE_CHECK(i + 1 < argc, f.flag << " needs a value");
  check_separate_value(f.flag, argv[i + 1]);
  return argv[++i];
}

// --summary: the model's per-layer table. No data is loaded and no weights are made: the
// layers are set up only, so a model too large to train here is still shown (the size check
// that refuses it is Model::build's).
inline void print_summary(const RunConfig& cfg) {
  auto model = make_model(cfg.model_on(resolve_device(cfg.device)), cfg.input_shape(), 10);
  model->check_setup();
  std::printf("model %s on %s input %s\n%s", cfg.model.model.c_str(), cfg.data.dataset.c_str(),
              shape_str(model->input_shape()).c_str(), model->summary_table().c_str());
}

// "1 thread", "2 threads": the CPU thread count of the apps' device lines.
inline std::string thread_count(int n) {
  return std::to_string(n) + (n == 1 ? " thread" : " threads");
}

// "cpu, 2 threads, OpenBLAS Haswell" (`why` after "cpu"): the apps' device line on the CPU.
inline std::string cpu_device_line(int threads, const std::string& why = "") {
  return "cpu" + why + ", " + thread_count(threads) + ", " + cpu_gemm_description();
}

// Prints the device line (device_line's text) on stdout: from the run's ready hook, once its
// outputs, data and checkpoint are checked, so an error knowable before training comes first,
// without the line (it came after it, as the first thing the run printed).
inline void print_device_line(const std::string& device) {
  std::printf("device: %s\n", device.c_str());
  std::fflush(stdout);
}

// The apps' "device: ..." line (train_mnist, train_cifar, their --lr-find, lr_find): the CPU's
// with its threads and GEMM kernels, or the GPU's name; "(a GPU answers)" / "(no CUDA device
// answers)" when --device auto chose. A --device cuda that no GPU answers fails here, before
// the line (it read "device: cuda: ", no name, then the error).
inline std::string device_line(const RunConfig& cfg) {
  const Device dev = resolve_device(cfg.device);
  KILN_CHECK(dev == Device::CPU || cuda_available(), "no CUDA device answers; use --device cpu");
  const std::string why = cfg.device == "auto" ? (dev == Device::CUDA ? " (a GPU answers)"
                                                                      : " (no CUDA device answers)")
                                               : "";
  return dev == Device::CUDA ? "cuda" + why + ": " + cuda_device_description()
                             : cpu_device_line(resolve_threads(cfg.threads), why);
}

// `v` as one shell word: as is when plain, else single-quoted.
inline std::string shell_word(const std::string& v) {
  if (!v.empty() && v.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-./,:=+@%") == std::string::npos)
    return v;
  std::string word = "'";
  for (char c : v) word += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return word + "'";
}

// " --device cpu --data-dir D --save F ..." for where `cfg` computes (device, precision, CUDA
// graphs), its data, its outputs, its --threads and its diagnostics, where they differ from the
// app's defaults: a --resume takes the run's recipe from its checkpoint but not these (the
// kSideEffect options, the precision and --log), so the interrupted run's message spells them
// out, as shell words (without --device, a cpu run's pasted command resumed on a GPU where there
// is one). In the option table's order; a bool is a bare --NAME or --no-NAME.
inline std::string output_options(const RunConfig& cfg, const RunConfig& defaults) {
  std::string out;
  for (const OptionSpec& o : run_options().specs()) {
    if (!(o.traits & kSideEffect) && o.name != "precision" && o.name != "log") continue;
    const std::string v = o.get(cfg);
    if (v.empty() || v == o.get(defaults)) continue;
    if (o.type == "bool")
      out += (v == "true" ? " --" : " --no-") + o.name;
    else
      out += " --" + o.name + " " + shell_word(v);
  }
  return out;
}

// The note for the options a --resume took from its checkpoint (adopt_resume_options).
inline void print_adopted_options(const char* prog, const RunConfig& cfg,
                                  const std::vector<std::string>& adopted,
                                  const char* who = "this command line") {
  if (adopted.empty()) return;
  std::string list;
  for (const std::string& o : adopted) list += (list.empty() ? "" : ", ") + o;
  std::fprintf(stderr,
               "%s: note: continuing %s's run with the options it recorded that %s leaves out: "
               "%s\n",
               prog, cfg.resume.c_str(), who, list.c_str());
}

// The LR range test of lr_find and train_mnist --lr-find: one note naming the options it does
// not read, the device line once the test's inputs and outputs are checked, the test, the report
// on stdout. Returns the exit code: 0, or 128 + the signal when SIGINT/SIGTERM stopped the test
// (the curve so far is written and reported).
inline int lr_find_main(const char* prog, const RunConfig& cfg, const RunConfig& defaults) {
  const std::string device = device_line(cfg);  // (no CUDA device: refused before the data loads)
  std::string unused;
  for (const std::string& o : lr_find_unused_options(cfg, defaults))
    unused += (unused.empty() ? "" : " ") + o;
  if (!unused.empty())
    std::fprintf(stderr,
                 "%s: note: the LR range test does not use %s (the lr ramps from --start-lr to "
                 "--end-lr; it writes only --lr-find-csv)\n",
                 prog, unused.c_str());
  LrFindResult r = run_lr_find(
      cfg,
      [prog](const std::string& l) { std::fprintf(stderr, "%s\n", program_line(prog, l).c_str()); },
      [&device] { print_device_line(device); });
  const char* csv = cfg.lr_find_csv.empty() ? "lr_find.csv" : cfg.lr_find_csv.c_str();
  std::printf("%scsv: %s\n", lr_find_report(r).c_str(), csv);
  if (r.stop_signal == 0) return 0;
  std::fprintf(stderr, "%s: interrupted by %s; the curve so far is in %s\n", prog,
               r.stop_signal == SIGINT ? "SIGINT" : "SIGTERM", csv);
  return 128 + r.stop_signal;
}

// SIGINT/SIGTERM set StopSignals::flag() from here until the process exits: a run, a sweep
// or a range test checks it, and a signal after the last check (the results written, the
// final line printed) changes nothing, exit 0. A StopSignals in the app's scope restored the
// default action on its way out, so a signal in the last moments killed the finished
// process, exit 143/130 with no checkpoint message. Never destroyed, on purpose.
inline void catch_stop_signals_until_exit() {
  static const StopSignals* const signals = new StopSignals;
  (void)signals;
}

inline int guarded_main(const char* prog, const std::function<int()>& body) {
  // A file-size limit (ulimit -f) then fails the write with EFBIG, reported like a full disk,
  // instead of killing the process with no message and a temp file left behind.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    const int rc = body();
    // The epoch lines and the final result line may be a run's only record (no --log): a
    // stdout that could not take them (a full disk) is a failed run, not exit 0.
    errno = 0;
    const bool flush_failed = std::fflush(stdout) != 0;
    const int err = errno;
    if (flush_failed || std::ferror(stdout)) {
      // An earlier failed write set the error flag; errno from then is gone.
      std::fprintf(stderr, "%s: error: writing standard output failed%s%s\n", prog,
                   flush_failed && err ? ": " : "", flush_failed && err ? std::strerror(err) : "");
      return 1;
    }
    return rc;
  } catch (const Error& e) {
    // One line whatever a file or flag put in the message: Error escapes its control characters.
    // The message is printed as the library wrote it (no library message names a program since
    // 2026-12-07: stripping "lr_find: " from the range test's also cut it from file names and
    // values that held it).
    std::fprintf(stderr, "%s%s: error: %s\n", stderr_is_tty() ? "\n" : "", prog,
                 e.message().c_str());
    return exit_code(e.kind());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of memory\n", prog);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", prog, escape_controls(e.what()).c_str());
    return 1;
  }
}

}  // namespace kiln::app
