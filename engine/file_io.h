// POSIX file I/O that survives signals: a handler installed without SA_RESTART (an embedding
// program's, a profiler's timer) interrupts read(2), write(2) and fsync(2) with EINTR, and any
// signal can cut a pipe transfer short. These retry, continue short transfers, and report the
// errno. (kiln's own SIGINT/SIGTERM handlers have SA_RESTART since 2026-12-03.)
#pragma once

#include <sys/types.h>

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
// What a whole-file read came to: err 0, or the errno of the failure with `why`, and whether
// the file opened (a failure after the open is the read's: an unreadable file is not a missing
// one).
struct FileRead {
  int err = 0;
  bool opened = false;
  bool read_failed = false;  // read(2) failed (whatever its errno: EFBIG and ENODATA too)
  std::string why;           // "cannot open: ...", "read failed: ...", "more than N bytes", ...
};
// The whole of `path` into `out` (opened and read as read_text_file, without a bound).
FileRead read_whole_file(const std::string& path, std::vector<uint8_t>& out);
// open(2) (with O_CLOEXEC added) that never waits on a FIFO's other end, where open(2) would
// block, past SIGINT/SIGTERM, whose handlers restart it: read, a FIFO no process writes then
// reads as empty; write, one no process reads fails with ENXIO. Its reads and writes wait as
// usual. The descriptor, or -1 with errno set.
int open_without_waiting(const std::string& path, int flags, mode_t mode = 0);
// A text file read whole (a config, a schedule), at most `max` bytes, into `out`. Failures:
// "cannot open: ..." (opened false), "read failed: ...", "more than N bytes" as EFBIG, and for a
// named FIFO that gave nothing "a FIFO that gave nothing (...)" as ENODATA; an empty pipe is an
// empty text.
FileRead read_text_file(const std::string& path, size_t max, std::string& out);

}  // namespace kiln
