// libFuzzer target: the IDX reader (raw or gzip) on arbitrary bytes: read_idx whole and with a
// record limit (the rest is still read and checked, not kept); and, for an input that holds
// the marker "\nKILN-LABELS\n", load_idx_pair on the part before it (images) and after it
// (labels): the pair's dims, count and label checks, under --train-limit 2 and no limit.
#include "engine/dataset.h"
#include "engine/error.h"
#include "fuzz/fuzz_util.h"

namespace {
template <class F>
void expect_error_or_success(F&& f) {
  try {
    f();
  } catch (const kiln::Error& e) {
    kiln::fuzz::check_message(e);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> parts = kiln::fuzz::split_files(data, size, "\nKILN-LABELS\n");
  if (parts.size() != 2) {
    const std::string path = kiln::fuzz::temp_file("idx", data, size);
    expect_error_or_success([&] { (void)kiln::read_idx(path); });
    expect_error_or_success([&] { (void)kiln::read_idx(path, 1); });
    return 0;
  }
  const std::string images = kiln::fuzz::temp_file("idx_images", parts[0]);
  const std::string labels = kiln::fuzz::temp_file("idx_labels", parts[1]);
  std::vector<float> mean, std;
  kiln::dataset_stats("mnist", mean, std);
  for (int64_t limit : {int64_t{2}, int64_t{0}})
    expect_error_or_success([&] {
      (void)kiln::load_idx_pair(images, labels, "fuzz", limit, true, mean, std, kiln::Device::CPU);
    });
  return 0;
}
