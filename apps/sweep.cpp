// sweep: grid/random hyperparameter search from a YAML file (W&B-like schema), trials run
// in-process one after another; results in DIR/results.jsonl + results.csv, a leaderboard at
// the end (with mean/std over seeds when "seed" is swept), and the parameter-importance table
// for random sweeps; --report DIR prints all of it again for a sweep directory.
#include "tuning/sweep.h"

#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "apps/app_common.h"
#include "tuning/importance.h"
#include "tuning/options.h"
#include "tuning/run_checkpoint.h"

using namespace kiln;  // an app, not the library

static const char* kUsage =
    "usage: sweep SWEEP.yaml [--dir DIR] [--resume] [--worker i/N] [--top K] [run options]\n"
    "       sweep --report DIR | --importance DIR\n"
    "Runs the trials of a grid or random sweep (see experiments/*.yaml and docs/EXPERIMENTS.md).\n"
    "  --dir DIR       results directory (default sweeps/<file name>); holds results.jsonl,\n"
    "                  results.csv, sweep.yaml (a copy), run_options.json (the trials' shared\n"
    "                  options), trials/trial-<id>.jsonl (metrics)\n"
    "                  and trial-<id>.log (its console lines, e.g. --grad-report), locks/\n"
    "  --resume        skip trials already in DIR/results.jsonl\n"
    "  --worker i/N    run only trials with id % N == i (several processes may share DIR)\n"
    "  --top K         leaderboard rows (default 20)\n"
    "  --dry-run       validate the file and list the trials without running them (with\n"
    "                  --worker, its share; with --resume or --worker, the recorded ones\n"
    "                  marked)\n"
    "  --report DIR    print the leaderboard, the over-seeds table (when 'seed' is a\n"
    "                  parameter) and, for a random sweep, the importance table of a sweep\n"
    "                  directory, and exit\n"
    "  --importance DIR  print only the parameter-importance table of a sweep and exit\n"
    "Run options (--device cuda, --data-dir ..., --epochs 2) apply to every trial, over the\n"
    "file's base mapping; they may not name a swept option (nor --log: see --dir). A trial\n"
    "trains 1 epoch unless the file's base, a parameter or --epochs says otherwise.\n"
    "--save FILE writes one model per trial (FILE with .trial-<id> before the extension);\n"
    "a trial's checkpoints go to DIR/trials/trial-<id>-checkpoints, or with --checkpoint-dir D\n"
    "to D/trial-<id>; a trial stopped by SIGINT/SIGTERM checkpoints there (to inspect) and\n"
    "--resume runs it again from its start. A trial that diverges, runs out of memory or has\n"
    "invalid options is recorded as failed and the sweep goes on; other runtime errors\n"
    "(data, I/O) stop it, as do 3 trials in a row out of memory (the last unrecorded:\n"
    "--resume runs it again).\n"
    "Exit codes: 0 ok, 1 runtime error or every trial failed, 2 usage error, 130/143 stopped\n"
    "by SIGINT/SIGTERM (finished trials are kept; --resume continues).\n";

static std::vector<std::string> param_names(const SweepSpec& spec) {
  std::vector<std::string> n;
  for (const auto& p : spec.params) n.push_back(p.name);
  return n;
}

// A sweep directory's spec (its copy of the YAML) and results, for --report / --importance.
static std::pair<SweepSpec, std::vector<TrialRecord>> load_sweep_dir(const std::string& dir) {
  SweepSpec spec = load_sweep(dir + "/sweep.yaml");
  auto results = read_results(dir);
  KILN_USAGE_CHECK(!results.empty(), dir << "/results.jsonl: no results");
  return {spec, results};
}

static void print_importance(const SweepSpec& spec, const std::vector<TrialRecord>& results) {
  std::printf("%s",
              importance_table(param_importance(param_names(spec), results), spec.metric).c_str());
}

