// Shared by the libFuzzer targets: the readers under test take paths, so each input is written
// to one per-process temp file (in /dev/shm when present) and the reader is pointed at it.
// kiln::Error is the expected outcome for bad input; anything else (a crash, a sanitizer
// report, another exception type escaping) is a finding.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

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

}  // namespace kiln::fuzz
