// Optimizers over a Model's flat parameter/gradient buffers: option checks, the per-tensor
// table (decay / penalty flags), state buffers laid out like the parameters, and dispatch to
// the CPU reference or the fused two-launch CUDA step (kernels/optim). All four optimizers are
// one class: they differ only in OptimHyper::kind and in which state buffers they name.
#include "optim/optimizer.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "engine/buffer.h"
#include "engine/error.h"
#include "engine/numtext.h"
#include "kernels/optim/optim.h"
#include "kernels/optim/optim_math.h"

namespace kiln {

void OptimOptions::validate() const {
  // "--optimizer X: ..." first: the apps name the --config key from it.
  KILN_USAGE_CHECK(name == "sgd" || name == "adam" || name == "adamw" || name == "rmsprop",
                   "--optimizer " << name << ": expected sgd|adam|adamw|rmsprop (lower case)");
  KILN_USAGE_CHECK(std::isfinite(lr) && lr >= 0, "--lr must be >= 0, got " << lr);
  KILN_USAGE_CHECK(std::isfinite(momentum) && momentum >= 0, "--momentum must be >= 0, got " << momentum);
  KILN_USAGE_CHECK(dampening >= 0 && dampening <= 1, "--dampening must be in [0, 1], got " << dampening);
  KILN_USAGE_CHECK(!nesterov || name != "sgd" || (momentum > 0 && dampening == 0),
                   "--nesterov needs --momentum > 0 and zero dampening (momentum " << momentum
                                                                                 << ", dampening " << dampening << ")");
  KILN_USAGE_CHECK(beta1 >= 0 && beta1 < 1, "--beta1 must be in [0, 1), got " << beta1);
  KILN_USAGE_CHECK(beta2 >= 0 && beta2 < 1, "--beta2 must be in [0, 1), got " << beta2);
  KILN_USAGE_CHECK(std::isfinite(eps) && eps > 0, "--eps must be > 0, got " << eps);
  KILN_USAGE_CHECK(alpha >= 0 && alpha <= 1, "--alpha (RMSprop) must be in [0, 1], got " << alpha);
  KILN_USAGE_CHECK(std::isnan(weight_decay) || (std::isfinite(weight_decay) && weight_decay >= 0),
                   "--weight-decay must be >= 0, got " << weight_decay);
  KILN_USAGE_CHECK(std::isfinite(l1) && l1 >= 0, "--l1 must be >= 0, got " << l1);
  KILN_USAGE_CHECK(std::isfinite(l2) && l2 >= 0, "--l2 must be >= 0, got " << l2);
  KILN_USAGE_CHECK(std::isfinite(clipnorm) && clipnorm >= 0,
                   "--clipnorm must be >= 0, got " << clipnorm);
  KILN_USAGE_CHECK(std::isfinite(global_clipnorm) && global_clipnorm >= 0,
                   "--global-clipnorm must be >= 0, got " << global_clipnorm);
  KILN_USAGE_CHECK(std::isfinite(clipvalue) && clipvalue >= 0,
                   "--clipvalue must be >= 0, got " << clipvalue);
  std::vector<std::string> set;
  if (clipnorm > 0) set.push_back("--clipnorm");
  if (global_clipnorm > 0) set.push_back("--global-clipnorm");
  if (clipvalue > 0) set.push_back("--clipvalue");
  if (set.size() > 1) {
    ClassicOStringStream os;
    for (size_t i = 0; i < set.size(); ++i)
      os << (i == 0 ? "" : (i + 1 == set.size() ? " and " : ", ")) << set[i];
    KILN_USAGE_FAIL(os.str() << " are mutually exclusive: choose one clipping mode");
  }
}

namespace {

OptimKind kind_of(const std::string& n) {
  if (n == "adam") return OptimKind::Adam;
  if (n == "adamw") return OptimKind::AdamW;
  if (n == "rmsprop") return OptimKind::RMSprop;
  return OptimKind::SGD;
}

class FlatOptimizer final : public Optimizer {
 public:
  FlatOptimizer(const OptimOptions& o, Model& model) : device_(model.device()) {
    KILN_CHECK(model.built(), "make_optimizer: the model is not built");
    opts_ = o;
    kind_ = kind_of(o.name);
    params_ = model.flat_params();
    grads_ = model.flat_grads();
    bound_params_ = params_.defined() ? params_.data() : nullptr;
    // Without an L1/L2 penalty the flag would only cost time (every element's sign, times 0).
    const bool penalties = o.l1 != 0 || o.l2 != 0;
    for (const ParamRef& r : model.param_refs()) {
      const Param& p = *r.param;
      OptimTensor t;
      t.offset = p.offset;
      t.numel = shape_numel(p.shape);
      t.decay = (o.decay_all || p.decay) ? 1 : 0;
      t.penalize = penalties && (o.penalize_all || p.decay) ? 1 : 0;
      tensors_.push_back(t);
      names_.push_back(r.name);
      shapes_.push_back(p.shape);
    }
    // Every kind keeps s1; s2 for Adam/AdamW (exp_avg_sq) and RMSprop (momentum_buffer, kept
    // even at momentum 0 because a schedule may drive momentum later).
    s1_ = Tensor::zeros(params_.shape(), device_);
    if (kind_ != OptimKind::SGD) s2_ = Tensor::zeros(params_.shape(), device_);
    int T = static_cast<int>(tensors_.size());
    last_.tensor_grad_norms.assign(T, 0.0f);
    last_.tensor_weight_norms.assign(T, 0.0f);
    if (device_ == Device::CUDA) {
      std::vector<OptimChunk> chunks = optim_build_chunks(tensors_);
      layout_ = optim_workspace_layout(static_cast<int>(chunks.size()), T);
      chunks_dev_ = Buffer(std::max<size_t>(1, chunks.size()) * sizeof(OptimChunk), Device::CUDA);
      tensors_dev_ = Buffer(std::max<size_t>(1, tensors_.size()) * sizeof(OptimTensor), Device::CUDA);
      ws_ = Buffer(layout_.bytes, Device::CUDA);
      copy_bytes(chunks_dev_.data(), Device::CUDA, chunks.data(), Device::CPU, chunks.size() * sizeof(OptimChunk));
      copy_bytes(tensors_dev_.data(), Device::CUDA, tensors_.data(), Device::CPU,
                 tensors_.size() * sizeof(OptimTensor));
      zero_bytes(ws_.data(), Device::CUDA, layout_.bytes);
      plan_.chunks = static_cast<const OptimChunk*>(chunks_dev_.data());
      plan_.nchunks = static_cast<int>(chunks.size());
      plan_.tensors = static_cast<const OptimTensor*>(tensors_dev_.data());
      plan_.ntensors = T;
      plan_.workspace = ws_.data();
    }
  }