// The leaderboard and the over-seeds table (empty without repeated seeds).
static void print_tables(const SweepSpec& spec, const std::vector<TrialRecord>& results,
                         size_t top) {
  std::printf("%s%s", leaderboard(spec, results, top).c_str(), seed_table(spec, results).c_str());
}

// sweep's --resume continues the sweep; a checkpoint `file` for every trial goes in the file.
static std::string resume_takes_no_value(const std::string& file) {
  return "sweep's --resume takes no value (it continues the sweep in --dir); to start every "
         "trial from a checkpoint, put resume: " +
         file + " under the sweep file's base";
}

// argparse's "--resume false" (read as a second sweep file) and "--resume=true" (read as a
// checkpoint to put under the base): sweep's --resume is a bare flag.
static void check_resume_word(const std::string& v) {
  KILN_USAGE_CHECK(bool_word(v) < 0, "sweep's --resume takes no value (it got '"
                                         << v
                                         << "'): give --resume to continue the sweep in --dir, "
                                            "or leave it out");
}

// The command line: sweep's own flags, the sweep file, and the run options passed on to trials.
struct SweepArgs {
  std::string dir, importance_dir, report_dir, worker = "0/1";
  bool help = false, resume = false, dry_run = false, worker_set = false, top_set = false;
  size_t top = 20;
  std::vector<char*> rest;  // argv[0] and the run options, for parse_args
  std::vector<std::string> files;
};

static SweepArgs parse_sweep_args(int argc, char** argv) {
  SweepArgs s;
  s.rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const app::FlagArg f = app::split_flag(a);
    const std::string& flag = f.flag;
    auto value = [&](const char* name) -> std::string {
      std::string v = app::flag_value(f, argc, argv, i);
      KILN_USAGE_CHECK(!v.empty(), name << ": an empty value");
      return v;
    };
    if (a == "--help" || a == "-h") {
      s.help = true;
      return s;
    } else if (flag == "--dir")
      s.dir = value("--dir");
    else if (a == "--resume") {
      s.resume = true;
      // "--resume ck.safetensors": not a second sweep file, and not the run option either
      const std::string next = i + 1 < argc ? argv[i + 1] : "";
      if (i + 1 < argc) check_resume_word(next);
      KILN_USAGE_CHECK(next.size() <= 12 || next.compare(next.size() - 12, 12, ".safetensors") != 0,
                       resume_takes_no_value(next));
    } else if (flag == "--resume") {  // --resume=F: not the run option (each trial from F)
      check_resume_word(f.value);
      KILN_USAGE_FAIL(resume_takes_no_value(f.value));
    } else if (flag == "--dry-run") {  // as the run options' bool flags: =true|false, --no-dry-run
      if (!f.inline_value && i + 1 < argc)
        check_bool_flag_next("--dry-run", "dry-run", argv[i + 1]);
      s.dry_run = !f.inline_value || parse_bool(f.value, "--dry-run");
    } else if (flag == "--no-dry-run") {  // "--no-dry-run false", "=false": as a run option's
      if (f.inline_value || i + 1 < argc)
        check_negated_bool_value("--no-dry-run", "dry-run", f.inline_value ? f.value : argv[i + 1],
                                 f.inline_value);
      s.dry_run = false;
    } else if (flag == "--worker") {
      s.worker = value("--worker");
      s.worker_set = true;
    } else if (flag == "--importance")
      s.importance_dir = value("--importance");
    else if (flag == "--report")
      s.report_dir = value("--report");
    else if (flag == "--top") {
      std::string v = value("--top");
      KILN_USAGE_CHECK(
          !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos,
          "--top '" << v << "': expected a number of rows");
      s.top = static_cast<size_t>(std::stoul(v));
      s.top_set = true;
    } else if (a.rfind("--", 0) != 0) {
      KILN_USAGE_CHECK(a.size() < 2 || a[0] != '-',
                       "unknown option '" << a << "' (options are --name, see --help)");
      s.files.push_back(a);
    } else {
      KILN_USAGE_CHECK(a != "--", "a bare '--': options are --name value (or --name=value)");
      s.rest.push_back(argv[i]);
      // A run option's value travels with it (bool flags have none). An unknown one is an
      // error here: its value would otherwise be taken for a second sweep file.
      const std::string name = flag.substr(2);
      const OptionSpec* o = run_options().find(name);
      if (!o && name != "config" && !run_options().negated_bool(name)) {
        RunConfig scratch;
        run_options().set(scratch, name, "", flag);  // throws: unknown, with a suggestion
      }
      // argparse's "--shuffle false": refused as train_mnist refuses it (it was read as a
      // second sweep file)
      if (o && o->type == "bool" && !f.inline_value && i + 1 < argc)
        check_bool_flag_next(flag, o->name, argv[i + 1]);
      if (const OptionSpec* b = o ? nullptr : run_options().negated_bool(name);
          b && !f.inline_value && i + 1 < argc)
        check_negated_bool_value(flag, b->name, argv[i + 1], false);  // (=V: parse_args')
      if ((name == "config" || (o && o->type != "bool")) && !f.inline_value && i + 1 < argc) {
        check_separate_value(flag, argv[i + 1]);
        s.rest.push_back(argv[++i]);
      }
    }
  }
  return s;
}

