// kiln::Error: the one exception type of the library. It carries the kind (a runtime failure,
// exit 1, or a usage error such as a bad option or a shape mismatch, exit 2) and where it was
// raised. A library never exits or prints; apps catch Error and print what() on one line: the
// message is one line whatever text it echoes (control characters become JSON escapes, "\n").
// Exit codes used by the apps: Runtime 1, Usage 2, Diverged 3 (a non-finite loss, like
// Keras TerminateOnNaN), Interrupted 130/143 by signal. OutOfMemory (a host or device
// allocation failed) exits 1 like Runtime; a sweep records that trial as failed and goes on to
// the next (a batch size or width that does not fit is one trial's problem, not the sweep's).
#pragma once
#include <locale>
#include <sstream>
#include <stdexcept>
#include <string>

namespace kiln {

enum class ErrorKind { Runtime, Usage, Diverged, OutOfMemory };
int exit_code(ErrorKind k);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg, const char* file, int line);
  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }  // without the location
  const std::string& where() const { return where_; }      // "engine/tensor.cpp:42"
  // The same error (kind, place) with `prefix` in front of its message.
  Error prefixed(const std::string& prefix) const;
  // ... and with `suffix` after it.
  Error suffixed(const std::string& suffix) const;

 private:
  ErrorKind kind_;
  std::string message_, where_;
};

[[noreturn]] void throw_error(ErrorKind kind, const std::string& msg, const char* file, int line);

// "is a directory, not a file" when `path` is a directory, else "" (a missing file is left to
// the caller's open): reading a directory through an ifstream throws libstdc++'s own text,
// which names neither the file nor the option. Pipes and devices (--config <(...)) pass.
std::string directory_error(const std::string& path);
// directory_error, and for a file that must be read whole (a checkpoint): "is not a regular
// file (a pipe or device)" for anything else that exists (/dev/zero never ends, a FIFO blocks).
std::string not_regular_file_error(const std::string& path);

}  // namespace kiln

// KILN_FAIL_KIND_(Kind, "message " << value): throws an Error of that kind. The message is
// built in the classic locale ("1.5", whatever the global locale).
#define KILN_FAIL_KIND_(kind, msg)                                                    \
  do {                                                                                \
    std::ostringstream kiln_os_;                                                      \
    kiln_os_.imbue(std::locale::classic());                                           \
    kiln_os_ << msg;                                                                  \
    ::kiln::throw_error(::kiln::ErrorKind::kind, kiln_os_.str(), __FILE__, __LINE__); \
  } while (0)

// KILN_CHECK(cond, "message " << value): a runtime error (exit 1) when cond is false.
#define KILN_CHECK(cond, msg)                   \
  do {                                          \
    if (!(cond)) KILN_FAIL_KIND_(Runtime, msg); \
  } while (0)

// KILN_USAGE_CHECK: the same, for errors the user made (bad option, shape, config): exit 2.
#define KILN_USAGE_CHECK(cond, msg)           \
  do {                                        \
    if (!(cond)) KILN_FAIL_KIND_(Usage, msg); \
  } while (0)

// Unconditional forms: no `if` around the throw, so a function ending in one needs no return
// after it (GCC's -Wreturn-type at -O0 does not fold `if (!(false))`).
#define KILN_FAIL(msg) KILN_FAIL_KIND_(Runtime, msg)
#define KILN_USAGE_FAIL(msg) KILN_FAIL_KIND_(Usage, msg)
#define KILN_OUT_OF_MEMORY(msg) KILN_FAIL_KIND_(OutOfMemory, msg)

#include <new>

namespace kiln {
// Runs f(); an allocation that fails inside it (kiln's OutOfMemory Error, or a container's
// std::bad_alloc) comes out as OutOfMemory with what() in front, so the one-line error says
// what ran out: "evaluating mnist test at --eval-batch-size 10000: out of memory: ...".
template <class What, class F>
auto with_memory_context(What what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::OutOfMemory) throw;
    throw e.prefixed(what() + ": ");
  } catch (const std::bad_alloc&) {
    KILN_OUT_OF_MEMORY(what() << ": out of memory");
  }
}
}  // namespace kiln
