// Checkpoint files of a run (naming, directory, pruning), resuming a session, and the stop
// signals. See run_checkpoint.h.
#include "tuning/run_checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/json.h"
#include "engine/numtext.h"
#include "engine/process.h"
#include "tuning/run.h"

namespace kiln {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
// StopSignals objects alive, and the handlers the first one replaced: the first in installs,
// the last out restores, under a mutex, so runs in several threads (not nested in time) neither
// race on the count nor restore a handler that was never saved.
std::mutex g_stop_mutex;
int g_stop_depth = 0;
struct sigaction g_old_int, g_old_term;

// When the first signal came (CLOCK_MONOTONIC ns; lock-free, so the handler may store it).
std::atomic<int64_t> g_stop_first_ns{0};
static_assert(std::atomic<int64_t>::is_always_lock_free, "the signal handler stores it");
constexpr int64_t kSameStopNs = 1000000000;  // a second signal within 1 s is the same stop

extern "C" void kiln_on_stop_signal(int sig) {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  const int64_t now = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  if (g_stop_signal == 0) {
    g_stop_first_ns = now;
    g_stop_signal = sig;
    return;
  }
  // The same stop delivered twice: GNU timeout signals its child and then the child's process
  // group, a shell passes on a Ctrl-C the terminal also sent. Only a later one (a second Ctrl-C)
  // takes the default action, which is safe as checkpoints are written atomically.
  // first == 0: the first signal's handler, in another thread, has set the flag but its time
  // is not visible here yet (the two stores may be seen in either order): the same stop.
  const int64_t first = g_stop_first_ns.load();
  if (first == 0 || now - first < kSameStopNs) return;
  ::signal(sig, SIG_DFL);
  ::raise(sig);  // delivered when the handler returns (sig is blocked in it)
}

std::string dir_name(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void make_dirs(const std::string& dir) {
  std::string at;
  size_t i = 0;
  while (i <= dir.size()) {
    size_t j = dir.find('/', i);
    if (j == std::string::npos) j = dir.size();
    at = dir.substr(0, j);
    if (!at.empty() && ::mkdir(at.c_str(), 0755) != 0 && errno != EEXIST)
      KILN_FAIL("checkpoint directory " << dir << ": cannot create " << at << ": "
                                        << std::strerror(errno));
    i = j + 1;
  }
  struct stat st;
  KILN_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode),
             "checkpoint directory " << dir << ": not a directory");
}

// ckpt-epoch-<E>.safetensors -> ('e', E), ckpt-step-<S>.safetensors -> ('s', S); kind 0 for
// any other name.
std::pair<char, long long> periodic_name(const std::string& n) {
  const std::string suffix = ".safetensors";
  if (n.size() <= suffix.size() || n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0)
    return {0, 0};
  std::string stem = n.substr(0, n.size() - suffix.size());
  for (const char* p : {"ckpt-epoch-", "ckpt-step-"}) {
    std::string pre = p;
    if (stem.rfind(pre, 0) == 0 && stem.size() > pre.size() && stem.size() - pre.size() <= 18 &&
        stem.find_first_not_of("0123456789", pre.size()) == std::string::npos)
      return {pre[5], std::stoll(stem.substr(pre.size()))};
  }
  return {0, 0};
}

// Options that only steer this invocation; a resumed run may change them without a note.
bool run_control_option(const std::string& k) {
  return option_has(k, kSideEffect | kInvocation);
}

}  // namespace

std::string run_config_json(const RunConfig& cfg) {
  JsonObject j;
  for (const auto& s : run_options().specs()) j.add(s.name, s.get(cfg));
  return j.str();
}

namespace {
// The options as the run uses them: an unset weight decay, gamma or cycling momentum (NaN,
// "auto") as the optimizer and schedule resolve it.
RunConfig effective(const RunConfig& c) {
  RunConfig r = c;
  r.optim = c.optim.resolved();
  r.sched = c.sched.resolved();
  return r;
}
}  // namespace

JsonValue checkpoint_config(const SafetensorsFile& f, const std::string& what) {
  const std::string* text = f.meta("config");
  KILN_CHECK(text, what << ": no config in __metadata__");
  try {
    return parse_json(*text);
  } catch (const Error& e) {
    KILN_FAIL(what << ": __metadata__ config: " << e.message());
  }
}

