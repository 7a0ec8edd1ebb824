#include "engine/error.h"

#include <sys/stat.h>

#include <cstring>

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

Error::Error(ErrorKind kind, const std::string& msg, const char* file, int line)
    : std::runtime_error(msg), kind_(kind), message_(msg),
      where_(short_path(file) + ":" + std::to_string(line)) {}

Error Error::prefixed(const std::string& prefix) const {
  Error e = *this;
  static_cast<std::runtime_error&>(e) = std::runtime_error(prefix + what());
  e.message_ = prefix + message_;
  return e;
}

Error Error::suffixed(const std::string& suffix) const {
  Error e = *this;
  static_cast<std::runtime_error&>(e) = std::runtime_error(what() + suffix);
  e.message_ = message_ + suffix;
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
