// Sweep runner: claims trials with lock files, runs them through an injectable TrialRunner,
// prunes by the median rule, and appends one record per trial to results.jsonl (results.csv is
// rewritten from it) under an flock with fsync, so concurrent workers and a kill at any point
// leave whole records.
#include "tuning/sweep.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <locale>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/file_io.h"
#include "engine/json.h"
#include "engine/numtext.h"
#include "engine/process.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"

namespace kiln {

namespace {

double num_of(const JsonValue& o, const char* k) {
  const JsonValue* v = o.find(k);
  return v && v->is_number() ? v->number : NAN;
}
std::string str_of(const JsonValue& o, const char* k) {
  const JsonValue* v = o.find(k);
  return v && v->is_string() ? v->text : "";
}

// Where two sweep files first differ, for a refusal that names the change: "line 4: 'lr: ...'
// -> 'lr: ...'", each side from a little before the first column that differs (a change at the
// end of a long line stays visible), at most 60 characters, control characters escaped; a
// newline ends a line (it does not start an empty one). "" for equal texts.
std::string first_difference(const std::string& a, const std::string& b) {
  if (a == b) return "";
  auto lines = [](const std::string& s) {
    std::vector<std::string> out;
    for (size_t pos = 0; pos < s.size();) {
      const size_t end = std::min(s.find('\n', pos), s.size());
      out.push_back(s.substr(pos, end - pos));
      pos = end + 1;
    }
    return out;
  };
  const std::vector<std::string> la = lines(a), lb = lines(b);
  for (size_t i = 0; i < std::max(la.size(), lb.size()); ++i) {
    const bool ha = i < la.size(), hb = i < lb.size();
    if (ha && hb && la[i] == lb[i]) continue;
    size_t col = 0;
    if (ha && hb)
      while (col < la[i].size() && col < lb[i].size() && la[i][col] == lb[i][col]) ++col;
    const size_t from = col > 40 ? col - 20 : 0;
    auto show = [from](const std::vector<std::string>& l, size_t k) {
      if (k >= l.size()) return std::string("the end of the file");
      if (l[k].empty()) return std::string("an empty line");
      return "'" + std::string(from > 0 ? "..." : "") + printable(l[k].substr(from, 60)) +
             (from + 60 < l[k].size() ? "..." : "") + "'";
    };
    return "line " + std::to_string(i + 1) + ": " + show(la, i) + " -> " + show(lb, i);
  }
  return std::string("the end of the file: ") +
         (!a.empty() && a.back() == '\n' ? "a final newline -> none" : "no final newline -> one");
}

// ---- files ------------------------------------------------------------------------------------
void make_dir(const std::string& d) {  // mkdir -p
  for (size_t pos = d.find('/', 1); pos != std::string::npos; pos = d.find('/', pos + 1))
    mkdir(d.substr(0, pos).c_str(), 0755);
  if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST)
    KILN_USAGE_FAIL(d << ": cannot create directory: " << std::strerror(errno));
}

// The file's text; "" when it does not exist. Any other failure to open or read it is an
// error naming the file (an unreadable sweep.yaml is not "a different sweep", an unreadable
// run_options.json not "JSON at offset 0").
std::string read_text(const std::string& path) {
  std::vector<uint8_t> bytes;
  const FileRead r = read_whole_file(path, bytes);
  if (r.err == ENOENT) return "";
  KILN_CHECK(r.err == 0, path << ": " << r.why);
  return std::string(bytes.begin(), bytes.end());
}

// A claim on one trial: DIR/locks/trial-<id>.lock, holding "pid host start pidns boot flock"
// (start: the process's start time, 0 where /proc is missing). The worker keeps an flock on the
// lock for as long as it holds the claim, and the kernel drops an flock when its process dies
// however it dies, so a lock marked "flock" is stale exactly when its flock is free: this judges
// the locks of killed workers in other containers (PID namespaces) and on other machines
// sharing the directory, whose pids mean nothing here. Where the filesystem has no flock, and
// for locks of older kiln versions (no mark), the pid decides: a lock is stale when it was
// written on this host in an earlier boot, or in this boot and this PID namespace by a pid that
// is gone, a zombie nobody reaped, or another process now (a reused pid: the start time tells
// them apart); one of another namespace or host is never judged, and the skip names it so a
// person can remove it. The check-and-reclaim runs under a directory-wide flock so two workers
// cannot both reclaim the same lock.
class TrialLock {
 public:
  static std::string path_of(const std::string& dir, int64_t id) {
    return dir + "/locks/trial-" + std::to_string(id) + ".lock";
  }
  // A recorded trial's lock left by a worker killed between its record and the unlink: taken
  // and dropped at once when it is stale (a live worker's is left to it).
  static void drop_stale(const std::string& dir, int64_t id) {
    if (access(path_of(dir, id).c_str(), F_OK) == 0) const TrialLock taken(dir, id);
  }
  TrialLock(const std::string& dir, int64_t id) : path_(path_of(dir, id)) {
    std::string mutex_path = dir + "/locks/.reclaim";
    const int m = open(mutex_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    KILN_CHECK(m >= 0, mutex_path << ": cannot open: " << std::strerror(errno));
    struct Closer {  // also when a lock cannot be written (its error propagates)
      int fd;
      ~Closer() { close(fd); }
    } closer{m};
    // A signal during the wait (a SIGINT) does not end it: the sweep stops after this trial's
    // claim is settled.
    if (const int err = flock_retry(m, LOCK_EX))
      KILN_FAIL(mutex_path << ": flock failed: " << std::strerror(err));
    remove_dead_temps(dir + "/locks");
    held_ = try_create();
    if (!held_ && stale()) {
      unlink(path_.c_str());
      held_ = try_create();
    }
  }
  ~TrialLock() {
    // Unlinked before its flock goes with the close: a worker that finds the flock free then
    // finds no lock, never a live one.
    if (held_) unlink(path_.c_str());
    if (fd_ >= 0) close(fd_);
  }
  TrialLock(const TrialLock&) = delete;
  TrialLock& operator=(const TrialLock&) = delete;
  bool held() const { return held_; }
  // Who holds it, for the skip line: "pid 12 on host vm", and for a lock of another PID
  // namespace what to do if no worker runs there.
  std::string holder() const {
    const Owner o = owner();
    // Not "pid host": a file no kiln worker wrote (a kiln lock is whole before it appears).
    if (!o.read)
      return path_ +
             ": names no worker (not a lock kiln writes); if no worker runs this sweep, "
             "delete it";
    std::string out = path_ + ": pid " + std::to_string(o.pid) + " on " + o.host;
    // A lock without an flock from a process this one cannot see: a person must judge it.
    if (!o.flocked && (o.other_namespace() || !o.here()))
      out +=
          std::string(o.here() ? ", in another PID namespace (a container)" : ", another machine") +
          "; if no worker runs there, delete the lock";
    return out;
  }

 private:
  // The lock is written in full under a private name, then link()ed into place: link fails
  // with EEXIST if the lock exists, and a lock that exists is never empty or half written, so a
  // kill at any point cannot leave a lock that looks live but names no process.
  // The flock is taken before the link, so the lock is never seen without it.
  bool try_create() {
    std::string tmp = path_ + ".tmp." + temp_boot_tag() + std::to_string(getpid());
    int fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    KILN_CHECK(fd >= 0, tmp << ": cannot create lock: " << std::strerror(errno));
    const bool flocked = flock_retry(fd, LOCK_EX | LOCK_NB) == 0;
    std::string s = std::to_string(getpid()) + " " + host_name() + " " +
                    std::to_string(own_start_time()) + " " + pid_namespace() + " " + boot_id() +
                    (flocked ? " flock" : "") + "\n";
    int err = write_all(fd, s.data(), s.size());
    if (!err) err = fsync_retry(fd);
    if (err) {
      close(fd);
      unlink(tmp.c_str());
    }
    KILN_CHECK(!err, tmp << ": cannot write lock: " << std::strerror(err));
    const int rc = link(tmp.c_str(), path_.c_str());
    err = errno;
    unlink(tmp.c_str());
    if (rc == 0) {
      if (flocked)
        fd_ = fd;
      else
        close(fd);
      return true;
    }
    close(fd);
    KILN_CHECK(err == EEXIST, path_ << ": cannot create lock: " << std::strerror(err));
    return false;
  }
  // A lock's temp file is named <lock>.tmp.<boot id>.<pid>: the boot id says which running
  // kernel's processes wrote it ("" where /proc has none).
  static std::string temp_boot_tag() {
    const std::string b = boot_id();
    const bool plain = b != "-" && b.find_first_not_of("0123456789abcdef-") == std::string::npos;
    return plain ? b + "." : "";
  }
  // A worker holds .reclaim for as long as its temp file exists (try_create runs under it), so
  // a temp file that a holder finds was left by a killed worker; one of this machine's boot is
  // removed (.reclaim's flock is this kernel's, certain here; another machine's may not reach
  // this one on every network filesystem, so its temps are left to its own workers).
  static void remove_dead_temps(const std::string& locks) {
    const std::string tag = temp_boot_tag();
    if (tag.empty()) return;
    DIR* d = opendir(locks.c_str());
    if (!d) return;
    const std::string mark = ".lock.tmp." + tag;
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.rfind("trial-", 0) == 0 && n.find(mark) != std::string::npos)
        unlink((locks + "/" + n).c_str());
    }
    closedir(d);
  }
  // Whether a worker still holds the flock of the lock at path_: 1 no (or the lock is gone),
  // 0 yes, -1 this filesystem cannot tell.
  int flock_free() const {
    // Read-write: NFS emulates flock with fcntl locks, whose exclusive kind needs a writable fd.
    int fd = open(path_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 1 : -1;
    const int err = flock_retry(fd, LOCK_EX | LOCK_NB);
    close(fd);
    if (err == 0) return 1;
    return err == EWOULDBLOCK ? 0 : -1;
  }
  // What the lock file says: "pid host" (older locks), "pid host start pidns boot", or that
  // and "flock" (held under an flock by its worker).
  struct Owner {
    long pid = 0;
    std::string host, ns, boot;
    unsigned long long start = 0;
    bool read = false, identity = false, flocked = false;  // pid and host; the rest; the mark
    bool here() const { return host == host_name(); }
    bool other_namespace() const {
      return identity && here() && boot == boot_id() && ns != pid_namespace();
    }
  };
  Owner owner() const {
    std::ifstream f(path_);
    Owner o;
    o.read = static_cast<bool>(f >> o.pid >> o.host);
    o.identity = o.read && static_cast<bool>(f >> o.start >> o.ns >> o.boot);
    std::string mark;
    o.flocked = o.identity && (f >> mark) && mark == "flock";
    return o;
  }
  bool stale() const {
    const Owner o = owner();
    if (!o.read) return false;  // being written right now, or foreign: leave it
    if (o.flocked) {
      const int free = flock_free();
      if (free >= 0) return free == 1;
    }
    if (!o.here() || o.pid <= 0) return false;
    if (o.identity) {
      if (o.boot != boot_id()) return true;   // every process of that boot is gone
      if (o.other_namespace()) return false;  // another container's pid: not ours to judge
      unsigned long long now = 0;
      char state = 0;
      if (o.start > 0 && process_state(o.pid, state, now))
        return state == 'Z' || state == 'X' || now != o.start;
    } else if (o.pid == getpid()) {
      // An older kiln's lock (pid host) naming this pid: this kiln never writes one, so its
      // writer is gone and the pid is ours now (a restarted container's pid 1).
      return true;
    }
    return process_gone(o.pid);
  }
  std::string path_;
  bool held_ = false;
  int fd_ = -1;  // the open lock whose flock marks this worker alive
};

// The epoch whose weights a trial ends with: the one its trainer loaded back (--restore-best),
// else its last.
const EpochRecord& final_epoch(const TrialRun& run) {
  for (const EpochRecord& e : run.epochs)
    if (run.restored_epoch > 0 && e.epoch == run.restored_epoch) return e;
  return run.epochs.back();
}

double metric_of(const EpochRecord& r, const std::string& m) {
  if (m == "test_acc") return r.test_acc;
  if (m == "test_loss") return r.test_loss;
  if (m == "val_acc") return r.val_acc;
  if (m == "val_loss") return r.val_loss;
  if (m == "train_acc") return r.train_acc;
  return r.train_loss;
}

// A trial record's scores from one epoch record.
void set_scores(TrialRecord& rec, const EpochRecord& e, const std::string& metric) {
  rec.metric = metric_of(e, metric);
  rec.val_acc = e.val_acc;
  rec.val_loss = e.val_loss;
  rec.test_acc = e.test_acc;
  rec.test_loss = e.test_loss;
  rec.train_acc = e.train_acc;
  rec.train_loss = e.train_loss;
  rec.weight_sparsity = e.weight_sparsity;
}

bool better(double a, double b, bool maximize) {
  return maximize ? a > b : a < b;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s)
    o += c == '"' ? std::string("\"\"") : std::string(1, c == '\n' || c == '\r' ? ' ' : c);
  return o + "\"";
}