std::vector<std::string> adopt_resume_options(RunConfig& cfg, const ParsedArgs& args,
                                              unsigned skip_traits) {
  std::vector<std::string> changed;
  if (cfg.resume.empty()) return changed;
  // An output over the --resume file is the mistake to name, not what reading it finds; the
  // run checks again with the options taken here.
  check_output_paths(cfg);
  const JsonValue saved =  // checksums verified first
      checkpoint_config(read_checkpoint(cfg.resume), "checkpoint " + cfg.resume);
  // Where and how this invocation runs, and what it writes: the side-effect options (device,
  // data-dir, cuda-graphs, the checkpoint outputs, --save...), the precision (tied to the
  // device), --log and the range test's CSV. A resume that wrote into the run's files would
  // overwrite them when it branches off an earlier checkpoint with other options.
  static const std::set<std::string> kNotTaken = {"precision", "summary", "resume",
                                                  "lr-find",   "log",     "lr-find-csv"};
  const OptionTable& table = run_options();
  auto named = [&](const std::string& name) {
    return args.config_keys.count(name) ||
           std::find(args.flag_keys.begin(), args.flag_keys.end(), name) != args.flag_keys.end();
  };
  // Options of which a run sets one: giving one now replaces the recorded other (a run of
  // --global-clipnorm 1 resumed with --clipnorm 0.5 was refused as setting both).
  static const std::vector<std::vector<std::string>> kOneOf = {
      {"clipnorm", "global-clipnorm", "clipvalue"}, {"warmup-steps", "warmup-epochs"}};
  auto given = [&](const OptionSpec& o) {
    if (named(o.name)) return true;
    for (const auto& group : kOneOf)
      if (std::find(group.begin(), group.end(), o.name) != group.end())
        for (const std::string& other : group)
          if (named(other)) return true;
    return false;
  };
  auto taken = [&](const OptionSpec& o) {
    return !kNotTaken.count(o.name) && !(o.traits & (kSideEffect | skip_traits)) && !given(o);
  };
  auto origin = [&](const OptionSpec& o) {
    return "--resume " + cfg.resume + ": its recorded --" + o.name + " (give --" + o.name +
           " to set it)";
  };
  // The recorded values ("" is an unset option, a path not given; a key this kiln lacks is an
  // option since removed, which it cannot apply).
  std::vector<std::pair<const OptionSpec*, std::string>> recorded;
  for (const auto& [k, v] : saved.members)
    if (const OptionSpec* o = table.find(k); o && v.is_string() && !v.text.empty())
      recorded.emplace_back(o, v.text);
  auto is_auto = [](const OptionSpec& o, const RunConfig& c) {
    return o.get(c) != o.get(effective(c));
  };
  // The checkpoint's recipe as this kiln resolves it: an option the run left unset is recorded
  // as what it resolved to, and is left unset here when it still resolves to that (so another
  // --schedule or --optimizer given now resolves it afresh); a recorded value that differs was
  // given (or a default has changed since) and is kept. (A recorded value this kiln cannot
  // read only matters if it is taken, below.)
  RunConfig rec = cfg;
  for (const auto& [o, v] : recorded) {
    if (is_auto(*o, rec)) continue;
    try {
      table.set(rec, o->name, v, origin(*o));
    } catch (const Error&) {
    }
  }
  const RunConfig before = effective(cfg);
  for (const auto& [o, v] : recorded) {
    if (!taken(*o)) continue;
    if (is_auto(*o, cfg) && o->get(effective(rec)) == v) continue;
    table.set(cfg, o->name, v, origin(*o));
    // Re-read every epoch, relative to where the run started: say where the name came from.
    KILN_USAGE_CHECK(
        o->name != "schedule-file" || ::access(v.c_str(), R_OK) == 0,
        origin(*o) << ": " << v << " cannot be read from here: " << std::strerror(errno));
  }
  const RunConfig after = effective(cfg);
  for (const auto& o : table.specs())
    if (o.get(before) != o.get(after)) changed.push_back(o.name + " " + o.get(after));
  return changed;
}

namespace {
// Whether a recorded option's text is the value `now` has. Before 2026-12-03 a float option was
// recorded to 6 significant digits: such a text is the same option as the exact one it rounds
// (the old file cannot tell more).
bool same_option_text(const std::string& old, const std::string& now) {
  if (old == now) return true;
  char* end = nullptr;
  const double x = strtod_c(now.c_str(), &end);
  return !now.empty() && *end == 0 && format_c("%.6g", x) == old;
}
}  // namespace

std::string config_diffs(const JsonValue& was, const JsonValue& now,
                         const std::function<bool(const std::string&)>& skip,
                         const std::string& prefix) {
  // An option a later kiln added is missing from an older file; that kiln behaved as the
  // option's default does (a new option's default keeps the old behaviour).
  static const JsonValue defaults = parse_json(run_config_json(RunConfig{}));
  std::string diffs;
  for (const auto& [k, v] : now.members) {
    if (skip(k)) continue;
    const JsonValue* old = was.find(k);
    std::string old_text;
    if (old) {
      if (old->is_string() && same_option_text(old->text, v.text)) continue;
      old_text = old->is_string() ? old->text : std::string("?");
    } else {
      const JsonValue* d = defaults.find(k);
      if (!d || !d->is_string() || d->text == v.text) continue;
      old_text = "(not recorded: the default " + d->text + ")";
    }
    diffs += (diffs.empty() ? "" : ", ") + prefix + k + " " + old_text + " -> " + v.text;
  }
  return diffs;
}

