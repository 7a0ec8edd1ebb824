// Numbers as text in the "C" locale, whatever locale the host program chose (setlocale, or
// std::locale::global with a named locale): what kiln writes (JSONL metrics, checkpoint
// metadata, schedule state) always has '.' as its decimal point and reads back in any locale.
// printf, strtod and sscanf follow the calling thread's C locale, so these switch the calling
// thread (only it: uselocale) to "C" for the call. Streams that read or write numbers are
// imbued with std::locale::classic() instead.
#pragma once
#include <locale>
#include <sstream>
#include <string>

namespace kiln {

// RAII: the calling thread uses the "C" locale until the guard goes (for snprintf, sscanf,
// strtod in a block).
class CLocaleScope {
 public:
  CLocaleScope();
  ~CLocaleScope();
  CLocaleScope(const CLocaleScope&) = delete;
  CLocaleScope& operator=(const CLocaleScope&) = delete;

 private:
  void* old_ = nullptr;  // the thread's locale_t before
};

// std::snprintf into a string, in the "C" locale.
std::string format_c(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// std::strtod in the "C" locale (same contract: *end past the number read; errno is ERANGE
// after an overflow, else 0).
double strtod_c(const char* s, char** end);

// A std::ostringstream in the classic locale: messages and names built with it read the same
// whatever the host's global locale ("1234567", "0.5"; a German one gave "1.234.567", "0,5").
struct ClassicOStringStream : std::ostringstream {
  ClassicOStringStream() { imbue(std::locale::classic()); }
};

}  // namespace kiln
