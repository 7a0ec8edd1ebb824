#include "engine/error.h"

#include <sys/stat.h>

#include <cstring>

#include "engine/json.h"

namespace kiln {

namespace {
// Keep the last two path components ("engine/tensor.cpp"): enough to find the line, and stable
// across build machines.
std::string short_path(const char* file) {
  std::string f(file ? file : "?");
  size_t last = f.rfind('/');
  if (last == std::string::npos || last == 0) return f;
  size_t prev = f.rfind('/', last - 1);
  return prev == std::string::npos ? f : f.substr(prev + 1);
}
}  // namespace

// Every message is one line: a control character that a caller's text brought in (a path or a
// name with a line break, a file's bytes echoed) is written as its JSON escape.
Error::Error(ErrorKind kind, const std::string& msg, const char* file, int line)
    : std::runtime_error(escape_controls(msg)),
      kind_(kind),
      message_(std::runtime_error::what()),
      where_(short_path(file) + ":" + std::to_string(line)) {}

Error Error::prefixed(const std::string& prefix) const {
  Error e = *this;
  e.message_ = escape_controls(prefix) + message_;
  static_cast<std::runtime_error&>(e) = std::runtime_error(e.message_);
  return e;
}

Error Error::suffixed(const std::string& suffix) const {
  Error e = *this;
  e.message_ = message_ + escape_controls(suffix);
  static_cast<std::runtime_error&>(e) = std::runtime_error(e.message_);
  return e;
}

std::string not_regular_file_error(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return "";  // (a missing file: the open says so)
  if (S_ISDIR(st.st_mode)) return "is a directory, not a file";
  return S_ISREG(st.st_mode) ? "" : "is not a regular file (a pipe or device)";
}

std::string directory_error(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) ? "is a directory, not a file" : "";
}

int exit_code(ErrorKind k) { return k == ErrorKind::Usage ? 2 : k == ErrorKind::Diverged ? 3 : 1; }

void throw_error(ErrorKind kind, const std::string& msg, const char* file, int line) {
  throw Error(kind, msg, file, line);
}

}  // namespace kiln
