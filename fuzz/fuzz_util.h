// Shared by the libFuzzer targets: the readers under test take paths, so each input is written
// to one per-process temp file (in /dev/shm when present) and the reader is pointed at it.
// kiln::Error is the expected outcome for bad input, and its message must be one printable
// line (the apps print it after "error: "); anything else (a crash, a sanitizer report,
// another exception type escaping, a message that is empty or holds a line break or another
// control character) is a finding.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/json.h"

namespace kiln::fuzz {

inline std::string temp_file(const char* tag, const uint8_t* data, size_t size) {
  static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  std::string path = dir + "/kiln_fuzz_" + tag + "_" + std::to_string(getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return path;
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}
inline std::string temp_file(const char* tag, const std::string& bytes) {
  return temp_file(tag, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// Aborts (a libFuzzer finding) unless e's message is one non-empty line of printable text (no
// byte below 0x20, tab included, nor DEL; bytes from 0x80 up pass: UTF-8 in a path or a key).
// kiln::Error escapes control characters itself since 2026-12-06, so this guards that escape
// (without it, these targets found three messages echoing a file's bytes raw within minutes).
inline void check_message(const kiln::Error& e) {
  const std::string& m = e.message();
  const std::string escaped = kiln::escape_controls(m);  // (escapes exactly those bytes)
  if (!m.empty() && escaped == m) return;
  std::fprintf(stderr, "kiln fuzz: error message is not one printable line (%s): '%s'\n",
               e.where().c_str(), escaped.c_str());
  std::abort();
}

// The parts of an input that holds `marker` between them ("A<marker>B" -> {A, B}); the whole
// input alone when it holds none. Lets one input carry several files (images and labels, two
// CIFAR batches) without a leading selector byte that every seed would have to carry.
inline std::vector<std::string> split_files(const uint8_t* data, size_t size,
                                            const std::string& marker) {
  const std::string all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t at; (at = all.find(marker, begin)) != std::string::npos; begin = at + marker.size())
    parts.push_back(all.substr(begin, at - begin));
  parts.push_back(all.substr(begin));
  return parts;
}

}  // namespace kiln::fuzz
