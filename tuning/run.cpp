#include "tuning/run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/numtext.h"
#include "engine/parallel.h"
#include "engine/precision.h"
#include "optim/batch_schedule.h"
#include "tuning/run_checkpoint.h"

namespace kiln {

std::vector<std::string> option_notes(const RunConfig& cfg, const RunConfig& defaults) {
  std::vector<std::string> notes = cfg.model.ignored(defaults.model);
  for (const std::string& n : cfg.optim.ignored(defaults.optim)) notes.push_back(n);
  // --precision picks the cuBLAS math mode; --device auto that finds no GPU runs fp32.
  const bool auto_on_cpu = cfg.device == "auto" && resolve_device("auto") == Device::CPU;
  if (cfg.precision != "fp32" && auto_on_cpu)
    notes.push_back("--precision " + cfg.precision +
                    " is ignored: no CUDA device answers, the CPU computes in fp32");
  if (cfg.train.cuda_graphs && auto_on_cpu)
    notes.push_back("--cuda-graphs on is ignored: no CUDA device answers, the CPU runs the steps");
  if (cfg.lr_find && cfg.lr_find_val && cfg.data.val_split == 0)
    notes.push_back(
        "--lr-find-val reads the test set (no --val-split): an lr chosen on it is "
        "chosen on the test set; --val-split 0.1 holds out a validation set");
  if (cfg.lr_find) return notes;  // the range test replaces the schedule (lr_find says so)
  // Training reads none of the range test's options.
  std::string lr_find_opts;
  for (const OptionSpec& spec : run_options().specs())
    if ((spec.traits & kRangeTestOnly) && spec.get(cfg) != spec.get(defaults))
      lr_find_opts += " --" + spec.name;
  if (!lr_find_opts.empty())
    notes.push_back(lr_find_opts.substr(1) +
                    (lr_find_opts.find(' ', 1) == std::string::npos ? " is" : " are") +
                    " ignored without --lr-find (the LR range test's options)");
  if (!cfg.train.batch_schedule.empty() && cfg.train.batch_size != defaults.train.batch_size)
    notes.push_back("--batch-size " + std::to_string(cfg.train.batch_size) +
                    " is ignored: --batch-schedule sets every epoch's batch");
  // (Not errors, unlike --restore-best alone: a sweep of early_stop over [0, 3] with a base
  // early_stop_metric must not fail its trial with patience 0.)
  if (cfg.train.early_stop == 0 &&
      (cfg.train.early_stop_delta != defaults.train.early_stop_delta ||
       cfg.train.early_stop_metric != defaults.train.early_stop_metric)) {
    const bool delta = cfg.train.early_stop_delta != defaults.train.early_stop_delta,
               metric = cfg.train.early_stop_metric != defaults.train.early_stop_metric;
    notes.push_back(std::string(delta ? "--early-stop-delta" : "") + (delta && metric ? " " : "") +
                    (metric ? "--early-stop-metric" : "") +
                    (delta && metric ? " are ignored without --early-stop N (they set"
                                     : " is ignored without --early-stop N (it sets") +
                    " what early stopping counts as better)");
  }
  if (cfg.train.log_every != defaults.train.log_every && cfg.train.log_path.empty())
    notes.push_back(
        "--log-every is ignored without --log (it sets how often steps are written "
        "to the JSONL log)");
  if (cfg.fuse == "on" && cfg.check_model() == 0)
    notes.push_back(
        "--fuse on is ignored: no ReLU in this model follows a conv or batch norm "
        "layer that could apply it (--activation " +
        cfg.model.activation + ", --norm " + cfg.model.norm + " " + cfg.model.norm_position + ")");
  if (cfg.train.scale_lr_with_batch && cfg.train.batch_schedule.empty())
    notes.push_back(
        "--scale-lr is ignored without --batch-schedule (it scales the lr with the scheduled "
        "batch)");
  for (const std::string& n : cfg.sched.ignored(defaults.sched)) notes.push_back(n);
  // A cycling schedule drives SGD's and RMSprop's momentum, as torch's OneCycleLR and CyclicLR
  // (cycle_momentum=True) do: "--optimizer sgd" alone then is not plain SGD. Said unless the
  // momentum range was given (--base-momentum, --max-momentum).
  const ScheduleOptions& sc = cfg.sched;
  const bool cycles = (sc.name == "one-cycle" || sc.name == "cyclic") && sc.cycle_momentum;
  const bool asked = !std::isnan(sc.base_momentum) || !std::isnan(sc.max_momentum);
  // "between 0.85 and 0.95 (as torch's OneCycleLR does)"
  auto cycle_range = [&sc] {
    const ScheduleOptions r = sc.resolved();
    ClassicOStringStream os;
    os << "between " << r.base_momentum << " and " << r.max_momentum << " (as torch's "
       << (sc.name == "cyclic" ? "CyclicLR" : "OneCycleLR") << " does)";
    return os.str();
  };
  if (cycles && !asked && (cfg.optim.name == "sgd" || cfg.optim.name == "rmsprop")) {
    ClassicOStringStream os;
    os << "--schedule " << sc.name << " cycles the momentum " << cycle_range() << ": "
       << cfg.optim.name << " trains with it";
    if (cfg.optim.momentum != 0) os << ", not --momentum " << cfg.optim.momentum;
    os << "; --no-cycle-momentum keeps --momentum, --schedule constant keeps --lr";
    notes.push_back(os.str());
  }
  // The same cycle is Adam's beta1 (torch's OneCycleLR sets betas[0]): a --beta1 changes nothing,
  // also where the momentum range was given.
  const bool adam = cfg.optim.name == "adam" || cfg.optim.name == "adamw";
  if (cycles && adam && cfg.optim.beta1 != defaults.optim.beta1) {
    ClassicOStringStream os;
    os << "--beta1 " << cfg.optim.beta1 << " is ignored: --schedule " << sc.name << " cycles "
       << cfg.optim.name << "'s beta1 " << cycle_range() << "; --no-cycle-momentum keeps --beta1";
    notes.push_back(os.str());
  }
  // sgd without momentum has nothing to dampen, unless a cycling schedule supplies a momentum.
  if (cfg.optim.name == "sgd" && cfg.optim.momentum == 0 && !cycles &&
      cfg.optim.dampening != defaults.optim.dampening) {
    ClassicOStringStream os;
    os << "--dampening " << cfg.optim.dampening
       << " is ignored: sgd's momentum is 0 (--momentum sets it)";
    notes.push_back(os.str());
  }
  // The schedule's own lr range replaces --lr.
  if (cfg.optim.lr != defaults.optim.lr &&
      ((sc.name == "one-cycle" && sc.max_lr > 0) || (sc.name == "cyclic" && sc.base_lr > 0)))
    notes.push_back(sc.name == "one-cycle"
                        ? "--lr is ignored by --schedule one-cycle with --max-lr (the cycle peaks "
                          "at --max-lr and starts at --max-lr / --div-factor)"
                        : "--lr is ignored by --schedule cyclic with --base-lr (the cycle runs "
                          "from --base-lr to --max-lr)");
  // --gamma left at its default (0.1, StepLR's): torch's ExponentialLR and Keras'
  // ExponentialDecay take the factor explicitly, and 0.1 per step ends training in a few steps.
  if ((sc.name == "exponential" || sc.name == "exponential-step") && std::isnan(sc.gamma)) {
    const bool per_step = sc.name == "exponential-step";
    notes.push_back(
        "--schedule " + sc.name + " multiplies the lr by --gamma every " +
        (per_step ? "optimizer step" : "epoch") +
        ", and --gamma was not given: the default 0.1 (StepLR's) " +
        (per_step ? "leaves 1e-10 of --lr after 10 steps" : "cuts it tenfold per epoch") +
        "; set it, e.g. --gamma " + (per_step ? "0.999" : "0.95") + " (0.95^t)");
  }
  // --decay left at 0: Keras' InverseTimeDecay takes decay_rate explicitly; 0 is a constant lr.
  if ((sc.name == "inverse-time" || sc.name == "inverse-time-step") && sc.decay == 0)
    notes.push_back("--schedule " + sc.name + " divides --lr by 1 + --decay * t (t the " +
                    (sc.name == "inverse-time" ? "epoch" : "optimizer step") +
                    "), and --decay is 0: the lr stays --lr; set it, e.g. --decay " +
                    (sc.name == "inverse-time" ? "0.5" : "0.001"));
  if (cfg.keep_last != defaults.keep_last && cfg.checkpoint_every == 0 &&
      cfg.checkpoint_every_steps == 0)
    notes.push_back("--keep-last " + std::to_string(cfg.keep_last) +
                    " has nothing to prune without --checkpoint-every or --checkpoint-every-steps "
                    "(only a stopping signal writes a checkpoint then)");
  // Keras' start_from_epoch: epochs 1..N are not watched, so N >= --epochs watches none.
  if (cfg.train.early_stop > 0 && cfg.train.early_stop_start >= cfg.train.epochs &&
      cfg.train.epochs > 0)
    notes.push_back("--early-stop-start " + std::to_string(cfg.train.early_stop_start) +
                    " is not below --epochs " + std::to_string(cfg.train.epochs) +
                    ": early stopping watches no epoch and never stops this run");
  // Fewer watched epochs than a stop takes (a fresh run; a resumed one carries its wait). The
  // first watched epoch sets the best (the held-out loss is finite, or the run fails), and no
  // stop follows an epoch that set it: without a baseline the wait starts over there, so the
  // soonest stop follows epoch start+P+1; with one the wait can start at the first watched epoch,
  // but the stop follows epoch start+P, and start+2 at the soonest. A stop after the last epoch
  // skips nothing: early stopping ends this run only if that epoch comes before --epochs.
  else if (cfg.train.early_stop > 0 && cfg.train.epochs > 0 && cfg.resume.empty()) {
    const TrainOptions& t = cfg.train;
    const bool baseline = !std::isnan(t.early_stop_baseline);
    // (in long long: --early-stop 2147483647 overflowed int and went unnoted)
    const long long start = t.early_stop_start, patience = t.early_stop;
    const long long after = baseline ? start + std::max(patience, 2LL) : start + patience + 1;
    if (after >= t.epochs)
      notes.push_back("--early-stop " + std::to_string(t.early_stop) +
                      " never stops this run: it stops after " + std::to_string(t.early_stop) +
                      " watched epoch" + (t.early_stop == 1 ? "" : "s") + " without improvement" +
                      (baseline ? " on --early-stop-baseline" : "") +
                      ", and the first watched epoch sets the best: the first epoch it can skip "
                      "is " +
                      std::to_string(after + 1) + ", and --epochs is " +
                      std::to_string(t.epochs) +
                      (t.early_stop_start > 0
                           ? " (--early-stop-start " + std::to_string(t.early_stop_start) + ")"
                           : std::string()));
  }
  // Plateau cuts after patience+1 epochs without improvement (torch), early stopping after
  // early_stop (Keras): unless early stopping waits longer, the run ends before the cut helps.
  if (sc.name == "plateau" && cfg.train.early_stop > 0 && cfg.train.early_stop <= sc.patience + 1)
    notes.push_back("--early-stop " + std::to_string(cfg.train.early_stop) +
                    " ends the run before --schedule plateau can use a lower lr: it cuts after " +
                    std::to_string(sc.patience + 1) + " epochs without improvement (--patience " +
                    std::to_string(sc.patience) + ", as torch's ReduceLROnPlateau); --early-stop " +
                    std::to_string(sc.patience + 3) + " leaves it two epochs");
  // Without a validation split the watchers read the test set, which then also grades the run.
  if (cfg.data.val_split == 0) {
    std::string who;
    if (cfg.train.early_stop > 0) who = "--early-stop";
    if (sc.name == "plateau") who += std::string(who.empty() ? "" : " and ") + "--schedule plateau";
    if (!who.empty())
      notes.push_back(who + " watch" + (who.find(" and ") == std::string::npos ? "es" : "") +
                      " the test set (no --val-split): the test accuracy reported is then "
                      "chosen on the test set itself; --val-split 0.1 holds out a validation set");
  }
  return notes;
}

std::vector<long long> schedule_steps(long long samples, const TrainOptions& t,
                                      const TrainPosition* resume_at) {
  std::vector<long long> steps = steps_per_epoch(samples, t.batch_size, t.batch_schedule, t.epochs);
  if (!resume_at || resume_at->epoch <= 0) return steps;
  const size_t past = std::min(static_cast<size_t>(resume_at->epoch), steps.size());
  // The checkpoint's record of each past epoch's steps, where it has one.
  if (resume_at->epoch_steps.size() == static_cast<size_t>(resume_at->epoch)) {
    for (size_t e = 0; e < past; ++e) steps[e] = resume_at->epoch_steps[e];
    return steps;
  }
  // An older checkpoint knows only the total: the steps before the epoch in progress (one a
  // batch), shared out over the past epochs, the earlier ones first.
  long long taken = 0;
  for (size_t e = 0; e < past; ++e) taken += steps[e];
  const long long total = resume_at->step - resume_at->batch;
  if (past == 0 || taken == total || total < 0) return steps;
  const long long per = total / static_cast<long long>(past),
                  extra = total % static_cast<long long>(past);
  for (size_t e = 0; e < past; ++e) steps[e] = per + (static_cast<long long>(e) < extra ? 1 : 0);
  return steps;
}

std::unique_ptr<RunSession> make_session(const RunConfig& cfg, bool load_data,
                                         const TrainPosition* resume_at) {
  cfg.validate();
  auto s = std::make_unique<RunSession>();
  s->cfg = cfg;
  s->run_id = run_id_of(run_config_json(s->cfg));
  // Checkpoints record the defaults the run used (weight decay, gamma, cycled momentum).
  s->cfg.optim = cfg.optim.resolved();
  s->cfg.sched = cfg.sched.resolved();
  s->device = resolve_device(cfg.device);
  set_num_threads(resolve_threads(cfg.threads));
  if (s->device == Device::CPU)
    s->cfg.precision = "fp32";  // what the run computed in (checkpoints)
  Shape in = cfg.input_shape();
  if (load_data) {
    TrainValSplit tv = load_train_val(cfg.data, s->device);
    s->train = std::move(tv.train);
    s->val = std::move(tv.val);
    s->test = load_dataset(cfg.data, "test", s->device);
    in = s->train.sample_shape();
  }
  s->cfg.model = cfg.model_on(s->device);
  s->model = make_model(s->cfg.model, in, 10);
  s->model->build(s->device, cfg.seed);
  if (!load_data) return s;
  s->ctx = std::make_unique<Context>(s->device, cfg.seed);
  s->ctx->deterministic = cfg.deterministic;
  set_precision(*s->ctx, parse_precision(s->cfg.precision));
  s->opt = make_optimizer(cfg.optim, *s->model);
  // Steps per epoch from the batch each epoch uses (a batch-size schedule changes them).
  s->sched =
      make_schedule(cfg.sched, cfg.optim.lr, schedule_steps(s->train.size(), cfg.train, resume_at));
  s->trainer = std::make_unique<Trainer>(*s->model, *s->opt, *s->sched, *s->ctx, cfg.train);
  return s;
}

RunResult run_training(const RunConfig& cfg, const RunHooks& hooks) {
  cfg.validate();
  check_output_paths(cfg);  // before hours of training, not after
  // The resume checkpoint, read and verified once, before the data loads (a bad file fails
  // first): its position sizes the schedule, and resume_session loads the rest from it.
  SafetensorsFile resume_file;
  TrainPosition resume_at;
  if (!cfg.resume.empty()) {
    resume_file = read_checkpoint(cfg.resume);
    resume_at = checkpoint_position(resume_file, "checkpoint " + cfg.resume);
    check_resume_epochs(cfg, resume_at, hooks.must_train);
  }
  auto s = make_session(cfg, true, cfg.resume.empty() ? nullptr : &resume_at);
  check_outputs_spare_data(cfg, {&s->train, &s->val, &s->test});
  // --augment on images it cannot crop (MNIST's): refused now, as the trainer would, before a
  // resume's "resumed from ..." line (which came first, so the refused run read as resumed).
  if (cfg.train.augment) check_augmentable(s->train);
  s->trainer->log = hooks.log;
  s->trainer->on_epoch = hooks.on_epoch;
  for (const std::string* note : {&s->train.note, &s->test.note})
    if (!note->empty()) {
      if (hooks.data_note)
        hooks.data_note(*note);
      else if (hooks.log)
        hooks.log("note: " + *note);
    }
  const bool sized_by_steps =
      cfg.sched.name == "one-cycle" || cfg.sched.name == "cyclic" || cfg.sched.warmup_epochs > 0;
  if (hooks.log && sized_by_steps && !cfg.resume.empty() && resume_at.epoch > 0 &&
      schedule_steps(s->train.size(), cfg.train, &resume_at) !=
          schedule_steps(s->train.size(), cfg.train, nullptr))
    hooks.log("note: the " + std::to_string(resume_at.epoch) +
              " epochs before the checkpoint took " +
              std::to_string(resume_at.step - resume_at.batch) +
              " steps, not what these batch options give; the schedule keeps them, so its curve "
              "continues from step " +
              std::to_string(resume_at.step));
  RunResult r;
  r.device = s->device;
  r.test_data = train_data_signature(s->test);
  r.num_params = s->model->num_params();
  // Inputs first (the resume checkpoint), outputs (log, checkpoints) only once they are good.
  TrainPosition from;
  from.step = s->trainer->step();
  std::vector<std::string> resume_lines;
  if (!cfg.resume.empty()) {
    // Its lines ("resumed from ...") are said once the trainer's checks pass (on_start): a
    // refused run (a batch norm's batch of 1, --augment on MNIST) printed them before its usage
    // error and read as resumed.
    from = resume_session(*s, resume_file,
                          [&resume_lines](const std::string& l) { resume_lines.push_back(l); });
    // A checkpoint without the steps of each past epoch (an older kiln's): this run records the
    // ones its schedule was sized with, so its own checkpoints resume it as it runs.
    if (from.epoch > 0 && from.epoch_steps.empty()) {
      // (The trainer keeps them only if they account for the checkpoint's step.)
      const std::vector<long long> sized = schedule_steps(s->train.size(), cfg.train, &from);
      if (sized.size() >= static_cast<size_t>(from.epoch))
        from.epoch_steps.assign(sized.begin(), sized.begin() + from.epoch);
    }
  } else if (hooks.log && (cfg.checkpoint_every > 0 || cfg.checkpoint_every_steps > 0)) {
    const std::string note = existing_checkpoints_note(cfg);
    if (!note.empty()) hooks.log("note: " + note);
  }
  StopSignals signals;
  Trainer& tr = *s->trainer;
  if (s->val.size() > 0) tr.val_set = &s->val;
  tr.checkpoint_every_epochs = cfg.checkpoint_every;
  tr.checkpoint_every_steps = cfg.checkpoint_every_steps;
  tr.stop_flag = StopSignals::flag();
  tr.on_start = [&resume_lines, &hooks] {
    if (hooks.log)
      for (const std::string& l : resume_lines) hooks.log(l);
    if (hooks.ready) hooks.ready();
  };
  bool prune_noted = false;  // said once: every later checkpoint would repeat it
  tr.on_checkpoint = [&](const TrainPosition& p, const std::string&) {
    std::string prune_failed;
    r.last_checkpoint = write_periodic_checkpoint(*s, p, &prune_failed);
    if (!prune_failed.empty() && !prune_noted && hooks.log) {
      hooks.log("note: --keep-last " + std::to_string(cfg.keep_last) +
                " could not delete older checkpoints (" + prune_failed +
                "); they stay, and so will later ones that cannot be deleted");
      prune_noted = true;
    }
  };
  r.epochs = tr.fit(s->train, &s->test, from);
  if (tr.stopped()) r.stop_signal = *StopSignals::flag();
  else if (!cfg.save.empty()) write_session_checkpoint(*s, cfg.save, tr.position());
  for (const auto& e : r.epochs) r.train_seconds += e.seconds;
  r.restored_epoch = tr.restored_epoch();
  if (tr.restored_epoch() > 0) {  // --restore-best: the score of the weights the run ends with
    r.test_acc = tr.restored_test().acc;
    r.test_loss = tr.restored_test().loss;
  } else if (!r.epochs.empty()) {
    r.test_acc = r.epochs.back().test_acc;
    r.test_loss = r.epochs.back().test_loss;
  } else if (!tr.stopped()) {
    // Nothing left to train (--epochs 0, or --resume of a finished run): report the model as
    // it stands rather than test_acc=nan, so a checkpoint can be scored this way.
    EvalResult e = tr.evaluate(s->test);
    r.test_acc = e.acc;
    r.test_loss = e.loss;
  }
  return r;
}

}  // namespace kiln
