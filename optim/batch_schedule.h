// Batch-size schedules ("start large, shrink": --batch-schedule "0:512,5:256,10:128") and the
// linear LR scaling rule (Goyal et al.: lr proportional to batch size).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace kiln {

// "epoch:batch,epoch:batch,...": epochs strictly increasing and starting at 0, batch sizes > 0.
// Anything else is a usage error naming the text and the bad entry.
std::vector<std::pair<int, int>> parse_batch_schedule(const std::string& text);

// The batch size in force at a 0-based epoch: that of the last entry with entry.epoch <= epoch.
int batch_size_at(const std::vector<std::pair<int, int>>& schedule, int epoch);

// lr * batch / base_batch: the lr to use at `batch` when `lr` was tuned at `base_batch`.
float scale_lr_linear(float lr, int base_batch, int batch);

// Optimizer steps in each of `epochs` epochs over `samples` samples: ceil(samples / batch), with
// the batch of `schedule` for that epoch (empty: `batch_size` throughout).
std::vector<long long> steps_per_epoch(long long samples, long long batch_size,
                                       const std::string& schedule, int epochs);

}  // namespace kiln