  void step(Context& ctx, float lr, float momentum) override {
    KILN_CHECK(ctx.device() == device_, "optimizer step: context on " << device_name(ctx.device())
                                                                      << ", parameters on " << device_name(device_));
    OptimHyper h = hyper(lr, momentum);
    h.step = ++steps_;
    float* s2 = s2_.defined() ? s2_.data() : nullptr;
    if (device_ == Device::CPU) {
      OptimStepStats st;
      st.tensor_grad_norm = last_.tensor_grad_norms.data();
      st.tensor_weight_norm = last_.tensor_weight_norms.data();
      optim_step_ref<float>(params_.data(), grads_.data(), s1_.data(), s2, tensors_.data(),
                            static_cast<int>(tensors_.size()), h, &st);
      last_.grad_norm = st.grad_norm;
      last_.l1_penalty = st.l1_penalty;
      last_.l2_penalty = st.l2_penalty;
      last_.nonfinite = st.skipped != 0;
      if (st.skipped && sticky_ == 0) sticky_ = optim_sticky_step(h.step);
      return;
    }
#ifdef KILN_WITH_CUDA
    optim_step(params_.data(), grads_.data(), s1_.data(), s2, plan_, h, ctx.stream());
#else
    KILN_FAIL("optimizer on CUDA in a build without CUDA");
#endif
  }

  StepStats stats(Context& ctx) override {
    if (device_ == Device::CPU) return last_;
    // One copy of [stats .. skip]: they are adjacent in the workspace.
    size_t bytes = layout_.skip + sizeof(int) - layout_.stats;
    std::vector<char> host(bytes);
    const char* src = static_cast<const char*>(ws_.data()) + layout_.stats;
    copy_bytes(host.data(), Device::CPU, src, Device::CUDA, bytes, ctx.stream());
    stream_sync(ctx.stream());
    const float* f = reinterpret_cast<const float*>(host.data());
    size_t T = tensors_.size();
    StepStats s;
    s.grad_norm = f[0];
    s.l1_penalty = f[1];
    s.l2_penalty = f[2];
    s.tensor_grad_norms.assign(f + 3, f + 3 + T);
    s.tensor_weight_norms.assign(f + 3 + T, f + 3 + 2 * T);
    int skip = 0;
    std::memcpy(&skip, host.data() + (layout_.skip - layout_.stats), sizeof(int));
    s.nonfinite = skip != 0;
    return s;
  }

