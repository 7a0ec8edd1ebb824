// Convolutional model builders. make_cnn is the assignment-style MNIST net: 3x3 conv blocks,
// a 1x1 conv to cut channels, max pooling once the receptive field reaches 7x7 (movable with
// --pool-after), more 3x3 convs, a 1x1 conv to the class count and global average pooling
// (17,354 parameters, under the 20k budget). make_cifar is a small VGG-style net for 3x32x32.
// opts.width is not used by either: its default (128) is the MLP's hidden width, and these nets
// have fixed channel plans.
// Every conv but the last is followed by add_block_tail, so --norm/--activation/--dropout apply.
#include <memory>

#include "engine/error.h"
#include "layers/conv.h"
#include "layers/linear.h"
#include "layers/models.h"
#include "layers/pool.h"

namespace kiln {
namespace {

// Conv2d (3x3 unless k says otherwise) + the block tail; returns the new channel count.
int64_t conv_block(Model& m, const ModelOptions& opts, int64_t cin, int64_t cout, int64_t k,
                   int64_t pad) {
  m.add(std::make_unique<Conv2d>(cin, cout, k, 1, pad, true, parse_init_scheme(opts.init)));
  add_block_tail(m, opts, cout, /*spatial=*/true);
  return cout;
}

}  // namespace

std::unique_ptr<Model> make_cnn(const ModelOptions& opts, const Shape& input, int num_classes) {
  KILN_USAGE_CHECK(input.size() == 3 && input[1] >= 20 && input[2] >= 20,
                   "model cnn: expects a [C, H, W] input of at least 20x20, got " << shape_str(input));
  auto m = std::make_unique<Model>(input);
  // Seven conv layers with a fixed channel plan, so moving the pool (--pool-after) changes only
  // where the resolution halves (receptive field, compute, final map size), never the parameter
  // count. Sizes and RFs for 28x28 with the default pool_after = 4:
  const int64_t plan[7][2] = {{16, 3}, {16, 3}, {16, 3}, {8, 1}, {24, 3}, {24, 3}, {24, 3}};
  //                          26 RF3   24 RF5   22 RF7   22 RF7  pool 11 RF8, 9 RF12, 7 RF16, 5 RF20
  int64_t c = input[0];
  for (int i = 0; i < 7; ++i) {
    if (i == opts.pool_after) m->add(std::make_unique<MaxPool2d>(2));
    c = conv_block(*m, opts, c, plan[i][0], plan[i][1], 0);
  }
  if (opts.pool_after == 7) m->add(std::make_unique<MaxPool2d>(2));
  m->add(std::make_unique<Conv2d>(c, num_classes, 1, 1, 0, true, parse_init_scheme(opts.init)));
  m->add(std::make_unique<GlobalAvgPool>());  // logits [num_classes]
  return m;
}

std::unique_ptr<Model> make_cifar(const ModelOptions& opts, const Shape& input, int num_classes) {
  KILN_USAGE_CHECK(input.size() == 3 && input[1] >= 8 && input[2] >= 8,
                   "model cifar: expects a [C, H, W] input of at least 8x8, got " << shape_str(input));
  auto m = std::make_unique<Model>(input);
  int64_t c = input[0];
  for (int64_t width : {32, 64, 128}) {  // 32x32 -> 16 -> 8 -> 4
    c = conv_block(*m, opts, c, width, 3, 1);
    c = conv_block(*m, opts, c, width, 3, 1);
    m->add(std::make_unique<MaxPool2d>(2));
  }
  m->add(std::make_unique<GlobalAvgPool>());
  m->add(std::make_unique<Linear>(c, num_classes, true, parse_init_scheme(opts.init)));
  return m;
}

}  // namespace kiln