// The trial id whose digits start at `at` in `name` (1 to 18 of them, whatever follows), or -1.
static int64_t trial_id_at(const std::string& name, size_t at) {
  size_t end = at;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == at || end - at > 18) return -1;
  return std::stoll(name.substr(at, end - at));
}

// --save FILE gives trial <id> FILE.trial-<id>.EXT (trial_config). One that names the sweep file
// or the checkpoint a resume: base continues replaced it: trial 0 of `sweep x.trial-0.yaml --save
// x.yaml` wrote its model over the sweep file (a --resume then read a checkpoint as YAML), and
// with resume: m.trial-0.safetensors, --save m.safetensors, the later trials continued trial 0's
// model (the train_mnist rule that --save may replace the --resume file is for one run). A usage
// error before any trial, and in the dry run.
static void check_trial_saves(const SweepSpec& spec, const RunConfig& base,
                              const std::string& file) {
  if (base.save.empty()) return;
  const int64_t n = num_trials(spec);
  const std::pair<const char*, std::string> ins[] = {
      {"the sweep file", file}, {"the resume: file every trial continues", base.resume}};
  for (const auto& [what, path] : ins) {
    if (path.empty()) continue;
    const std::string name = path.substr(path.find_last_of('/') + 1);  // (npos + 1: all of it)
    for (size_t at = name.find(".trial-"); at != std::string::npos;
         at = name.find(".trial-", at + 1)) {
      const int64_t id = trial_id_at(name, at + 7);
      if (id < 0 || id >= n) continue;
      const std::string save = trial_config(spec, base, id, "check").save;
      KILN_USAGE_CHECK(!same_file(save, path), "--save " << base.save << ": trial " << id
                                                         << " would write " << save << ", " << what
                                                         << "; name another");
    }
  }
}

// --keep-last K prunes the periodic checkpoints of the run a trial continues (a resumed run keeps
// its run id): with the resume: file itself a periodic checkpoint in trial <id>'s checkpoint
// directory (--checkpoint-dir D: D/trial-<id>; else DIR/trials/trial-<id>-checkpoints), trial
// <id> deleted it once it had written K newer ones, and every later trial failed "cannot open"
// (exit 1): `resume: D/trial-0/ckpt-epoch-1.safetensors` with --checkpoint-dir D --keep-last 1.
// A usage error before any trial, and in the dry run.
static void check_trial_pruning(const SweepSpec& spec, const RunConfig& base,
                                const std::string& dir) {
  if (base.keep_last <= 0 || base.resume.empty() ||
      (base.checkpoint_every <= 0 && base.checkpoint_every_steps <= 0))
    return;
  const size_t slash = base.resume.find_last_of('/');
  const std::string name = base.resume.substr(slash + 1);  // (npos + 1: all of it)
  if (name.rfind("ckpt-", 0) != 0) return;  // (not a periodic checkpoint's name: never pruned)
  const std::string parent = slash == std::string::npos ? "." : base.resume.substr(0, slash);
  const std::string leaf = parent.substr(parent.find_last_of('/') + 1);
  if (leaf.rfind("trial-", 0) != 0) return;
  const int64_t id = trial_id_at(leaf, 6);
  if (id < 0 || id >= num_trials(spec)) return;
  const std::string ckdir = trial_config(spec, base, id, dir).checkpoint_dir;
  KILN_USAGE_CHECK(
      !same_file(ckdir, parent),
      "--keep-last " << base.keep_last << ": trial " << id << " keeps its periodic checkpoints in "
                     << ckdir << ", which holds the resume: file every trial continues ("
                     << base.resume << "), and would delete it; name another --checkpoint-dir");
}

