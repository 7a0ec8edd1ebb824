// Normalisation layers: BatchNorm1d (input (F)), BatchNorm2d (input (C,H,W)) and GroupNorm.
// Parameter and buffer names follow PyTorch (weight, bias, running_mean, running_var,
// num_batches_tracked) so checkpoints map onto a state_dict.
#pragma once
#include "layers/layer.h"

namespace kiln {

class BatchNorm : public Layer {
 public:
  // spatial: BatchNorm2d over (C,H,W) inputs; otherwise BatchNorm1d over (F).
  BatchNorm(int64_t features, bool spatial, double momentum = 0.1, double eps = 1e-5);
  std::string type() const override { return spatial_ ? "BatchNorm2d" : "BatchNorm1d"; }
  std::string describe() const override;
  Shape setup(const Shape& in) override;
  void bind(Device device) override;
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void release_scratch() override { release({&x_, &out_, &dx_, &mean_, &invstd_, &workspace_}); }
  std::vector<std::pair<std::string, Tensor>> buffers() override;
  // Writes max(0, bn(x)) and masks dy by (y > 0) inside the kernels (norm.h).
  bool fuse_relu() override {
    relu_ = true;
    return true;
  }
  bool relu_fused() const { return relu_; }
  int64_t min_training_batch() const override { return hw_ > 1 ? 1 : 2; }

  Tensor& running_mean() { return running_mean_; }
  Tensor& running_var() { return running_var_; }
  Tensor& num_batches_tracked() { return num_batches_tracked_; }

 private:
  int64_t features_;
  bool spatial_;
  double momentum_, eps_;
  int64_t hw_ = 1;
  Tensor running_mean_, running_var_, num_batches_tracked_;
  Tensor x_, out_, dx_, mean_, invstd_, workspace_;
  bool trained_forward_ = true;  // whether the last forward used batch statistics
  bool relu_ = false;
};

class GroupNorm : public Layer {
 public:
  GroupNorm(int64_t groups, int64_t channels, double eps = 1e-5);
  std::string type() const override { return "GroupNorm"; }
  std::string describe() const override;
  Shape setup(const Shape& in) override;
  Tensor forward(Context& ctx, const Tensor& x) override;
  Tensor backward(Context& ctx, const Tensor& dy) override;
  void release_scratch() override { release({&x_, &out_, &dx_, &mean_, &invstd_, &workspace_}); }

 private:
  int64_t groups_, channels_;
  double eps_;
  int64_t hw_ = 1;
  Tensor x_, out_, dx_, mean_, invstd_, workspace_;
};

}  // namespace kiln