std::string checkpoint_dir_for(const RunConfig& cfg) {
  if (!cfg.checkpoint_dir.empty()) return cfg.checkpoint_dir;
  if (!cfg.save.empty()) return dir_name(cfg.save);
  return "checkpoints";
}

std::string checkpoint_name(const TrainPosition& p) {
  return p.batch == 0 ? "ckpt-epoch-" + std::to_string(p.epoch) + ".safetensors"
                      : "ckpt-step-" + std::to_string(p.step) + ".safetensors";
}

namespace {
// A temp file of a kiln from before the host tag (<name>.safetensors.tmp.<pid>.<k>) whose pid
// is gone here: such leftovers of an upgrade are still removed.
bool stale_untagged_temp(const std::string& n) {
  const size_t t = n.find(".safetensors.tmp.");
  const std::string rest = n.substr(t + 17);
  const size_t dot = rest.find('.');
  if (dot == 0 || dot == std::string::npos || dot > 9 ||
      rest.find_first_not_of("0123456789.") != std::string::npos ||
      rest.find('.', dot + 1) != std::string::npos || dot + 1 == rest.size())
    return false;
  const long pid = std::strtol(rest.c_str(), nullptr, 10);
  return process_gone(pid);
}
}  // namespace

std::string run_id_of(const std::string& config_json) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a, 64 bits
  for (char c : config_json) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return format_c("%016llx", static_cast<unsigned long long>(h));
}

std::string prune_checkpoints(const std::string& dir, int keep, const TrainPosition& upto,
                              const std::string& run_id) {
  if (keep <= 0) return "";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return dir + ": cannot list: " + std::strerror(errno);
  // mtime s, ns, step, name: the training step (in an epoch checkpoint's metadata; not the
  // name's text, where step-100 sorts before step-99, nor its number, an epoch's or a step's)
  // breaks ties of coarse timestamps (1 s on NFSv3, FAT).
  std::vector<std::tuple<long long, long long, long long, std::string>> files;
  const std::string just_written = checkpoint_name(upto);
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    // A process killed mid-write leaves <name>.tmp.<host>.<pid>.<k>; remove those of dead
    // writers (a resumed run may never write that name again).
    if (n.rfind("ckpt-", 0) == 0 && n.find(".safetensors.tmp.") != std::string::npos) {
      if (is_stale_temp_file(n) || stale_untagged_temp(n)) ::unlink((dir + "/" + n).c_str());
      continue;
    }
    // Only names this run has reached (it wrote them, or the run it resumed did): another run's
    // later checkpoints in a shared directory are not this run's to delete.
    const auto [kind, number] = periodic_name(n);
    if (kind == 0 || number > (kind == 'e' ? upto.epoch : upto.step)) continue;
    struct stat st;
    if (n == just_written) continue;  // the newest whatever the clock says: always kept
    if (::stat((dir + "/" + n).c_str(), &st) != 0) continue;
    // (its header read only for what it tells: the run, an epoch checkpoint's step)
    const CheckpointTag tag =
        !run_id.empty() || kind == 'e' ? checkpoint_tag(dir + "/" + n) : CheckpointTag{};
    // Another run's (or an older kiln's, which recorded no run): not this run's to delete.
    if (!run_id.empty() && tag.run_id != run_id) continue;
    files.emplace_back(st.st_mtim.tv_sec, st.st_mtim.tv_nsec, kind == 's' ? number : tag.step, n);
  }
  ::closedir(d);
  std::sort(files.begin(), files.end());
  std::string failed;
  for (size_t i = 0; i + static_cast<size_t>(keep) < files.size() + 1; ++i) {
    const std::string f = dir + "/" + std::get<3>(files[i]);
    if (::unlink(f.c_str()) != 0 && errno != ENOENT)  // ENOENT: another process removed it
      failed += (failed.empty() ? "" : ", ") + f + ": " + std::strerror(errno);
  }
  return failed;
}

