// Embedding kiln: build a small MLP, train it for a few steps on synthetic data on the CPU,
// save a checkpoint and load it back into a fresh model. Only the core library (kiln::kiln)
// is used: no YAML, no command line, no process exits from inside the library.
#include <kiln/engine/checkpoint.h>
#include <kiln/engine/dataset.h>
#include <kiln/engine/error.h>
#include <kiln/engine/trainer.h>
#include <kiln/layers/models.h>
#include <kiln/optim/optimizer.h>
#include <kiln/optim/schedule.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <random>

namespace {

// Two Gaussian blobs per class in 16 features: easy to learn in a few steps.
kiln::Dataset synthetic(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> noise(0.f, 0.5f);
  std::vector<float> x(static_cast<size_t>(n) * 16);
  kiln::Dataset ds;
  ds.name = "synthetic";
  ds.num_classes = 3;
  ds.host_labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int c = static_cast<int>(i % 3);
    ds.host_labels[i] = c;
    for (int f = 0; f < 16; ++f) x[i * 16 + f] = (f % 3 == c ? 2.f : 0.f) + noise(g);
  }
  ds.images = kiln::Tensor::from_vector(x, {n, 1, 4, 4}, kiln::Device::CPU);
  ds.labels = std::make_shared<kiln::Buffer>(static_cast<size_t>(n) * sizeof(int32_t), kiln::Device::CPU);
  std::memcpy(ds.labels->data(), ds.host_labels.data(), static_cast<size_t>(n) * sizeof(int32_t));
  return ds;
}

}  // namespace

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "embed.safetensors";
  try {
    kiln::ModelOptions mo;
    mo.model = "mlp";
    mo.width = 32;
    auto model = kiln::make_model(mo, {1, 4, 4}, 3);
    model->build(kiln::Device::CPU, 42);
    kiln::Context ctx(kiln::Device::CPU, 42);
    kiln::OptimOptions oo;
    oo.name = "adam";
    oo.lr = 0.01f;
    auto opt = kiln::make_optimizer(oo, *model);
    kiln::ScheduleOptions so;
    auto sched = kiln::make_schedule(so, oo.lr, 8, 3);
    kiln::TrainOptions to;
    to.epochs = 3;
    to.batch_size = 32;
    to.progress = 0;
    kiln::Trainer trainer(*model, *opt, *sched, ctx, to);
    kiln::Dataset train = synthetic(256, 1), test = synthetic(96, 2);
    for (const auto& r : trainer.fit(train, &test))
      std::printf("epoch %d: train_loss=%.4f test_acc=%.4f\n", r.epoch, r.train_loss, r.test_acc);

    kiln::CheckpointInfo info;
    info.pos = trainer.position();
    kiln::save_checkpoint(path, ctx, *model, opt.get(), sched.get(), info);
    // A fresh model with its own optimizer and schedule (an optimizer steps the model it was
    // made for), all three restored from the checkpoint, as a resumed run would be.
    auto fresh = kiln::make_model(mo, {1, 4, 4}, 3);
    fresh->build(kiln::Device::CPU, 7);
    auto fresh_opt = kiln::make_optimizer(oo, *fresh);
    auto fresh_sched = kiln::make_schedule(so, oo.lr, 8, 3);
    kiln::load_checkpoint(path, ctx, *fresh, fresh_opt.get(), fresh_sched.get());
    kiln::Trainer check(*fresh, *fresh_opt, *fresh_sched, ctx, to);
    kiln::EvalResult e = check.evaluate(test);
    std::printf("checkpoint %s reloaded: test_acc=%.4f (kiln %s)\n", path, e.acc, kiln::kiln_version());
    return e.acc > 0.9 ? 0 : 1;
  } catch (const kiln::Error& e) {
    std::fprintf(stderr, "embed_example: error: %s\n", e.message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_example: error: %s\n", e.what());
    return 1;
  }
}
