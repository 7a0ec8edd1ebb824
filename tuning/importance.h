// Hyperparameter importance from a finished sweep: per parameter, the fraction of the metric's
// variance explained by binning the trials on that parameter (between-bin / total variance,
// the eta^2 of a one-way ANOVA) and, for numeric parameters, the Spearman rank correlation.
// Quantile bins make the numeric measure independent of the scale (linear or log) of the range.
#pragma once
#include <string>
#include <vector>

#include "tuning/sweep.h"

namespace kiln {

struct ParamImportance {
  std::string name;
  bool numeric = false;
  int bins = 0;            // bins used (categories for non-numeric parameters)
  int trials = 0;          // trials with a finite metric that entered the estimate
  double explained = NAN;  // between-bin variance / total variance, in [0, 1]
  double spearman = NAN;   // numeric parameters only
};

// Uses finished ("ok") trials with a finite metric, in trial order (whatever order `results`
// holds them in). Numeric parameters with more distinct
// values than max_bins are cut into equal-count quantile bins (at most trials/3 bins, so each
// bin averages several trials); ties always share a bin. Sorted by explained variance.
std::vector<ParamImportance> param_importance(const std::vector<std::string>& params,
                                              const std::vector<TrialRecord>& results,
                                              int max_bins = 4);
std::string importance_table(const std::vector<ParamImportance>& imp, const std::string& metric);

// Spearman's rho with average ranks for ties (NAN when either side is constant).
double spearman(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace kiln