namespace {
std::string base_name(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A path spelt without "." parts and repeated or trailing slashes ("./a//b/." -> "a/b"): for
// comparing directories that do not exist yet, which stat cannot.
std::string plain_spelling(const std::string& p) {
  std::string out = !p.empty() && p[0] == '/' ? "/" : "";
  for (size_t i = 0; i < p.size();) {
    size_t j = p.find('/', i);
    if (j == std::string::npos) j = p.size();
    if (j > i && p.compare(i, j - i, ".") != 0)
      out += (out.empty() || out == "/" ? "" : "/") + p.substr(i, j - i);
    i = j + 1;
  }
  return out.empty() ? "." : out;
}
}  // namespace

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;  // the same inode, whatever the spelling (./x, a link)
  const bool has_a = ::stat(a.c_str(), &sa) == 0, has_b = ::stat(b.c_str(), &sb) == 0;
  if (has_a && has_b) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (has_a != has_b) return false;
  // Neither exists yet (two outputs of one run): the same name in the same directory, however
  // either is spelt (x, ./x, $PWD/x, d/../x); text only where a directory is missing too.
  if (base_name(a) != base_name(b)) return false;
  if (::stat(dir_name(a).c_str(), &sa) == 0 && ::stat(dir_name(b).c_str(), &sb) == 0)
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  return plain_spelling(a) == plain_spelling(b);
}

// Why a file cannot be created in the existing directory d, or "" when it can: the run writes
// there (a temp file renamed into place) after hours of training, so a read-only or special
// directory (/proc) fails now. An unnamed O_TMPFILE probe leaves nothing behind; where it
// fails, a named probe (removed at once) decides.
static std::string cannot_create_in(const std::string& d) {
  int fd = ::open(d.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
    return "";
  }
  // Any failure (no O_TMPFILE here, or a real one) is settled by a named file: its error is
  // the one a write would meet.
  // A name taken (a probe a kill left, another container's pid) is retried under another.
  static std::atomic<unsigned> counter{0};
  int err = EEXIST;
  for (int tries = 0; tries < 100 && err == EEXIST; ++tries) {
    const std::string probe = d + "/.kiln-probe-" + std::to_string(::getpid()) + "-" +
                              std::to_string(counter.fetch_add(1));
    fd = ::open(probe.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    err = fd < 0 ? errno : 0;
    if (fd >= 0) {
      ::close(fd);
      ::unlink(probe.c_str());
    }
  }
  return err == 0 ? "" : std::strerror(err);
}

void check_output_file(const char* opt, const std::string& path, bool in_place,
                       const char* companion) {
  struct stat st;
  // A link is written through (write_file_atomic, open()): its target's directory takes the file.
  const std::string target = link_target(path);
  KILN_USAGE_CHECK(!target.empty(), opt << " " << path << ": " << std::strerror(ELOOP));
  const std::string d = dir_name(target);
  KILN_USAGE_CHECK(::stat(d.c_str(), &st) == 0,
                   opt << " " << path << (target == path ? "" : " (a link to " + target + ")")
                       << ": directory " << d << " does not exist");
  KILN_USAGE_CHECK(S_ISDIR(st.st_mode), opt << " " << path << ": " << d << " is not a directory");
  const bool exists = ::stat(path.c_str(), &st) == 0;
  const int stat_errno = exists ? 0 : errno;
  KILN_USAGE_CHECK(stat_errno != ENAMETOOLONG,  // else found when written, after the run
                   opt << " " << path << ": " << std::strerror(stat_errno));
  KILN_USAGE_CHECK(!exists || !S_ISDIR(st.st_mode),
                   opt << " " << path << ": is a directory; name a file");
  // A file replaced by a rename would turn a device or FIFO into a file; one written in place
  // (the log, appended to) may be one: --log /dev/null works.
  KILN_USAGE_CHECK(!exists || S_ISREG(st.st_mode) || in_place,
                   opt << " " << path << ": exists and is not a regular file; not replacing it");
  // An existing file written in place must take writes (--log /dev/stdout); anything else is
  // created in the directory (a temp file renamed over the name).
  if (exists && in_place) {
    const int err = ::access(path.c_str(), W_OK) == 0 ? 0 : errno;
    KILN_USAGE_CHECK(err == 0, opt << " " << path << ": " << std::strerror(err));
  } else if (const std::string why = cannot_create_in(d); !why.empty())
    KILN_USAGE_FAIL(opt << " " << path << ": cannot create a file in " << d << ": " << why);
  if (companion) {  // a second file next to it (CSV.suggestions), replaced by a rename too
    const std::string second = path + companion;
    // Links would part the pair (the curve written where a link leads, the suggestions beside
    // the link's name): both are plain files here.
    for (const std::string& p : {path, second})
      KILN_USAGE_CHECK(::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode),
                       opt << " " << path << ": " << p
                           << " is a symbolic link; name the file itself (the curve and its "
                           << (companion + 1) << " are written side by side)");
    const bool there = ::stat(second.c_str(), &st) == 0;
    KILN_USAGE_CHECK(there || errno != ENAMETOOLONG,
                     opt << " " << path << ": " << second << ": " << std::strerror(ENAMETOOLONG));
    KILN_USAGE_CHECK(
        !there || S_ISREG(st.st_mode),
        opt << " " << path << ": " << second
            << (S_ISDIR(st.st_mode) ? " is a directory" : " exists and is not a regular file")
            << "; not replacing it");
  }
}

