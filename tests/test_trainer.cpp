// Trainer end to end on the real MNIST subset in tests/data: an MLP learns, runs are
// deterministic for a seed on the CPU, metrics are consistent, and non-finite training stops
// with a Diverged error naming a layer.
#include <gtest/gtest.h>

#include "engine/error.h"
#include "test_util.h"
#include "tuning/run.h"

using namespace kiln;

namespace {
RunConfig small_mlp() {
  RunConfig c;
  c.device = "cpu";
  c.data.data_dir = KILN_TEST_DATA_DIR;
  c.model.model = "mlp";
  c.model.width = 32;
  c.model.depth = 1;
  c.optim.lr = 0.05f;
  c.optim.momentum = 0.9f;
  c.train.epochs = 2;
  c.train.batch_size = 32;
  c.train.progress = 0;
  return c;
}
}  // namespace

TEST(TrainerCpu, MlpLearnsMnistSubset) {
  RunResult r = run_training(small_mlp(), {});
  ASSERT_EQ(r.epochs.size(), 2u);
  EXPECT_GT(r.test_acc, 0.80) << "an MLP should pass 80% on 500 test images after 2 epochs on 2000";
  EXPECT_LT(r.epochs[1].train_loss, r.epochs[0].train_loss);
  EXPECT_EQ(r.epochs[1].step, 2 * 63);  // ceil(2000/32) steps per epoch
}

TEST(TrainerCpu, SameSeedSameWeightsOtherSeedDiffers) {
  auto weights = [](uint64_t seed) {
    RunConfig c = small_mlp();
    c.train.epochs = 1;
    c.data.train_limit = 500;
    c.seed = seed;
    auto s = make_session(c);
    s->trainer->fit(s->train, nullptr);
    return s->model->flat_params().to_vector();
  };
  auto a = weights(5), b = weights(5), c = weights(6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(TrainerCpu, ExplodingRunStopsWithDivergedNamingALayer) {
  RunConfig c = small_mlp();
  // The recipe, shortened: deep sigmoid MLP, Adam at lr 10. Sigmoids bound the hidden
  // activations, so the logits grow without overflowing: the loss bound is what stops it.
  c.model.depth = 20;
  c.model.activation = "sigmoid";
  c.optim.name = "adam";
  c.optim.lr = 10.0f;
  c.optim.momentum = 0;
  c.data.train_limit = 512;
  c.train.epochs = 3;
  try {
    run_training(c, {});
    FAIL() << "expected divergence";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Diverged);
    EXPECT_NE(e.message().find("diverged"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("layer "), std::string::npos) << e.message();
  }
}

TEST(TrainerCpu, EvaluateMatchesEpochRecord) {
  RunConfig c = small_mlp();
  c.train.epochs = 1;
  auto s = make_session(c);
  auto recs = s->trainer->fit(s->train, &s->test);
  EvalResult e = s->trainer->evaluate(s->test);
  EXPECT_EQ(e.count, 500);
  EXPECT_DOUBLE_EQ(e.acc, recs[0].test_acc);
  EXPECT_DOUBLE_EQ(e.loss, recs[0].test_loss);
}
