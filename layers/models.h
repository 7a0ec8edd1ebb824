// Model builders: mlp, cnn (the assignment-style MNIST net), cifar. Normalisation, activation
// and dropout are appended through the add_* helpers so every builder honours --norm,
// --norm-position, --groups, --dropout and --activation the same way.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/model.h"

namespace kiln {

struct ModelOptions {
  std::string model = "cnn";        // mlp | cnn | cifar
  int width = 128;                  // mlp hidden width (the cnn and cifar nets have fixed channels)
  int depth = 2;                    // mlp hidden layers
  std::string activation = "relu";  // relu | sigmoid | tanh
  std::string norm = "none";        // none | batch | group
  int groups = 2;                   // group norm groups
  std::string norm_position = "before";  // before | after the activation
  float dropout = 0.0f;             // dropout probability after each block (0: none)
  std::string dropout_kind = "element";  // element | channel (Dropout2d after spatial blocks)
  std::string init = "default";     // default | kaiming | kaiming_normal | xavier | xavier_normal
  int pool_after = 4;               // cnn: conv layers (of 7, the 1x1 is the 4th) before the maxpool
  bool fuse = false;                // Model::set_fusion: ReLUs folded into the conv/norm before them
  void validate() const;
  // Options set away from `defaults` (the app's defaults) that the chosen model or norm never
  // reads (--width on the cnn, --groups without group norm, ...): one sentence each, for a
  // "note:" line, so a setting that changes nothing is said rather than silently dropped.
  std::vector<std::string> ignored(const ModelOptions& defaults) const;
  std::vector<std::string> ignored() const { return ignored(ModelOptions{}); }
  // Every field as text: options that build different models never share a key (a field
  // added above fails to compile in key() until it is added there).
  std::string key() const;
};

// Builds (but does not build()) the model for per-sample input shape `input`.
std::unique_ptr<Model> make_model(const ModelOptions& opts, const Shape& input, int num_classes);
std::unique_ptr<Model> make_mlp(const ModelOptions& opts, const Shape& input, int num_classes);
std::unique_ptr<Model> make_cnn(const ModelOptions& opts, const Shape& input, int num_classes);
std::unique_ptr<Model> make_cifar(const ModelOptions& opts, const Shape& input, int num_classes);

// Block tail after a Linear/Conv with `features` channels: norm and activation in the order
// opts.norm_position says, then dropout. spatial: the input is (C,H,W) (BatchNorm2d, channel
// dropout) rather than (F).
void add_block_tail(Model& m, const ModelOptions& opts, int64_t features, bool spatial);
void add_activation(Model& m, const std::string& activation);
void add_norm(Model& m, const ModelOptions& opts, int64_t features, bool spatial);
void add_dropout(Model& m, const ModelOptions& opts, bool spatial);
// Usage checks of the block-tail options (dropout_kind; norm/dropout ranges are also checked by
// ModelOptions::validate). Called by add_dropout; validate() may call it too.
void validate_block_options(const ModelOptions& opts);

}  // namespace kiln
