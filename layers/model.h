// Model: a Sequential graph of layers over one flat parameter buffer and one flat gradient
// buffer. build() checks every shape, lays the parameters out (each tensor 64-byte aligned),
// initialises them from the seed and binds every layer's views.
#pragma once
#include <string>
#include <vector>

#include "layers/layer.h"

namespace kiln {

// One parameter tensor as the optimizer and checkpoints see it.
struct ParamRef {
  std::string name;  // full state_dict name: "0.weight"; a nested layer's "3.body.1.bias"
  Param* param;
  std::string layer; // layer name ("0") and type, for diagnostics
  std::string layer_type;
};

struct SummaryRow {
  std::string name, description;
  Shape out_shape;
  int64_t params;
  ReceptiveField rf;
};

class Model {
 public:
  explicit Model(Shape input_shape) : input_shape_(std::move(input_shape)) {}
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  Layer& add(LayerPtr layer);  // named by index, like nn.Sequential
  void build(Device device, uint64_t seed);
  bool built() const { return built_; }
  // What build() checks and plans before it allocates anything: every layer's setup (a conv
  // larger than its input, groups not dividing the channels: usage errors naming the layer) and,
  // with fusion on, the ReLUs folded (returned). For a model that is only checked: build()
  // cannot follow it.
  int check_setup();
  // Layer fusion (off by default; set before build): build() lets a Conv2d or BatchNorm directly
  // followed by a ReLU apply it in its own kernels, and the ReLU becomes a pass-through.
  // Parameters, buffers and state_dict names are the same either way.
  void set_fusion(bool on);
  bool fusion() const { return fusion_; }
  int fused_layers() const { return fused_layers_; }  // ReLUs absorbed by build()

  // Unlike a torch module's, the output lives in a buffer of the last layer: valid until the
  // next forward (copy it to keep it). Training or evaluation mode is the context's
  // (ctx.training), shared by every model run on that context.
  Tensor forward(Context& ctx, const Tensor& x);
  // Back-propagates d(loss)/d(output) of the last forward (same shape) and writes the parameter
  // gradients into flat_grads(): they are overwritten, not accumulated as torch's .grad is.
  // Layers before the first with parameters are not run, and that one computes no input
  // gradient (build() clears need_dx up to it): the result is an undefined Tensor. For
  // d(loss)/d(input), set need_dx on each of those layers after build(). A layer after the first
  // with parameters whose need_dx is cleared is an error (the layers before it would keep the last
  // step's gradients).
  Tensor backward(Context& ctx, const Tensor& dlogits);
  // Frees what the layers keep between calls (Layer::release_scratch: outputs, saved inputs,
  // workspaces), grown to the largest batch run so far. Parameters, gradients and buffers stay;
  // the next forward allocates again, and backward needs a forward after this.
  void release_scratch();

  void train(Context& ctx) { ctx.training = true; }
  void eval(Context& ctx) { ctx.training = false; }

  Device device() const { return device_; }
  const Shape& input_shape() const { return input_shape_; }
  const Shape& output_shape() const { return output_shape_; }
  int64_t num_params() const { return num_params_; }
  Tensor& flat_params() { return flat_params_; }
  Tensor& flat_grads() { return flat_grads_; }
  const std::vector<ParamRef>& param_refs() const { return param_refs_; }
  std::vector<Layer*> layers();
  // The first layer, depth-first, that cannot train on a batch of n (min_training_batch), with
  // its state_dict prefix; {"", nullptr} when every layer can. After build().
  std::pair<std::string, const Layer*> layer_refusing_batch(int64_t n) const;
  // Parameters and buffers under PyTorch state_dict names, in registration order.
  std::vector<std::pair<std::string, Tensor>> state_dict();
  std::vector<SummaryRow> summary() const;
  // Fraction of the weights (parameters with decay set: not biases or norm parameters) whose
  // magnitude is below `threshold`: how sparse L1 has made the net. Copies the parameters to the
  // host (synchronous; meant for once per epoch). 0 for a model without such weights.
  double weight_sparsity(float threshold) const;
  std::string summary_table() const;

 private:
  void build_impl(Device device, uint64_t seed);
  void collect(Layer* l, const std::string& prefix);
  void setup_layers();  // shapes, parameters declared, receptive fields, the fusion pass
  void fuse_layers();
  Shape input_shape_, output_shape_;
  std::vector<LayerPtr> layers_;
  std::vector<ParamRef> param_refs_;
  std::vector<std::pair<std::string, Layer*>> all_layers_;  // prefix-named, depth-first
  std::vector<SummaryRow> summary_;
  Tensor flat_params_, flat_grads_;
  int64_t num_params_ = 0;
  Device device_ = Device::CPU;
  bool built_ = false;
  bool set_up_ = false;      // setup_layers() ran (build or check_setup)
  int64_t last_batch_ = -1;  // the batch of the last forward (-1: none yet)
  bool fusion_ = false;
  int fused_layers_ = 0;
  size_t first_trained_ = 0;  // the first layer with parameters (layers_.size(): none has any)
};

}  // namespace kiln