// --report DIR / --importance DIR: read a finished sweep directory, run nothing.
static int report(const SweepArgs& s) {
  const char* mode = s.report_dir.empty() ? "--importance" : "--report";
  KILN_USAGE_CHECK(s.report_dir.empty() || s.importance_dir.empty(),
                   "--report and --importance: give one (--report prints the importance too)");
  KILN_USAGE_CHECK(s.files.empty() && s.rest.size() == 1 && s.dir.empty() && !s.resume &&
                       !s.dry_run && !s.worker_set && (!s.report_dir.empty() || !s.top_set),
                   mode << " DIR reads a finished sweep and runs nothing; it takes no sweep "
                           "file or other option"
                        << (s.report_dir.empty() ? "" : " (but --top)"));
  if (!s.report_dir.empty()) {
    auto [spec, results] = load_sweep_dir(s.report_dir);
    print_tables(spec, results, s.top);
    if (spec.method == "random") print_importance(spec, results);
  } else {
    auto [spec, results] = load_sweep_dir(s.importance_dir);
    print_importance(spec, results);
  }
  return 0;
}

// Flags (and a --config file's keys) may not fight the sweep over a swept option, alone or in a
// grouped parameter: the trial's value would silently win. `what` names the setting.
static void check_not_swept(const SweepSpec& spec, const std::string& file, const std::string& key,
                            const std::string& what, const char* where) {
  const std::string why = sweep_refused_option(key);
  KILN_USAGE_CHECK(why.empty(), what << ": " << why);
  for (const auto& p : spec.params) {
    KILN_USAGE_CHECK(p.name != key && "no-" + p.name != key,
                     what << ": '" << p.name << "' is a parameter of " << file
                          << "; it cannot also be set " << where);
    for (const auto& bundle : p.bundles)
      for (const auto& kv : bundle) {
        const std::string k = normalize_key(kv.first);
        KILN_USAGE_CHECK(k != key && "no-" + k != key,
                         what << ": '" << k << "' is set by parameter '" << p.name << "' of "
                              << file << "; it cannot also be set " << where);
      }
  }
}

// resume: FILE in the base (or a --config file): every trial starts from that checkpoint, and
// the options that neither the sweep file, a --config file nor a flag sets take the values it
// recorded, as train_mnist --resume's do (the trials ran the apps' defaults, on all the data,
// until 2026-12-07: another recipe, said only in each trial's log).
static void adopt_base_resume_options(const SweepSpec& spec, const ParsedArgs& args,
                                      RunConfig& base) {
  ParsedArgs given = args;
  auto add = [&given](const std::string& key) {  // (a key as written: its option's name)
    const OptionSpec* o = run_options().find(key);
    if (!o) o = run_options().negated_bool(key);
    if (o) given.flag_keys.push_back(o->name);
  };
  for (const auto& kv : spec.base) add(kv.first);
  for (const auto& p : spec.params) {
    add(p.name);
    for (const auto& bundle : p.bundles)
      for (const auto& kv : bundle) add(kv.first);
  }
  app::print_adopted_options("sweep", base, adopt_resume_options(base, given, kRangeTestOnly),
                             "the sweep");
}

