// Layer: the unit of the model graph. A layer checks its input shape once (setup), declares its
// parameters (views into the Model's one flat parameter buffer and one flat gradient buffer, so
// the optimizer updates everything in one launch), and runs forward/backward on the device of
// the tensors it is given, dispatching to the CPU reference or to the CUDA launchers.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/context.h"
#include "engine/error.h"
#include "engine/tensor.h"

namespace kiln {

// How a parameter starts. Bounds/stds are computed by the layer (PyTorch defaults unless the
// model asks for another scheme).
struct Init {
  enum Kind { Zeros, Ones, Uniform, Normal } kind = Zeros;
  double a = 0;  // Uniform: bound (U(-a, a)); Normal: std
  static Init zeros() { return {Zeros, 0}; }
  static Init ones() { return {Ones, 0}; }
  static Init uniform(double bound) { return {Uniform, bound}; }
  static Init normal(double std) { return {Normal, std}; }
};

// Weight initialisation schemes selectable per model (--init).
enum class InitScheme { Default, KaimingUniform, KaimingNormal, XavierUniform, XavierNormal };
InitScheme parse_init_scheme(const std::string& s);
// The Init for a weight with these fans: Default is PyTorch's (kaiming_uniform with a=sqrt(5),
// i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))); Kaiming* use the ReLU gain sqrt(2).
Init weight_init(InitScheme s, int64_t fan_in, int64_t fan_out);

struct Param {
  std::string name;  // local name as in PyTorch ("weight", "bias")
  Shape shape;
  Init init;
  bool decay = true;  // weight decay / L1 / L2 apply (weights yes; biases, norm params no)
  Tensor value;       // view into Model::flat_params()
  Tensor grad;        // view into Model::flat_grads()
  int64_t offset = 0; // element offset in the flat buffers
};

// Receptive field bookkeeping: size of the input window one output element sees, and the
// distance in input pixels between neighbouring outputs; `whole` once an output depends on
// every input pixel (a Linear layer over flattened features: the summary prints "all").
struct ReceptiveField {
  int64_t size = 1;
  int64_t jump = 1;
  bool whole = false;
};

class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string type() const = 0;                   // "Linear"
  virtual std::string describe() const { return type(); } // "Linear(784 -> 128)"

  // Checks the per-sample input shape (no batch dimension: {F} or {C,H,W}), declares
  // parameters with add_param, returns the per-sample output shape. A bad shape is a usage
  // error naming the layer (name()) and both shapes.
  virtual Shape setup(const Shape& in) = 0;
  // Called once after parameters are bound, with the model's device: allocate buffers
  // (running statistics) here.
  virtual void bind(Device /*device*/) {}

  // x: [N, ...in]. Saves what backward needs. Returns [N, ...out]; the returned tensor is owned
  // by the layer and valid until its next forward.
  virtual Tensor forward(Context& ctx, const Tensor& x) = 0;
  // dy: [N, ...out]. Writes (overwrites) the parameter gradients and returns dx, or an
  // undefined Tensor when need_dx is false (Model::build clears it up to and including the
  // first layer with parameters; Model::backward stops at the first undefined gradient).
  virtual Tensor backward(Context& ctx, const Tensor& dy) = 0;

  virtual ReceptiveField receptive_field(ReceptiveField in) const { return in; }
  // The smallest batch the layer can train on (after setup): 1, or 2 for batch norm without
  // spatial dimensions (one value per channel has no variance; torch's BatchNorm1d raises).
  // The trainer checks every epoch's last, partial batch against it before the first step.
  virtual int64_t min_training_batch() const { return 1; }
  // Fusion pass (Model::build with fusion on): asks the layer to apply the ReLU that follows it
  // to its own output, and to mask dy by (its output > 0) in backward. Returns whether it did;
  // the ReLU layer then becomes a pass-through. Called after setup, before bind.
  virtual bool fuse_relu() { return false; }
  // Nested layers, for a composite layer (none of kiln's layers has any yet: no residual block
  // exists); their parameters are named "<child>.<param>".
  virtual std::vector<std::pair<std::string, Layer*>> children() { return {}; }
  // Non-trainable state saved in checkpoints under PyTorch's names (running_mean, ...).
  virtual std::vector<std::pair<std::string, Tensor>> buffers() { return {}; }
  // Lets go of what the layer keeps between calls (its output, saved input, dx, workspaces; not
  // parameters or buffers()), so that memory can be freed: buffers grow to the largest batch
  // seen and are kept. The next forward allocates again; backward needs a forward after this.
  virtual void release_scratch() {}

  std::vector<Param>& params() { return params_; }
  const std::string& name() const { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }
  bool need_dx = true;

 protected:
  Param& add_param(const std::string& name, const Shape& shape, Init init, bool decay) {
    params_.push_back(Param{name, shape, init, decay, {}, {}, 0});
    return params_.back();
  }
  // Index lookups stay valid after Model::build binds the views.
  Tensor& value(size_t i) { return params_[i].value; }
  Tensor& grad(size_t i) { return params_[i].grad; }
  static void release(std::initializer_list<Tensor*> ts) {
    for (Tensor* t : ts) *t = Tensor();
  }
  // A forward's check of its input x against the per-sample shape setup() was given: an error
  // naming the layer and both shapes, not a read past a narrower input.
  void check_forward_input(const Tensor& x, const Shape& per_sample) const {
    bool ok = x.ndim() == static_cast<int>(per_sample.size()) + 1;
    for (size_t i = 0; ok && i < per_sample.size(); ++i)
      ok = x.dim(static_cast<int>(i) + 1) == per_sample[i];
    if (ok) return;
    std::string setup = "[N";  // "[N, 6]"
    for (int64_t d : per_sample) setup += ", " + std::to_string(d);
    setup += "]";
    KILN_FAIL("layer " << name() << " (" << describe() << "): input " << shape_str(x.shape())
                       << " does not match setup " << setup);
  }
  // A backward's check of what its forward kept (`saved`: its input or output) and of dy against
  // that forward's output shape `want`: a backward with no forward since the layer was built or
  // since release_scratch(), or for another batch, is an error naming the layer, not a read of
  // freed or foreign memory.
  void check_matching_forward(const Tensor& saved, const Tensor& dy, const Shape& want) const {
    KILN_CHECK(saved.defined(), "layer " << name() << " (" << describe()
                                         << "): backward without a matching forward (none since "
                                            "the layer was built or since release_scratch())");
    KILN_CHECK(dy.shape() == want, "layer " << name() << " (" << describe() << "): gradient "
                                            << shape_str(dy.shape())
                                            << " does not match the output " << shape_str(want)
                                            << " of its last forward");
  }

 private:
  std::vector<Param> params_;
  std::string name_;
};

using LayerPtr = std::unique_ptr<Layer>;

}  // namespace kiln
