// The CPU references whose loops are compiled once per instruction set (dropout's mask, the
// norms' passes) keep them in a constant table, best first, of entries with a `name` and a
// `runs()` that asks this CPU: the lookups below serve every such table, and KILN_ALWAYS_INLINE
// marks the shared loop bodies each entry's target-specific function inlines.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "engine/error.h"

#if defined(__GNUC__)
#define KILN_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define KILN_ALWAYS_INLINE inline
#endif

namespace kiln {

// The names of the entries this CPU runs, best first.
template <typename Isa, size_t N>
std::vector<std::string> isa_names(const Isa (&table)[N]) {
  std::vector<std::string> names;
  for (const Isa& i : table)
    if (i.runs()) names.emplace_back(i.name);
  return names;
}

// The entry called `name` that this CPU runs ("": the best it runs); otherwise the error
// "<none> for instruction set '<name>' on this CPU".
template <typename Isa, size_t N>
const Isa& find_isa(const Isa (&table)[N], const std::string& name, const char* none) {
  for (const Isa& i : table)
    if ((name.empty() || name == i.name) && i.runs()) return i;
  KILN_FAIL(none << " for instruction set '" << name << "' on this CPU");
}

}  // namespace kiln
