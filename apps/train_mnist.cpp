// train_mnist: train a model on MNIST / Fashion-MNIST (or CIFAR-10 via --dataset) and print
// one line per epoch and a final "test_acc=... test_loss=... seconds=..." line.
#include "apps/train_app.h"

using namespace kiln;  // an app, not the library

static const char* kUsage =
    "usage: train_mnist [--config FILE.yaml] [options]\n"
    "Trains a model on MNIST (default), Fashion-MNIST or CIFAR-10 and reports test accuracy.\n"
    "Defaults: --model cnn --epochs 3 --batch-size 32 --optimizer adam --lr 0.003 --schedule "
    "one-cycle\n"
    "          (one-cycle peaks at --lr), --init kaiming, --width 256 for --model mlp\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 training diverged, 130/143 stopped by\n"
    "SIGINT/SIGTERM after writing a checkpoint (--resume continues).\n\noptions:\n";

int main(int argc, char** argv) {
  // Adam + one-cycle peaking at --lr (fast.ai style); the body is shared with train_cifar.
  return app::train_main("train_mnist", kUsage, app::default_run_config(), argc, argv);
}
