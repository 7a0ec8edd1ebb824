// kiln checkpoints on top of the safetensors container: which tensors and metadata keys a
// checkpoint holds, the checksums, and validate-everything-then-restore loading (a failed
// load leaves the model and optimizer untouched).
#include "engine/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <set>

#include "engine/error.h"
#include "engine/json.h"
#include "engine/numtext.h"

#ifndef KILN_VERSION_STRING
#define KILN_VERSION_STRING "unknown"
#endif

namespace kiln {

namespace {

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  const std::string dir = not_regular_file_error(path);
  KILN_CHECK(dir.empty(), "checkpoint " << path << ": " << dir);
  std::vector<uint8_t> bytes;
  const FileRead r = read_whole_file(path, bytes);
  KILN_CHECK(r.err == 0, "checkpoint " << path << ": " << r.why);
  return bytes;
}

constexpr int64_t kCounterBase = 16777216;  // 2^24: a float counts exactly up to it

bool is_step_counter(const std::string& name) {
  const std::string s = "num_batches_tracked";
  return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
}

// Host copy of a (possibly device) tensor as safetensors bytes. PyTorch keeps
// num_batches_tracked as a 0-dim int64; kiln keeps it in a float [2] buffer (count mod 2^24,
// count / 2^24), so it is converted to match torch's state_dict exactly.
StTensor to_st(const std::string& name, const Tensor& t) {
  std::vector<float> v = t.to_vector();
  StTensor s;
  s.name = name;
  if (is_step_counter(name) && v.size() == 2) {
    s.dtype = "I64";
    const int64_t c = std::llround(v[1]) * kCounterBase + std::llround(v[0]);
    s.data.resize(8);
    std::memcpy(s.data.data(), &c, 8);
    return s;
  }
  s.dtype = "F32";
  s.shape = t.shape();
  s.data.resize(v.size() * sizeof(float));
  if (!v.empty()) std::memcpy(s.data.data(), v.data(), s.data.size());
  return s;
}

// The metadata checksum covers every key except itself, in sorted order, NUL-separated.
uint32_t meta_crc(std::vector<std::pair<std::string, std::string>> m) {
  std::sort(m.begin(), m.end());
  uint32_t c = 0;
  for (const auto& [k, v] : m) {
    if (k == "meta_crc32") continue;
    c = crc32(k.data(), k.size(), c);
    c = crc32("", 1, c);
    c = crc32(v.data(), v.size(), c);
    c = crc32("", 1, c);
  }
  return c;
}

// The data checksum. Version 2: over the tensors sorted by name, each as name NUL dtype NUL
// shape (as in the header, "[16,1,3,3]") NUL bytes, so it covers what each tensor is called
// and holds whatever order the file lists or stores them in (a file re-saved by another
// safetensors writer still verifies). Version 1: the bytes alone, in header order.
uint32_t data_crc(const SafetensorsFile& f, int version) {
  uint32_t c = 0;
  if (version == 1) {
    for (const auto& t : f.tensors) c = crc32(t.data.data(), t.data.size(), c);
    return c;
  }
  std::vector<const StTensor*> order;
  for (const auto& t : f.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const StTensor* a, const StTensor* b) { return a->name < b->name; });
  for (const StTensor* t : order) {
    const std::string shape = shape_json(t->shape);
    for (const std::string* part : {&t->name, &t->dtype, &shape}) {
      c = crc32(part->data(), part->size(), c);
      c = crc32("", 1, c);
    }
    c = crc32(t->data.data(), t->data.size(), c);
  }
  return c;
}

