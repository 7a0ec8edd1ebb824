// Batch-size schedule parsing and lookup, and linear LR scaling.
#include "optim/batch_schedule.h"

#include <algorithm>
#include <locale>
#include <sstream>

#include "engine/error.h"

namespace kiln {

std::vector<std::pair<int, int>> parse_batch_schedule(const std::string& text) {
  std::vector<std::pair<int, int>> out;
  // Split at every comma: a trailing one is an empty entry, as a leading one is.
  for (size_t start = 0; !text.empty() && start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    start = comma + 1;
    auto colon = item.find(':');
    long long e = -1, b = -1;
    bool ok = colon != std::string::npos;
    if (ok) {
      std::istringstream es(item.substr(0, colon)), bs(item.substr(colon + 1));
      es.imbue(std::locale::classic());
      bs.imbue(std::locale::classic());
      std::string rest;
      ok = (es >> e) && !(es >> rest) && (bs >> b) && !(bs >> rest);
    }
    KILN_USAGE_CHECK(ok && e >= 0 && e <= 1000000 && b > 0 && b <= (1 << 30),
                     "--batch-schedule '" << text << "': bad entry '" << item
                                          << "' (expected epoch:batch with 0 <= epoch <= 10^6 and "
                                             "0 < batch <= 2^30)");
    KILN_USAGE_CHECK(out.empty() || e > out.back().first,
                     "--batch-schedule '" << text << "': epochs must increase (" << e << " after "
                                          << out.back().first << ")");
    out.emplace_back(static_cast<int>(e), static_cast<int>(b));
  }
  KILN_USAGE_CHECK(!out.empty() && out.front().first == 0,
                   "--batch-schedule '" << text << "': must start at epoch 0 (e.g. 0:512,5:256)");
  return out;
}

int batch_size_at(const std::vector<std::pair<int, int>>& schedule, int epoch) {
  KILN_CHECK(!schedule.empty(), "batch_size_at: empty batch schedule");
  int b = schedule.front().second;
  for (const auto& [e, size] : schedule)
    if (e <= epoch) b = size;
  return b;
}

float scale_lr_linear(float lr, int base_batch, int batch) {
  KILN_USAGE_CHECK(base_batch > 0 && batch > 0,
                   "linear LR scaling: batch sizes must be > 0, got " << base_batch << " and " << batch);
  return static_cast<float>(double(lr) * batch / base_batch);
}

std::vector<long long> steps_per_epoch(long long samples, long long batch_size,
                                       const std::string& schedule, int epochs) {
  std::vector<std::pair<int, int>> sched;
  if (!schedule.empty()) sched = parse_batch_schedule(schedule);
  std::vector<long long> out;
  for (int e = 0; e < epochs; ++e) {
    const long long b = sched.empty() ? batch_size : batch_size_at(sched, e);
    out.push_back(b > 0 ? samples / b + (samples % b != 0) : 0);  // no overflow near 2^63
  }
  return out;
}

}  // namespace kiln
