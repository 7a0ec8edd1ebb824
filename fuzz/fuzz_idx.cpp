// libFuzzer target: read_idx (raw or gzip IDX) on arbitrary bytes.
#include "engine/dataset.h"
#include "engine/error.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = kiln::fuzz::temp_file("idx", data, size);
  try {
    kiln::IdxArray a = kiln::read_idx(path);
    (void)a;
  } catch (const kiln::Error&) {
  }
  return 0;
}
