// POSIX file I/O that survives signals: a handler installed without SA_RESTART (an embedding
// program's, a profiler's timer) interrupts read(2), write(2) and fsync(2) with EINTR, and any
// signal can cut a pipe transfer short. These retry, continue short transfers, and report the
// errno. (kiln's own SIGINT/SIGTERM handlers have SA_RESTART since 2026-12-03.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln {

// All `size` bytes of `data` to `fd`: 0, or the errno of the failure (EIO for a write(2) that
// wrote nothing). On failure part of the data may have been written.
int write_all(int fd, const void* data, size_t size);
// fsync(2): 0, or the errno of the failure.
int fsync_retry(int fd);
// flock(2) with `op` (LOCK_EX: waits until the lock is free): 0, or the errno of the failure.
int flock_retry(int fd, int op);
// The whole of `path` into `out`: 0, or the errno of the failure with `why` ("cannot open:
// ...", "read failed: Input/output error").
int read_whole_file(const std::string& path, std::vector<uint8_t>& out, std::string& why);

}  // namespace kiln
