#include "engine/numtext.h"

#include <locale.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace kiln {

namespace {
// Made once, never freed (as the process's own locales are); 0 if newlocale fails, in which
// case the thread keeps its locale.
locale_t c_locale() {
  static const locale_t c = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(0));
  return c;
}
}  // namespace

CLocaleScope::CLocaleScope() {
  if (locale_t c = c_locale()) old_ = uselocale(c);
}
CLocaleScope::~CLocaleScope() {
  if (old_) uselocale(static_cast<locale_t>(old_));
}

std::string format_c(const char* fmt, ...) {
  CLocaleScope c;
  char small[128];
  va_list args;
  va_start(args, fmt);
  const int n = std::vsnprintf(small, sizeof small, fmt, args);
  va_end(args);
  if (n < 0) return std::string();
  if (static_cast<size_t>(n) < sizeof small) return std::string(small, static_cast<size_t>(n));
  std::vector<char> big(static_cast<size_t>(n) + 1);
  va_start(args, fmt);
  std::vsnprintf(big.data(), big.size(), fmt, args);
  va_end(args);
  return std::string(big.data(), static_cast<size_t>(n));
}

double strtod_c(const char* s, char** end) {
  CLocaleScope c;
  errno = 0;  // the switch may not leave a stale value for the caller's ERANGE check
  return std::strtod(s, end);
}

}  // namespace kiln