namespace {
// The files a run writes, by option: --save, --log, and the range test's CSV only when the run
// is one (otherwise --lr-find-csv is ignored, with a note, so it is not checked either).
std::array<std::pair<const char*, std::string>, 3> output_files(const RunConfig& cfg) {
  const std::string csv = !cfg.lr_find              ? ""
                          : cfg.lr_find_csv.empty() ? "lr_find.csv"
                                                    : cfg.lr_find_csv;
  return {{{"--save", cfg.save}, {"--log", cfg.train.log_path}, {"--lr-find-csv", csv}}};
}
}  // namespace

std::string data_file_clash(const std::string& out, const Dataset& d) {
  for (const std::string& f : d.files)
    if (same_file(out, f)) return f;
  // (a shadow does not exist, or the loader would have read it: compared by directory and name)
  for (const auto& [p, f] : d.shadows)
    if (base_name(out) == base_name(p) && same_file(dir_name(out), dir_name(p)))
      return "a name the loader reads before " + f;
  return "";
}

void check_outputs_spare_data(const RunConfig& cfg, const std::vector<const Dataset*>& data) {
  for (const auto& [opt, path] : output_files(cfg)) {
    if (path.empty()) continue;
    // (the range test's CSV.suggestions too)
    for (const std::string& p :
         {path, std::string(opt) == "--lr-find-csv" ? path + ".suggestions" : ""})
      for (const Dataset* d : data) {
        const std::string f = p.empty() || !d ? "" : data_file_clash(p, *d);
        KILN_USAGE_CHECK(f.empty(), opt << " " << path << (p == path ? "" : ": its " + p) << " is "
                                        << f << ", a file of " << d->name
                                        << " the run reads; name another");
      }
  }
}

void (*detail::checkpoint_dir_before_look)(const std::string& part) = nullptr;

namespace {
// The checkpoint-directory walk's look at a part: lstat, or stat (`follow`), after the test seam.
int look_at(const std::string& part, bool follow, struct stat* st) {
  if (detail::checkpoint_dir_before_look) detail::checkpoint_dir_before_look(part);
  return follow ? ::stat(part.c_str(), st) : ::lstat(part.c_str(), st);
}
}  // namespace

