// libFuzzer target: the safetensors decoder and the checkpoint loader (validation against a
// small model with BatchNorm, SGD momentum state and a plateau schedule) on arbitrary bytes.
// The checksums stop almost every mutated file at the door, and a crafted file can carry valid
// ones (they guard against corruption, not against a hostile file), so the decoded file is also
// loaded past them: what a resume and kiln_eval then read (the metadata's position, counters,
// early-stop and schedule state, the recorded config) is fuzzed too.
#include <memory>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "fuzz/fuzz_util.h"
#include "layers/models.h"
#include "optim/schedule.h"
#include "tuning/options.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"

namespace {
struct Rig {
  kiln::Context ctx{kiln::Device::CPU, 1};
  std::unique_ptr<kiln::Model> model;
  std::unique_ptr<kiln::Optimizer> opt;
  std::unique_ptr<kiln::Schedule> sched;
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
    kiln::ScheduleOptions so;
    so.name = "plateau";
    sched = kiln::make_schedule(so, 0.1f, 10, 5);
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Rig rig;
  try {
    std::vector<uint8_t> bytes(data, data + size);
    kiln::load_checkpoint_bytes(bytes, "fuzz", rig.ctx, *rig.model, rig.opt.get(), nullptr);
  } catch (const kiln::Error& e) {
    kiln::fuzz::check_message(e);
  }
  kiln::SafetensorsFile f;
  try {
    f = kiln::decode_safetensors(data, size, "fuzz");
  } catch (const kiln::Error& e) {
    kiln::fuzz::check_message(e);
    return 0;
  }
  try {  // past the checksums: every metadata reader, the schedule's state included
    kiln::load_checkpoint_file(f, "fuzz", rig.ctx, *rig.model, rig.opt.get(), rig.sched.get());
  } catch (const kiln::Error& e) {
    kiln::fuzz::check_message(e);
  }
  try {  // kiln_eval and --resume take the recorded options
    const kiln::JsonValue stored = kiln::checkpoint_config(f, "fuzz");
    kiln::RunConfig cfg;
    const kiln::OptionTable& table = kiln::run_options();
    for (const auto& [k, v] : stored.members)
      if (v.is_string() && table.find(k)) table.set(cfg, k, v.text, "fuzz");
    kiln::make_model(cfg.model, cfg.input_shape(), 10)->check_setup();
  } catch (const kiln::Error& e) {
    kiln::fuzz::check_message(e);
  }
  try {  // a resume sizes its schedule from the position before any tensor is read
    const kiln::TrainPosition pos = kiln::checkpoint_position(f, "fuzz");
    if (pos.epoch > 10000)
      return 0;  // the schedule then holds --epochs entries: the user's to size
    kiln::TrainOptions t;
    t.batch_size = 64;
    t.epochs = pos.epoch + 2;
    kiln::ScheduleOptions so;
    so.name = "one-cycle";
    kiln::make_schedule(so, 0.1f, kiln::schedule_steps(200, t, &pos));
  } catch (const kiln::Error& e) {
    kiln::fuzz::check_message(e);
  }
  return 0;
}
