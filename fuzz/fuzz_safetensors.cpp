// libFuzzer target: the safetensors decoder and the checkpoint loader (validation against a
// small model with BatchNorm and SGD momentum state) on arbitrary bytes.
#include <memory>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "layers/models.h"

namespace {
struct Rig {
  kiln::Context ctx{kiln::Device::CPU, 1};
  std::unique_ptr<kiln::Model> model;
  std::unique_ptr<kiln::Optimizer> opt;
  Rig() {
    kiln::ModelOptions mo;
    mo.model = "mlp";
    mo.width = 4;
    mo.depth = 1;
    mo.norm = "batch";
    model = kiln::make_model(mo, {1, 2, 2}, 3);
    model->build(kiln::Device::CPU, 1);
    kiln::OptimOptions oo;
    oo.momentum = 0.9f;
    opt = kiln::make_optimizer(oo, *model);
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Rig rig;
  try {
    kiln::decode_safetensors(data, size, "fuzz");
  } catch (const kiln::Error&) {
  }
  try {
    std::vector<uint8_t> bytes(data, data + size);
    kiln::load_checkpoint_bytes(bytes, "fuzz", rig.ctx, *rig.model, rig.opt.get(), nullptr);
  } catch (const kiln::Error&) {
  }
  return 0;
}
