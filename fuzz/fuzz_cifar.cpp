// libFuzzer target: the CIFAR-10 binary batch reader on arbitrary bytes (raw or gzip).
#include "engine/dataset.h"
#include "engine/error.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = kiln::fuzz::temp_file("cifar", data, size);
  try {
    kiln::Dataset ds = kiln::load_cifar_files({path}, "fuzz", 64, true, kiln::Device::CPU);
    (void)ds;
  } catch (const kiln::Error&) {
  }
  return 0;
}