// Column 3 is the sweep's metric under the name results.jsonl gives it ("metric"): the metric is
// one of the fixed columns after the parameters too, and a CSV header must not name a column twice.
// For the same reason the epochs a trial ran are "epochs_run": "epochs" may be a parameter.
std::string csv_header(const SweepSpec& spec) {
  std::string h = "trial,status,metric";
  for (const auto& p : spec.params) h += "," + csv_field(p.name);  // a bundle's name is free text
  return h +
         ",epochs_run,val_acc,val_loss,test_acc,test_loss,train_acc,train_loss,weight_sparsity,"
         "seconds,"
         "message\n";
}

std::string csv_row(const TrialRecord& r) {
  ClassicOStringStream os;
  os << r.trial << "," << r.status << "," << json_number(r.metric);
  for (const auto& p : r.params) os << "," << csv_field(p.second);
  os << "," << r.epochs << "," << json_number(r.val_acc) << "," << json_number(r.val_loss) << ","
     << json_number(r.test_acc) << "," << json_number(r.test_loss) << ","
     << json_number(r.train_acc) << "," << json_number(r.train_loss) << ","
     << json_number(r.weight_sparsity) << "," << json_number(r.seconds) << ","
     << csv_field(r.message);
  return os.str();
}

std::string params_str(const std::vector<std::pair<std::string, std::string>>& ps) {
  std::string s;
  for (const auto& p : ps) s += (s.empty() ? "" : " ") + p.first + "=" + p.second;
  return s;
}

// Appends one record to DIR/results.jsonl under an exclusive flock and fsyncs it; then, still
// under that lock, rewrites DIR/results.csv from every record in results.jsonl (temp file, fsync,
// rename). results.jsonl is the one source of truth: a kill between the two writes, or an older
// CSV, is repaired by the next record instead of leaving the CSV a row short. A torn last line
// from a killed writer is terminated first so the new record starts on its own line. An empty
// `line` only rewrites the CSV.
// DIR/results.jsonl open for append under an exclusive flock, for as long as it lives: records
// are appended, and a worker's sweep.yaml and run_options.json written or checked, under it.
class ResultsLock {
 public:
  explicit ResultsLock(const std::string& dir) : path(dir + "/results.jsonl") {
    fd = open(path.c_str(), O_RDWR | O_APPEND | O_CREAT, 0644);
    KILN_CHECK(fd >= 0, path << ": cannot open for append: " << std::strerror(errno));
    if (const int err =
            flock_retry(fd, LOCK_EX)) {  // a signal while waiting: the record still goes in
      close(fd);
      KILN_FAIL(path << ": flock failed: " << std::strerror(err));
    }
  }
  ~ResultsLock() {
    flock(fd, LOCK_UN);
    close(fd);
  }
  ResultsLock(const ResultsLock&) = delete;
  ResultsLock& operator=(const ResultsLock&) = delete;
  std::string path;
  int fd = -1;
};

