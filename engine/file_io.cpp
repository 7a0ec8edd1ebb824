#include "engine/file_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace kiln {

int write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd, p, size);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    p += w;
    size -= static_cast<size_t>(w);
  }
  return 0;
}

int fsync_retry(int fd) {
  int rc;
  while ((rc = ::fsync(fd)) != 0 && errno == EINTR) {
  }
  return rc == 0 ? 0 : errno;
}

int flock_retry(int fd, int op) {
  int rc;
  while ((rc = ::flock(fd, op)) != 0 && errno == EINTR) {
  }
  return rc == 0 ? 0 : errno;
}

// (std::istreambuf_iterator let libstdc++'s ios_base::failure escape with no file name:
// "basic_filebuf::underflow error reading the file"; fread reads an error as the file's end.)
int open_without_waiting(const std::string& path, int flags, mode_t mode) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISFIFO(st.st_mode))
    return ::open(path.c_str(), flags | O_CLOEXEC, mode);
  const int fd = ::open(path.c_str(), flags | O_NONBLOCK | O_CLOEXEC, mode);
  if (fd >= 0) (void)::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // I/O waits
  return fd;
}

namespace {
constexpr long kPipeFsMagic = 0x50495045;  // statfs f_type of pipes (linux/magic.h PIPEFS_MAGIC)

// `path` opened (open_without_waiting) and read whole into `out`, to at most `max` bytes.
template <class Out>
FileRead read_into(const std::string& path, size_t max, Out& out) {
  FileRead res;
  const int fd = open_without_waiting(path, O_RDONLY);
  if (fd < 0) {
    res = {FileRead::kOpen, errno, ""};
    res.why = std::string("cannot open: ") + std::strerror(res.err);
    return res;
  }
  out.clear();
  std::vector<char> buf(1 << 16);
  for (;;) {
    const ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      res = {FileRead::kRead, errno, ""};
      res.why = std::string("read failed: ") + std::strerror(res.err);
      break;
    }
    if (r == 0) break;
    out.insert(out.end(), buf.data(), buf.data() + r);
    if (out.size() > max) {
      res = {FileRead::kTooLarge, EFBIG, "more than " + std::to_string(max) + " bytes"};
      break;
    }
  }
  // A named FIFO that gave nothing had no writer (or one that wrote nothing); a pipe (--config
  // <(...), /dev/stdin) may be empty, as a file may.
  struct stat st;
  struct statfs fs;
  if (res.failure == FileRead::kNone && out.empty() && ::fstat(fd, &st) == 0 &&
      S_ISFIFO(st.st_mode) && ::fstatfs(fd, &fs) == 0 && fs.f_type != kPipeFsMagic)
    res = {FileRead::kEmptyFifo, ENODATA,
           "a FIFO that gave nothing (no process writes it? start its writer first)"};
  ::close(fd);
  return res;
}
}  // namespace

FileRead read_text_file(const std::string& path, size_t max, std::string& out) {
  return read_into(path, max, out);
}

FileRead read_whole_file(const std::string& path, std::vector<uint8_t>& out) {
  return read_into(path, SIZE_MAX, out);
}

}  // namespace kiln