// "sweep: interrupted by SIGINT<rest>", and the exit code. A signal before the first trial (a
// dry run's listing, the checks of a million trials) stops at once; it was acted on only after
// the sweep directory was written, or not at all.
static int stopped(int sig, const std::string& rest) {
  std::fprintf(stderr, "sweep: interrupted by %s%s\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
               rest.c_str());
  return 128 + sig;
}

// The sweep directory: --dir, else sweeps/<the file's name without its extension>.
static std::string sweep_dir(const SweepArgs& s) {
  if (!s.dir.empty()) return s.dir;
  const std::string& file = s.files[0];
  const std::string stem = file.substr(file.find_last_of('/') + 1);
  return "sweeps/" + stem.substr(0, stem.find_last_of('.'));
}

// --dry-run: the file and options checked, and the trials listed, as a real run would draw them:
// with --worker i/N only that worker's share, and with --resume or --worker the trials the
// directory has recorded marked (and not checked: the run skips them), after the checks the
// run makes of the directory (its sweep file and run options). The first line's form is kept
// (catalogue.sh reads the trial count from it).
static int dry_run(const SweepSpec& spec, const SweepArgs& s, const RunConfig& base,
                   const ParsedArgs& args, const std::string& spec_text) {
  const std::string& file = s.files[0];
  check_param_names(spec);
  check_val_metric(spec, base);
  const auto [worker, workers] = parse_worker(s.worker);  // refused as a real run would
  int64_t n = num_trials(spec);
  std::map<int64_t, std::string> recorded;  // trial -> status
  const std::string dir = sweep_dir(s);
  {
    SweepOptions o;
    o.dir = dir;
    o.base = base;
    o.spec_text = spec_text;
    o.resume = s.resume;  // (alone, a run refuses a DIR with results)
    o.worker = worker;
    o.num_workers = workers;
    for (const TrialRecord& r : check_sweep_dir(spec, o)) recorded.emplace(r.trial, r.status);
  }
  TrialChecks trial_checks;  // (--epochs, and a resume: in the base, as a run)
  std::printf("%s: %s, %lld trials, metric %s (%s)\n", file.c_str(), spec.method.c_str(),
              static_cast<long long>(n), spec.metric.c_str(),
              spec.maximize ? "maximize" : "minimize");
  const int64_t share = n / workers + (worker < n % workers ? 1 : 0);
  if (workers > 1)
    std::printf("worker %d/%d: the trials whose id %% %d is %d, %lld of them\n", worker, workers,
                workers, worker, static_cast<long long>(share));
  if (s.resume || workers > 1) {  // (else the DIR holds none: refused above)
    int64_t mine = 0;
    for (const auto& kv : recorded) mine += kv.first < n && kv.first % workers == worker;
    std::printf("%s: %lld of them recorded, which the run skips\n", dir.c_str(),
                static_cast<long long>(mine));
  }
  for (int64_t i = worker; i < n; i += workers) {
    if (const int sig = *StopSignals::flag()) return stopped(sig, " in the dry run");
    std::string line;
    for (const auto& kv : trial_params(spec, i)) line += " " + kv.first + "=" + kv.second;
    const auto done = recorded.find(i);
    if (done != recorded.end()) {
      std::printf("trial %lld:%s (recorded: %s)\n", static_cast<long long>(i), line.c_str(),
                  done->second.c_str());
      continue;
    }
    RunConfig c = trial_config(spec, base, i, "dry-run");
    try {  // a bad combination shows here (a real run records it as a failed trial)
      c.validate();
      trial_checks.check(c);
    } catch (const Error& e) {
      // Context, not blame: the bad value may be the file's or a flag's.
      throw with_config_origin(e.prefixed("trial " + std::to_string(i) + " of " + file + ": "),
                               args);
    }
    std::printf("trial %lld:%s\n", static_cast<long long>(i), line.c_str());
  }
  return 0;
}