// Differences, side-effect options aside, between DIR/run_options.json and `o`'s run options
// ("--width 8 -> 64"), or "".
std::string run_options_diffs(const SweepOptions& o, const std::string& old) {
  const std::string path = o.dir + "/run_options.json", now = run_config_json(o.base) + "\n";
  if (old == now) return "";
  JsonValue was;
  try {
    was = parse_json(old);
  } catch (const Error& e) {
    KILN_FAIL(path << ": " << e.message());
  }
  return config_diffs(
      was, parse_json(now), [](const std::string& k) { return option_has(k, kSideEffect); }, "--");
}

// Under the results lock, before a record is appended: whether DIR still holds this worker's
// sweep file and run options. A worker started while no trial had been recorded replaces both
// with its own; had it another sweep or other options, this worker's trials would be ranked as
// another recipe's, so they are refused instead.
void check_still_ours(const SweepOptions& o, int64_t trial) {
  const std::string why = " while trial " + std::to_string(trial) +
                          " ran: another worker started on this directory with them; trial " +
                          std::to_string(trial) +
                          " is not recorded (one sweep, with one set of options, per --dir)";
  if (!o.spec_text.empty())
    KILN_USAGE_CHECK(read_text(o.dir + "/sweep.yaml") == o.spec_text,
                     o.dir << "/sweep.yaml was replaced by a different sweep" << why);
  const std::string diffs = run_options_diffs(o, read_text(o.dir + "/run_options.json"));
  KILN_USAGE_CHECK(diffs.empty(), o.dir << "/run_options.json was replaced by other options ("
                                        << diffs << ")" << why);
}

void record_locked(const std::string& dir, const SweepSpec& spec, const std::string& line,
                   const SweepOptions* owner = nullptr, int64_t trial = -1) {
  ResultsLock lock(dir);
  const std::string& path = lock.path;
  const int fd = lock.fd;
  if (owner) check_still_ours(*owner, trial);
  if (!line.empty()) {
    struct stat st {};
    fstat(fd, &st);
    std::string out;
    char last = '\n';
    if (st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') out = "\n";
    out += line + "\n";
    if (const int err = write_all(fd, out.data(), out.size())) {
      (void)ftruncate(fd, st.st_size);  // no torn record left behind (we hold the flock)
      KILN_FAIL(path << ": write failed: " << std::strerror(err));
    }
    const int err = fsync_retry(fd);
    KILN_CHECK(err == 0, path << ": fsync failed: " << std::strerror(err));
  }
  std::string text = csv_header(spec);
  for (const auto& r : read_results(dir)) text += csv_row(r) + "\n";
  write_file_atomic(dir + "/results.csv", text.data(), text.size());
}

}  // namespace

// ---- records ----------------------------------------------------------------------------------
std::string TrialRecord::to_json() const {
  JsonObject j, p;
  for (const auto& kv : params) p.add(kv.first, kv.second);
  std::string c = "[";
  for (size_t i = 0; i < curve.size(); ++i) c += (i ? "," : "") + json_number(curve[i]);
  c += "]";
  j.add("trial", static_cast<long long>(trial))
      .add("status", status)
      .add("metric", metric)
      .add_raw("params", p.str());
  j.add("epochs", epochs);
  if (!std::isnan(val_acc)) j.add("val_acc", val_acc).add("val_loss", val_loss);
  j.add("test_acc", test_acc).add("test_loss", test_loss).add("train_acc", train_acc);
  j.add("train_loss", train_loss)
      .add("weight_sparsity", weight_sparsity)
      .add("seconds", seconds)
      .add_raw("curve", c)
      .add("message", message);
  if (!test_data.empty()) j.add("test_data", test_data);
  return j.str();
}

bool TrialRecord::from_json(const std::string& line, TrialRecord& r) {
  JsonValue v;
  try {
    v = parse_json(line);
  } catch (const Error&) {  // a torn last line (a killed writer)
    return false;
  }
  if (!v.is_object() || !v.find("trial") || !v.find("status")) return false;
  // Counts are whole numbers in range before they are cast (a hand-edited "epochs": 1e30 was
  // undefined behaviour, and read back as -2147483648).
  auto whole = [](double x, double hi) { return x >= 0 && x <= hi && x == std::floor(x); };
  const double trial = num_of(v, "trial"), epochs = num_of(v, "epochs");
  if (!whole(trial, 9007199254740992.0)) return false;
  r = TrialRecord();
  r.trial = static_cast<int64_t>(trial);
  r.status = str_of(v, "status");
  r.metric = num_of(v, "metric");
  if (const JsonValue* ps = v.find("params"))
    for (const auto& kv : ps->members)
      r.params.emplace_back(kv.first, kv.second.is_string() ? kv.second.text : "");
  r.epochs = whole(epochs, 1e6) ? static_cast<int>(epochs) : 0;
  r.val_acc = num_of(v, "val_acc");
  r.val_loss = num_of(v, "val_loss");
  r.test_acc = num_of(v, "test_acc");
  r.test_loss = num_of(v, "test_loss");
  r.train_acc = num_of(v, "train_acc");
  r.train_loss = num_of(v, "train_loss");
  r.weight_sparsity = num_of(v, "weight_sparsity");
  r.seconds = num_of(v, "seconds");
  if (const JsonValue* c = v.find("curve"))
    for (const auto& x : c->items) r.curve.push_back(x.is_number() ? x.number : NAN);
  r.message = str_of(v, "message");
  r.test_data = str_of(v, "test_data");
  return r.trial >= 0;
}

// Every record of DIR/results.jsonl (none when it does not exist yet). A file that exists but
// cannot be opened or read is an error: an empty list would rewrite results.csv without its
// rows, skip median pruning, or let a finished trial run again.
std::vector<TrialRecord> read_results(const std::string& dir) {
  std::vector<TrialRecord> out;
  std::istringstream f(read_text(dir + "/results.jsonl"));
  for (std::string line; std::getline(f, line);) {
    TrialRecord r;
    if (TrialRecord::from_json(line, r)) out.push_back(std::move(r));
  }
  return out;
}

std::pair<int, int> parse_worker(const std::string& s) {
  // Digits only on both sides of the '/', at most 9 of them (sscanf's %d took spaces and signs
  // and wrapped on overflow: 0/4294967297 ran as 0/1, every trial in one shard).
  auto number = [&](size_t from, size_t to) {
    if (to <= from || to - from > 9) return -1;
    int v = 0;
    for (size_t k = from; k < to; ++k) {
      if (s[k] < '0' || s[k] > '9') return -1;
      v = 10 * v + (s[k] - '0');
    }
    return v;
  };
  const size_t slash = s.find('/');
  const int i = slash == std::string::npos ? -1 : number(0, slash);
  const int n = slash == std::string::npos ? -1 : number(slash + 1, s.size());
  KILN_USAGE_CHECK(n >= 1 && i >= 0 && i < n,
                   "--worker '" << s << "': expected i/N with 0 <= i < N (e.g. 0/4)");
  return {i, n};
}

std::string sweep_refused_option(const std::string& key) {
  if (key == "log")
    return "each trial logs to DIR/trials/trial-<id>.jsonl (and its console lines to "
           "trial-<id>.log)";
  if (key == "lr-find") return "a sweep's trials train; run lr_find for the LR range test";
  if (key == "summary")
    return "a sweep's trials train; train_mnist --summary prints the model table";
  return "";
}

