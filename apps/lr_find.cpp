// lr_find: the LR range test as its own command (same options as train_mnist). Prints the
// suggestions (valley is the default) and writes step,lr,loss,smoothed_loss to --lr-find-csv.
#include <cstdio>
#include <string>

#include "apps/app_common.h"
#include "tuning/lr_finder.h"
#include "tuning/options.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"

using namespace kiln;  // an app, not the library

static const char* kUsage =
    "usage: lr_find [--config FILE.yaml] [options]\n"
    "LR range test: trains with an exponentially increasing lr from --start-lr to --end-lr over\n"
    "--num-it steps (--num-it 0: over --epochs full epochs), smooths the loss (debiased EMA, "
    "0.98)\n"
    "and stops once it exceeds 4x its best. Prints the suggestions (valley, steep, minimum/10,\n"
    "slide) and writes the curve to --lr-find-csv (default lr_find.csv) plus CSV.suggestions.\n"
    "keras_lr_finder's find(x, y, 1e-5, 1, batch_size=512, epochs=5) ramps the lr as\n"
    "  lr_find --start-lr 1e-5 --end-lr 1 --batch-size 512 --epochs 5 --num-it 0\n"
    "does (it stops on the raw loss; kiln, like fastai's lr_find, on the smoothed one).\n"
    "--resume CKPT starts from the checkpoint's weights with a fresh optimizer; --summary prints\n"
    "the model table and exits; --lr, the schedule, checkpoint and log options are not used.\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error, 130/143 stopped by SIGINT/SIGTERM (the\n"
    "curve so far is written and its suggestions printed).\n\noptions:\n";

int main(int argc, char** argv) {
  return app::guarded_main("lr_find", [&] {
    app::catch_stop_signals_until_exit();  // from the start: a signal while the data loads ends the
                                           // test at step 1
    RunConfig defaults = app::default_run_config();
    defaults.train.epochs = 1;
    defaults.lr_find = true;  // as train_mnist --lr-find: the notes and checks of a range test
    RunConfig cfg = defaults;
    ParsedArgs args = parse_args(cfg, argc, argv, run_options());
    std::vector<std::string> adopted;  // what --resume took from its checkpoint
    try {  // an error about an option the --config file (or the checkpoint) set names it
      if (args.help) {
        std::printf("%s%s", kUsage, run_options().help(&defaults, {"lr-find"}).c_str());
        return 0;
      }
      KILN_USAGE_CHECK(args.positional.empty(),
                       "unexpected argument '" << args.positional[0] << "'");
      KILN_USAGE_CHECK(cfg.lr_find, "--no-lr-find: lr_find always runs the LR range test");
      // Said at once: a usage error in what it took then follows the list it came from.
      adopted = adopt_resume_options(cfg, args, kRangeTestUnused | kInvocation);
      app::print_adopted_options("lr_find", cfg, adopted);
      cfg.validate();
      app::print_ignored_options("lr_find", cfg, defaults);
      if (cfg.summary) {
        app::print_summary(cfg);
        return 0;
      }
      if (cfg.train.progress < 0) cfg.train.progress = 0;
      return app::lr_find_main("lr_find", cfg, defaults);
    } catch (const Error& e) {
      throw with_config_origin(with_resume_origin(e, args, adopted, cfg.resume), args);
    }
  });
}
