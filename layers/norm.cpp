// BatchNorm and GroupNorm layers: shape checks, running statistics, dispatch to the CUDA
// launchers or the CPU references in kernels/norm.
#include "layers/norm.h"

#include <cmath>
#include <sstream>

#include "engine/error.h"
#include "engine/numtext.h"
#include "kernels/norm/norm.h"

namespace kiln {

namespace {
// Per-sample shape (F) or (C,H,W) -> channels and spatial size; usage error naming the layer.
int64_t spatial_size(const Layer& l, const Shape& in, bool spatial, int64_t channels) {
  const char* want = spatial ? "(C, H, W)" : "(F)";
  KILN_USAGE_CHECK(in.size() == (spatial ? 3u : 1u), "layer " << l.name() << " (" << l.describe()
                       << "): expects a per-sample input " << want << ", got " << shape_str(in));
  KILN_USAGE_CHECK(in[0] == channels, "layer " << l.name() << " (" << l.describe() << "): expects "
                       << channels << " channels, got input " << shape_str(in));
  const int64_t hw = spatial ? in[1] * in[2] : 1;
  // One sample must fit the CUDA kernels' 32-bit indexing on every device (so a model that
  // builds runs on both); the batch is checked per CUDA forward (check_batch).
  const std::string range = norm_index_range_error(NormShape{1, channels, hw, 1});
  KILN_USAGE_CHECK(range.empty(), "layer " << l.name() << " (" << l.describe() << "): input "
                                           << shape_str(in) << " (one sample): " << range);
  return hw;
}

// The whole batch on CUDA (the CPU references index in 64 bits).
void check_batch(const Layer& l, const Tensor& x, const NormShape& s) {
  if (x.device() != Device::CUDA) return;
  const std::string range = norm_index_range_error(s);
  KILN_USAGE_CHECK(range.empty(), "layer " << l.name() << " (" << l.describe() << "): input "
                                           << shape_str(x.shape()) << ": " << range << " (use a smaller batch)");
}

// Scratch for the CUDA kernels (the CPU references need none).
void* workspace_for(Tensor& ws, size_t bytes, Device d) {
  if (d != Device::CUDA) return nullptr;
  ensure(ws, {static_cast<int64_t>((bytes + sizeof(double) - 1) / sizeof(float))}, d);
  return ws.data();
}
}  // namespace

// ---- BatchNorm ---------------------------------------------------------------------------------
BatchNorm::BatchNorm(int64_t features, bool spatial, double momentum, double eps)
    : features_(features), spatial_(spatial), momentum_(momentum), eps_(eps) {
  KILN_USAGE_CHECK(features > 0, type() << ": features must be positive, got " << features);
  // (a library caller's eps -1 or NaN, momentum 5, gave NaN outputs or running statistics)
  KILN_USAGE_CHECK(std::isfinite(eps) && eps > 0, type() << ": eps must be > 0, got " << eps);
  KILN_USAGE_CHECK(momentum >= 0 && momentum <= 1,
                   type() << ": momentum must be in [0, 1], got " << momentum);
}

std::string BatchNorm::describe() const { return type() + "(" + std::to_string(features_) + ")"; }

Shape BatchNorm::setup(const Shape& in) {
  hw_ = spatial_size(*this, in, spatial_, features_);
  add_param("weight", {features_}, Init::ones(), false);
  add_param("bias", {features_}, Init::zeros(), false);
  return in;
}

void BatchNorm::bind(Device device) {
  running_mean_ = Tensor::zeros({features_}, device);
  running_var_ = Tensor::from_vector(std::vector<float>(features_, 1.0f), {features_}, device);
  num_batches_tracked_ = Tensor::zeros({2}, device);  // [count mod 2^24, count / 2^24]
}

std::vector<std::pair<std::string, Tensor>> BatchNorm::buffers() {
  return {{"running_mean", running_mean_},
          {"running_var", running_var_},
          {"num_batches_tracked", num_batches_tracked_}};
}

Tensor BatchNorm::forward(Context& ctx, const Tensor& x) {
  KILN_CHECK(running_mean_.defined(), "layer " << name() << " (" << describe() << "): forward before bind");
  const Device d = x.device();
  const NormShape s{x.dim(0), features_, hw_, 1};
  check_batch(*this, x, s);
  KILN_USAGE_CHECK(!ctx.training || s.n * s.hw > 1,
                   "layer " << name() << " (" << describe()
                            << "): training needs more than 1 value per channel, got input "
                            << shape_str(x.shape())
                            << (s.n == 0 ? " (an empty batch: no statistics)"
                                         : " (a batch of 1: if it is an epoch's last, partial "
                                           "batch, change --batch-size or --train-limit so none "
                                           "is left over)"));
  x_ = x;
  ensure(out_, x.shape(), d);
  ensure(mean_, {features_}, d);
  ensure(invstd_, {features_}, d);
  const float* w = value(0).data();
  const float* b = value(1).data();
  trained_forward_ = ctx.training;
  if (ctx.training) {
    void* ws = workspace_for(workspace_, batchnorm_workspace_bytes(s), d);
    (void)ws;  // used by the CUDA path only
    if (d == Device::CUDA) {
#ifdef KILN_WITH_CUDA
      batchnorm_fwd_train(x.data(), w, b, out_.data(), mean_.data(), invstd_.data(),
                          running_mean_.data(), running_var_.data(), num_batches_tracked_.data(),
                          momentum_, eps_, s, ws, ctx.stream(), relu_);
#endif
    } else {
      batchnorm_fwd_train_ref<float>(x.data(), w, b, out_.data(), mean_.data(), invstd_.data(),
                                     running_mean_.data(), running_var_.data(),
                                     num_batches_tracked_.data(), momentum_, eps_, s, nullptr,
                                     relu_);
    }
  } else if (d == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    batchnorm_fwd_eval(x.data(), w, b, running_mean_.data(), running_var_.data(), out_.data(),
                       eps_, s, ctx.stream(), relu_);
#endif
  } else {
    batchnorm_fwd_eval_ref<float>(x.data(), w, b, running_mean_.data(), running_var_.data(),
                                  out_.data(), eps_, s, relu_);
  }
  return out_;
}

Tensor BatchNorm::backward(Context& ctx, const Tensor& dy) {
  const Device d = dy.device();
  const NormShape s{dy.dim(0), features_, hw_, 1};
  check_matching_forward(x_, dy, x_.shape());
  float* dx = nullptr;
  if (need_dx) {
    ensure(dx_, dy.shape(), d);
    dx = dx_.data();
  }
  void* ws = workspace_for(workspace_, batchnorm_workspace_bytes(s), d);
  (void)ws;
  (void)ctx;
  const bool train = trained_forward_;
  const float* relu_y = relu_ ? out_.data() : nullptr;  // the fused ReLU's mask: our own output
  if (d == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    if (!train) batchnorm_invstd(running_var_.data(), invstd_.data(), eps_, features_, ctx.stream());
    batchnorm_bwd(x_.data(), dy.data(), value(0).data(), train ? mean_.data() : running_mean_.data(),
                  invstd_.data(), dx, grad(0).data(), grad(1).data(), train, s, ws,
                  ctx.stream(), relu_y);
#endif
  } else {
    if (!train) batchnorm_invstd_ref<float>(running_var_.data(), invstd_.data(), eps_, features_);
    batchnorm_bwd_ref<float>(x_.data(), dy.data(), value(0).data(),
                             train ? mean_.data() : running_mean_.data(), invstd_.data(), dx,
                             grad(0).data(), grad(1).data(), train, s, nullptr, relu_y);
  }
  return need_dx ? dx_ : Tensor();
}

// ---- GroupNorm ---------------------------------------------------------------------------------
GroupNorm::GroupNorm(int64_t groups, int64_t channels, double eps)
    : groups_(groups), channels_(channels), eps_(eps) {
  KILN_USAGE_CHECK(std::isfinite(eps) && eps > 0, "GroupNorm: eps must be > 0, got " << eps);
}

std::string GroupNorm::describe() const {
  ClassicOStringStream os;
  os << "GroupNorm(" << groups_ << " groups, " << channels_ << " channels)";
  return os.str();
}

Shape GroupNorm::setup(const Shape& in) {
  KILN_USAGE_CHECK(groups_ > 0, "layer " << name() << " (" << describe()
                                         << "): the number of groups must be positive");
  KILN_USAGE_CHECK(channels_ % groups_ == 0,
                   "layer " << name() << " (" << describe() << "): " << channels_
                            << " channels are not divisible by --groups " << groups_);
  hw_ = spatial_size(*this, in, in.size() == 3, channels_);
  // One value per group normalises to 0 whatever the input: the layer would output its bias
  // and pass no gradient back. PyTorch raises only when the batch holds one sample too.
  KILN_USAGE_CHECK(channels_ / groups_ * hw_ > 1,
                   "layer " << name() << " (" << describe() << "): input " << shape_str(in)
                            << " leaves 1 value per group, which normalises to 0 (the output "
                               "would be the bias alone); "
                            << (groups_ > 1 ? "use fewer --groups" : "use a wider layer"));
  add_param("weight", {channels_}, Init::ones(), false);
  add_param("bias", {channels_}, Init::zeros(), false);
  return in;
}

Tensor GroupNorm::forward(Context& ctx, const Tensor& x) {
  const Device d = x.device();
  const NormShape s{x.dim(0), channels_, hw_, groups_};
  check_batch(*this, x, s);
  x_ = x;
  ensure(out_, x.shape(), d);
  ensure(mean_, {s.n * groups_}, d);
  ensure(invstd_, {s.n * groups_}, d);
  void* ws = workspace_for(workspace_, groupnorm_workspace_bytes(s), d);
  (void)ws;
  if (d == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    groupnorm_fwd(x.data(), value(0).data(), value(1).data(), out_.data(), mean_.data(),
                  invstd_.data(), eps_, s, ws, ctx.stream());
#endif
  } else {
    groupnorm_fwd_ref<float>(x.data(), value(0).data(), value(1).data(), out_.data(),
                             mean_.data(), invstd_.data(), eps_, s);
  }
  (void)ctx;
  return out_;
}

Tensor GroupNorm::backward(Context& ctx, const Tensor& dy) {
  const Device d = dy.device();
  const NormShape s{dy.dim(0), channels_, hw_, groups_};
  check_matching_forward(x_, dy, x_.shape());
  float* dx = nullptr;
  if (need_dx) {
    ensure(dx_, dy.shape(), d);
    dx = dx_.data();
  }
  void* ws = workspace_for(workspace_, groupnorm_workspace_bytes(s), d);
  (void)ws;
  if (d == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    groupnorm_bwd(x_.data(), dy.data(), value(0).data(), mean_.data(), invstd_.data(), dx,
                  grad(0).data(), grad(1).data(), s, ws, ctx.stream());
#endif
  } else {
    groupnorm_bwd_ref<float>(x_.data(), dy.data(), value(0).data(), mean_.data(),
                             invstd_.data(), dx, grad(0).data(), grad(1).data(), s, nullptr);
  }
  (void)ctx;
  return need_dx ? dx_ : Tensor();
}

}  // namespace kiln