void apply_sweep_base(const SweepSpec& spec, RunConfig& cfg) {
  for (const auto& kv : spec.base)
    run_options().set(cfg, kv.first, kv.second, spec.path + ": base key '" + kv.first + "'");
}

namespace {
// Sets parameter p to `value` (one of its values, or a sample) in c; a group sets its options.
void set_param(RunConfig& c, const SweepParam& p, const std::string& value,
               const std::string& origin) {
  if (p.bundles.empty()) {
    run_options().set(c, p.name, value, origin);
    return;
  }
  size_t j =
      static_cast<size_t>(std::find(p.values.begin(), p.values.end(), value) - p.values.begin());
  for (const auto& kv : p.bundles.at(j)) run_options().set(c, kv.first, kv.second, origin);
}
}  // namespace

RunConfig trial_config(const SweepSpec& spec, const RunConfig& base, int64_t i,
                       const std::string& dir) {
  RunConfig c = base;
  auto params = trial_params(spec, i);
  for (size_t k = 0; k < params.size(); ++k)
    set_param(
        c, spec.params[k], params[k].second,
        spec.path + ": trial " + std::to_string(i) + " parameter '" + spec.params[k].name + "'");
  c.train.log_path = dir + "/trials/trial-" + std::to_string(i) + ".jsonl";
  // A trial stopped by SIGINT/SIGTERM checkpoints before it exits: into the sweep directory, not
  // the caller's working directory (--resume reruns the trial; the checkpoint is for inspection).
  // A checkpoint_dir of the base (or a flag) gets one folder per trial under it, as --save gets
  // one file per trial: trials writing ckpt-epoch-<n> into one folder would replace each other's.
  if (c.checkpoint_dir.empty())
    c.checkpoint_dir = dir + "/trials/trial-" + std::to_string(i) + "-checkpoints";
  else
    c.checkpoint_dir += "/trial-" + std::to_string(i);
  // --save applies to every trial: each writes its own file (model.trial-3.safetensors) instead
  // of all overwriting one.
  if (!c.save.empty()) {
    size_t slash = c.save.find_last_of('/'), dot = c.save.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
      dot = c.save.size();
    c.save = c.save.substr(0, dot) + ".trial-" + std::to_string(i) + c.save.substr(dot);
  }
  c.train.progress = 0;
  return c;
}

std::vector<std::string> sweep_option_notes(const SweepSpec& spec, const RunConfig& base,
                                            const RunConfig& defaults, int64_t max_trials) {
  struct Seen {
    std::string first;  // the first trial's note
    int64_t trial = 0, count = 0, last = -1;
  };
  std::vector<std::pair<std::string, Seen>> by_flag;  // in the order first seen
  const int64_t n = std::min(num_trials(spec), max_trials);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<std::string> notes;
    try {
      notes = option_notes(trial_config(spec, base, i, "notes"), defaults);
    } catch (const Error&) {
      continue;  // a trial whose options are invalid fails on its own, with its message
    }
    for (const std::string& note : notes) {
      // One line per note the trials share, its numbers aside (--momentum 0.9 and 0.5 are one):
      // an option can have several notes (--early-stop's on the test set and on too few
      // epochs), which keyed by the option alone showed as one, counted once per note ("4 of 2
      // trials"), until 2026-12-07.
      std::string key;
      for (size_t k = 0; k < note.size();) {
        if (!std::isdigit(static_cast<unsigned char>(note[k]))) {
          key += note[k++];
          continue;
        }
        while (k < note.size() && (std::isalnum(static_cast<unsigned char>(note[k])) ||
                                   note[k] == '.' || note[k] == '-' || note[k] == '+'))
          ++k;
        key += '#';
      }
      auto it = std::find_if(by_flag.begin(), by_flag.end(),
                             [&](const auto& f) { return f.first == key; });
      if (it == by_flag.end()) it = by_flag.insert(by_flag.end(), {key, Seen{note, i, 0}});
      if (it->second.last != i) ++it->second.count;  // trials, not notes
      it->second.last = i;
    }
  }
  std::vector<std::string> out;
  for (const auto& [flag, seen] : by_flag)
    out.push_back(seen.first + " [trial " + std::to_string(seen.trial) + "; " +
                  std::to_string(seen.count) + " of " + std::to_string(n) + " trials]");
  return out;
}

namespace {
// Whether value `value` of parameter k validates beside some combination of the other
// parameters' listed values (one listed value included: every trial has it; ranges stay at the
// base). Past kMaxCombos combinations it is
// given the benefit of the doubt (true): its trials then fail alone, with their messages.
bool runs_in_some_company(const SweepSpec& spec, const RunConfig& base, size_t k,
                          const std::string& value) {
  constexpr int64_t kMaxCombos = 4096;
  std::vector<size_t> others;
  int64_t combos = 1;
  for (size_t j = 0; j < spec.params.size(); ++j) {
    if (j == k || spec.params[j].is_range() || spec.params[j].values.empty()) continue;
    others.push_back(j);
    combos *= static_cast<int64_t>(spec.params[j].values.size());
    if (combos > kMaxCombos) return true;
  }
  for (int64_t combo = 0; combo < combos; ++combo) {
    RunConfig c = base;
    try {
      int64_t rest = combo;
      for (size_t j : others) {
        const auto& vals = spec.params[j].values;
        set_param(c, spec.params[j], vals[static_cast<size_t>(rest) % vals.size()], "check");
        rest /= static_cast<int64_t>(vals.size());
      }
      set_param(c, spec.params[k], value, "check");
      c.validate();
      return true;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Usage) throw;
    }
  }
  return false;
}
}  // namespace

void TrialChecks::check(const RunConfig& c) {
  // (a sweep of such trials recorded each as failed, "no epoch ran", and exited 1 while its dry
  // run listed them, until 2026-12-07)
  KILN_USAGE_CHECK(c.train.epochs > 0,
                   "--epochs 0: a sweep's trial is scored by the epochs it "
                   "trains; give --epochs 1 or more");
  if (c.resume.empty()) return;
  auto it = files_.find(c.resume);
  if (it == files_.end()) {
    SafetensorsFile f = read_checkpoint(c.resume);
    const TrainPosition at = checkpoint_position(f, "checkpoint " + c.resume);
    it = files_.emplace(c.resume, std::make_pair(std::move(f), at)).first;
  }
  check_resume_epochs(c, it->second.second, true);
  // Another optimizer than the file's: every such trial failed when it loaded the file ("saved
  // with optimizer 'sgd', this run uses 'adam'") and a sweep of only such trials exited 1 after
  // running them all, where the docs promise exit 2 when no trial can continue FILE (as for
  // another model). Said as the load says it.
  if (const std::string* saved_opt = it->second.first.meta("optimizer"))
    check_checkpoint_optimizer(*saved_opt, "checkpoint " + c.resume, c.optim.name);
  // A mid-epoch FILE with other batches (--batch-size, --seed, ...): each such trial failed
  // loading it, and a sweep of only such trials exited 1 after running them all. Said as the load
  // says it.
  if (const TrainPosition& at = it->second.second; at.batch > 0)
    check_resume_batches(c.resume, at,
                         checkpoint_config(it->second.first, "checkpoint " + c.resume),
                         parse_json(run_config_json(c)));
  const std::string key = c.resume + "\n" + c.model.key() + "\n" + shape_str(c.input_shape());
  auto fit = fits_.find(key);
  if (fit == fits_.end()) {
    std::string why;
    try {
      check_resume_model(c, it->second.first);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Usage) throw;
      why = e.message();
    }
    fit = fits_.emplace(key, why).first;
  }
  KILN_USAGE_CHECK(fit->second.empty(), fit->second);
}