std::string hex32(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

std::string meta_or_fail(const SafetensorsFile& f, const std::string& key, const std::string& what) {
  const std::string* v = f.meta(key);
  KILN_CHECK(v, what << ": __metadata__ has no '" << key << "'");
  return *v;
}

long long meta_int(const SafetensorsFile& f, const std::string& key, const std::string& what,
                   long long max = std::numeric_limits<long long>::max()) {
  std::string v = meta_or_fail(f, key, what);
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  KILN_CHECK(
      !v.empty() && end && *end == 0 && errno == 0 && x >= 0,
      what << ": __metadata__ " << key << " " << printable(v) << " is not a non-negative integer");
  KILN_CHECK(x <= max, what << ": __metadata__ " << key << " " << x << " is past " << max);
  return x;
}

double meta_double(const std::string& v, const std::string& key, const std::string& what) {
  if (v == "null") return NAN;
  char* end = nullptr;
  double x = strtod_c(v.c_str(), &end);
  KILN_CHECK(!v.empty() && end && *end == 0,
             what << ": __metadata__ " << key << " " << printable(v) << " is not a number");
  return x;
}

// One expected tensor: found, right dtype, right shape; returns the values as floats.
std::vector<float> expect_tensor(const SafetensorsFile& f, const std::string& name, const Tensor& t,
                                 const std::string& what, const char* owner) {
  const StTensor* s = f.find(name);
  KILN_USAGE_CHECK(s, what << ": missing tensor " << name << " (the " << owner << " expects "
                           << shape_str(t.shape()) << "): saved from a different model or optimizer?");
  std::vector<float> out(static_cast<size_t>(t.numel()));
  // The step counter: torch's 0-dim I64 (what kiln writes), or one float ([] or [1]); kept as
  // [count mod 2^24, count / 2^24].
  if (is_step_counter(name) && (s->dtype == "I64" || s->dtype == "F32")) {
    KILN_USAGE_CHECK(shape_numel(s->shape) == 1 && s->shape.size() <= 1 && t.numel() == 2,
                     what << ": tensor " << name << " has shape " << shape_str(s->shape)
                          << ", expected a single count");
    int64_t c;
    if (s->dtype == "F32") {
      float f;
      std::memcpy(&f, s->data.data(), 4);
      // The range before the cast: a float past 2^63 does not convert (undefined behaviour;
      // INT64_MIN on x86, an abort under clang's UBSan).
      KILN_USAGE_CHECK(std::isfinite(f) && f >= 0 && f == std::floor(f) &&
                           f < static_cast<float>(kCounterBase * kCounterBase),
                       what << ": tensor " << name << " is " << f << ", not a count below 2^48");
      c = static_cast<int64_t>(f);
    } else {
      std::memcpy(&c, s->data.data(), 8);
    }
    KILN_USAGE_CHECK(c >= 0 && c < kCounterBase * kCounterBase,
                     what << ": tensor " << name << " is " << c << ", not a count below 2^48");
    out[0] = static_cast<float>(c % kCounterBase);
    out[1] = static_cast<float>(c / kCounterBase);
    return out;
  }
  KILN_CHECK(s->dtype == "F32", what << ": tensor " << name << " has dtype " << printable(s->dtype)
                                     << ", expected F32");
  KILN_USAGE_CHECK(s->shape == t.shape(), what << ": tensor " << name << " has shape " << shape_str(s->shape)
                                               << ", the " << owner << " expects " << shape_str(t.shape()));
  if (!out.empty()) std::memcpy(out.data(), s->data.data(), s->data.size());
  return out;
}

// Every tensor of f that `known` does not claim is refused: a model of another shape saved it.
void refuse_unknown_tensors(const SafetensorsFile& f, const std::string& what,
                            const std::function<bool(const std::string&)>& known) {
  for (const auto& t : f.tensors)
    KILN_USAGE_CHECK(known(t.name),
                     what << ": unexpected tensor " << printable(t.name) << " "
                          << shape_str(t.shape)
                          << ": the model has no such tensor (saved from a different model?)");
}

}  // namespace

const char* kiln_version() { return KILN_VERSION_STRING; }

bool EarlyStopState::update(double metric, const EarlyStopRule& rule, int epoch) {
  if (epoch <= rule.start_from_epoch) return false;  // warm-up: not watched
  ++wait;
  const bool improved = std::isnan(best) ? !std::isnan(metric) : rule.beats(metric, best);
  if (!improved) return false;
  best = metric;
  best_epoch = epoch;
  if (std::isnan(rule.baseline) || rule.beats(metric, rule.baseline)) wait = 0;
  return true;
}

