// libFuzzer target: YAML run configs (apply_yaml_config) on arbitrary bytes, followed by the
// config validation the apps run. yaml-cpp's own exceptions must not escape as anything but
// kiln::Error.
#include "engine/error.h"
#include "fuzz/fuzz_util.h"
#include "tuning/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = kiln::fuzz::temp_file("yaml", data, size);
  try {
    kiln::RunConfig cfg;
    kiln::apply_yaml_config(cfg, path);
    cfg.validate();
  } catch (const kiln::Error& e) {
    kiln::fuzz::check_message(e);
  }
  return 0;
}