int64_t check_sweep_trials(const SweepSpec& spec, const RunConfig& base, int64_t max_trials) {
  struct Seen {
    int64_t ok = 0, bad = 0;
  };
  std::map<std::pair<size_t, std::string>, Seen> values;  // (parameter index, listed value)
  int64_t first_ok = -1;
  std::string first;
  const int64_t n = std::min(num_trials(spec), max_trials);
  TrialChecks trial_checks;
  for (int64_t i = 0; i < n; ++i) {
    // (a million trials take seconds: a signal meanwhile stops here, before anything is written)
    if (const int sig = *StopSignals::flag()) throw TrialInterrupted(sig);
    std::string err;
    try {
      const RunConfig c = trial_config(spec, base, i, "check");
      c.validate();
      trial_checks.check(c);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Usage) throw;
      err = e.message();
    }
    if (err.empty() && first_ok < 0) first_ok = i;
    if (!err.empty() && first.empty()) first = err;
    const auto params = trial_params(spec, i);
    for (size_t k = 0; k < params.size(); ++k) {
      if (spec.params[k].is_range()) continue;  // a sampled number is one trial's, not the file's
      Seen& v = values[{k, params[k].second}];
      ++(err.empty() ? v.ok : v.bad);
    }
  }
  KILN_USAGE_CHECK(first_ok >= 0 || n == 0,
                   "every trial of " << spec.path
                                     << " has invalid options (the sweep file's, a --config "
                                        "file's or the command line's); first: "
                                     << first);
  // A value no trial can run with is a typo when it cannot run beside the base alone, nor beside
  // any combination of the other parameters' listed values (optimizer 'adamm'); otherwise its
  // company is to blame (nesterov: true drawn only beside momentum: 0 in a random sweep, or a
  // grid cut short by run_cap), and its trials fail alone.
  for (const auto& [key, v] : values) {
    if (v.ok > 0) continue;
    const SweepParam& p = spec.params[key.first];
    std::string alone;
    try {
      RunConfig c = base;
      set_param(c, p, key.second, spec.path + ": parameter '" + p.name + "'");
      c.validate();
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::Usage) throw;
      alone = e.message();
    }
    if (!alone.empty() && runs_in_some_company(spec, base, key.first, key.second)) continue;
    KILN_USAGE_CHECK(alone.empty(), spec.path << ": parameter '" << p.name << "' value '"
                                              << key.second << "' cannot run (nor can the " << v.bad
                                              << " trial" << (v.bad == 1 ? "" : "s")
                                              << " with it): " << alone);
  }
  return first_ok;
}

TrialRunner default_trial_runner(std::optional<RunConfig> defaults,
                                 std::function<void(const std::string&)> data_note) {
  // A note on the data is the same for every trial: passed on once, not once per trial.
  auto said = std::make_shared<std::set<std::string>>();
  return [defaults, data_note, said](const RunConfig& cfg,
                                     const std::function<bool(const EpochRecord&)>& on_epoch) {
    RunHooks hooks;
    hooks.on_epoch = on_epoch;
    // What the trial would print on a terminal (epoch lines, --grad-report tables, notes) goes
    // to a text file beside its JSONL (trials/trial-<id>.log), not into the sweep's output.
    std::ofstream text;
    const std::string& jl = cfg.train.log_path;
    const std::string suffix = ".jsonl";
    if (jl.size() > suffix.size() &&
        jl.compare(jl.size() - suffix.size(), suffix.size(), suffix) == 0) {
      const std::string path = jl.substr(0, jl.size() - suffix.size()) + ".log";
      text.open(path, std::ios::trunc);
      KILN_CHECK(text, path << ": cannot open for writing: " << std::strerror(errno));
      hooks.log = [&text, path](const std::string& line) {
        text << line << '\n' << std::flush;
        KILN_CHECK(text, path << ": write failed: " << std::strerror(errno));
      };
    }
    hooks.data_note = [&hooks, &data_note, &said](const std::string& note) {
      if (hooks.log) hooks.log("note: " + note);
      if (data_note && said->insert(note).second) data_note(note);
    };
    if (defaults && hooks.log)
      for (const std::string& note : option_notes(cfg, *defaults)) hooks.log("note: " + note);
    // A trial runs from its start, so its JSONL starts anew, as its .log does: a trial that
    // continues a checkpoint (resume: in the base) appended to its stopped attempt's records,
    // as train_mnist --resume appends (epochs 2 2 3 4 5 6, until 2026-12-07).
    if (!jl.empty() && !cfg.resume.empty()) {
      std::ofstream anew(jl, std::ios::trunc);
      KILN_CHECK(anew, jl << ": cannot open for writing: " << std::strerror(errno));
    }
    hooks.must_train = true;
    RunResult r = run_training(cfg, hooks);
    if (r.stop_signal) throw TrialInterrupted(r.stop_signal);
    TrialRun run(std::move(r.epochs), r.restored_epoch);
    run.test_data = r.test_data;
    return run;
  };
}

namespace {
// The run options every trial shares (defaults, the file's base, the command line) are kept as
// DIR/run_options.json; a --resume or another worker with other values would rank trials of
// different recipes in one leaderboard. Only where the run happens and what it writes on the
// side may change. Until the first result is recorded there is nothing to mix: the file is
// (re)written, so fixing a usage error or rerunning a sweep stopped before any trial finished
// is not refused.
// Runs under the results lock (ResultsLock), like every append: a worker starting now cannot
// slip its files in between another's check and its record. `write` false (a dry run): only
// the check.
void check_run_options(const SweepOptions& o, bool have_results, bool write = true) {
  const std::string path = o.dir + "/run_options.json", now = run_config_json(o.base) + "\n";
  const std::string old = read_text(path);
  if (old == now) return;
  if (old.empty() || !have_results) {
    if (!write) return;
    // Results without the file: a directory of a kiln from before run_options.json (2026-12-02),
    // whose trials' options cannot be checked; say so rather than start a record silently.
    if (have_results && o.log)
      o.log("note: " + o.dir + " holds trials recorded before kiln kept " + path +
            ": the options they ran with are not known, so this run's (recorded now) cannot be "
            "checked against them; pass the options they ran with (a default that changed "
            "since, such as adamw's weight decay, would make the rest another recipe)");
    write_file_atomic(path, now.data(), now.size());
    return;
  }
  const std::string diffs = run_options_diffs(o, old);
  KILN_USAGE_CHECK(diffs.empty(), o.dir << " holds trials run with other options (" << diffs
                                        << "); pass the same options, or use another --dir");
}

// Whether DIR/sweep.yaml holds `spec_text` (true also when spec_text is empty: nothing to keep);
// a usage error when DIR holds `results` recorded trials and no copy, or another sweep's.
bool check_sweep_copy(const SweepSpec& spec, const std::string& dir, const std::string& spec_text,
                      size_t results) {
  if (spec_text.empty()) return true;
  const std::string copy = dir + "/sweep.yaml", old = read_text(copy);
  KILN_USAGE_CHECK(!old.empty() || results == 0,
                   dir << " holds " << results << " results but no " << copy
                       << ": which sweep they belong to is unknown; use another --dir");
  KILN_USAGE_CHECK(old == spec_text || results == 0,
                   dir << " holds a different sweep (" << copy << " differs from " << spec.path
                       << " at " << first_difference(old, spec_text) << "); use another --dir");
  return old == spec_text;
}
}  // namespace

// A directory that holds results is another run's unless this one continues it (--resume) or
// shares it with other workers.
static void check_results_taken_up(const SweepOptions& o, size_t recorded) {
  KILN_USAGE_CHECK(recorded == 0 || o.resume || o.num_workers > 1,
                   o.dir << " already holds " << recorded
                         << " results; pass --resume to continue that "
                         << "sweep or choose another --dir");
}