void check_output_paths(const RunConfig& cfg, const std::string& made_dir) {
  struct stat st;
  const auto outs = output_files(cfg);  // (the CSV with its CSV.suggestions)
  const std::pair<const char*, std::string> ins[] = {
      {"--resume", cfg.resume}, {"--config", cfg.config_path}, {"--schedule-file", cfg.sched.file}};
  // A file directly in the directory the caller makes before the run (a sweep's --dir, still
  // to be made) is checked when it is written; its missing directory is no error.
  const bool made_later = !made_dir.empty() && ::stat(made_dir.c_str(), &st) != 0;
  for (size_t i = 0; i < 3; ++i) {
    const auto& [opt, path] = outs[i];
    if (path.empty()) continue;
    if (!made_later || plain_spelling(dir_name(path)) != plain_spelling(made_dir))
      check_output_file(opt, path, i == 1, i == 2 ? ".suggestions" : nullptr);
    for (size_t j = 0; j < i; ++j)  // one would overwrite the other
      KILN_USAGE_CHECK(outs[j].second.empty() || !same_file(path, outs[j].second),
                       outs[j].first << " and " << opt << " name the same file " << path);
    for (const auto& [in_opt, in_path] : ins)  // the run would destroy its own input (--save
      // over --resume is fine: read first, replaced whole at the end, "train longer")
      KILN_USAGE_CHECK(in_path.empty() || (i == 0 && in_opt == std::string("--resume")) ||
                           !same_file(path, in_path),
                       opt << " " << path << " is the " << in_opt << " file; name another");
  }
  // The range test's second file, CSV.suggestions, spares the inputs and the other outputs too.
  if (const std::string& csv = outs[2].second; !csv.empty()) {
    const std::string sugg = csv + ".suggestions";
    for (const auto& [opt, path] : {outs[0], outs[1], ins[0], ins[1], ins[2]})
      KILN_USAGE_CHECK(path.empty() || !same_file(sugg, path),
                       "--lr-find-csv " << csv << ": its " << sugg << " is the " << opt
                                        << " file; name another");
  }
  // The LR range test writes no checkpoints.
  if (cfg.lr_find) return;
  std::string dir = checkpoint_dir_for(cfg), at = dir;
  // Periodic checkpoints are written under their own names in the checkpoint directory, and
  // --keep-last deletes old ones: an output of such a name there would be replaced, then
  // deleted. (Without periodic checkpoints only a signal writes one, and it steps aside from a
  // file of its name, .run-<id>, while the stopped run writes no --save: nothing to refuse,
  // and `--resume ckpt-epoch-1.safetensors --save ckpt-epoch-1.safetensors` trains it on.)
  if (cfg.checkpoint_every > 0 || cfg.checkpoint_every_steps > 0)
    for (size_t i = 0; i < 2; ++i) {
      const auto& [opt, path] = outs[i];
      KILN_USAGE_CHECK(path.empty() || periodic_name(base_name(path)).first == 0 ||
                           !same_file(dir_name(path), dir),
                       opt << " " << path << ": a periodic checkpoint's name in the checkpoint "
                           << "directory " << dir << "; name another");
    }
  // The checkpoint directory matters only when checkpoints are asked for: a run without them
  // (in a read-only working directory, a daemon in /, beside a file named "checkpoints")
  // writes none unless stopped by a signal.
  const bool asked =
      cfg.checkpoint_every > 0 || cfg.checkpoint_every_steps > 0 || !cfg.checkpoint_dir.empty();
  if (!asked) return;
  // Periodic (and SIGINT/SIGTERM) checkpoints: the directory is made when the first is written,
  // so a path that cannot become one fails now, not after the first epoch.
  // The first existing part of the path, looked at with lstat first: a part that another
  // process makes meanwhile (a sweep worker's mkdir of DIR/trials) is found, not taken for a
  // broken link (stat, then lstat, saw it missing and then present: a worker exited 2).
  while (at != dir_name(at)) {
    if (look_at(at, false, &st) == 0) {
      if (!S_ISLNK(st.st_mode) || look_at(at, true, &st) == 0) break;
      // (mkdir cannot make a directory where a link stands: as os.makedirs, refused)
      const std::string to = link_target(at);
      KILN_USAGE_FAIL("checkpoint directory "
                      << dir << ": " << at
                      << (to.empty() ? " is a loop of symbolic links"
                                     : " is a symbolic link to " + to + ", which does not exist")
                      << "; make its target or name another directory");
    }
    KILN_USAGE_CHECK(errno != ENAMETOOLONG,
                     "checkpoint directory " << dir << ": " << std::strerror(ENAMETOOLONG));
    at = dir_name(at);
  }
  KILN_USAGE_CHECK(::stat(at.c_str(), &st) != 0 || S_ISDIR(st.st_mode),
                   "checkpoint directory " << dir << ": " << at << " is not a directory");
  // The directories still to make must fit the file system's name limit, and `at` must take them.
  const long name_max = ::pathconf(at.c_str(), _PC_NAME_MAX);
  for (std::string rest = dir; rest != at && rest != dir_name(rest); rest = dir_name(rest)) {
    const size_t slash = rest.rfind('/');
    const size_t len = rest.size() - (slash == std::string::npos ? 0 : slash + 1);
    KILN_USAGE_CHECK(name_max <= 0 || len <= static_cast<size_t>(name_max),
                     "checkpoint directory " << dir << ": a name of " << len
                                             << " bytes is longer than the file system allows ("
                                             << name_max << ")");
  }
  if (const std::string why = cannot_create_in(at); !why.empty())
    KILN_USAGE_FAIL("checkpoint directory " << dir << ": cannot create it in " << at << ": "
                                            << why);
}

std::string existing_checkpoints_note(const RunConfig& cfg) {
  const std::string dir = checkpoint_dir_for(cfg);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return "";
  int n = 0;
  while (dirent* e = ::readdir(d)) n += periodic_name(e->d_name).first != 0;
  ::closedir(d);
  if (n == 0) return "";
  return "checkpoint directory " + dir + " already holds " + std::to_string(n) +
         " periodic checkpoint" + (n == 1 ? "" : "s") +
         " (ckpt-*.safetensors): this run replaces those of the names it writes; "
         "--checkpoint-dir DIR keeps them apart";
}

void check_resume_epochs(const RunConfig& cfg, const TrainPosition& at, bool must_train) {
  // --epochs counts the whole run, as Keras's fit(epochs=, initial_epoch=) does: below what the
  // checkpoint has done there is nothing to train (and the schedule would be sized for a run
  // that cannot happen).
  const int done = at.epoch + (at.batch > 0 ? 1 : 0);
  KILN_USAGE_CHECK(
      cfg.train.epochs >= done,
      "--epochs " << cfg.train.epochs << " with --resume " << cfg.resume << ": the checkpoint "
                  << (at.batch > 0
                          ? "is in epoch " + std::to_string(done) + " (batch " +
                                std::to_string(at.batch) + ")"
                          : "has done " + std::to_string(done) + " epoch" + (done == 1 ? "" : "s"))
                  << " and --epochs counts the whole run: give --epochs "
                  << (at.batch == 0 && must_train ? done + 1 : done)
                  << (at.batch > 0 || must_train ? " or more"
                                                 : " to evaluate it, more to train on"));
  // A checkpoint at an epoch's end with --epochs equal to its epochs trains nothing: train_mnist
  // evaluates it, a sweep's trial would have no epoch to score (until 2026-12-07 each such trial
  // ran and failed, "no epoch ran", and the sweep exited 1 instead of refusing it up front).
  KILN_USAGE_CHECK(!must_train || cfg.train.epochs > at.epoch,
                   "--epochs " << cfg.train.epochs << " with --resume " << cfg.resume
                               << ": the checkpoint has done " << done << " epoch"
                               << (done == 1 ? "" : "s")
                               << ", and a sweep's trial is scored by the epochs it trains: give "
                                  "--epochs "
                               << done + 1 << " or more");
}

