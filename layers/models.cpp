// make_model / make_mlp and option validation. The convolutional builders live in
// models_cnn.cpp; the block tails (norm, activation, dropout) in model_blocks.cpp.
#include "layers/models.h"

#include <locale>
#include <sstream>

#include "engine/error.h"
#include "engine/numtext.h"
#include "kernels/activation/activation.h"
#include "layers/activation.h"
#include "layers/linear.h"

namespace kiln {

void ModelOptions::validate() const {
  KILN_USAGE_CHECK(model == "mlp" || model == "cnn" || model == "cifar",
                   "--model " << model << ": expected mlp|cnn|cifar");
  KILN_USAGE_CHECK(width > 0 && width <= 65536, "--width " << width << ": must be in [1, 65536]");
  KILN_USAGE_CHECK(depth >= 0 && depth <= 1000, "--depth " << depth << ": must be in [0, 1000]");
  try {  // (named by their flags: a config file's key is then found from the message)
    parse_act(activation);
  } catch (const Error& e) {
    throw e.prefixed("--activation: ");
  }
  try {
    parse_init_scheme(init);
  } catch (const Error& e) {
    throw e.prefixed("--init: ");
  }
  KILN_USAGE_CHECK(norm_position == "before" || norm_position == "after",
                   "--norm-position " << norm_position << ": expected before|after");
  KILN_USAGE_CHECK(norm == "none" || norm == "batch" || norm == "group",
                   "--norm " << norm << ": expected none|batch|group");
  KILN_USAGE_CHECK(groups >= 1, "--groups " << groups << ": must be >= 1");
  KILN_USAGE_CHECK(dropout >= 0.0f && dropout < 1.0f, "--dropout " << dropout << ": must be in [0, 1)");
  KILN_USAGE_CHECK(pool_after >= 0 && pool_after <= 7,
                   "--pool-after " << pool_after << ": expected 0..7 (conv layers of the cnn before its "
                                   << "maxpool; 0 pools the input)");
  validate_block_options(*this);
}

std::string ModelOptions::key() const {
  const auto& [m, w, d, act, nrm, g, pos, drop, dk, ini, pa, fu] = *this;  // every field
  ClassicOStringStream os;
  os << m << '|' << w << '|' << d << '|' << act << '|' << nrm << '|' << g << '|' << pos << '|'
     << std::hexfloat << drop << '|' << dk << '|' << ini << '|' << pa << '|' << fu;
  return os.str();
}

std::vector<std::string> ModelOptions::ignored(const ModelOptions& d) const {
  std::vector<std::string> out;
  if (model != "mlp" && width != d.width)
    out.push_back("--width " + std::to_string(width) + " is ignored: it sets the mlp's hidden width; the " + model +
                  " net has fixed channel counts");
  if (model != "mlp" && depth != d.depth)
    out.push_back("--depth " + std::to_string(depth) + " is ignored: it sets the mlp's hidden layers; the " + model +
                  " net has a fixed depth");
  if (model != "cnn" && pool_after != d.pool_after)
    out.push_back("--pool-after " + std::to_string(pool_after) +
                  " is ignored: it places the cnn's maxpool; the " + model +
                  (model == "mlp" ? " has no pooling" : " net has its own pooling"));
  // One Linear layer: no hidden block to shape. Everything that shapes one is named here
  // (--groups, --norm-position and --dropout-kind were dropped without a word, or said to be
  // ignored for another reason); the notes below are for the models that have blocks.
  if (model == "mlp" && depth == 0) {
    std::string given;
    if (width != d.width) given += " --width";
    if (activation != d.activation) given += " --activation";
    if (norm != d.norm) given += " --norm";
    if (groups != d.groups) given += " --groups";
    if (norm_position != d.norm_position) given += " --norm-position";
    if (dropout != d.dropout) given += " --dropout";
    if (dropout_kind != d.dropout_kind) given += " --dropout-kind";
    if (!given.empty())
      out.push_back(given.substr(1) + (given.find(' ', 1) == std::string::npos ? " is" : " are") +
                    " ignored: --depth 0 makes the mlp one Linear layer, with no hidden block");
    return out;
  }
  if (norm != "group" && groups != d.groups)
    out.push_back("--groups " + std::to_string(groups) + " is ignored without --norm group");
  if (norm == "none" && norm_position != d.norm_position)
    out.push_back("--norm-position " + norm_position + " is ignored without --norm batch|group");
  if (dropout_kind != d.dropout_kind && dropout == 0.0f)
    out.push_back("--dropout-kind " + dropout_kind + " is ignored without --dropout");
  else if (dropout_kind == "channel" && model == "mlp")
    out.push_back(
        "--dropout-kind channel is ignored: the mlp has no channels (its dropout stays "
        "element-wise)");
  return out;
}

std::unique_ptr<Model> make_model(const ModelOptions& opts, const Shape& input, int num_classes) {
  opts.validate();
  std::unique_ptr<Model> m = opts.model == "mlp"   ? make_mlp(opts, input, num_classes)
                             : opts.model == "cnn" ? make_cnn(opts, input, num_classes)
                                                   : make_cifar(opts, input, num_classes);
  m->set_fusion(opts.fuse);
  return m;
}

// Flatten, then `depth` hidden Linear(width) blocks, then Linear(num_classes).
std::unique_ptr<Model> make_mlp(const ModelOptions& opts, const Shape& input, int num_classes) {
  auto m = std::make_unique<Model>(input);
  InitScheme init = parse_init_scheme(opts.init);
  m->add(std::make_unique<Flatten>());
  int64_t f = shape_numel(input);
  for (int i = 0; i < opts.depth; ++i) {
    m->add(std::make_unique<Linear>(f, opts.width, true, init));
    add_block_tail(*m, opts, opts.width, false);
    f = opts.width;
  }
  m->add(std::make_unique<Linear>(f, num_classes, true, init));
  return m;
}

}  // namespace kiln