  const int* nonfinite_flag() const override {
    if (device_ == Device::CPU) return &sticky_;
    return reinterpret_cast<const int*>(static_cast<const char*>(ws_.data()) + layout_.sticky);
  }

  void reset_nonfinite_flag(Context& ctx) override {
    if (device_ == Device::CPU) {
      sticky_ = 0;
      return;
    }
    zero_bytes(static_cast<char*>(ws_.data()) + layout_.sticky, Device::CUDA, sizeof(int), ctx.stream());
  }

  std::vector<std::pair<std::string, Tensor>> state() override {
    std::vector<std::pair<std::string, Tensor>> out;
    const char* n1 = kind_ == OptimKind::SGD ? "momentum_buffer"
                     : kind_ == OptimKind::RMSprop ? "square_avg" : "exp_avg";
    const char* n2 = kind_ == OptimKind::RMSprop ? "momentum_buffer" : "exp_avg_sq";
    for (size_t t = 0; t < tensors_.size(); ++t) {
      int64_t b = tensors_[t].offset, e = b + tensors_[t].numel;
      out.emplace_back(names_[t] + "." + n1, s1_.rows(b, e).reshape(shapes_[t]));
      if (s2_.defined()) out.emplace_back(names_[t] + "." + n2, s2_.rows(b, e).reshape(shapes_[t]));
    }
    return out;
  }

  bool supports_device_step() const override { return device_ == Device::CUDA; }

  void device_step_args(float lr, float momentum, OptimStepArgs* out) override {
    OptimHyper h = hyper(lr, momentum);
    h.step = ++steps_;
    *out = optim_step_args(h);
  }

  void step_device(Context& ctx, const OptimStepArgs* dev) override {
    KILN_CHECK(device_ == Device::CUDA && ctx.device() == device_,
               "optimizer step_device: needs parameters and context on cuda");
#ifdef KILN_WITH_CUDA
    float* s2 = s2_.defined() ? s2_.data() : nullptr;
    // kind, clipping and penalties are fixed for the run; lr/momentum/step come from dev.
    optim_step_device(params_.data(), grads_.data(), s1_.data(), s2, plan_, hyper(opts_.lr, -1.0f), dev,
                      ctx.stream());
#else
    (void)dev;
#endif
  }

  int64_t steps_taken() const override { return steps_; }
  void set_steps_taken(int64_t t) override {
    // (Adam's bias correction at a negative step made every weight NaN, with no error)
    KILN_USAGE_CHECK(t >= 0 && t <= kMaxStepCount,
                     "optimizer set_steps_taken(" << t << "): must be in [0, 1e15]");
    steps_ = t;
  }