std::vector<TrialRecord> check_sweep_dir(const SweepSpec& spec, const SweepOptions& o) {
  struct stat st;
  if (::stat(o.dir.c_str(), &st) != 0) {
    KILN_USAGE_CHECK(errno == ENOENT, o.dir << ": " << std::strerror(errno));
    return {};  // made by the run
  }
  KILN_USAGE_CHECK(S_ISDIR(st.st_mode), o.dir << ": not a directory (the sweep's --dir)");
  std::vector<TrialRecord> prior = read_results(o.dir);
  check_sweep_copy(spec, o.dir, o.spec_text, prior.size());
  check_run_options(o, !prior.empty(), false);
  check_results_taken_up(o, prior.size());
  return prior;
}

void check_param_names(const SweepSpec& spec) {
  for (const SweepParam& p : spec.params)
    for (const char* fixed :
         {"trial", "status", "metric", "epochs_run", "val_acc", "val_loss", "test_acc", "test_loss",
          "train_acc", "train_loss", "weight_sparsity", "seconds", "message"})
      KILN_USAGE_CHECK(p.name != fixed, spec.path << ": parameter '" << p.name
                                                  << "': the name of one of the results' own "
                                                     "columns; name the bundle otherwise");
}

// A val_ metric needs every trial to hold out a validation split: say so before any runs.
// (A trial whose options do not parse fails on its own, as any other trial would.)
void check_val_metric(const SweepSpec& spec, const RunConfig& base) {
  const int64_t n = num_trials(spec);
  for (int64_t i = 0; spec.metric.rfind("val_", 0) == 0 && i < n; ++i) {
    double f = 1;
    try {
      f = trial_config(spec, base, i, "check").data.val_split;
    } catch (const Error&) {
    }
    KILN_USAGE_CHECK(f > 0, spec.path << ": metric " << spec.metric
                                      << " needs a validation split, but trial " << i
                                      << " has val_split 0 (set val_split in base or parameters, "
                                      << "or pass --val-split)");
  }
}

SweepOutcome run_sweep(const SweepSpec& spec, const SweepOptions& o, const TrialRunner& runner) {
  KILN_USAGE_CHECK(!o.dir.empty(), "sweep: no output directory");
  KILN_USAGE_CHECK(o.num_workers >= 1 && o.worker >= 0 && o.worker < o.num_workers,
                   "sweep: worker " << o.worker << "/" << o.num_workers);
  check_param_names(spec);         // (a sweep directory from before this check still reports)
  check_val_metric(spec, o.base);  // before the directory is made: a refused sweep leaves none
  make_dir(o.dir);
  make_dir(o.dir + "/locks");
  make_dir(o.dir + "/trials");
  int64_t n = num_trials(spec);
  SweepOutcome out;
  std::vector<TrialRecord> prior;
  {
    // What the recorded trials ran: the sweep file and the run options (both rewritten while no
    // trial has been recorded, so a fixed usage error or an early stop is not refused; a worker
    // whose files were replaced that way refuses its records, check_still_ours).
    ResultsLock lock(o.dir);
    prior = read_results(o.dir);
    // temp + rename: a concurrent worker never reads half a file
    if (!check_sweep_copy(spec, o.dir, o.spec_text, prior.size()))
      write_file_atomic(o.dir + "/sweep.yaml", o.spec_text.data(), o.spec_text.size());
    check_run_options(o, !prior.empty());
  }
  check_results_taken_up(o, prior.size());
  if (!prior.empty()) record_locked(o.dir, spec, "");  // repair a CSV a kill left short
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };
  // A signal outside a trial's training loop (its data loading, its last evaluation, between
  // trials) is kept by the caller's StopSignals: stop before the next trial starts.
  auto stop_if_signalled = [] {
    if (const int sig = *StopSignals::flag()) throw TrialInterrupted(sig);
  };
  // Trials in a row this process saw run out of memory: past kOomStreak the device is short of
  // memory (another process holds it, or the data itself no longer fits), not each trial too
  // large, and the sweep stops with that trial unrecorded (--resume runs it again) instead of
  // failing every trial left in seconds. Unless the streak's trials all share a parameter value
  // that no trial that fitted here had: a grid varies its last parameter fastest, so one width
  // too large fails several trials in a row, and those are that value's size (recorded; the
  // sweep goes on). With no trial fitted yet nothing tells the two apart: the sweep stops.
  constexpr int kOomStreak = 3;
  std::vector<std::vector<std::pair<std::string, std::string>>> oom_streak;  // their parameters
  std::set<std::pair<std::string, std::string>> fitted;  // (parameter, value) of trials that fit
  auto one_value_too_large = [&] {
    if (fitted.empty()) return false;
    for (size_t k = 0; k < oom_streak[0].size(); ++k) {
      const auto& pv = oom_streak[0][k];
      if (!fitted.count(pv) && std::all_of(oom_streak.begin(), oom_streak.end(),
                                           [&](const auto& p) { return p[k] == pv; }))
        return true;
    }
    return false;
  };
  for (int64_t i = 0; i < n; ++i) {
    if (i % o.num_workers != o.worker) continue;
    auto is_done = [&](const std::vector<TrialRecord>& rs) {
      return std::any_of(rs.begin(), rs.end(), [&](const TrialRecord& r) { return r.trial == i; });
    };
    if (is_done(prior)) {
      ++out.skipped_done;
      // (no later worker claimed a recorded trial, so its leftover lock stayed until 2026-12-07)
      TrialLock::drop_stale(o.dir, i);
      continue;
    }
    // Before a trial starts, not after the last one: a signal in the last trial's final
    // evaluation (the trial recorded, none left) ends the sweep as a finished one, as a run's
    // last epoch completes.
    stop_if_signalled();
    TrialLock lock(o.dir, i);
    if (!lock.held()) {  // another live process has it
      ++out.skipped_other;
      log("trial " + std::to_string(i) + ": claimed by another worker (" + lock.holder() +
          "), skipping");
      continue;
    }
    // Re-read under the claim: a worker may have finished it (and dropped its lock) meanwhile.
    prior = read_results(o.dir);
    if (is_done(prior)) {
      ++out.skipped_done;
      continue;
    }
    TrialRecord rec;
    rec.trial = i;
    rec.params = trial_params(spec, i);
    std::string head = "trial " + std::to_string(i) + "/" + std::to_string(n) + " [" +
                       params_str(rec.params) + "]";
    std::vector<EpochRecord> finished;  // as they come, for a trial that fails later
    auto on_epoch = [&](const EpochRecord& r) {
      finished.push_back(r);
      double m = metric_of(r, spec.metric);
      rec.curve.push_back(m);
      int e = static_cast<int>(rec.curve.size());
      if (r.zero_grad_weights > 0 && rec.message.empty())  // the trainer's warning, kept per trial
        rec.message = "dead ReLUs: " + std::to_string(r.zero_grad_weights) +
                      " weight tensors had an exactly-0 gradient at epoch " + std::to_string(e);
      if (!spec.median_stop || e < spec.min_epochs) return true;
      // Optuna's MedianPruner: the trial's best value so far (NaN epochs ignored) against the
      // median of the finished trials' values at this epoch.
      double best = NAN;
      for (double v : rec.curve)
        if (std::isfinite(v) && (std::isnan(best) || better(v, best, spec.maximize))) best = v;
      if (std::isnan(best)) return true;
      std::vector<double> peers;
      for (const auto& t : read_results(o.dir))
        if (t.status == "ok" && static_cast<int>(t.curve.size()) >= e &&
            std::isfinite(t.curve[e - 1]))
          peers.push_back(t.curve[e - 1]);
      if (static_cast<int>(peers.size()) < spec.min_trials) return true;
      std::sort(peers.begin(), peers.end());
      size_t h = peers.size() / 2;
      double med = peers.size() % 2 ? peers[h] : 0.5 * (peers[h - 1] + peers[h]);
      if (!better(med, best, spec.maximize)) return true;
      // (with the digits that tell the two apart: "2.09475 worse than the median 2.09475")
      int digits = 6;
      while (digits < 17 && format_c("%.*g", digits, best) == format_c("%.*g", digits, med))
        ++digits;
      ClassicOStringStream os;
      os << std::setprecision(digits) << "pruned at epoch " << e << ": best " << spec.metric
         << " so far " << best << " worse than the median " << med << " of " << peers.size()
         << " finished trials at that epoch";
      rec.status = "pruned";
      rec.message = os.str();
      return false;
    };
    const auto t0 = std::chrono::steady_clock::now();
    bool out_of_memory = false, refused = false;
    const auto failed = [&](ErrorKind kind, const std::string& message) {
      out_of_memory = kind == ErrorKind::OutOfMemory;
      refused = kind == ErrorKind::Usage;  // options that never ran: no size to learn from
      if (out_of_memory) oom_streak.push_back(rec.params);
      if (out_of_memory && oom_streak.size() >= size_t(kOomStreak) && !one_value_too_large())
        KILN_FAIL("trial " << i << ": " << message << " (" << oom_streak.size()
                           << " trials in a row out of memory: the device is short of memory, "
                              "not each trial too large; this one is not recorded, --resume "
                              "runs it again)");
      rec.status = "failed";
      rec.message = (kind == ErrorKind::Diverged ? "diverged: "
                     : kind == ErrorKind::Usage  ? "usage: "
                                                 : "") +
                    message;
      rec.epochs = static_cast<int>(rec.curve.size());
      // The scores of the last epoch it finished (a divergence in epoch 3 keeps epoch 2's).
      if (!finished.empty()) set_scores(rec, finished.back(), spec.metric);
    };
    try {
      RunConfig cfg = trial_config(spec, o.base, i, o.dir);
      const TrialRun run = runner(cfg, on_epoch);
      rec.test_data = run.test_data;
      rec.epochs = static_cast<int>(run.epochs.size());
      if (!run.epochs.empty()) set_scores(rec, final_epoch(run), spec.metric);
      if (rec.status.empty() && run.epochs.empty()) {  // no score to rank
        rec.status = "failed";
        rec.message = cfg.train.epochs == 0 ? "no epoch ran (epochs 0): nothing to score"
                      : !cfg.resume.empty()
                          ? "no epoch ran (the trial's --target-acc or --early-stop held "
                            "already against the --resume checkpoint's state; its log says "
                            "which): nothing to score"
                          : "no epoch ran: nothing to score";
      }
      if (rec.status.empty()) rec.status = "ok";
    } catch (const Error& e) {
      // Runtime errors (missing data, I/O, CUDA) would fail every trial: stop the sweep. An
      // allocation that failed is this trial's size (its message says "out of memory"), unless
      // the trials before it failed so too.
      if (e.kind() == ErrorKind::Runtime) throw;
      failed(e.kind(), e.message());
    } catch (const std::bad_alloc&) {  // (a host container's allocation: counted as kiln's)
      failed(ErrorKind::OutOfMemory, "out of memory");
    }
    if (!out_of_memory) {
      oom_streak.clear();
      if (!refused) fitted.insert(rec.params.begin(), rec.params.end());
    }
    // Wall time, failed trials included (a divergence at step 8 of a long epoch still cost time).
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    record_locked(o.dir, spec, rec.to_json(), &o, i);
    ++out.ran;
    ClassicOStringStream os;
    os << head << ": " << rec.status;
    if (rec.status != "failed")
      os << " " << spec.metric << "=" << std::setprecision(4) << rec.metric;
    os << " (" << rec.epochs << (rec.epochs == 1 ? " epoch, " : " epochs, ") << std::fixed
       << std::setprecision(1) << rec.seconds << "s)";
    if (!rec.message.empty())  // one line: an Error's message, or the sweep's own text
      os << " " << rec.message;
    log(os.str());
  }
  out.results = read_results(o.dir);
  return out;
}