void check_resume_batches(const std::string& resume, const TrainPosition& at,
                          const JsonValue& saved, const JsonValue& now) {
  if (at.batch == 0) return;
  const std::string cut = config_diffs(
      saved, now, [](const std::string& k) { return !option_has(k, kBatchOrder); }, "--");
  KILN_USAGE_CHECK(cut.empty(), "--resume " << resume << ": a mid-epoch checkpoint (epoch "
                                            << at.epoch + 1 << ", batch " << at.batch
                                            << ") continues only with the batches it was cut "
                                               "from: "
                                            << cut << " (resume an epoch checkpoint to change it)");
}

void check_resume_model(const RunConfig& cfg, const SafetensorsFile& file) {
  auto model = make_model(cfg.model_on(Device::CPU), cfg.input_shape(), 10);  // the shapes alone
  model->build(Device::CPU, cfg.seed);
  check_checkpoint_model(file, "checkpoint " + cfg.resume, *model);
}

TrainPosition resume_session(RunSession& s, const SafetensorsFile& file,
                             const std::function<void(const std::string&)>& log) {
  CheckpointInfo info = load_checkpoint_file(file, "checkpoint " + s.cfg.resume, *s.ctx, *s.model,
                                             s.opt.get(), s.sched.get());
  if (!info.run_id.empty()) s.run_id = info.run_id;  // the same run, continued
  JsonValue saved;
  try {
    saved = parse_json(info.config);
  } catch (const Error&) {
  }
  const JsonValue now = parse_json(run_config_json(s.cfg));
  // Another --data-dir (or other files in it) that no option names: the epochs go on over
  // other images.
  const std::string data_now = train_data_signature(s.train);
  const std::string data_diff = info.train_data.empty() || info.train_data == data_now
                                    ? ""
                                    : "training set " + info.train_data + " -> " + data_now;
  if (info.pos.batch > 0) {  // a usage error leaves the loaded session unused
    // The epoch's remaining batches are found by position in its permutation of its rows.
    check_resume_batches(s.cfg.resume, info.pos, saved, now);
    KILN_USAGE_CHECK(data_diff.empty(),
                     "--resume " << s.cfg.resume << ": a mid-epoch checkpoint (epoch "
                                 << info.pos.epoch + 1 << ", batch " << info.pos.batch
                                 << ") continues only with the training set it was cut from: "
                                 << data_diff << " (another --data-dir, or other files in it)");
  }
  s.trainer->set_step(info.pos.step);
  s.trainer->set_best_snapshot(std::move(info.early_stop_best));
  // Another --lr: a schedule that holds its lr in its state (plateau) would go on at the saved
  // lr; it scales it as the schedules that compute their lr from --lr follow the new one.
  std::string lr_note;
  // (another --lr as the log line's diffs count one: a 6-digit text of an older file is its lr)
  const JsonValue *old_lr = saved.find("lr"), *now_lr = now.find("lr");
  if (old_lr && old_lr->is_string() && now_lr && s.sched &&
      !same_option_text(old_lr->text, now_lr->text)) {
    char* end = nullptr;
    const double was = strtod_c(old_lr->text.c_str(), &end);
    if (*end == 0 && std::isfinite(was) && was > 0) {
      const double held = s.sched->rescale_lr(double(s.cfg.optim.lr) / was);
      if (held >= 0)
        lr_note = "note: --schedule " + s.cfg.sched.name + " goes on from the lr its state holds" +
                  " scaled by the new --lr / " + old_lr->text + ": " + format_c("%.6g", held) +
                  " (its cuts carry over, as the other schedules' do)";
    }
  }
  if (log) {
    // Name the options that differ, so a resume with another seed or batch size is visible.
    std::string diffs = config_diffs(saved, now, run_control_option);
    if (!data_diff.empty()) diffs += (diffs.empty() ? "" : ", ") + data_diff;
    // --epochs may change on resume (train longer), but one-cycle, and cosine or cosine-restarts
    // without --t-max, span the whole run: their remaining lr curve is stretched to the new
    // length. Say so.
    const JsonValue* old_epochs = saved.find("epochs");
    const bool spans_run =
        s.cfg.sched.name == "one-cycle" ||
        ((s.cfg.sched.name == "cosine" || s.cfg.sched.name == "cosine-restarts") &&
         s.cfg.sched.t_max == 0);
    if (spans_run && old_epochs && old_epochs->is_string() &&
        old_epochs->text != std::to_string(s.cfg.train.epochs))
      diffs += (diffs.empty() ? "" : ", ") + std::string("epochs ") + old_epochs->text + " -> " +
               std::to_string(s.cfg.train.epochs) + " (the " + s.cfg.sched.name +
               " schedule spans --epochs: its remaining lr curve now follows the new length)";
    // (escaped: the old values and the training set come from the checkpoint's metadata)
    log("resumed from " + s.cfg.resume + " at epoch " + std::to_string(info.pos.epoch + 1) +
        " batch " + std::to_string(info.pos.batch) + " (step " + std::to_string(info.pos.step) +
        ")" +
        (diffs.empty() ? "" : "; options changed since the checkpoint: " + escape_controls(diffs)));
    if (!lr_note.empty()) log(escape_controls(lr_note));
    if (info.restored_epoch > 0)
      log("note: " + s.cfg.resume + " holds the weights of epoch " +
          std::to_string(info.restored_epoch) +
          " (--restore-best) with the position and optimizer state of the end of epoch " +
          std::to_string(info.pos.epoch) + ": training continues from epoch " +
          std::to_string(info.restored_epoch) + "'s weights (the periodic checkpoint ckpt-epoch-" +
          std::to_string(info.pos.epoch) + " continues where that epoch left off)");
  }
  return info.pos;
}

