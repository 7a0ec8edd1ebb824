// Sweep YAML loading and validation, grid enumeration and seeded random sampling. Every value
// is checked against the run option it sets while loading, so a typo fails before any trial.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "engine/error.h"
#include "engine/json.h"
#include "engine/numtext.h"
#include "tuning/sweep.h"
#include "tuning/yaml_util.h"

#ifdef KILN_HAVE_YAML
#include <yaml-cpp/yaml.h>
#endif

namespace kiln {

namespace {

// splitmix64: trial i's draws depend only on (seed, i, parameter index).
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
double uniform01(uint64_t seed, int64_t trial, size_t param) {
  uint64_t h = mix(mix(mix(seed) ^ static_cast<uint64_t>(trial)) ^ static_cast<uint64_t>(param));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

// A sampled value as text: the shortest that reads back as the same double (W&B and Optuna keep
// full precision; 6 digits put every sample of a narrow range outside it, or on one value).
std::string fmt_g(double v) {
  std::string t;
  for (int p = 6; p <= 17; ++p) {
    t = format_c("%.*g", p, v);
    if (strtod_c(t.c_str(), nullptr) == v) break;
  }
  return t;
}

void check_key(const std::string& path, const std::string& where, const std::string& key,
               const std::vector<std::string>& allowed) {
  for (const auto& a : allowed)
    if (a == key) return;
  std::string near = closest_name(key, allowed), list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  KILN_USAGE_FAIL(path << ": unknown key '" << key << "'" << where
                       << (near.empty() ? "" : " (did you mean '" + near + "'?)")
                       << "; expected one of " << list);
}

// The canonical option for a sweep key, or a usage error naming the file and key.
const OptionSpec& option_for(const std::string& path, const std::string& section,
                             const std::string& key) {
  const OptionTable& t = run_options();
  const OptionSpec* s = t.find(key);
  if (!s) {
    std::string near = t.closest(key);
    KILN_USAGE_FAIL(path << ": " << section << " '" << printable(key) << "' is not a run option"
                         << (near.empty() ? "" : " (did you mean '" + near + "'?)")
                         << "; see train_mnist --help for the list");
  }
  return *s;
}

#ifdef KILN_HAVE_YAML
// A value as text; a list only for a list option (`opt`), [30, 60] -> "30,60" (anything else
// given a list was joined with commas: save: [a, b] ran with save=a,b).
std::string scalar_text(const YAML::Node& v, const std::string& origin,
                        const OptionSpec* opt = nullptr) {
  if (v.IsScalar()) return v.as<std::string>();
  if (v.IsSequence()) return yaml_list_text(v, origin, opt);
  KILN_USAGE_FAIL(origin << ": expected a value, got " << (v.IsNull() ? "nothing" : "a mapping"));
}

// As the options read numbers: decimal only (strtod also reads hex: run_cap: 0x3), finite,
// and no underflow (min: 1e-400 read as 0).
double number(const YAML::Node& v, const std::string& origin) {
  return parse_float(scalar_text(v, origin), origin);
}

// values: [{opt: v, ...}, ...] under a name that is not an option: options set together.
SweepParam parse_bundles(const std::string& path, const std::string& key,
                         const YAML::Node& values) {
  std::string origin = path + ": parameter '" + key + "'";
  SweepParam p;
  p.name = key;
  for (const auto& item : values) {
    KILN_USAGE_CHECK(item.IsMap() && item.size() > 0,
                     origin << ": every value of a bundle parameter must be a mapping of options");
    check_unique_keys(item, path, " in parameter '" + key + "'");
    std::vector<std::pair<std::string, std::string>> b;
    std::string label;
    RunConfig scratch;
    for (const auto& kv : item) {
      std::string k = kv.first.as<std::string>();
      const OptionSpec& opt = option_for(path, "option in parameter '" + key + "':", k);
      std::string v = scalar_text(kv.second, origin + " option '" + k + "'", &opt);
      run_options().set(scratch, opt.name, v, origin + " option '" + k + "'");
      b.emplace_back(opt.name, v);
      label += (label.empty() ? "" : " ") + opt.name + "=" + v;
    }
    for (const auto& l : p.values)
      KILN_USAGE_CHECK(l != label, origin << ": '" << label << "' is listed twice");
    p.values.push_back(label);
    p.bundles.push_back(b);
  }
  return p;
}

SweepParam parse_param(const std::string& path, const std::string& key, const YAML::Node& node) {
  if (!run_options().find(key) && node.IsMap() && node["values"] && node["values"].IsSequence() &&
      node["values"].size() > 0 && node["values"][0].IsMap()) {
    KILN_USAGE_CHECK(node.size() == 1, path << ": parameter '" << key
                                            << "': a bundle parameter takes only values: [...]");
    return parse_bundles(path, key, node["values"]);
  }
  const OptionSpec& opt = option_for(path, "parameter", key);
  std::string origin = path + ": parameter '" + key + "'";
  KILN_USAGE_CHECK(
      node.IsMap(),
      origin << ": expected {values: [...]}, {value: x} or {min: a, max: b, distribution: d}");
  SweepParam p;
  p.name = opt.name;
  bool has_min = false, has_max = false, has_values = false, has_value = false;
  for (const auto& kv : node) {
    std::string k = kv.first.as<std::string>();
    check_key(path, " in parameter '" + key + "'", k,
              {"values", "value", "min", "max", "distribution"});
    if (k == "values") {
      KILN_USAGE_CHECK(kv.second.IsSequence() && kv.second.size() > 0,
                       origin << ": values must be a non-empty list");
      for (const auto& v : kv.second) p.values.push_back(scalar_text(v, origin, &opt));
      has_values = true;
    } else if (k == "value") {
      p.values = {scalar_text(kv.second, origin, &opt)};
      has_value = true;
    } else if (k == "min") {
      p.min = number(kv.second, origin + " min");
      has_min = true;
    } else if (k == "max") {
      p.max = number(kv.second, origin + " max");
      has_max = true;
    } else {
      p.distribution = scalar_text(kv.second, origin);
      if (p.distribution == "log_uniform_values") p.distribution = "log_uniform";  // W&B's name
    }
  }
  KILN_USAGE_CHECK(!(has_value && has_values),
                   origin << ": give values: [...] (a list) or value: x (one), not both");
  // W&B's names for a list and for one value: distribution categorical or constant.
  if ((p.distribution == "categorical" && has_values) ||
      (p.distribution == "constant" && has_value))
    p.distribution.clear();
  KILN_USAGE_CHECK(
      p.distribution.empty() || (p.distribution != "categorical" && p.distribution != "constant"),
      origin << ": distribution " << p.distribution << " takes "
             << (p.distribution == "constant" ? "value: x" : "values: [...]"));
  bool range = has_min || has_max || !p.distribution.empty();
  KILN_USAGE_CHECK(range != !p.values.empty(), origin
                                                   << ": give either values/value or min/max, not "
                                                   << (range ? "both" : "neither"));
  // Type-check every listed value now, not when its trial runs.
  RunConfig scratch;
  for (size_t i = 0; i < p.values.size(); ++i)
    run_options().set(scratch, p.name, p.values[i], origin + " value '" + p.values[i] + "'");
  if (!range) return p;
  KILN_USAGE_CHECK(has_min && has_max, origin << ": a range needs both min and max");
  if (p.distribution.empty())
    p.distribution = (p.min == std::floor(p.min) && p.max == std::floor(p.max) && opt.type == "int")
                         ? "int_uniform"
                         : "uniform";
  KILN_USAGE_CHECK(p.distribution == "uniform" || p.distribution == "log_uniform" ||
                       p.distribution == "int_uniform",
                   origin << ": distribution '" << p.distribution
                          << "': expected uniform|log_uniform|int_uniform");
  KILN_USAGE_CHECK(
      opt.type == "float" || opt.type == "int",
      origin << ": a " << opt.type << " option cannot take a min/max range; use values: [...]");
  KILN_USAGE_CHECK(
      opt.type == "float" || p.distribution == "int_uniform",
      origin << ": '" << p.name << "' is an integer option; use distribution: int_uniform");
  KILN_USAGE_CHECK(p.min <= p.max, origin << ": min " << p.min << " > max " << p.max);
  // A uniform draw is min + u * (max - min): a span past a double's range drew inf every time.
  KILN_USAGE_CHECK(std::isfinite(p.max - p.min), origin << ": the range " << p.min << " to "
                                                        << p.max
                                                        << " is wider than a double holds");
  // W&B's int_uniform takes integer bounds (both included); a fractional one would let the
  // rounded range come out empty.
  KILN_USAGE_CHECK(
      p.distribution != "int_uniform" || (p.min == std::floor(p.min) && p.max == std::floor(p.max)),
      origin << ": int_uniform needs integer min and max (got " << p.min << ", " << p.max << ")");
  // Its draws are whole numbers in a long long, exact in a double only up to 2^53.
  KILN_USAGE_CHECK(p.distribution != "int_uniform" || (std::fabs(p.min) <= 9007199254740992.0 &&
                                                       std::fabs(p.max) <= 9007199254740992.0),
                   origin << ": int_uniform bounds must lie within +-2^53 (got " << p.min << ", "
                          << p.max << ")");
  // kiln's log_uniform is W&B's log_uniform_values: min and max are the values themselves.
  // W&B's older log_uniform took natural-log exponents, so a negative min is most likely one.
  KILN_USAGE_CHECK(p.distribution != "log_uniform" || p.min > 0,
                   origin << ": log_uniform takes min and max as values (W&B's "
                             "log_uniform_values) and needs min > 0, got "
                          << p.min
                          << (p.min < 0 ? " (for W&B's older log_uniform, whose bounds are "
                                          "exponents, write min: exp(" +
                                              fmt_g(p.min) + ") = " + fmt_g(std::exp(p.min)) + ")"
                                        : std::string()));
  run_options().set(scratch, p.name, fmt_g(p.min), origin + " min");
  run_options().set(scratch, p.name, fmt_g(p.max), origin + " max");
  return p;
}
#endif

}  // namespace

SweepSpec parse_sweep(const std::string& text, const std::string& path) {
#ifdef KILN_HAVE_YAML
  check_one_document(text, path);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    KILN_USAGE_FAIL(path << ": not valid YAML at line " << e.mark.line + 1 << ": "
                         << printable(e.msg));
  }
  KILN_USAGE_CHECK(
      root.IsMap(),
      path << ": expected a mapping (method, metric, parameters, ...) at the top level");
  SweepSpec s;
  s.path = path;
  bool goal_given = false;
  check_unique_keys(root, path, "");  // yaml-cpp keeps the last of a repeated key
  for (const auto& kv : root) {
    std::string k = kv.first.as<std::string>();
    std::string origin = path + ": key '" + k + "'";
    // A run config (train_mnist/lr_find --config) handed to sweep: say so rather than list keys.
    KILN_USAGE_CHECK(
        k == "seed" || !run_options().find(k),
        origin << ": a run option at the top level; this looks like a run config (run it with "
               << "train_mnist --config " << path << "), or put the option under 'base:'");
    check_key(path, "", k,
              {"name", "description", "method", "seed", "run_cap", "metric", "base", "parameters",
               "early_terminate"});
    const YAML::Node& v = kv.second;
    if (k == "name" || k == "description") continue;
    if (v.IsMap()) check_unique_keys(v, path, " in " + k);
    if (k == "method") {
      KILN_USAGE_CHECK(v.IsScalar(), origin << ": expected grid|random");
      s.method = scalar_text(v, origin);
      KILN_USAGE_CHECK(s.method == "grid" || s.method == "random",
                       origin << ": '" << s.method << "': expected grid|random");
    } else if (k == "seed" || k == "run_cap") {
      double d = number(v, origin);  // (past 2^53 the cast below would be undefined)
      KILN_USAGE_CHECK(d >= 0 && d == std::floor(d) && d <= 9007199254740992.0,
                       origin << ": expected a non-negative integer (at most 2^53)");
      // (run_cap 0 ran a whole grid as if left out, and a random sweep said it was missing)
      KILN_USAGE_CHECK(k == "seed" || d >= 1,
                       origin << ": expected 1 or more trials (a grid without run_cap runs whole)");
      if (k == "seed")
        s.seed = static_cast<uint64_t>(d);
      else
        s.run_cap = static_cast<int64_t>(d);
    } else if (k == "metric") {
      KILN_USAGE_CHECK(v.IsMap(), origin << ": expected {name: test_acc, goal: maximize}");
      // W&B requires the name: a goal alone would silently apply to the default metric
      // (minimize with no name ranked test_acc's worst model first).
      KILN_USAGE_CHECK(v["name"].IsDefined(),
                       origin << ": 'name' is missing (e.g. {name: val_acc, goal: maximize})");
      for (const auto& m : v) {
        std::string mk = m.first.as<std::string>(), mv = scalar_text(m.second, origin + "." + mk);
        check_key(path, " in metric", mk, {"name", "goal"});
        if (mk == "name") {
          KILN_USAGE_CHECK(mv == "test_acc" || mv == "test_loss" || mv == "val_acc" ||
                               mv == "val_loss" || mv == "train_acc" || mv == "train_loss",
                           origin << ": name '" << mv
                                  << "': expected val_acc|val_loss|test_acc|test_loss|train_acc|"
                                     "train_loss");
          s.metric = mv;
        } else {
          KILN_USAGE_CHECK(mv == "maximize" || mv == "minimize",
                           origin << ": goal '" << mv << "': expected maximize|minimize");
          s.maximize = mv == "maximize";
          goal_given = true;
        }
      }
    } else if (k == "base") {
      KILN_USAGE_CHECK(v.IsMap() || v.IsNull(), origin << ": expected a mapping of option: value");
      for (const auto& b : v) {
        std::string bk = b.first.as<std::string>();
        const OptionSpec& opt = option_for(path, "base key", bk);
        std::string bo = path + ": base key '" + bk + "'", val = scalar_text(b.second, bo, &opt);
        RunConfig scratch;
        run_options().set(scratch, opt.name, val, bo);
        s.base.emplace_back(opt.name, val);
      }
    } else if (k == "parameters") {
      KILN_USAGE_CHECK(
          v.IsMap() && v.size() > 0,
          origin << ": expected a non-empty mapping of option: {values|value|min/max}");
      for (const auto& p : v) {
        if (p.second.IsMap())
          check_unique_keys(p.second, path, " in parameter '" + p.first.as<std::string>() + "'");
        s.params.push_back(parse_param(path, p.first.as<std::string>(), p.second));
      }
    } else {
      KILN_USAGE_CHECK(v.IsMap(), origin << ": expected {type: median, min_epochs: k}");
      // W&B requires the type: min_epochs alone left pruning off without a word.
      KILN_USAGE_CHECK(v["type"].IsDefined(),
                       origin << ": 'type' is missing (expected {type: median, min_epochs: k})");
      for (const auto& e : v) {
        std::string ek = e.first.as<std::string>(), eo = origin + "." + ek;
        check_key(path, " in early_terminate", ek, {"type", "min_epochs", "min_trials"});
        if (ek == "type") {
          std::string t = scalar_text(e.second, eo);
          KILN_USAGE_CHECK(t == "median", eo << ": '" << t << "': only 'median' is supported");
          s.median_stop = true;
        } else {
          double d = number(e.second, eo);
          KILN_USAGE_CHECK(d >= 1 && d == std::floor(d) && d <= 1e9,
                           eo << ": expected an integer from 1 to 10^9");
          (ek == "min_epochs" ? s.min_epochs : s.min_trials) = static_cast<int>(d);
        }
      }
    }
  }
  KILN_USAGE_CHECK(!s.params.empty(),
                   path << ": no parameters to sweep (add a 'parameters' mapping)");
  if (s.method == "grid" && root["seed"])
    s.notes.push_back("seed: " + std::to_string(s.seed) +
                      " is ignored by a grid sweep (it seeds random sampling; the runs' own seed "
                      "is a base key or a parameter)");
  for (const auto& p : s.params) {  // a grid value listed twice (0.01 and 1e-2) runs twice
    if (s.method != "grid") break;  // (random: a repeat weighs the draw, which may be meant)
    const OptionSpec* opt = run_options().find(p.name);
    if (!opt || p.values.size() < 2) continue;  // (a group's repeats are refused)
    std::map<std::string, std::vector<std::string>> as_run;
    RunConfig scratch;
    for (const auto& v : p.values) {
      run_options().set(scratch, p.name, v, path);
      as_run[opt->get(scratch)].push_back(v);
    }
    for (const auto& [value, texts] : as_run)
      if (texts.size() > 1) {
        std::string listed;
        for (const auto& t : texts) listed += (listed.empty() ? "" : ", ") + t;
        s.notes.push_back("parameter '" + p.name + "' lists " + value + " " +
                          std::to_string(texts.size()) + " times (" + listed +
                          "): each is a trial of its own, the same run again");
      }
  }
  auto refuse = [&](const std::string& key, const std::string& where) {
    const std::string why = sweep_refused_option(normalize_key(key));
    KILN_USAGE_CHECK(why.empty(), path << ": " << where << " '" << key << "': " << why);
  };
  for (const auto& b : s.base) refuse(b.first, "base key");
  for (const auto& p : s.params) {
    refuse(p.name, "parameter");
    for (const auto& bundle : p.bundles)
      for (const auto& kv : bundle) refuse(kv.first, "parameter '" + p.name + "' sets");
  }
  std::set<std::string> seen;
  for (const auto& p : s.params) {
    KILN_USAGE_CHECK(seen.insert(p.name).second,
                     path << ": parameter '" << p.name << "' is given twice");
    KILN_USAGE_CHECK(s.method == "random" || !p.is_range(),
                     path << ": parameter '" << p.name
                          << "': grid search needs values: [...] (a min/max range "
                          << "cannot be enumerated); use method: random");
  }
  for (const auto& p : s.params)
    for (const auto& b : p.bundles)
      for (const auto& kv : b)
        KILN_USAGE_CHECK(!seen.count(kv.first), path << ": '" << kv.first
                                                     << "' is set by parameter '" << p.name
                                                     << "' and is also a parameter");
  // Two grouped parameters that set the same option: the later one would win and the results
  // would credit the earlier one's value, which never ran.
  std::map<std::string, std::string> set_by;  // option -> the grouped parameter setting it
  for (const auto& p : s.params)
    for (const auto& b : p.bundles)
      for (const auto& kv : b) {
        auto [it, fresh] = set_by.emplace(kv.first, p.name);
        KILN_USAGE_CHECK(fresh || it->second == p.name,
                         path << ": '" << kv.first << "' is set by parameters '" << it->second
                              << "' and '" << p.name << "'; one option, one parameter");
      }
  for (const auto& b : s.base)
    KILN_USAGE_CHECK(!seen.count(b.first),
                     path << ": '" << b.first << "' is both in base and in parameters");
  KILN_USAGE_CHECK(s.method == "grid" || s.run_cap > 0,
                   path << ": method random needs run_cap (the number of trials)");
  // Each trial is a training run and a results row: a million is past any real sweep, and a
  // typo's 10^11 would make --dry-run print forever.
  KILN_USAGE_CHECK(s.run_cap <= kMaxTrials, path << ": run_cap " << s.run_cap
                                                 << " is past the limit of " << kMaxTrials
                                                 << " trials");
  KILN_USAGE_CHECK(s.run_cap > 0 || grid_size(s) <= kMaxTrials,
                   path << ": the grid has " << grid_size(s) << " points, past the limit of "
                        << kMaxTrials << " trials (set run_cap to run the first ones)");
  if (!goal_given) s.maximize = s.metric.find("acc") != std::string::npos;
  return s;
#else
  (void)text;
  KILN_USAGE_FAIL(path << ": this kiln was built without yaml-cpp; install libyaml-cpp-dev");
#endif
}

SweepSpec load_sweep(const std::string& path, std::string* text) {
#ifdef KILN_HAVE_YAML
  std::string t = read_yaml_text(path, "sweep");
  SweepSpec spec = parse_sweep(t, path);
  if (text) *text = std::move(t);
  return spec;
#else
  return parse_sweep("", path);  // (says the build has no yaml-cpp)
#endif
}

std::string swept_by(const SweepSpec& spec, const std::string& opt) {
  for (const SweepParam& p : spec.params) {
    if (p.name == opt) return p.name;
    for (const auto& bundle : p.bundles)
      for (const auto& kv : bundle)
        if (kv.first == opt) return p.name;
  }
  return "";
}

int64_t grid_size(const SweepSpec& spec) {
  int64_t n = 1;
  for (const auto& p : spec.params) {
    int64_t k = p.is_range() ? 1 : static_cast<int64_t>(p.values.size());
    KILN_USAGE_CHECK(n <= (int64_t{1} << 40) / k,
                     spec.path << ": the grid has more than 2^40 points");
    n *= k;
  }
  return n;
}

int64_t num_trials(const SweepSpec& spec) {
  if (spec.method == "random") return spec.run_cap;
  if (spec.run_cap <= 0) return grid_size(spec);
  // The first run_cap points of a grid of any size (past 2^40 too: trial_params needs no
  // product of the counts).
  int64_t n = 1;
  for (const auto& p : spec.params) {
    const int64_t k = p.is_range() ? 1 : static_cast<int64_t>(p.values.size());
    if (n > spec.run_cap / k) return spec.run_cap;  // n * k > run_cap
    n *= k;
  }
  return std::min(n, spec.run_cap);
}

std::vector<std::pair<std::string, std::string>> trial_params(const SweepSpec& spec, int64_t i) {
  std::vector<std::pair<std::string, std::string>> out(spec.params.size());
  if (spec.method == "grid") {
    // Mixed radix, last parameter fastest (itertools.product order).
    int64_t rest = i;
    for (size_t k = spec.params.size(); k-- > 0;) {
      const auto& p = spec.params[k];
      int64_t n = static_cast<int64_t>(p.values.size());
      out[k] = {p.name, p.values[static_cast<size_t>(rest % n)]};
      rest /= n;
    }
    return out;
  }
  for (size_t k = 0; k < spec.params.size(); ++k) {
    const auto& p = spec.params[k];
    double u = uniform01(spec.seed, i, k);
    std::string v;
    if (!p.is_range()) {
      v = p.values[std::min(p.values.size() - 1, static_cast<size_t>(u * p.values.size()))];
    } else if (p.distribution == "uniform" || p.distribution == "log_uniform") {
      const double x = p.distribution == "uniform"
                           ? p.min + u * (p.max - p.min)
                           : std::exp(std::log(p.min) + u * (std::log(p.max) - std::log(p.min)));
      // Recorded as the option holds it: a float option's sample is the float the trial runs
      // with (its shortest text), a double option's the double itself.
      RunConfig scratch;
      const OptionSpec* opt = run_options().find(p.name);
      if (opt) {
        run_options().set(scratch, p.name, fmt_g(x), spec.path + ": parameter '" + p.name + "'");
        v = opt->get(scratch);
      } else {
        v = fmt_g(x);
      }
    } else {
      double lo = std::ceil(p.min), hi = std::floor(p.max);
      v = std::to_string(static_cast<long long>(std::min(hi, lo + std::floor(u * (hi - lo + 1)))));
    }
    out[k] = {p.name, v};
  }
  return out;
}

}  // namespace kiln
