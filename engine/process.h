// Who and where this process is, and whether another one still runs: what the sweep's trial
// locks and the checkpoints' temp files record about their writer and test to find a dead one's.
#pragma once

#include <string>

namespace kiln {

std::string host_name();      // gethostname(); "" where it fails
std::string pid_namespace();  // "4026531836" from /proc/self/ns/pid (containers differ); "-"
std::string boot_id();        // /proc/sys/kernel/random/boot_id (a reboot changes it); "-"

// Field 3 (state letter) and 22 (start time, clock ticks after boot) of /proc/<pid>/stat;
// false where /proc does not show the process.
bool process_state(long pid, char& state, unsigned long long& start);
unsigned long long own_start_time();  // this process's; 0 where /proc is missing

// kill(pid, 0) fails with ESRCH: no process of that pid in this PID namespace. A zombie or a
// process that reused the pid still counts as present (process_state tells those apart).
bool process_gone(long pid);

}  // namespace kiln