std::string mixed_test_sets_note(const SweepSpec& spec, const std::vector<TrialRecord>& rs) {
  // A sweep that varies the test set itself compares no scores across it anyway. (Parameter
  // and group option names are canonical: data_dir in the file is "data-dir".)
  for (const char* o : {"data-dir", "dataset", "test-limit"})
    if (!swept_by(spec, o).empty()) return "";
  std::map<std::string, std::vector<int64_t>> by_set;
  for (const TrialRecord& r : rs)
    if (!r.test_data.empty()) by_set[r.test_data].push_back(r.trial);
  if (by_set.size() < 2) return "";
  ClassicOStringStream os;
  os << "note: these trials were scored on " << by_set.size() << " test sets (";
  size_t k = 0;
  for (auto& [set, ids] : by_set) {
    std::sort(ids.begin(), ids.end());
    os << (k++ ? "; " : "") << set << ": trial" << (ids.size() > 1 ? "s " : " ");
    for (size_t i = 0; i < ids.size() && i < 3; ++i) os << (i ? ", " : "") << ids[i];
    if (ids.size() > 3) os << " and " << ids.size() - 3 << " more";
  }
  os << "): their scores do not compare (a --resume or a worker with another --data-dir?)\n";
  return os.str();
}

namespace {
// A score in a table: four decimals (0.8400 above 0.8880 reads as a column), four significant
// digits from a million on (a diverged loss of 3e24 filled its column and ran into the next);
// "-" when not finite. With `sign`, a leading + on positive values.
std::string score_text(double v, bool sign = false) {
  if (!std::isfinite(v)) return "-";
  ClassicOStringStream m;
  if (sign) m << std::showpos;
  if (std::fabs(v) < 1e6)
    m << std::fixed << std::setprecision(4) << v;
  else
    m << std::setprecision(4) << v;
  return m.str();
}
// `s` padded to `w`, and one space after it however long it is: a column's value never runs
// into the next column's.
std::string cell(const std::string& s, size_t w) {
  return s.size() < w ? s + std::string(w - s.size(), ' ') : s + " ";
}
}  // namespace

