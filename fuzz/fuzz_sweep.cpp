// libFuzzer target: a sweep file (parse_sweep, the trial list and each listed trial's options)
// and a sweep directory's results.jsonl (read_results, then what `sweep --report` prints from
// it) on arbitrary bytes. The first byte picks which; kiln::Error is the only accepted failure.
#include <sys/stat.h>

#include <string>

#include "engine/error.h"
#include "fuzz/fuzz_util.h"
#include "tuning/importance.h"
#include "tuning/options.h"
#include "tuning/sweep.h"

namespace {
const char* kSpec =
    "method: grid\nmetric: {name: test_acc, goal: maximize}\nparameters:\n"
    "  lr: {values: [0.1, 0.01]}\n  seed: {values: [0, 1]}\n";

std::vector<std::string> names(const kiln::SweepSpec& spec) {
  std::vector<std::string> out;
  for (const auto& p : spec.params) out.push_back(p.name);
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    if (data[0] % 2 == 0) {
      kiln::SweepSpec spec = kiln::parse_sweep(text, "fuzz.yaml");
      kiln::check_param_names(spec);
      const int64_t n = kiln::num_trials(spec);
      kiln::RunConfig base;
      kiln::apply_sweep_base(spec, base);
      for (int64_t i = 0; i < n && i < 16; ++i) {
        kiln::trial_params(spec, i);
        try {
          kiln::trial_config(spec, base, i, "fuzz").validate();
        } catch (const kiln::Error& e) {
          kiln::fuzz::check_message(e);
        }
      }
    } else {
      static const std::string dir = kiln::fuzz::temp_file("sweepdir", nullptr, 0) + ".d";
      mkdir(dir.c_str(), 0755);
      const std::string path = kiln::fuzz::temp_file("results", data + 1, size - 1);
      std::rename(path.c_str(), (dir + "/results.jsonl").c_str());
      static const kiln::SweepSpec spec = kiln::parse_sweep(kSpec, "fuzz.yaml");
      std::vector<kiln::TrialRecord> rs = kiln::read_results(dir);
      kiln::leaderboard(spec, rs);
      kiln::seed_table(spec, rs);
      kiln::importance_table(kiln::param_importance(names(spec), rs), spec.metric);
    }
  } catch (const kiln::Error& e) {
    kiln::fuzz::check_message(e);
  }
  return 0;
}
