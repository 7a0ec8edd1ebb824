// Model: shape checking, flat parameter layout, initialisation, forward/backward, summary.
#include "layers/model.h"

#include <unistd.h>

#include <cmath>
#include <iomanip>
#include <random>
#include <sstream>

#include "engine/error.h"
#include "engine/numtext.h"
#include "layers/activation.h"

namespace kiln {

InitScheme parse_init_scheme(const std::string& s) {
  if (s == "default" || s == "pytorch") return InitScheme::Default;
  // Keras' uniform names are the same distributions; its he_normal and glorot_normal are
  // truncated normals, which kiln does not have: refused, not quietly given torch's plain normal.
  if (s == "kaiming" || s == "kaiming_uniform" || s == "he" || s == "he_uniform")
    return InitScheme::KaimingUniform;
  if (s == "kaiming_normal") return InitScheme::KaimingNormal;
  if (s == "xavier" || s == "xavier_uniform" || s == "glorot" || s == "glorot_uniform")
    return InitScheme::XavierUniform;
  if (s == "xavier_normal") return InitScheme::XavierNormal;
  KILN_USAGE_CHECK(s != "he_normal" && s != "glorot_normal",
                   "unknown init '" << s << "': Keras' " << s
                                    << " is a truncated normal, which kiln does not have; "
                                    << (s == "he_normal" ? "kaiming_normal" : "xavier_normal")
                                    << " is torch's plain normal of the same std");
  KILN_USAGE_FAIL("unknown init '"
                  << s
                  << "' (expected default|kaiming|kaiming_normal|xavier|xavier_normal;"
                     " Keras' he_uniform and glorot_uniform are kaiming and xavier)");
}

Init weight_init(InitScheme s, int64_t fan_in, int64_t fan_out) {
  double fi = static_cast<double>(std::max<int64_t>(fan_in, 1));
  double fo = static_cast<double>(std::max<int64_t>(fan_out, 1));
  switch (s) {
    case InitScheme::Default: return Init::uniform(1.0 / std::sqrt(fi));  // kaiming_uniform(a=sqrt 5)
    case InitScheme::KaimingUniform: return Init::uniform(std::sqrt(6.0 / fi));  // gain sqrt 2
    case InitScheme::KaimingNormal: return Init::normal(std::sqrt(2.0 / fi));
    case InitScheme::XavierUniform: return Init::uniform(std::sqrt(6.0 / (fi + fo)));
    case InitScheme::XavierNormal: return Init::normal(std::sqrt(2.0 / (fi + fo)));
  }
  return Init::zeros();
}

Layer& Model::add(LayerPtr layer) {
  KILN_CHECK(!built_, "Model::add after build");
  KILN_CHECK(layer, "Model::add: a null layer");
  layer->set_name(std::to_string(layers_.size()));
  layers_.push_back(std::move(layer));
  return *layers_.back();
}

std::vector<Layer*> Model::layers() {
  std::vector<Layer*> v;
  for (auto& l : layers_) v.push_back(l.get());
  return v;
}

std::pair<std::string, const Layer*> Model::layer_refusing_batch(int64_t n) const {
  for (const auto& [prefix, l] : all_layers_)
    if (n < l->min_training_batch()) return {prefix, l};
  return {"", nullptr};
}

void Model::collect(Layer* l, const std::string& prefix) {
  all_layers_.emplace_back(prefix, l);
  for (auto& p : l->params()) param_refs_.push_back({prefix + "." + p.name, &p, prefix, l->type()});
  for (auto& [cname, child] : l->children()) collect(child, prefix + "." + cname);
}

int Model::check_setup() {
  setup_layers();
  return fused_layers_;
}

void Model::setup_layers() {
  KILN_CHECK(!built_ && !set_up_,
             "Model: build or check_setup called twice (or again after one that failed: the "
             "layers are half set up; make the model anew)");
  KILN_USAGE_CHECK(!layers_.empty(), "model has no layers");
  for (int64_t d : input_shape_)
    KILN_USAGE_CHECK(d > 0, "model input shape " << shape_str(input_shape_)
                                                 << ": every dimension must be positive");
  set_up_ = true;
  Shape s = input_shape_;
  ReceptiveField rf;
  for (auto& l : layers_) {
    s = l->setup(s);
    rf = l->receptive_field(rf);
    int64_t n = 0;
    std::vector<std::pair<std::string, Layer*>> stack{{l->name(), l.get()}};
    while (!stack.empty()) {
      auto [nm, cur] = stack.back();
      stack.pop_back();
      for (auto& p : cur->params()) n += shape_numel(p.shape);
      for (auto& c : cur->children()) stack.push_back(c);
    }
    summary_.push_back({l->name(), l->describe(), s, n, rf});
  }
  output_shape_ = s;
  if (fusion_) fuse_layers();
}

void Model::build(Device device, uint64_t seed) {
  with_memory_context(
      [&] { return "building the model (" + std::to_string(num_params_) + " parameters)"; },
      [&] { build_impl(device, seed); });
}

void Model::build_impl(Device device, uint64_t seed) {
  KILN_CHECK(!built_, "Model::build called twice");
  device_ = device;
  // 1. shapes, parameters declared, receptive field
  setup_layers();
  for (auto& l : layers_) collect(l.get(), l->name());
  // No input gradient is needed up to and including the first layer with parameters (the mlp's
  // Flatten and first Linear, a cnn that pools first); backward() stops there. setup_layers
  // counted each layer's parameters, its children's included (summary_, one row a layer).
  first_trained_ = layers_.size();
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->need_dx = false;
    if (summary_[i].params > 0) {
      first_trained_ = i;
      break;
    }
  }

