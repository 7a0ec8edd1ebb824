// Block tails for the model builders: normalisation, activation, dropout, in the order the
// options ask for. Dropout layers get their model index as salt so two dropout layers of one
// model draw different masks.
#include "engine/error.h"
#include "layers/activation.h"
#include "layers/dropout.h"
#include "layers/models.h"
#include "layers/norm.h"

namespace kiln {

// --norm, --norm-position, --groups and the --dropout range are checked by ModelOptions::validate
// (models.cpp); what only the block tails know about is checked here.
void validate_block_options(const ModelOptions& opts) {
  KILN_USAGE_CHECK(opts.dropout_kind == "element" || opts.dropout_kind == "channel",
                   "--dropout-kind " << opts.dropout_kind << ": expected element|channel");
}

void add_activation(Model& m, const std::string& activation) {
  m.add(make_activation(activation));
}

void add_norm(Model& m, const ModelOptions& opts, int64_t features, bool spatial) {
  if (opts.norm == "batch") {
    m.add(std::make_unique<BatchNorm>(features, spatial));
  } else if (opts.norm == "group") {
    // Channel divisibility is checked by GroupNorm::setup, which names the layer.
    m.add(std::make_unique<GroupNorm>(opts.groups, features));
  } else {
    KILN_USAGE_CHECK(opts.norm == "none", "--norm " << opts.norm << ": expected none|batch|group");
  }
}

void add_dropout(Model& m, const ModelOptions& opts, bool spatial) {
  validate_block_options(opts);
  if (opts.dropout == 0.0f) return;  // Dropout::setup rejects p outside [0, 1), naming the layer
  const uint64_t salt = m.layers().size();  // the index the layer is about to get
  const bool channel = spatial && opts.dropout_kind == "channel";
  m.add(std::make_unique<Dropout>(opts.dropout, channel, salt));
}

void add_block_tail(Model& m, const ModelOptions& opts, int64_t features, bool spatial) {
  KILN_USAGE_CHECK(opts.norm_position == "before" || opts.norm_position == "after",
                   "--norm-position " << opts.norm_position << ": expected before|after");
  if (opts.norm_position == "before") {
    add_norm(m, opts, features, spatial);
    add_activation(m, opts.activation);
  } else {
    add_activation(m, opts.activation);
    add_norm(m, opts, features, spatial);
  }
  add_dropout(m, opts, spatial);
}

}  // namespace kiln
