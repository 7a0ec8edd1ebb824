// train_cifar: train_mnist's command for CIFAR-10 (binary batches from --data-dir, i.e.
// data_batch_{1..5}.bin and test_batch.bin under DIR/cifar10/ or DIR itself): the `cifar`
// model, per-channel normalisation and random crop + flip augmentation on the device.
#include "apps/train_app.h"

using namespace kiln;  // an app, not the library

static const char* kUsage =
    "usage: train_cifar [--config FILE.yaml] [options]\n"
    "Trains a model on CIFAR-10 (binary version; the files come from you: --data-dir DIR) and\n"
    "reports test accuracy.\n"
    "Defaults: --dataset cifar10 --model cifar --augment --epochs 3 --batch-size 32 --optimizer "
    "adam\n"
    "          --lr 0.003 --schedule one-cycle (one-cycle peaks at --lr)\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 training diverged, 130/143 stopped by\n"
    "SIGINT/SIGTERM after writing a checkpoint (--resume continues).\n\noptions:\n";

int main(int argc, char** argv) {
  RunConfig cfg = app::default_run_config();
  cfg.data.dataset = "cifar10";
  cfg.model.model = "cifar";
  cfg.train.augment = true;
  return app::train_main("train_cifar", kUsage, cfg, argc, argv);
}
