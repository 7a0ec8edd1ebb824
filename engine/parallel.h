// Threads for the CPU path: one process-wide count, as torch.set_num_threads. The library starts
// no thread of its own until a caller asks for more than one (an embedding program keeps
// control); the apps' --threads sets it. Work is split so that results never depend on the
// count: each index of a parallel_for is computed the same way whichever thread runs it, and
// sums across indices are reduced by the caller in index order.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace kiln {

// 1 (the default): everything runs on the calling thread. n < 1 is an error, and so is a call
// from inside a parallel_for's fn. When the system refuses a thread (a process or memory
// limit), the pool runs with those it could start: the same results, later.
void set_num_threads(int n);
int num_threads();
// The CPUs this process may run on (sched_getaffinity, and a cgroup v2 CPU quota where one is
// set; at least 1): the apps' --threads 0.
int available_cpus();
// The CPUs a cgroup v2 cpu.max line ("200000 100000": quota and period) allows, rounded up;
// 0 for no limit ("max 100000") or a line it cannot read.
int cpu_quota(const std::string& cpu_max);

// Calls fn(begin, end) over contiguous pieces of [0, n) that together cover it once, on up to
// num_threads() threads (the caller's among them), each piece at least `grain` indices long
// where n allows, and returns when all are done. With one thread, a single piece, a nested call
// (from inside fn) or the pool busy with another caller's loop, the whole range runs on the
// calling thread. fn must not depend on which piece it gets beyond the indices. The first
// exception fn throws is rethrown here after every piece ends.
void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn,
                  int64_t grain = 1);

// The grain for loops over elements that cost a few operations each: below it a wake-up of
// the other threads costs more than the work.
constexpr int64_t kElementwiseGrain = 1 << 15;
// The grain for loops over rows (planes, channels, groups) of `row_size` elements that each
// take a few passes: enough rows that a piece is worth a wake-up.
inline int64_t row_grain(int64_t row_size) {
  const int64_t per = kElementwiseGrain / 4 / (row_size > 0 ? row_size : 1);
  return per > 1 ? per : 1;
}

}  // namespace kiln
