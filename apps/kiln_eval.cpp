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

int main(int argc, char** argv) {
  return app::guarded_main("kiln_eval", [&] {
    std::string ckpt, dump, data_dir, device = "cpu", split = "test";
    int64_t limit = 0;
    int threads = 0;
    const std::vector<std::string> flags = {"--dump-logits", "--data-dir",   "--device",
                                            "--split",       "--test-limit", "--threads"};
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
        dump = value();
      else if (a == "--data-dir")
        data_dir = value();
      else if (a == "--device")
        device = value();
      else if (a == "--split")
        split = value();
      else if (a == "--test-limit") {
        RunConfig parsed;  // the run option's own parser and checks
        run_options().set(parsed, "test-limit", value(), "--test-limit");
        limit = parsed.data.test_limit;
      } else if (a == "--threads") {
        RunConfig parsed;
        run_options().set(parsed, "threads", value(), "--threads");
        parsed.validate();
        threads = parsed.threads;
      } else if (a == "--help" || a == "-h") {
        std::printf(
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
            "                        images F32 [N, C, H, W])\n");
        return 0;
      } else {
        // a misspelt flag gets a suggestion, as the training apps give
        const std::string near = a.rfind("--", 0) == 0 ? closest_name(a, flags) : "";
        KILN_USAGE_CHECK(a.rfind("--", 0) != 0 && ckpt.empty(),
                         "unexpected argument '"
                             << a << "'"
                             << (near.empty() ? "" : " (did you mean '" + near + "'?)"));
        ckpt = a;
      }
    }
    KILN_USAGE_CHECK(!ckpt.empty(), "no checkpoint given (usage: kiln_eval CHECKPOINT ...)");
    KILN_USAGE_CHECK(dump.empty() || !same_file(dump, ckpt),
                     "--dump-logits " << dump << " is the checkpoint; name another file");
    if (!dump.empty()) check_output_file("--dump-logits", dump);  // before scoring, not after
    KILN_USAGE_CHECK(split == "test" || split == "train" || split == "val",
                     "--split: '" << split << "' is not test, train or val");
    KILN_USAGE_CHECK(
        limit == 0 || split == "test",
        "--test-limit applies to --split test (the train and val splits are the run's own)");
    // (the training apps' rules and words; before the checkpoint is read, so a bad flag is a
    // usage error whatever the file)
    KILN_USAGE_CHECK(device == "auto" || device == "cpu" || device == "cuda",
                     "--device " << device << ": expected auto|cpu|cuda");
    KILN_USAGE_CHECK(limit >= 0, "--test-limit " << limit << ": must be >= 0");
    const SafetensorsFile file = read_checkpoint(ckpt);  // checksums verified first
    const JsonValue stored = checkpoint_config(file, "checkpoint " + ckpt);
    // A library caller's checkpoint may carry no run options ("{}"): the model cannot be
    // rebuilt from it (it would be read as the default cnn).
    KILN_USAGE_CHECK(stored.find("model"),
                     "checkpoint " << ckpt
                                   << " records no run options (written through the library "
                                      "without CheckpointInfo::config): kiln_eval rebuilds the "
                                      "model from them");
    RunConfig cfg;
    const OptionTable& table = run_options();
    for (const auto& [k, v] : stored.members)  // "" is an unset option (a path not given)
      if (v.is_string() && !v.text.empty() && table.find(k))
        table.set(cfg, k, v.text, "checkpoint " + ckpt + ": config '" + k + "'");
    KILN_USAGE_CHECK(split != "val" || cfg.data.val_split > 0,
                     "--split val: checkpoint " << ckpt
                                                << "'s run held out no validation split "
                                                   "(--val-split 0); score --split test or train");
    cfg.device = device;
    if (split == "test") cfg.data.test_limit = limit;
    if (!data_dir.empty()) cfg.data.data_dir = data_dir;
    // (the recorded options are not re-validated: a GPU run's --precision tf32 must not stop
    // its checkpoint being scored on the CPU)
    Device dev = resolve_device(cfg.device);
    set_num_threads(resolve_threads(threads));
    // The dump spares the dataset's files of both splits in that directory, not only those it
    // scores (a dump over train-images-idx3-ubyte.gz exited 0, and every later run failed).
    for (const std::string s : {"test", "train"}) {
      if (dump.empty()) break;
      const Dataset where = dataset_files(cfg.data, s);
      const bool scored = (split == "test") == (s == "test");
      if (const std::string f = data_file_clash(dump, where); !f.empty())
        KILN_USAGE_FAIL("--dump-logits " << dump << " is " << f << ", a file of " << where.name
                                         << (scored ? " it reads" : ", which later runs read")
                                         << "; name another");
    }
    // The train and val splits come from one read of the training files, which also signs the
    // run's training rows for the note below.
    TrainValSplit tv;
    Dataset test;
    try {
      if (split != "test") tv = load_train_val(cfg.data, dev);
      test = split == "test"    ? load_dataset(cfg.data, split, dev)
             : split == "train" ? tv.train
                                : tv.val;
    } catch (const Error& e) {  // the run's relative directory, from another working directory
      if (!data_dir.empty() || cfg.data.data_dir.rfind('/', 0) == 0 ||
          e.message().find(": cannot find ") == std::string::npos)
        throw;
      throw e.prefixed("checkpoint " + ckpt + "'s recorded --data-dir " + cfg.data.data_dir +
                       " (pass --data-dir): ");
    }
    if (!test.note.empty()) std::fprintf(stderr, "kiln_eval: note: %s\n", test.note.c_str());
    // The train and val splits are the run's own rows only on the data it trained on.
    if (const std::string* was = file.meta("train_data"); was && split != "test") {
      const std::string now = train_data_signature(tv.train);
      if (now != *was)
        std::fprintf(stderr,
                     "kiln_eval: note: the run trained on %s; this data's training split is %s: "
                     "--split %s scores other rows than the run's\n",
                     was->c_str(), now.c_str(), split.c_str());
    }
    std::unique_ptr<Model> model;
    try {
      model = make_model(cfg.model_on(dev), test.sample_shape(), test.num_classes);
    } catch (const Error& e) {  // a recorded value this kiln refuses: the checkpoint's, no flag
      const std::vector<std::string> named = flags_named_in(e.message());
      if (e.kind() == ErrorKind::Usage && !named.empty() &&
          std::find(flags.begin(), flags.end(), "--" + named[0]) == flags.end())
        throw e.prefixed("checkpoint " + ckpt + ": its recorded options: ");
      throw;
    }
    model->build(dev, cfg.seed);
    Context ctx(dev, cfg.seed);
    // (the file read above, once: one replaced meanwhile, by --keep-last or a running job,
    // would have given this model another file's weights, or a confusing error)
    load_checkpoint_file(file, "checkpoint " + ckpt, ctx, *model, nullptr, nullptr);
    model->eval(ctx);
    BatchIterator it(test, 500, false, 0);
    it.start_epoch(0, ctx.stream());
    Tensor x;
    Buffer y;
    int64_t n = 0, correct = 0, k = 0;
    std::vector<float> logits;
    for (int64_t b = 0; it.batch(b, x, y, n, ctx.stream()); ++b) {
      Tensor out = model->forward(ctx, x);
      k = out.dim(1);
      std::vector<float> h = out.to_vector();
      logits.insert(logits.end(), h.begin(), h.begin() + n * k);
    }
    StTensor lt{"logits", "F32", {test.size(), k}, {}}, lb{"labels", "I64", {test.size()}, {}};
    lt.data.resize(logits.size() * sizeof(float));
    std::memcpy(lt.data.data(), logits.data(), lt.data.size());
    for (int64_t i = 0; i < test.size(); ++i) {
      int64_t label = test.host_labels[i], best = 0;
      for (int64_t j = 1; j < k; ++j)  // the trainer's rule (torch's argmax: a NaN wins)
        if (argmax_better(logits[i * k + j], j, logits[i * k + best], best)) best = j;
      correct += best == label;
      const auto* p = reinterpret_cast<const uint8_t*>(&label);
      lb.data.insert(lb.data.end(), p, p + 8);
    }
    std::printf("%s on %s %s (%lld samples): acc=%.4f\n", ckpt.c_str(), cfg.data.dataset.c_str(),
                split.c_str(), static_cast<long long>(test.size()),
                test.size() ? double(correct) / test.size() : 0.0);
    if (!dump.empty()) {
      SafetensorsFile out;
      StTensor im{"images", "F32", test.images.shape(), {}};
      std::vector<float> h = test.images.to_vector();
      im.data.resize(h.size() * sizeof(float));
      std::memcpy(im.data.data(), h.data(), im.data.size());
      out.tensors = {lt, lb, im};
      out.metadata = {{"checkpoint", ckpt}, {"dataset", cfg.data.dataset}, {"split", split}};
      std::vector<uint8_t> bytes = encode_safetensors(out);
      write_file_atomic(dump, bytes.data(), bytes.size());
    }
    return 0;
  });
}
