// kiln_eval: evaluates a checkpoint on a dataset's test split (or, with --split train, on the
// training samples the checkpoint's run used: its --train-limit less any --val-split, in dataset
// order, before any augmentation; --split val: the run's validation split) and optionally writes
// the logits and the exact (normalised) inputs (safetensors: "logits" F32 [N, classes], "labels"
// I64 [N], "images" F32 [N, C, H, W]) for comparison with another framework
// (scripts/check_pytorch_interop.py, check_pytorch_training.py). The model is rebuilt from the
// checkpoint's own config metadata, so only the data location needs to be given.
//   kiln_eval CHECKPOINT [--data-dir DIR] [--split test|train|val] [--test-limit N]
//             [--device cpu|cuda|auto] [--threads N] [--dump-logits FILE]   (--help says more)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "apps/app_common.h"
#include "engine/checkpoint.h"
#include "engine/json.h"
#include "engine/parallel.h"
#include "kernels/loss/loss_math.h"
#include "tuning/options.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"

using namespace kiln;  // an app, not the library

namespace {

const std::vector<std::string> kFlags = {"--dump-logits", "--data-dir",   "--device",
                                         "--split",       "--test-limit", "--threads"};

const char* kUsage =
    "usage: kiln_eval CHECKPOINT [--data-dir DIR] [--split test|train|val] "
    "[--test-limit N] [--device cpu|cuda|auto] [--threads N] [--dump-logits FILE]\n"
    "Scores a checkpoint: rebuilds its model from the options the run recorded, prints\n"
    "'CHECKPOINT on DATASET SPLIT (N samples): acc=X'.\n"
    "Exit codes: 0 ok, 1 runtime error (a bad file), 2 usage error.\n\noptions:\n"
    "  --data-dir DIR        where the dataset is (default: the run's recorded data-dir)\n"
    "  --split test|train|val  the test set (default), or the run's own training rows\n"
    "                        (its --train-limit less any --val-split, in dataset order,\n"
    "                        before augmentation) or validation split\n"
    "  --test-limit N        score the first N test samples (0, the default: all)\n"
    "  --device cpu|cuda|auto  where to run (default: cpu)\n"
    "  --threads N           CPU threads (default: 0, every CPU this process may use)\n"
    "  --dump-logits FILE    also write the logits, labels and the exact normalised "
    "inputs\n"
    "                        (safetensors: logits F32 [N, classes], labels I64 [N],\n"
    "                        images F32 [N, C, H, W])\n";

struct EvalArgs {
  std::string ckpt, dump, data_dir, device = "cpu", split = "test";
  int64_t limit = 0;
  int threads = 0;
  bool help = false;
};

// The command line, checked before the checkpoint is read (the training apps' rules and words),
// so a bad flag is a usage error whatever the file.
EvalArgs parse_eval_args(int argc, char** argv) {
  EvalArgs e;
  for (int i = 1; i < argc; ++i) {
    const app::FlagArg f = app::split_flag(argv[i]);  // --split=val too
    const std::string& a = f.flag;
    auto value = [&]() -> std::string {
      std::string v = app::flag_value(f, argc, argv, i);
      KILN_USAGE_CHECK(!v.empty() || (a != "--dump-logits" && a != "--data-dir"),
                       a << ": an empty path (leave " << a << " out instead)");
      return v;
    };
    if (a == "--dump-logits")
      e.dump = value();
    else if (a == "--data-dir")
      e.data_dir = value();
    else if (a == "--device")
      e.device = value();
    else if (a == "--split")
      e.split = value();
    else if (a == "--test-limit") {
      RunConfig parsed;  // the run option's own parser and checks
      run_options().set(parsed, "test-limit", value(), "--test-limit");
      e.limit = parsed.data.test_limit;
    } else if (a == "--threads") {
      RunConfig parsed;
      run_options().set(parsed, "threads", value(), "--threads");
      parsed.validate();
      e.threads = parsed.threads;
    } else if (a == "--help" || a == "-h") {
      e.help = true;
      return e;
    } else {
      // a misspelt flag, or PyTorch's name for one (--gpu), gets the training apps' suggestion
      // (the names without their dashes, as the training apps match them: "--s" is no "--split")
      std::string near;
      if (a.rfind("--", 0) == 0) {
        std::vector<std::string> names;
        for (const std::string& f : kFlags) names.push_back(f.substr(2));
        near = closest_option(a.substr(2), names);
        if (!near.empty()) near = "--" + near;
      }
      KILN_USAGE_CHECK(a.rfind("--", 0) != 0 && e.ckpt.empty(),
                       "unexpected argument '"
                           << a << "'" << (near.empty() ? "" : " (did you mean '" + near + "'?)"));
      e.ckpt = a;
    }
  }
  KILN_USAGE_CHECK(!e.ckpt.empty(), "no checkpoint given (usage: kiln_eval CHECKPOINT ...)");
  KILN_USAGE_CHECK(e.dump.empty() || !same_file(e.dump, e.ckpt),
                   "--dump-logits " << e.dump << " is the checkpoint; name another file");
  if (!e.dump.empty()) check_output_file("--dump-logits", e.dump);  // before scoring, not after
  KILN_USAGE_CHECK(e.split == "test" || e.split == "train" || e.split == "val",
                   "--split: '" << e.split << "' is not test, train or val");
  KILN_USAGE_CHECK(
      e.limit == 0 || e.split == "test",
      "--test-limit applies to --split test (the train and val splits are the run's own)");
  KILN_USAGE_CHECK(e.device == "auto" || e.device == "cpu" || e.device == "cuda",
                   "--device " << e.device << ": expected auto|cpu|cuda");
  KILN_USAGE_CHECK(e.limit >= 0, "--test-limit " << e.limit << ": must be >= 0");
  return e;
}

// The run's options as the checkpoint recorded them, with the command line's data, split and
// device. (The recorded options are not re-validated: a GPU run's --precision tf32 must not stop
// its checkpoint being scored on the CPU.)
RunConfig recorded_config(const SafetensorsFile& file, const EvalArgs& e) {
  const JsonValue stored = checkpoint_config(file, "checkpoint " + e.ckpt);
  // A library caller's checkpoint may carry no run options ("{}"): the model cannot be rebuilt
  // from it (it would be read as the default cnn).
  KILN_USAGE_CHECK(stored.find("model"),
                   "checkpoint " << e.ckpt
                                 << " records no run options (written through the library "
                                    "without CheckpointInfo::config): kiln_eval rebuilds the "
                                    "model from them");
  RunConfig cfg;
  const OptionTable& table = run_options();
  for (const auto& [k, v] : stored.members)  // "" is an unset option (a path not given)
    if (v.is_string() && !v.text.empty() && table.find(k))
      table.set(cfg, k, v.text, "checkpoint " + e.ckpt + ": config '" + k + "'");
  KILN_USAGE_CHECK(e.split != "val" || cfg.data.val_split > 0,
                   "--split val: checkpoint " << e.ckpt
                                              << "'s run held out no validation split "
                                                 "(--val-split 0); score --split test or train");
  cfg.device = e.device;
  if (e.split == "test") cfg.data.test_limit = e.limit;
  if (!e.data_dir.empty()) cfg.data.data_dir = e.data_dir;
  return cfg;
}

// The dump spares the dataset's files of both splits in that directory, not only those it
// scores (a dump over train-images-idx3-ubyte.gz exited 0, and every later run failed).
void check_dump_spares_data(const EvalArgs& e, const RunConfig& cfg) {
  if (e.dump.empty()) return;
  for (const std::string s : {"test", "train"}) {
    const Dataset where = dataset_files(cfg.data, s);
    const bool scored = (e.split == "test") == (s == "test");
    if (const std::string f = data_file_clash(e.dump, where); !f.empty())
      KILN_USAGE_FAIL("--dump-logits " << e.dump << " is " << f << ", a file of " << where.name
                                       << (scored ? " it reads" : ", which later runs read")
                                       << "; name another");
  }
}

// The split scored. The train and val splits come from one read of the training files, which
// also signs the run's training rows: on other data than the run trained on, a note says so.
Dataset load_split(const EvalArgs& e, const RunConfig& cfg, const SafetensorsFile& file,
                   Device dev) {
  TrainValSplit tv;
  Dataset set;
  try {
    if (e.split != "test") tv = load_train_val(cfg.data, dev);
    set = e.split == "test"    ? load_dataset(cfg.data, e.split, dev)
          : e.split == "train" ? tv.train
                               : tv.val;
  } catch (const Error& err) {  // the run's relative directory, from another working directory
    if (!e.data_dir.empty() || cfg.data.data_dir.rfind('/', 0) == 0 ||
        err.message().find(": cannot find ") == std::string::npos)
      throw;
    throw err.prefixed("checkpoint " + e.ckpt + "'s recorded --data-dir " + cfg.data.data_dir +
                       " (pass --data-dir): ");
  }
  if (!set.note.empty()) std::fprintf(stderr, "kiln_eval: note: %s\n", set.note.c_str());
  if (const std::string* was = file.meta("train_data"); was && e.split != "test") {
    const std::string now = train_data_signature(tv.train);
    if (now != *was)
      std::fprintf(stderr,
                   "kiln_eval: note: the run trained on %s; this data's training split is %s: "
                   "--split %s scores other rows than the run's\n",
                   was->c_str(), now.c_str(), e.split.c_str());
  }
  return set;
}

// The checkpoint's model, built from its recorded options (its weights not loaded yet).
std::unique_ptr<Model> build_model(const EvalArgs& e, const RunConfig& cfg, const Dataset& set,
                                   Device dev) {
  std::unique_ptr<Model> model;
  try {
    model = make_model(cfg.model_on(dev), set.sample_shape(), set.num_classes);
  } catch (const Error& err) {  // a recorded value this kiln refuses: the checkpoint's, no flag
    const std::vector<std::string> named = flags_named_in(err.message());
    if (err.kind() == ErrorKind::Usage && !named.empty() &&
        std::find(kFlags.begin(), kFlags.end(), "--" + named[0]) == kFlags.end())
      throw err.prefixed("checkpoint " + e.ckpt + ": its recorded options: ");
    throw;
  }
  model->build(dev, cfg.seed);
  return model;
}

// The model's logits over `set`, [N, classes] row-major; `classes` is set.
std::vector<float> logits_of(Model& model, Context& ctx, const Dataset& set, int64_t& classes) {
  BatchIterator it(set, 500, false, 0);
  it.start_epoch(0, ctx.stream());
  Tensor x;
  Buffer y;
  int64_t n = 0;
  std::vector<float> logits;
  for (int64_t b = 0; it.batch(b, x, y, n, ctx.stream()); ++b) {
    Tensor out = model.forward(ctx, x);
    classes = out.dim(1);
    std::vector<float> h = out.to_vector();
    logits.insert(logits.end(), h.begin(), h.begin() + n * classes);
  }
  return logits;
}

// --dump-logits: logits, labels and the exact (normalised) inputs, written atomically.
void dump_logits(const EvalArgs& e, const RunConfig& cfg, const Dataset& set,
                 const std::vector<float>& logits, int64_t classes) {
  StTensor lt{"logits", "F32", {set.size(), classes}, {}}, lb{"labels", "I64", {set.size()}, {}};
  lt.data.resize(logits.size() * sizeof(float));
  std::memcpy(lt.data.data(), logits.data(), lt.data.size());
  for (int64_t i = 0; i < set.size(); ++i) {
    const int64_t label = set.host_labels[i];
    const auto* p = reinterpret_cast<const uint8_t*>(&label);
    lb.data.insert(lb.data.end(), p, p + 8);
  }
  StTensor im{"images", "F32", set.images.shape(), {}};
  std::vector<float> h = set.images.to_vector();
  im.data.resize(h.size() * sizeof(float));
  std::memcpy(im.data.data(), h.data(), im.data.size());
  SafetensorsFile out;
  out.tensors = {lt, lb, im};
  out.metadata = {{"checkpoint", e.ckpt}, {"dataset", cfg.data.dataset}, {"split", e.split}};
  std::vector<uint8_t> bytes = encode_safetensors(out);
  write_file_atomic(e.dump, bytes.data(), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  return app::guarded_main("kiln_eval", [&] {
    const EvalArgs e = parse_eval_args(argc, argv);
    if (e.help) {
      std::printf("%s", kUsage);
      return 0;
    }
    const SafetensorsFile file = read_checkpoint(e.ckpt);  // checksums verified first
    const RunConfig cfg = recorded_config(file, e);
    Device dev = resolve_device(cfg.device);
    set_num_threads(resolve_threads(e.threads));
    check_dump_spares_data(e, cfg);
    const Dataset set = load_split(e, cfg, file, dev);
    std::unique_ptr<Model> model = build_model(e, cfg, set, dev);
    Context ctx(dev, cfg.seed);
    // (the file read above, once: one replaced meanwhile, by --keep-last or a running job,
    // would have given this model another file's weights, or a confusing error)
    load_checkpoint_file(file, "checkpoint " + e.ckpt, ctx, *model, nullptr, nullptr);
    model->eval(ctx);
    int64_t classes = 0, correct = 0;
    const std::vector<float> logits = logits_of(*model, ctx, set, classes);
    for (int64_t i = 0; i < set.size(); ++i) {
      int64_t best = 0;
      for (int64_t j = 1; j < classes; ++j)  // the trainer's rule (torch's argmax: a NaN wins)
        if (argmax_better(logits[i * classes + j], j, logits[i * classes + best], best)) best = j;
      correct += best == set.host_labels[i];
    }
    std::printf("%s on %s %s (%lld samples): acc=%.4f\n", e.ckpt.c_str(), cfg.data.dataset.c_str(),
                e.split.c_str(), static_cast<long long>(set.size()),
                set.size() ? double(correct) / set.size() : 0.0);
    if (!e.dump.empty()) dump_logits(e, cfg, set, logits, classes);
    return 0;
  });
}