std::string leaderboard(const SweepSpec& spec, std::vector<TrialRecord> rs, size_t top) {
  auto rank = [](const std::string& s) { return s == "ok" ? 0 : s == "pruned" ? 1 : 2; };
  std::stable_sort(rs.begin(), rs.end(), [&](const TrialRecord& a, const TrialRecord& b) {
    if (rank(a.status) != rank(b.status)) return rank(a.status) < rank(b.status);
    bool fa = std::isfinite(a.metric), fb = std::isfinite(b.metric);
    if (fa != fb) return fa;
    if (fa && a.metric != b.metric) return better(a.metric, b.metric, spec.maximize);
    // Ties by trial id, not by when they finished: workers and resumes finish in other orders.
    return a.trial < b.trial;
  });
  // Chosen on a validation split: each trial's test score is shown next to it.
  const bool by_val = spec.metric.rfind("val_", 0) == 0;
  ClassicOStringStream os;
  os << "leaderboard (" << spec.metric << ", " << (spec.maximize ? "higher" : "lower")
     << " is better; " << rs.size() << " trials)\n";
  os << std::left << std::setw(5) << "rank" << std::setw(7) << "trial" << std::setw(8) << "status"
     << std::setw(11) << spec.metric;
  if (by_val) os << std::setw(10) << "test_acc";
  std::vector<int> width;
  for (size_t j = 0; j < spec.params.size(); ++j) {
    size_t w = spec.params[j].name.size();
    for (size_t k = 0; k < rs.size() && k < top; ++k)
      if (j < rs[k].params.size()) w = std::max(w, rs[k].params[j].second.size());
    width.push_back(static_cast<int>(w) + 2);
    os << std::setw(width.back()) << spec.params[j].name;
  }
  os << "epochs_run\n";  // not "epochs": that may be a parameter's column
  for (size_t k = 0; k < rs.size() && k < top; ++k) {
    const auto& r = rs[k];
    os << cell(std::to_string(k + 1), 5) << cell(std::to_string(r.trial), 7) << cell(r.status, 8)
       << cell(score_text(r.metric), 11);
    if (by_val) os << cell(score_text(r.test_acc), 10);
    for (size_t j = 0; j < spec.params.size(); ++j)
      os << std::setw(width[j]) << (j < r.params.size() ? r.params[j].second : "?");
    os << r.epochs << "\n";
  }
  if (rs.size() > top) os << "(" << rs.size() - top << " more in results.csv)\n";
  // What choosing on the test set instead would have claimed: the best test score of any trial
  // against the test score of the trial the validation split chose.
  const TrialRecord* best_test = nullptr;
  for (const auto& r : rs)
    if (r.status == "ok" && std::isfinite(r.test_acc) &&
        (!best_test || r.test_acc > best_test->test_acc))
      best_test = &r;
  if (by_val && best_test && rs[0].status == "ok" && std::isfinite(rs[0].test_acc)) {
    os << std::setprecision(4) << "chosen by " << spec.metric << ": trial " << rs[0].trial
       << ", test_acc " << rs[0].test_acc << "; the best test_acc of any trial is "
       << best_test->test_acc << " (trial " << best_test->trial
       << "): choosing on the test set would claim " << std::setprecision(2)
       << 100 * (best_test->test_acc - rs[0].test_acc) << " points more\n";
  }
  return os.str() + mixed_test_sets_note(spec, rs);
}

std::vector<SeedGroup> seed_groups(const SweepSpec& spec, const std::vector<TrialRecord>& rs) {
  size_t seed_at = spec.params.size();
  for (size_t j = 0; j < spec.params.size(); ++j)
    if (spec.params[j].name == "seed") seed_at = j;
  std::vector<SeedGroup> groups;
  if (seed_at == spec.params.size()) return groups;
  std::map<std::vector<std::pair<std::string, std::string>>, size_t> index;
  std::vector<std::set<std::string>> seen;  // each group's seeds so far
  // Groups in the order of their first trial id (tied means keep it), not of finishing.
  std::vector<const TrialRecord*> by_id;
  for (const auto& r : rs) by_id.push_back(&r);
  std::stable_sort(by_id.begin(), by_id.end(),
                   [](const TrialRecord* a, const TrialRecord* b) { return a->trial < b->trial; });
  for (const TrialRecord* rp : by_id) {
    const TrialRecord& r = *rp;
    auto key = r.params;
    if (seed_at < key.size()) key.erase(key.begin() + static_cast<std::ptrdiff_t>(seed_at));
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, groups.size()).first;
      groups.push_back(SeedGroup{});
      groups.back().params = key;
      seen.emplace_back();
    }
    SeedGroup& g = groups[it->second];
    const std::string seed = seed_at < r.params.size() ? r.params[seed_at].second : "";
    if (!seen[it->second].insert(seed).second) {
      ++g.repeats;  // a second sample of one run would shrink std and double-count its pairs
      continue;
    }
    if (r.status == "ok" && std::isfinite(r.metric)) {
      g.metrics.push_back(r.metric);
      g.seeds.push_back(seed);
    } else
      ++g.not_ok;
  }
  for (auto& g : groups) {
    if (g.metrics.empty()) continue;
    double sum = 0;
    for (double m : g.metrics) sum += m;
    g.mean = sum / static_cast<double>(g.metrics.size());
    g.min = *std::min_element(g.metrics.begin(), g.metrics.end());
    g.max = *std::max_element(g.metrics.begin(), g.metrics.end());
    if (g.metrics.size() >= 2) {
      double ss = 0;
      for (double m : g.metrics) ss += (m - g.mean) * (m - g.mean);
      g.stddev = std::sqrt(ss / static_cast<double>(g.metrics.size() - 1));
    }
  }
  std::stable_sort(groups.begin(), groups.end(), [&](const SeedGroup& a, const SeedGroup& b) {
    bool fa = std::isfinite(a.mean), fb = std::isfinite(b.mean);
    if (fa != fb) return fa;
    return fa && better(a.mean, b.mean, spec.maximize);
  });
  if (groups.empty()) return groups;
  const SeedGroup& best = groups.front();
  for (size_t k = 1; k < groups.size(); ++k) {
    SeedGroup& g = groups[k];
    double sum = 0;
    for (size_t i = 0; i < g.seeds.size(); ++i)
      for (size_t j = 0; j < best.seeds.size(); ++j)
        if (best.seeds[j] == g.seeds[i]) {
          sum += g.metrics[i] - best.metrics[j];
          ++g.paired_n;
          g.best_ahead += better(best.metrics[j], g.metrics[i], spec.maximize);
        }
    if (g.paired_n > 0) g.paired_diff = sum / g.paired_n;
  }
  return groups;
}

std::string seed_table(const SweepSpec& spec, const std::vector<TrialRecord>& rs) {
  std::vector<SeedGroup> groups = seed_groups(spec, rs);
  bool repeated = false;
  for (const auto& g : groups) repeated = repeated || g.metrics.size() >= 2;
  if (!repeated) return "";
  std::vector<std::string> names;
  for (const auto& p : spec.params)
    if (p.name != "seed") names.push_back(p.name);
  std::vector<int> width;
  for (size_t j = 0; j < names.size(); ++j) {
    size_t w = names[j].size();
    for (const auto& g : groups)
      if (j < g.params.size()) w = std::max(w, g.params[j].second.size());
    width.push_back(static_cast<int>(w) + 2);
  }
  auto num = [](double v) { return cell(score_text(v), 9); };
  ClassicOStringStream os;
  os << "over seeds (" << spec.metric << " of ok trials, ranked by the mean; std: sample standard "
     << "deviation; vs #1: mean difference to rank 1 on the same seeds, #1 ahead: on how many)\n"
     << std::left << std::setw(5) << "rank";
  for (size_t j = 0; j < names.size(); ++j) os << std::setw(width[j]) << names[j];
  os << std::setw(4) << "n" << std::setw(9) << "mean" << std::setw(9) << "std" << std::setw(9)
     << "min" << std::setw(9) << "max" << std::setw(8) << "not ok" << std::setw(9) << "vs #1"
     << "#1 ahead\n";
  for (size_t k = 0; k < groups.size(); ++k) {
    const SeedGroup& g = groups[k];
    os << cell(std::to_string(k + 1), 5);
    for (size_t j = 0; j < names.size(); ++j)
      os << std::setw(width[j]) << (j < g.params.size() ? g.params[j].second : "?");
    os << cell(std::to_string(g.metrics.size()), 4) << num(g.mean) << num(g.stddev) << num(g.min)
       << num(g.max) << cell(std::to_string(g.not_ok), 8);
    if (g.paired_n > 0) {
      os << cell(score_text(g.paired_diff, true), 9) << g.best_ahead << "/" << g.paired_n;
    } else {
      os << std::setw(9) << "-"
         << "-";
    }
    os << "\n";
  }
  int repeats = 0;
  for (const auto& g : groups) repeats += g.repeats;
  if (repeats > 0)
    os << "(" << repeats << " trial" << (repeats == 1 ? " repeats" : "s repeat")
       << " an earlier trial's configuration and seed, the same run again: counted once, by the "
       << "first)\n";
  return os.str();
}

}  // namespace kiln