namespace {
const std::string kBestPrefix = "early_stop.best.";

// "best wait best_epoch", best exactly (%.17g; "nan" before the first epoch).
std::string early_stop_text(const EarlyStopState& e) {
  return format_c("%.17g %d %d", e.best, e.wait, e.best_epoch);
}
EarlyStopState parse_early_stop(const std::string& text, const std::string& what) {
  EarlyStopState e;
  char best[32] = "";
  char extra = 0;
  long long wait = -1, best_epoch = -1;
  CLocaleScope c;
  // Counts up to 2^30, as the epoch is: the patience counter is incremented (INT_MAX wrapped,
  // and early stopping never fired).
  constexpr long long kMaxEpochs = 1 << 30;
  KILN_CHECK(
      std::sscanf(text.c_str(), "%31s %lld %lld %c", best, &wait, &best_epoch, &extra) == 3 &&
          wait >= 0 && wait <= kMaxEpochs && best_epoch >= 0 && best_epoch <= kMaxEpochs,
      what << ": __metadata__ early_stop " << printable(text)
           << ": expected 'best wait best_epoch' (counts up to 2^30)");
  e.wait = static_cast<int>(wait);
  e.best_epoch = static_cast<int>(best_epoch);
  char* end = nullptr;
  e.best = std::strtod(best, &end);
  KILN_CHECK(end && *end == 0,
             what << ": __metadata__ early_stop " << printable(text) << ": bad best value");
  return e;
}
}  // namespace

std::vector<uint8_t> encode_checkpoint(Context& ctx, Model& model, Optimizer* opt, const Schedule* sched,
                                       const CheckpointInfo& info) {
  KILN_CHECK(model.built(), "save_checkpoint: the model is not built (it has no tensors yet)");
  // (load_checkpoint refuses the same pairing: such a file would not load back, or would mix
  // one model's weights with another's optimizer state)
  KILN_USAGE_CHECK(!opt || opt->bound_to(model),
                   "save_checkpoint: the optimizer given steps another model's parameters");
  if (!info.config.empty()) {  // FORMATS.md: a JSON object (kiln_eval rebuilds the model from it)
    bool object = false;
    try {
      object = parse_json(info.config).is_object();
    } catch (const Error&) {
    }
    KILN_CHECK(object, "save_checkpoint: CheckpointInfo::config is not a JSON object: '"
                           << info.config.substr(0, 60)
                           << (info.config.size() > 60 ? "...'" : "'"));
  }
  ctx.sync();
  SafetensorsFile f;
  for (auto& [name, t] : model.state_dict()) f.tensors.push_back(to_st(name, t));
  if (opt)
    for (auto& [name, t] : opt->state()) f.tensors.push_back(to_st("optimizer." + name, t));
  for (auto& [name, t] : info.early_stop_best) f.tensors.push_back(to_st(kBestPrefix + name, t));
  const uint32_t dcrc = data_crc(f, kCheckpointFormatVersion);
  const TrainPosition& p = info.pos;
  std::string sums = "[" + json_number(p.train_sums[0]) + "," + json_number(p.train_sums[1]) + "," +
                     json_number(p.train_sums[2]) + "]";
  auto& m = f.metadata;
  m = {{"format", "kiln.checkpoint"},
       {"format_version", std::to_string(kCheckpointFormatVersion)},
       {"kiln_version", kiln_version()},
       {"config", info.config.empty() ? "{}" : info.config},
       {"epoch", std::to_string(p.epoch)},
       {"batch", std::to_string(p.batch)},
       {"step", std::to_string(p.step)},
       {"seed", std::to_string(info.seed)},
       {"train_sums", sums},
       {"last_lr", json_number(p.last_lr)},
       {"last_momentum", json_number(p.last_momentum)},
       {"optimizer", opt ? opt->options().name : ""},
       {"optimizer_steps", std::to_string(opt ? opt->steps_taken() : 0)},
       {"schedule_state", sched ? sched->state() : ""},
       {"early_stop", early_stop_text(p.early_stop)}};
  // Optional keys (absent in older checkpoints): only when they say something.
  if (!std::isnan(p.watched_acc)) {
    m.emplace_back("watched_acc", format_c("%.17g", p.watched_acc));
  }
  if (!p.epoch_steps.empty() && p.epoch_steps.size() == static_cast<size_t>(p.epoch)) {
    std::string steps = "[";
    for (size_t e = 0; e < p.epoch_steps.size(); ++e)
      steps += (e ? "," : "") + std::to_string(p.epoch_steps[e]);
    m.emplace_back("epoch_steps", steps + "]");
  }
  if (info.restored_epoch > 0)
    m.emplace_back("restored_epoch", std::to_string(info.restored_epoch));
  if (!info.train_data.empty()) m.emplace_back("train_data", info.train_data);
  if (!info.run_id.empty()) m.emplace_back("run_id", info.run_id);
  m.emplace_back("data_crc32", hex32(dcrc));
  m.emplace_back("meta_crc32", hex32(meta_crc(m)));
  return encode_safetensors(f);
}

