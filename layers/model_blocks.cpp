// Block tails for the model builders: normalisation, activation, dropout, in the order the
// options ask for. (Batch/group norm and dropout layers arrive with their kernels.)
#include "engine/error.h"
#include "layers/activation.h"
#include "layers/models.h"

namespace kiln {

void add_activation(Model& m, const std::string& activation) {
  m.add(make_activation(activation));
}

void add_norm(Model& m, const ModelOptions& opts, int64_t features, bool spatial) {
  (void)m; (void)features; (void)spatial;
  KILN_USAGE_CHECK(opts.norm == "none", "--norm " << opts.norm << " is not available in this build");
}

void add_dropout(Model& m, const ModelOptions& opts, bool spatial) {
  (void)m; (void)spatial;
  KILN_USAGE_CHECK(opts.dropout == 0.0f, "--dropout is not available in this build");
}

void add_block_tail(Model& m, const ModelOptions& opts, int64_t features, bool spatial) {
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
