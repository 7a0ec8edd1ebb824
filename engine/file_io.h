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
// What a whole-file read came to: which step failed, if any, its errno and `why`. Callers tell
// the failures apart by the step, not the errno: read(2) itself may fail with EFBIG or ENODATA
// (a FUSE file system), and an unreadable file is not a missing one.
struct FileRead {
  enum Failure {
    kNone,
    kOpen,       // "cannot open: ..."
    kRead,       // "read failed: ..."
    kTooLarge,   // "more than N bytes" (err EFBIG)
    kEmptyFifo,  // "a FIFO that gave nothing (...)" (err ENODATA)
  };
  Failure failure = kNone;
  int err = 0;
  std::string why;
};
// The whole of `path` into `out` (opened and read as read_text_file, without a bound).
FileRead read_whole_file(const std::string& path, std::vector<uint8_t>& out);
// open(2) (with O_CLOEXEC added) that never waits on a FIFO's other end, where open(2) would
// block, past SIGINT/SIGTERM, whose handlers restart it: read, a FIFO no process writes then
// reads as empty; write, one no process reads fails with ENXIO. Its reads and writes wait as
// usual. The descriptor, or -1 with errno set.
int open_without_waiting(const std::string& path, int flags, mode_t mode = 0);
// A text file read whole (a config, a schedule), at most `max` bytes, into `out`; a named FIFO
// that gave nothing is a failure (kEmptyFifo), an empty pipe an empty text.
FileRead read_text_file(const std::string& path, size_t max, std::string& out);

}  // namespace kiln