void save_checkpoint(const std::string& path, Context& ctx, Model& model, Optimizer* opt, const Schedule* sched,
                     const CheckpointInfo& info) {
  std::vector<uint8_t> bytes = encode_checkpoint(ctx, model, opt, sched, info);
  write_file_atomic(path, bytes.data(), bytes.size());
}

SafetensorsFile decode_checkpoint(const std::vector<uint8_t>& bytes, const std::string& what) {
  SafetensorsFile f = decode_safetensors(bytes.data(), bytes.size(), what);
  const std::string* fv = f.meta("format_version");
  KILN_CHECK(fv, what << ": no format_version in __metadata__: not a kiln checkpoint");
  KILN_CHECK(*fv == "1" || *fv == std::to_string(kCheckpointFormatVersion),
             what << ": format version '" << printable(*fv) << "', this kiln (" << kiln_version()
                  << ") reads versions 1 to " << kCheckpointFormatVersion);
  // Checksums: the tensors, then the metadata.
  const uint32_t dcrc = data_crc(f, std::atoi(fv->c_str()));
  std::string stored = meta_or_fail(f, "data_crc32", what);
  KILN_CHECK(stored == hex32(dcrc), what << ": data checksum mismatch (stored " << printable(stored)
                                         << ", computed " << hex32(dcrc)
                                         << "): the file is corrupt");
  stored = meta_or_fail(f, "meta_crc32", what);
  KILN_CHECK(stored == hex32(meta_crc(f.metadata)),
             what << ": metadata checksum mismatch (stored " << printable(stored) << ", computed "
                  << hex32(meta_crc(f.metadata)) << "): the file is corrupt");
  return f;
}

SafetensorsFile read_checkpoint(const std::string& path) {
  return decode_checkpoint(read_file_bytes(path), "checkpoint " + path);
}

namespace {
// "[4,2]": the steps of each epoch before p.epoch, each >= 0; with the p.batch steps of the epoch
// in progress (one a batch) they add up to p.step.
std::vector<long long> parse_epoch_steps(const std::string& text, const TrainPosition& p,
                                         const std::string& what) {
  JsonValue v;
  try {
    v = parse_json(text);
  } catch (const Error& e) {
    KILN_FAIL(what << ": __metadata__ epoch_steps: " << e.message());
  }
  KILN_CHECK(v.is_array() && v.items.size() == static_cast<size_t>(p.epoch),
             what << ": __metadata__ epoch_steps must list the steps of each of the " << p.epoch
                  << " epochs before the checkpoint");
  std::vector<long long> steps;
  long long sum = 0;
  for (const JsonValue& s : v.items) {
    KILN_CHECK(s.is_number() && s.number >= 0 && s.number <= kMaxStepCount &&
                   s.number == std::floor(s.number),
               what << ": __metadata__ epoch_steps: expected whole step counts");
    steps.push_back(static_cast<long long>(s.number));
    sum += steps.back();
    KILN_CHECK(sum <= p.step, what << ": __metadata__ epoch_steps add up to more than the "
                                   << "checkpoint's step " << p.step);  // (and cannot overflow)
  }
  KILN_CHECK(sum + p.batch == p.step, what << ": __metadata__ epoch_steps add up to " << sum
                                           << " steps and batch " << p.batch << " of epoch "
                                           << p.epoch + 1 << " follows them, but the checkpoint "
                                           << "is at step " << p.step);
  return steps;
}
}  // namespace

CheckpointTag checkpoint_tag(const std::string& path) {
  CheckpointTag tag;
  const std::string header = read_safetensors_header(path);
  if (header.empty()) return tag;
  try {
    const JsonValue h = parse_json(header);
    const JsonValue* meta = h.find("__metadata__");
    const JsonValue* id = meta ? meta->find("run_id") : nullptr;
    const JsonValue* step = meta ? meta->find("step") : nullptr;
    if (id && id->is_string()) tag.run_id = id->text;
    if (step && step->is_string() && !step->text.empty() && step->text.size() <= 18 &&
        step->text.find_first_not_of("0123456789") == std::string::npos)
      tag.step = std::stoll(step->text);
  } catch (const Error&) {
  }
  return tag;
}

std::string checkpoint_run_id(const std::string& path) {
  return checkpoint_tag(path).run_id;
}