 private:
  OptimHyper hyper(float lr, float momentum) const {
    // A caller's own training loop passes these each step (make_optimizer checked --lr once):
    // a NaN lr made every weight NaN with no error and no non-finite flag. Not finite is a
    // divergence, as a non-finite loss is (a schedule's gamma > 1 can carry the lr past a
    // float: that run diverged before, and still does); a negative lr is a usage error.
    if (!std::isfinite(lr) || !std::isfinite(momentum))
      KILN_FAIL_KIND_(Diverged, "optimizer step: " << (std::isfinite(lr) ? "momentum " : "lr ")
                                                   << (std::isfinite(lr) ? momentum : lr)
                                                   << " is not finite");
    KILN_USAGE_CHECK(lr >= 0, "optimizer step: lr " << lr << ": must be >= 0");
    OptimHyper h;
    h.kind = kind_;
    h.lr = lr;
    h.momentum = opts_.momentum;
    h.dampening = opts_.dampening;
    h.nesterov = opts_.nesterov ? 1 : 0;
    h.beta1 = opts_.beta1;
    h.beta2 = opts_.beta2;
    h.eps = opts_.eps;
    h.alpha = opts_.alpha;
    h.weight_decay = opts_.weight_decay;
    h.l1 = opts_.l1;
    h.l2 = opts_.l2;
    // A schedule's momentum drives SGD/RMSprop momentum and Adam's beta1 (as OneCycleLR and
    // CyclicLR do in PyTorch).
    if (momentum >= 0) {
      const bool adam = kind_ == OptimKind::Adam || kind_ == OptimKind::AdamW;
      // (beta1 >= 1 made every weight NaN, with no error, as a NaN lr did)
      KILN_USAGE_CHECK(!adam || momentum < 1, "optimizer step: momentum "
                                                  << momentum
                                                  << " is Adam's beta1 here: must be in [0, 1)");
      (adam ? h.beta1 : h.momentum) = momentum;
    }
    if (opts_.clipvalue > 0) {
      h.clip = ClipMode::Value;
      h.clip_value = opts_.clipvalue;
    } else if (opts_.clipnorm > 0) {
      h.clip = ClipMode::Norm;
      h.clip_value = opts_.clipnorm;
    } else if (opts_.global_clipnorm > 0) {
      h.clip = ClipMode::GlobalNorm;
      h.clip_value = opts_.global_clipnorm;
    }
    return h;
  }

  Device device_;
  OptimKind kind_;
  Tensor params_, grads_, s1_, s2_;
  std::vector<OptimTensor> tensors_;
  std::vector<std::string> names_;
  std::vector<Shape> shapes_;
  int64_t steps_ = 0;
  StepStats last_;
  int sticky_ = 0;
  // CUDA only
  OptimWorkspaceLayout layout_;
  Buffer chunks_dev_, tensors_dev_, ws_;
  OptimPlan plan_;
};

}  // namespace

void Optimizer::device_step_args(float, float, OptimStepArgs*) {
  KILN_FAIL("this optimizer has no device-argument step (CUDA graphs)");
}
void Optimizer::step_device(Context&, const OptimStepArgs*) {
  KILN_FAIL("this optimizer has no device-argument step (CUDA graphs)");
}

OptimOptions OptimOptions::resolved() const {
  OptimOptions o = *this;
  if (std::isnan(o.weight_decay)) o.weight_decay = o.name == "adamw" ? 0.01f : 0.0f;
  return o;
}

std::vector<std::string> OptimOptions::ignored(const OptimOptions& d) const {
  std::vector<std::string> out;
  auto num = [](float v) {
    ClassicOStringStream os;
    os << v;
    return os.str();
  };
  const bool sgd = name == "sgd", adam = name == "adam" || name == "adamw", rms = name == "rmsprop";
  if (nesterov != d.nesterov && !sgd)
    out.push_back("--nesterov is ignored: only sgd has Nesterov momentum (" + name + " does not)");
  if (momentum != d.momentum && adam)
    out.push_back("--momentum " + num(momentum) + " is ignored: " + name +
                  " has no momentum option (its first-moment decay is --beta1)");
  // (A cycling schedule that gives sgd a momentum: option_notes in tuning/run.cpp.)
  if (dampening != d.dampening && !sgd)
    out.push_back("--dampening " + num(dampening) +
                  " is ignored: only sgd's momentum has dampening");
  if ((beta1 != d.beta1 || beta2 != d.beta2) && !adam)
    out.push_back("--beta1/--beta2 are ignored: they are adam's and adamw's (" + name +
                  " does not read them)");
  if (alpha != d.alpha && !rms)
    out.push_back("--alpha " + num(alpha) + " is ignored: it is rmsprop's smoothing constant");
  if (eps != d.eps && sgd) out.push_back("--eps " + num(eps) + " is ignored: sgd has no epsilon");
  if (decay_all != d.decay_all && resolved().weight_decay == 0)
    out.push_back("--decay-all is ignored: the weight decay is 0 (" +
                  (std::isnan(weight_decay) ? name + "'s default; --weight-decay sets it)"
                                            : std::string("--weight-decay 0)")));
  if (penalize_all != d.penalize_all && l1 == 0 && l2 == 0)
    out.push_back(
        "--penalize-all is ignored without --l1 or --l2 (it widens their penalty to "
        "biases and norm parameters)");
  return out;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimOptions& opts, Model& model) {
  opts.validate();
  return std::make_unique<FlatOptimizer>(opts.resolved(), model);
}

}  // namespace kiln
