#include "engine/process.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <locale>
#include <sstream>

namespace kiln {

std::string host_name() {
  char h[256] = {};
  if (::gethostname(h, sizeof h - 1) != 0) h[0] = 0;
  return h;
}

std::string pid_namespace() {
  char buf[64] = {};
  const ssize_t n = ::readlink("/proc/self/ns/pid", buf, sizeof buf - 1);
  const std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  const size_t a = s.find('['), b = s.find(']');
  return a != std::string::npos && b != std::string::npos && b > a + 1 ? s.substr(a + 1, b - a - 1)
                                                                       : "-";
}

std::string boot_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  return std::getline(f, id) && !id.empty() && id.find(' ') == std::string::npos ? id : "-";
}

bool process_state(long pid, char& state, unsigned long long& start) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(f, text)) return false;
  const size_t paren = text.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return false;
  std::istringstream rest(text.substr(paren + 1));
  rest.imbue(std::locale::classic());  // plain digits whatever the host's locale
  std::string skip;
  if (!(rest >> state)) return false;
  for (int field = 4; field <= 21; ++field) rest >> skip;
  return static_cast<bool>(rest >> start);
}

unsigned long long own_start_time() {
  char state = 0;
  unsigned long long start = 0;
  process_state(::getpid(), state, start);
  return start;
}

bool process_gone(long pid) {
  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace kiln