TrainPosition checkpoint_position(const SafetensorsFile& f, const std::string& what) {
  TrainPosition p;
  p.epoch = static_cast<int>(std::min<long long>(meta_int(f, "epoch", what), 1 << 30));
  p.batch = meta_int(f, "batch", what, kMaxStepCount);
  p.step = meta_int(f, "step", what, kMaxStepCount);
  KILN_CHECK(p.batch <= p.step, what << ": __metadata__ batch " << p.batch << " is past step "
                                     << p.step << " (a batch is a step)");
  if (const std::string* es = f.meta("epoch_steps"))  // optional (2026-12-05)
    p.epoch_steps = parse_epoch_steps(*es, p, what);
  return p;
}

void check_checkpoint_optimizer(const std::string& saved, const std::string& what,
                                const std::string& name) {
  KILN_USAGE_CHECK(saved.empty() || saved == name, what << ": saved with optimizer '"
                                                        << printable(saved) << "', this run uses '"
                                                        << name << "'");
}

void check_checkpoint_model(const SafetensorsFile& f, const std::string& what, Model& model) {
  KILN_CHECK(model.built(), what << ": the model to check is not built (build it first)");
  std::set<std::string> names;
  for (const auto& [name, t] : model.state_dict()) {
    expect_tensor(f, name, t, what, "model");
    names.insert(name);
  }
  refuse_unknown_tensors(f, what, [&](const std::string& n) {
    return names.count(n) || n.rfind("optimizer.", 0) == 0 || n.rfind(kBestPrefix, 0) == 0;
  });
}

CheckpointInfo load_checkpoint_bytes(const std::vector<uint8_t>& bytes, const std::string& what,
                                     Context& ctx, Model& model, Optimizer* opt, Schedule* sched) {
  KILN_CHECK(model.built(), what << ": the model to load into is not built (build it first)");
  return load_checkpoint_file(decode_checkpoint(bytes, what), what, ctx, model, opt, sched);
}