// The tables after the trials, and the exit status: 1 when every trial of the sweep failed.
static int finish(const SweepSpec& spec, const SweepOutcome& out, int64_t n, size_t top) {
  std::printf("ran %lld trials here; %lld already done, %lld claimed by other workers\n",
              static_cast<long long>(out.ran), static_cast<long long>(out.skipped_done),
              static_cast<long long>(out.skipped_other));
  print_tables(spec, out.results, top);
  bool all_done = static_cast<int64_t>(out.results.size()) >= n;
  if (spec.method == "random" && all_done) print_importance(spec, out.results);
  int ok = 0;
  for (const auto& r : out.results) ok += r.status != "failed";
  // "Every trial failed" is a verdict on the whole sweep: a worker that ends while trials are
  // still unrecorded (others' shards running) only notes it, and the one that records the last
  // trial judges. (A worker whose one trial failed exited 1 beside a good sweep.)
  if (!all_done && !out.results.empty() && ok == 0) {
    std::fprintf(stderr,
                 "sweep: note: the %lld trials recorded so far all failed; %lld of %lld are not "
                 "recorded yet\n",
                 static_cast<long long>(out.results.size()),
                 static_cast<long long>(n - static_cast<int64_t>(out.results.size())),
                 static_cast<long long>(n));
    return 0;
  }
  KILN_CHECK(
      out.results.empty() || ok > 0,
      "all " << out.results.size() << " trials failed; first: " << out.results.front().message);
  return 0;
}

