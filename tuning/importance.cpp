// Binned explained variance and Spearman correlation per sweep parameter (see importance.h).
#include "tuning/importance.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <map>
#include <numeric>
#include <sstream>

#include "engine/numtext.h"

namespace kiln {

namespace {

bool as_number(const std::string& s, double& out) {
  char* end = nullptr;
  out = strtod_c(s.c_str(), &end);
  return !s.empty() && end && *end == 0 && std::isfinite(out);
}

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    double avg = 0.5 * (static_cast<double>(i) + static_cast<double>(j)) + 1.0;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

// Between-group sum of squares over total sum of squares.
double eta_squared(const std::vector<int>& group, const std::vector<double>& y) {
  const auto [lo, hi] = std::minmax_element(y.begin(), y.end());
  if (*lo == *hi) return NAN;  // every trial scored the same: nothing to explain
  double mean = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(y.size());
  double total = 0;
  for (double v : y) total += (v - mean) * (v - mean);
  if (total <= 0) return NAN;
  std::map<int, std::pair<double, int>> g;
  for (size_t i = 0; i < y.size(); ++i) {
    g[group[i]].first += y[i];
    g[group[i]].second += 1;
  }
  double between = 0;
  for (const auto& kv : g) {
    double m = kv.second.first / kv.second.second;
    between += kv.second.second * (m - mean) * (m - mean);
  }
  return std::min(1.0, between / total);  // a share: rounding must not push it past 1
}

}  // namespace

double spearman(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size() || x.size() < 2) return NAN;
  std::vector<double> rx = ranks(x), ry = ranks(y);
  double n = static_cast<double>(x.size()), mx = (n + 1) / 2, sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (rx[i] - mx) * (ry[i] - mx);
    sxx += (rx[i] - mx) * (rx[i] - mx);
    syy += (ry[i] - mx) * (ry[i] - mx);
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : NAN;
}

std::vector<ParamImportance> param_importance(const std::vector<std::string>& params,
                                              const std::vector<TrialRecord>& results,
                                              int max_bins) {
  std::vector<const TrialRecord*> use;
  for (const auto& r : results)
    if (r.status == "ok" && std::isfinite(r.metric)) use.push_back(&r);
  // In trial order, not results.jsonl's (the order trials finished in, which workers and resumes
  // change): the sums, and so the last digits, are the same for the same records.
  std::stable_sort(use.begin(), use.end(),
                   [](const TrialRecord* a, const TrialRecord* b) { return a->trial < b->trial; });
  std::vector<double> y;
  for (const auto* r : use) y.push_back(r->metric);
  std::vector<ParamImportance> out;
  for (const auto& name : params) {
    ParamImportance pi;
    pi.name = name;
    pi.trials = static_cast<int>(use.size());
    std::vector<std::string> text;
    for (const auto* r : use) {
      std::string v;
      for (const auto& kv : r->params)
        if (kv.first == name) v = kv.second;
      text.push_back(v);
    }
    std::vector<double> x(text.size());
    pi.numeric = !text.empty();
    for (size_t i = 0; i < text.size() && pi.numeric; ++i) pi.numeric = as_number(text[i], x[i]);
    std::vector<int> group(text.size());
    if (pi.numeric) {
      std::vector<double> sorted = x;
      std::sort(sorted.begin(), sorted.end());
      size_t distinct =
          static_cast<size_t>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
      sorted.resize(distinct);
      int b = static_cast<int>(std::min<size_t>(distinct, static_cast<size_t>(max_bins)));
      if (static_cast<int>(distinct) > max_bins) b = std::max(2, std::min(b, pi.trials / 3));
      if (static_cast<int>(distinct) <= b) {
        for (size_t i = 0; i < x.size(); ++i)
          group[i] = static_cast<int>(std::lower_bound(sorted.begin(), sorted.end(), x[i]) -
                                      sorted.begin());
      } else {
        // Equal-count bins over the trials' ranks; average ranks keep ties together.
        std::vector<double> r = ranks(x);
        for (size_t i = 0; i < x.size(); ++i)
          group[i] =
              std::min(b - 1, static_cast<int>((r[i] - 1) * b / static_cast<double>(x.size())));
      }
      std::vector<int> used = group;
      std::sort(used.begin(), used.end());
      pi.bins = static_cast<int>(std::unique(used.begin(), used.end()) - used.begin());
      pi.spearman = spearman(x, y);
    } else {
      std::map<std::string, int> cat;
      for (size_t i = 0; i < text.size(); ++i)
        group[i] = cat.emplace(text[i], static_cast<int>(cat.size())).first->second;
      pi.bins = static_cast<int>(cat.size());
    }
    if (use.size() >= 2) pi.explained = eta_squared(group, y);
    out.push_back(pi);
  }
  std::stable_sort(out.begin(), out.end(), [](const ParamImportance& a, const ParamImportance& b) {
    double ea = std::isfinite(a.explained) ? a.explained : -1,
           eb = std::isfinite(b.explained) ? b.explained : -1;
    return ea > eb;
  });
  return out;
}

std::string importance_table(const std::vector<ParamImportance>& imp, const std::string& metric) {
  ClassicOStringStream os;
  os << "parameter importance for " << metric << " (" << (imp.empty() ? 0 : imp[0].trials)
     << " finished trials; explained = between-bin / total variance)\n";
  // The name column fits the longest name (a bundle's "optimizer_and_momentum_variant" ran into
  // its number).
  size_t name_w = 20;
  for (const auto& p : imp) name_w = std::max(name_w, p.name.size() + 2);
  const int nw = static_cast<int>(name_w);
  os << std::left << std::setw(nw) << "parameter" << std::setw(11) << "explained" << std::setw(8)
     << "chance" << std::setw(10) << "spearman"
     << "bins\n";
  for (const auto& p : imp) {
    auto f = [](double v) {
      ClassicOStringStream s;
      if (std::isfinite(v))
        s << std::fixed << std::setprecision(3) << v;
      else
        s << "-";
      return s.str();
    };
    // What a parameter that changes nothing explains on average: (k-1)/(n-1) for k bins of n
    // trials (the expected eta squared of noise). Large from few trials; 0 for a single bin.
    const double chance =
        p.trials > 1 && p.bins > 0 ? double(p.bins - 1) / double(p.trials - 1) : NAN;
    os << std::setw(nw) << p.name << std::setw(11) << f(p.explained) << std::setw(8) << f(chance)
       << std::setw(10) << (p.numeric ? f(p.spearman) : "n/a") << p.bins << "\n";
  }
  if (!imp.empty())
    os << "(chance: what a parameter that changes nothing explains on average with that many "
          "bins,\n"
          " (k-1)/(n-1); an explained share near it says nothing)\n";
  return os.str();
}

}  // namespace kiln