  // 2. flat layout: every tensor starts on a 64-byte boundary (16 floats) for vector access
  int64_t off = 0;
  for (auto& r : param_refs_) {
    r.param->offset = off;
    off += (shape_numel(r.param->shape) + 15) / 16 * 16;
  }
  num_params_ = 0;
  for (auto& r : param_refs_) num_params_ += shape_numel(r.param->shape);
  // On the CPU: weights, gradients and up to two optimizer moments, 4 float copies (a CUDA model
  // stages one copy here; cudaMalloc fails cleanly past the GPU's memory). Past the machine's
  // memory an allocation may still succeed (overcommit) and the process be killed when it
  // touches the pages; say it now, naming the largest layer.
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  const double copies = device == Device::CPU ? 4.0 : 1.0;
  const double need = copies * 4.0 * static_cast<double>(off), have = double(pages) * double(page);
  if (pages > 0 && page > 0 && need > have) {
    const SummaryRow* big = &summary_.front();
    for (const auto& row : summary_)
      if (row.params > big->params) big = &row;
    KILN_USAGE_FAIL("the model has "
                    << num_params_ << " parameters: training needs about " << std::fixed
                    << std::setprecision(1) << need / (1 << 30) << " GiB ("
                    << (device == Device::CPU ? "weights, gradients, optimizer state"
                                              : "the weights' host copy")
                    << "), more than this "
                       "machine's "
                    << have / (1 << 30) << " GiB; the largest is layer " << big->name << " ("
                    << big->description << ", " << big->params << " parameters)");
  }

  // 3. initialise on the host from the seed, in registration order, then upload once (so CPU
  // and CUDA models start from the same weights). std::uniform_real_distribution and
  // std::normal_distribution are implementation-defined: a seed gives the same weights with the
  // same C++ standard library (libstdc++ in every build here), not across libraries.
  std::vector<float> host(static_cast<size_t>(off), 0.0f);
  std::mt19937_64 gen(seed);
  for (auto& r : param_refs_) {
    Param& p = *r.param;
    float* dst = host.data() + p.offset;
    int64_t n = shape_numel(p.shape);
    switch (p.init.kind) {
      case Init::Zeros: break;
      case Init::Ones: std::fill(dst, dst + n, 1.0f); break;
      case Init::Uniform: {
        std::uniform_real_distribution<double> u(-p.init.a, p.init.a);
        for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(u(gen));
        break;
      }
      case Init::Normal: {
        std::normal_distribution<double> g(0.0, p.init.a);
        for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(g(gen));
        break;
      }
    }
  }
  flat_params_ = Tensor::from_vector(host, {off}, device);
  flat_grads_ = Tensor::zeros({off}, device);
  for (auto& r : param_refs_) {
    Param& p = *r.param;
    int64_t n = shape_numel(p.shape);
    p.value = flat_params_.rows(p.offset, p.offset + n).reshape(p.shape);
    p.grad = flat_grads_.rows(p.offset, p.offset + n).reshape(p.shape);
  }
  for (auto& [nm, l] : all_layers_) l->bind(device);
  built_ = true;
}

void Model::set_fusion(bool on) {
  KILN_CHECK(!built_, "Model::set_fusion after build");
  fusion_ = on;
}

// A top-level layer directly followed by a ReLU absorbs it when it can (Layer::fuse_relu). Runs
// after setup (shapes known) and before the parameters are laid out; activations have no
// parameters, so the layout does not change.
void Model::fuse_layers() {
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    auto* act = dynamic_cast<Activation*>(layers_[i + 1].get());
    if (!act || act->act() != Act::ReLU || act->fused() || !layers_[i]->fuse_relu()) continue;
    act->fuse_into(layers_[i]->name());
    summary_[i + 1].description = act->describe();
    ++fused_layers_;
  }
}

