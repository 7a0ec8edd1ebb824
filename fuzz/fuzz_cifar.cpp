// libFuzzer target: the CIFAR-10 binary batch reader on arbitrary bytes (raw or gzip). An input
// that holds the marker "\nKILN-NEXT-BATCH\n" is several batch files read as one set (as
// data_batch_1..5 are), each kept whole and under a limit of 2 records (the rest still read
// and checked).
#include "engine/dataset.h"
#include "engine/error.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> parts = kiln::fuzz::split_files(data, size, "\nKILN-NEXT-BATCH\n");
  if (parts.size() > 8) return 0;
  std::vector<std::string> paths;
  for (size_t i = 0; i < parts.size(); ++i)
    paths.push_back(kiln::fuzz::temp_file(("cifar" + std::to_string(i)).c_str(), parts[i]));
  for (int64_t limit : {int64_t{0}, int64_t{2}}) {
    try {
      kiln::Dataset ds = kiln::load_cifar_files(paths, "fuzz", limit, true, kiln::Device::CPU);
      (void)ds;
    } catch (const kiln::Error& e) {
      kiln::fuzz::check_message(e);
    }
  }
  return 0;
}