std::string train_data_signature(const Dataset& d) {
  std::string out = std::to_string(d.size()) + " images";
  if (static_cast<int64_t>(d.host_labels.size()) == d.size())
    out += ", labels crc32 " +
           format_c("%08x", crc32(d.host_labels.data(), d.host_labels.size() * sizeof(int32_t)));
  return out;
}

std::string write_session_checkpoint(RunSession& s, const std::string& path,
                                     const TrainPosition& p) {
  CheckpointInfo info;
  info.pos = p;
  info.seed = s.cfg.seed;
  info.config = run_config_json(s.cfg);
  info.train_data = train_data_signature(s.train);
  info.run_id = s.run_id;
  if (s.trainer) {
    info.early_stop_best = s.trainer->best_snapshot();
    info.restored_epoch = s.trainer->restored_epoch();
  }
  save_checkpoint(path, *s.ctx, *s.model, s.opt.get(), s.sched.get(), info);
  return path;
}

std::string write_periodic_checkpoint(RunSession& s, const TrainPosition& p,
                                      std::string* prune_failed) {
  std::string dir = checkpoint_dir_for(s.cfg);
  make_dirs(dir);
  std::string path = dir + "/" + checkpoint_name(p);
  // A run that asked for no checkpoints writes one only when stopped by a signal: into a shared
  // directory (./checkpoints) beside another run's checkpoint of that name, under its own name
  // (.run-<id>), not over it. (A run with checkpoint options replaces those of the names it
  // writes, as its start-up note says.)
  if (s.cfg.checkpoint_every == 0 && s.cfg.checkpoint_every_steps == 0 &&
      ::access(path.c_str(), F_OK) == 0 && checkpoint_run_id(path) != s.run_id)
    path = path.substr(0, path.size() - std::string(".safetensors").size()) + ".run-" + s.run_id +
           ".safetensors";
  write_session_checkpoint(s, path, p);
  const std::string failed = prune_checkpoints(dir, s.cfg.keep_last, p, s.run_id);
  if (prune_failed) *prune_failed = failed;
  return path;
}

StopSignals::StopSignals() {
  std::lock_guard<std::mutex> lock(g_stop_mutex);
  if (g_stop_depth++ > 0) return;  // an enclosing scope (the app, a sweep) already catches them
  g_stop_signal = 0;
  g_stop_first_ns = 0;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = kiln_on_stop_signal;
  sigemptyset(&sa.sa_mask);  // each blocks the other while the handler runs
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &g_old_int);
  ::sigaction(SIGTERM, &sa, &g_old_term);
}

StopSignals::~StopSignals() {
  std::lock_guard<std::mutex> lock(g_stop_mutex);
  if (--g_stop_depth > 0) return;
  ::sigaction(SIGINT, &g_old_int, nullptr);
  ::sigaction(SIGTERM, &g_old_term, nullptr);
  g_stop_signal = 0;  // (after the handlers: none of ours can set it again)
  g_stop_first_ns = 0;
}

const volatile std::sig_atomic_t* StopSignals::flag() {
  return &g_stop_signal;
}

}  // namespace kiln