CheckpointInfo load_checkpoint_file(const SafetensorsFile& f, const std::string& what, Context& ctx,
                                    Model& model, Optimizer* opt, Schedule* sched) {
  KILN_CHECK(model.built(), what << ": the model to load into is not built (build it first)");
  CheckpointInfo info;
  info.kiln_version = meta_or_fail(f, "kiln_version", what);
  info.config = meta_or_fail(f, "config", what);
  TrainPosition& p = info.pos;
  p = checkpoint_position(f, what);
  {
    // (written from a uint64_t: every value of one reads back, 2^63 and up included)
    const std::string& text = meta_or_fail(f, "seed", what);
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    KILN_CHECK(!text.empty() && text[0] >= '0' && text[0] <= '9' && *end == 0 && errno == 0,
               what << ": __metadata__ seed " << printable(text)
                    << " is not a non-negative integer below 2^64");
    info.seed = static_cast<uint64_t>(v);
  }
  long long opt_steps = meta_int(f, "optimizer_steps", what, kMaxStepCount);
  p.last_lr = static_cast<float>(meta_double(meta_or_fail(f, "last_lr", what), "last_lr", what));
  p.last_momentum = static_cast<float>(meta_double(meta_or_fail(f, "last_momentum", what), "last_momentum", what));
  // (an optimizer step refuses any other lr; the momentum is -1 where no schedule drives it)
  KILN_CHECK(std::isfinite(p.last_lr) && p.last_lr >= 0 && std::isfinite(p.last_momentum),
             what << ": __metadata__ last_lr " << p.last_lr << ", last_momentum " << p.last_momentum
                  << ": not an lr >= 0 and a finite momentum");
  std::string sums_text = meta_or_fail(f, "train_sums", what);
  JsonValue sums;
  try {
    sums = parse_json(sums_text);
  } catch (const Error& e) {
    KILN_FAIL(what << ": __metadata__ train_sums: " << e.message());
  }
  KILN_CHECK(sums.is_array() && sums.items.size() == 3, what << ": __metadata__ train_sums must be [loss, correct, count]");
  // The loss sum is null where it was not finite (a diverging epoch stopped by a signal); the
  // counts are whole numbers, correct <= count (anything else trained on as NaN sums until
  // 2026-12-07, then failed as a divergence).
  const JsonValue& loss = sums.items[0];
  const JsonValue &correct = sums.items[1], &count = sums.items[2];
  auto whole = [](const JsonValue& v) {
    return v.is_number() && v.number >= 0 && v.number <= 9007199254740992.0 &&
           v.number == std::floor(v.number);
  };
  KILN_CHECK(
      (loss.type == JsonValue::Type::Null || (loss.is_number() && std::isfinite(loss.number))) &&
          whole(correct) && whole(count) && correct.number <= count.number,
      what << ": __metadata__ train_sums " << printable(sums_text)
           << ": expected [loss, correct, count], finite, with whole counts");
  p.train_sums[0] = loss.is_number() ? loss.number : NAN;
  p.train_sums[1] = correct.number;
  p.train_sums[2] = count.number;
  std::string opt_name = meta_or_fail(f, "optimizer", what);
  std::string sched_state = meta_or_fail(f, "schedule_state", what);
  if (const std::string* es = f.meta("early_stop"))  // absent in checkpoints before 2026-12-01
    p.early_stop = parse_early_stop(*es, what);
  if (const std::string* wa = f.meta("watched_acc")) {  // optional (2026-12-02)
    p.watched_acc = meta_double(*wa, "watched_acc", what);
    KILN_CHECK(p.watched_acc >= 0 && p.watched_acc <= 1,
               what << ": __metadata__ watched_acc " << printable(*wa) << " is not an accuracy");
  }
  if (const std::string* td = f.meta("train_data"))  // optional (2026-12-04)
    info.train_data = *td;
  if (const std::string* id = f.meta("run_id"))  // optional (2026-12-05)
    info.run_id = *id;
  if (f.meta("restored_epoch"))
    info.restored_epoch =
        static_cast<int>(std::min<long long>(meta_int(f, "restored_epoch", what), 1 << 30));

  // Validate every tensor before touching anything.
  std::vector<std::pair<Tensor, std::vector<float>>> restore;
  std::vector<std::string> used;
  const auto sd = model.state_dict();
  for (const auto& [name, t] : sd) {
    restore.emplace_back(t, expect_tensor(f, name, t, what, "model"));
    used.push_back(name);
  }
  if (opt) {
    KILN_CHECK(opt->bound_to(model),
               what << ": the optimizer given steps another model's parameters");
    KILN_USAGE_CHECK(!opt_name.empty(),
                     what << ": saved without optimizer state (load it with no optimizer: the "
                          << "weights alone)");
    check_checkpoint_optimizer(opt_name, what, opt->options().name);
    for (auto& [name, t] : opt->state()) {
      restore.emplace_back(t, expect_tensor(f, "optimizer." + name, t, what, "optimizer"));
      used.push_back("optimizer." + name);
    }
  }
  // An early-stopping snapshot, when the checkpoint has one: the model's shapes, every tensor.
  if (!sd.empty() && f.find(kBestPrefix + sd.front().first)) {
    for (const auto& [name, t] : sd) {
      std::vector<float> v =
          expect_tensor(f, kBestPrefix + name, t, what, "early-stopping snapshot");
      info.early_stop_best.emplace_back(name, Tensor::from_vector(v, t.shape(), Device::CPU));
      used.push_back(kBestPrefix + name);
    }
  }
  refuse_unknown_tensors(f, what, [&](const std::string& n) {
    return std::find(used.begin(), used.end(), n) != used.end() ||
           (!opt && n.rfind("optimizer.", 0) == 0);
  });
  if (sched && !sched_state.empty()) {
    try {
      sched->set_state(sched_state);
    } catch (const Error& e) {
      KILN_FAIL(what << ": __metadata__ schedule_state: " << e.message());
    }
  }

  ctx.sync();  // nothing may still be reading the tensors we overwrite
  for (auto& [dst, vals] : restore) {
    Tensor src = Tensor::from_vector(vals, dst.shape(), Device::CPU);
    dst.copy_from(src);
  }
  if (opt) {
    opt->set_steps_taken(opt_steps);
    // The saved state had no non-finite step: a flag a diverged fit left would fail the next
    // fit at once, naming a step past the loaded ones.
    opt->reset_nonfinite_flag(ctx);
  }
  return info;
}

CheckpointInfo load_checkpoint(const std::string& path, Context& ctx, Model& model, Optimizer* opt,
                               Schedule* sched) {
  return load_checkpoint_bytes(read_file_bytes(path), "checkpoint " + path, ctx, model, opt, sched);
}

}  // namespace kiln