int main(int argc, char** argv) {
  return app::guarded_main("sweep", [&] {
    app::catch_stop_signals_until_exit();  // from the start: also between trials and while one
                                           // loads its data
    SweepArgs s = parse_sweep_args(argc, argv);
    if (s.help) {
      std::printf("%s", kUsage);
      return 0;
    }
    if (!s.report_dir.empty() || !s.importance_dir.empty()) return report(s);
    KILN_USAGE_CHECK(s.files.size() == 1,
                     (s.files.empty() ? "missing the sweep YAML file" : "more than one sweep file")
                         << " (usage: sweep SWEEP.yaml [--dir DIR] ...)");
    const std::string& file = s.files[0];
    std::string spec_text;  // kept as DIR/sweep.yaml: the text parsed, not a second read
    SweepSpec spec = load_sweep(file, &spec_text);
    for (const std::string& note : spec.notes)
      std::fprintf(stderr, "sweep: note: %s: %s\n", file.c_str(), note.c_str());
    for (size_t i = 1; i < s.rest.size(); ++i) {
      std::string a = s.rest[i];
      if (a.rfind("--", 0) != 0) continue;
      check_not_swept(
          spec, file,
          normalize_key(
              a.substr(2, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 2)),
          a, "on the command line");
    }
    RunConfig defaults = app::default_run_config();
    defaults.train.epochs = 1;
    RunConfig base = defaults;
    apply_sweep_base(spec, base);
    ParsedArgs args =
        parse_args(base, static_cast<int>(s.rest.size()), s.rest.data(), run_options());
    KILN_USAGE_CHECK(args.positional.empty(), "unexpected argument '" << args.positional[0] << "'");
    for (const auto& [name, key] : args.config_keys)
      check_not_swept(spec, file, name, args.config_path + ": key '" + key + "'",
                      "in a --config file");
    if (!base.resume.empty()) adopt_base_resume_options(spec, args, base);

    const std::string before_first = " before the first trial; nothing was written";
    check_trial_saves(spec, base, file);
    check_trial_pruning(spec, base, sweep_dir(s));
    if (s.dry_run) return dry_run(spec, s, base, args, spec_text);
    // Options no trial can run with (--width 0 for every trial, optimizer 'adamm') are a usage
    // error now, not a sweep of failed trials; a combination only some trials hit stays a
    // failed trial.
    int64_t first_ok = -1;
    try {
      first_ok = check_sweep_trials(spec, base);
    } catch (const Error& e) {
      throw with_config_origin(e, args);  // a --config file's value is named as the file's key
    } catch (const TrialInterrupted& e) {
      return stopped(e.signal, before_first);
    }
    // Options some trial never reads (a swept --momentum under adam): once here, per trial in
    // its trial-<id>.log.
    for (const std::string& note : sweep_option_notes(spec, base, defaults))
      std::fprintf(stderr, "sweep: note: %s\n", note.c_str());
    if (spec.metric.rfind("test_", 0) == 0)
      std::fprintf(stderr,
                   "sweep: note: trials are ranked%s on the test set (metric %s): the best score "
                   "is then an optimistic estimate; metric val_%s with --val-split 0.1 ranks on a "
                   "held-out split\n",
                   spec.median_stop ? " and pruned" : "", spec.metric.c_str(),
                   spec.metric.c_str() + 5);
    if (const int sig = *StopSignals::flag()) return stopped(sig, before_first);
    SweepOptions o;
    std::tie(o.worker, o.num_workers) = parse_worker(s.worker);
    o.resume = s.resume;
    const std::string dir = sweep_dir(s);
    o.dir = dir;
    o.base = base;
    // What every trial writes (--save's directory, --checkpoint-dir) is checked once, now: a path
    // no trial can write is a usage error, not a sweep of failed trials that --resume then skips.
    // And the data files are found (a missing one stops the sweep): both before the header and
    // device lines, as the training apps refuse them before theirs. (A truncated file shows
    // only when the first trial reads it.) Not where a parameter sets the data: the first
    // trial's are not this worker's (--worker 1/2, or a --resume that skips it), and each trial
    // finds its own when it starts.
    if (first_ok >= 0) {
      RunConfig c = trial_config(spec, base, first_ok, dir);
      c.train.log_path.clear();  // DIR/trials/, made by the sweep
      check_output_paths(c, dir);  // (--save in DIR, which the sweep makes: checked when made)
      if (swept_by(spec, "data-dir").empty() && swept_by(spec, "dataset").empty())
        check_dataset_files(c.data);
    }
    o.spec_text = spec_text;
    // The directory's checks (another sweep's file or options, results without --resume), as
    // the dry run makes them: refused before the header and device lines too. (The run makes
    // them again under its lock, where another worker may have changed it.)
    check_sweep_dir(spec, o);
    // The trials' lines on stdout; a note on stderr with the sweep's others (it was on stdout,
    // unnamed)
    o.log = [](const std::string& line) {
      const std::string named = app::program_line("sweep", line);
      std::FILE* to = named == line ? stdout : stderr;
      std::fprintf(to, "%s\n", named.c_str());
      std::fflush(to);
    };
    int64_t n = num_trials(spec);
    std::printf("sweep %s: %s, %lld trials, metric %s (%s), dir %s, worker %d/%d\n", file.c_str(),
                spec.method.c_str(), static_cast<long long>(n), spec.metric.c_str(),
                spec.maximize ? "maximize" : "minimize", dir.c_str(), o.worker, o.num_workers);
    // The trials' device and, on the CPU, the GEMM kernels that decide their bits (as
    // train_mnist's line; a sweep said neither)
    // (a parameter that sets the device or the threads per trial is named: the line is the
    // base's, which those trials do not run with)
    RunConfig shown = base;
    if (!swept_by(spec, "device").empty()) shown.device = "auto";  // (the base's is not used)
    std::string device = app::device_line(shown);
    for (const char* opt : {"device", "threads"})
      if (const std::string by = swept_by(spec, opt); !by.empty())
        device += "; parameter '" + by + "' sets " + opt + " per trial";
    std::printf("device: %s\n", device.c_str());
    std::fflush(stdout);
    SweepOutcome out;
    try {
      out = run_sweep(spec, o, default_trial_runner(defaults, [](const std::string& note) {
                        std::fprintf(stderr, "sweep: note: %s\n", note.c_str());
                      }));
    } catch (const TrialInterrupted& e) {
      return stopped(e.signal, "; finished trials are in " + dir + " (continue with --resume)");
    }
    return finish(spec, out, n, s.top);
  });
}
