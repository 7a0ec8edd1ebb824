// The main() of the training apps (train_mnist, train_cifar): parse flags over the app's
// defaults, then --summary, --lr-find or a training run with one line per epoch and a final
// "test_acc=... test_loss=... seconds=..." line. Exit codes as in app_common.h, plus 128+signal
// after a SIGINT/SIGTERM checkpoint.
#pragma once
#include <cmath>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "apps/app_common.h"
#include "tuning/lr_finder.h"
#include "tuning/options.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"

namespace kiln::app {

inline int train_main(const char* prog, const char* usage, RunConfig defaults, int argc,
                      char** argv) {
  return guarded_main(prog, [&] {
    catch_stop_signals_until_exit();  // from the start: a signal while the data loads stops at the
                                      // first step
    RunConfig cfg = defaults;
    const OptionTable& table = run_options();
    ParsedArgs args = parse_args(cfg, argc, argv, table);
    std::vector<std::string> adopted;  // what --resume took from its checkpoint
    try {  // an error about an option the --config file (or the checkpoint) set names it
      if (args.help) {
        std::printf("%s%s", usage, table.help(&defaults).c_str());
        return 0;
      }
      KILN_USAGE_CHECK(args.positional.empty(),
                       "unexpected argument '" << args.positional[0] << "'");
      // Said at once: a usage error in what it took then follows the list it came from.
      adopted = adopt_resume_options(cfg, args,
                                     cfg.lr_find ? kRangeTestUnused | kInvocation : kRangeTestOnly);
      print_adopted_options(prog, cfg, adopted);
      if (cfg.train.progress < 0) cfg.train.progress = stderr_is_tty() ? 1 : 0;
      cfg.validate();
      print_ignored_options(prog, cfg, defaults);
      if (cfg.summary) {
        print_summary(cfg);
        return 0;
      }
      if (cfg.lr_find)  // the LR range test instead of training (lr_find does the same)
        return lr_find_main(prog, cfg, defaults);
      RunHooks hooks;
      // (its CUDA check now, before the data loads; printed once the run's inputs and outputs
      // are checked)
      hooks.ready = [device = device_line(cfg)] { print_device_line(device); };
      bool tty = cfg.train.progress == 1;
      // A progress bar ('\r' lines, no newline) is cleared before any other line, which would
      // otherwise be glued to it.
      auto bar = std::make_shared<bool>(false);
      hooks.log = [prog, tty, bar](const std::string& line) {
        const bool progress = tty && !line.empty() && line[0] == '\r';
        if (*bar && !progress) std::fprintf(stderr, "\r\033[K");
        std::fprintf(stderr, "%s%s", program_line(prog, line).c_str(), progress ? "" : "\n");
        *bar = progress;
        std::fflush(stderr);
      };
      hooks.on_epoch = [tty, bar](const EpochRecord& r) {
        if (tty) std::fprintf(stderr, "\r\033[K");
        *bar = false;
        char val[64] = "";
        if (!std::isnan(r.val_acc))
          std::snprintf(val, sizeof(val), " val_loss=%.4f val_acc=%.4f", r.val_loss, r.val_acc);
        std::printf(
            "epoch %d: train_loss=%.4f train_acc=%.4f%s test_loss=%.4f test_acc=%.4f lr=%.4g %.2fs "
            "%.0f img/s\n",
            r.epoch, r.train_loss, r.train_acc, val, r.test_loss, r.test_acc, r.lr, r.seconds,
            r.images_per_s);
        if (r.l1_penalty > 0 || r.l2_penalty > 0)  // the penalty experiments: how sparse it got
          std::printf("  l1_penalty=%.4g l2_penalty=%.4g weight_sparsity=%.4f\n", r.l1_penalty,
                      r.l2_penalty, r.weight_sparsity);
        std::fflush(stdout);
        return true;
      };
      RunResult res = run_training(cfg, hooks);
      if (res.stop_signal) {  // SIGINT 130, SIGTERM 143, after the checkpoint
        if (*bar) std::fprintf(stderr, "\r\033[K");  // a signal mid-epoch leaves the bar up
        // The checkpoint holds the recipe; the outputs are this invocation's to name.
        std::fprintf(stderr,
                     "%s: interrupted by %s; checkpoint written to %s (continue with --resume "
                     "%s%s)\n",
                     prog, res.stop_signal == SIGINT ? "SIGINT" : "SIGTERM",
                     res.last_checkpoint.c_str(), shell_word(res.last_checkpoint).c_str(),
                     output_options(cfg, defaults).c_str());
        return 128 + res.stop_signal;
      }
      std::printf("test_acc=%.4f test_loss=%.4f seconds=%.2f\n", res.test_acc, res.test_loss,
                  res.train_seconds);
      return 0;
    } catch (const Error& e) {
      throw with_config_origin(with_resume_origin(e, args, adopted, cfg.resume), args);
    }
  });
}

}  // namespace kiln::app
