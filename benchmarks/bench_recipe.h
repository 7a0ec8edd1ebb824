// The apps' default recipe (apps/app_common.h) for the training benchmarks: Kaiming init,
// width 256, Adam at 0.003, one-cycle spanning far more epochs than are timed, no loss bound
// (the benchmarks train on random labels).
#pragma once
#include <memory>
#include <string>

#include "engine/trainer.h"
#include "layers/models.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

namespace kiln::bench {

struct Recipe {
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<Schedule> sched;
  TrainOptions train;  // one epoch at `batch`, no progress output
};

inline Recipe default_recipe(const std::string& model, bool fuse, const Shape& sample, Device dev,
                             int64_t samples, int64_t batch, int width = 256, int depth = 2) {
  Recipe r;
  ModelOptions mo;
  mo.model = model;
  mo.width = width;  // the mlp's
  mo.depth = depth;
  mo.init = "kaiming";
  mo.fuse = fuse;
  r.model = make_model(mo, sample, 10);
  r.model->build(dev, 0);
  OptimOptions oo;
  oo.name = "adam";
  oo.lr = 0.003f;
  r.opt = make_optimizer(oo, *r.model);
  ScheduleOptions so;
  so.name = "one-cycle";
  r.sched = make_schedule(so, oo.lr, (samples + batch - 1) / batch, 1000);
  r.train.epochs = 1;
  r.train.batch_size = batch;
  r.train.progress = 0;
  r.train.max_loss = -1;  // random labels: the loss bound is not the point here
  return r;
}

}  // namespace kiln::bench