Tensor Model::forward(Context& ctx, const Tensor& x) {
  KILN_CHECK(built_, "Model::forward before build");
  Shape want = input_shape_;
  want.insert(want.begin(), x.ndim() ? x.dim(0) : 0);
  KILN_USAGE_CHECK(x.shape() == want, "model input: expected " << shape_str(want) << ", got "
                                                               << shape_str(x.shape()));
  KILN_CHECK(x.device() == device_, "model input on " << device_name(x.device())
                                                      << ", model on " << device_name(device_));
  Tensor h = x;
  last_batch_ = -1;  // a layer that throws leaves no forward to differentiate
  for (auto& l : layers_) h = l->forward(ctx, h);
  last_batch_ = x.dim(0);
  return h;
}

void Model::release_scratch() {
  for (auto& named : all_layers_) named.second->release_scratch();
  last_batch_ = -1;
}

Tensor Model::backward(Context& ctx, const Tensor& dlogits) {
  KILN_CHECK(built_, "Model::backward before build");
  KILN_CHECK(last_batch_ >= 0, "Model::backward before a forward (it differentiates the last one)");
  Shape want = output_shape_;
  want.insert(want.begin(), last_batch_);
  KILN_USAGE_CHECK(dlogits.shape() == want, "model backward: the output gradient is "
                                                << shape_str(dlogits.shape())
                                                << ", the last forward's output was "
                                                << shape_str(want));
  KILN_CHECK(dlogits.device() == device_, "model backward: gradient on "
                                              << device_name(dlogits.device()) << ", model on "
                                              << device_name(device_));
  Tensor d = dlogits;
  for (size_t i = layers_.size(); i-- > 0;) {
    if (!d.defined()) {
      // Nothing below needs a gradient, unless a layer with parameters is still to come.
      KILN_CHECK(i < first_trained_,
                 "model backward: layer "
                     << layers_[i + 1]->name() << " (" << layers_[i + 1]->describe()
                     << ") computes no input gradient (need_dx is false), but layer "
                     << layers_[first_trained_]->name() << " before it has parameters");
      break;
    }
    d = layers_[i]->backward(ctx, d);
  }
  return d;
}

std::vector<std::pair<std::string, Tensor>> Model::state_dict() {
  std::vector<std::pair<std::string, Tensor>> sd;
  for (auto& [prefix, l] : all_layers_) {
    for (auto& p : l->params()) sd.emplace_back(prefix + "." + p.name, p.value);
    for (auto& [bn, t] : l->buffers()) sd.emplace_back(prefix + "." + bn, t);
  }
  return sd;
}

std::vector<SummaryRow> Model::summary() const { return summary_; }

double Model::weight_sparsity(float threshold) const {
  KILN_CHECK(built_, "model: weight_sparsity() before build()");
  std::vector<float> w = flat_params_.to_vector();
  int64_t small = 0, total = 0;
  for (const auto& r : param_refs_) {
    if (!r.param->decay) continue;
    const int64_t n = shape_numel(r.param->shape);
    for (int64_t i = r.param->offset; i < r.param->offset + n; ++i)
      small += std::fabs(w[static_cast<size_t>(i)]) < threshold;
    total += n;
  }
  return total > 0 ? static_cast<double>(small) / static_cast<double>(total) : 0.0;
}

std::string Model::summary_table() const {
  ClassicOStringStream os;
  os << std::left << std::setw(6) << "layer" << std::setw(40) << "type" << std::setw(18) << "output"
     << std::right << std::setw(10) << "params" << std::setw(8) << "RF" << std::setw(7) << "jump" << "\n";
  os << std::left << std::setw(6) << "input" << std::setw(40) << "" << std::setw(18)
     << shape_str(input_shape_) << std::right << std::setw(10) << 0 << std::setw(8) << 1
     << std::setw(7) << 1 << "\n";
  for (const auto& r : summary_) {
    os << std::left << std::setw(6) << r.name << std::setw(40) << r.description << std::setw(18)
       << shape_str(r.out_shape) << std::right << std::setw(10) << r.params << std::setw(8)
       << (r.rf.whole ? std::string("all") : std::to_string(r.rf.size)) << std::setw(7) << r.rf.jump
       << "\n";
  }
  int64_t total = 0;  // (each row counts its layer's parameters: also before build())
  for (const auto& r : summary_) total += r.params;
  os << "total parameters: " << total << "\n";
  return os.str();
}

}  // namespace kiln
