#!/usr/bin/env python3
"""Generates the bad-input corpus for whole runs: tests/bad_inputs/{checkpoints,yaml,cli}/<case>/.

Each case directory holds `args` (extra train_mnist arguments, one per line; @CASE@ stands for the
case directory, @DATA@ for tests/data) and `expect` (line 1: the exit code, 1 runtime or 2 usage;
line 2: a substring the one-line error must contain), the same `expect` format as the idx/ and
cifar/ cases of make_bad_inputs.py. tests/cli/bad_inputs.sh runs every case on top of
BASE_ARGS (it keeps its own copy of them).

Checkpoint cases are derived from real checkpoints, so this needs a built train_mnist:

    tests/bad_inputs/make_bad_run_inputs.py build-cpu/train_mnist
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
BASE_ARGS = ["--device", "cpu", "--data-dir", DATA, "--model", "mlp", "--width", "8", "--depth", "1",
             "--optimizer", "sgd", "--momentum", "0.9", "--epochs", "1", "--train-limit", "100",
             "--test-limit", "50"]


def case(group, name, args, code, want, files=None):
    d = os.path.join(HERE, group, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "args"), "w") as f:
        f.write("".join(a + "\n" for a in args))
    with open(os.path.join(d, "expect"), "w") as f:
        f.write("%d\n%s\n" % (code, want))
    for fname, data in (files or {}).items():
        os.makedirs(os.path.dirname(os.path.join(d, fname)), exist_ok=True)
        with open(os.path.join(d, fname), "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)


def checkpoint(train_mnist, tmp, name, extra):
    path = os.path.join(tmp, name)
    subprocess.run([train_mnist] + BASE_ARGS + ["--epochs", "0", "--save", path] + extra, check=True,
                   stdout=subprocess.DEVNULL)
    return open(path, "rb").read()


def split(b):
    n = struct.unpack("<Q", b[:8])[0]
    return n, b[8:8 + n].decode(), b[8 + n:]


def with_header(b, old, new):
    n, h, data = split(b)
    assert old in h and len(old) == len(new), old
    return b[:8] + h.replace(old, new, 1).encode() + data


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    tm = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp()
    try:
        good = checkpoint(tm, tmp, "good.safetensors", [])
        wide = checkpoint(tm, tmp, "wide.safetensors", ["--width", "16"])
        adam = checkpoint(tm, tmp, "adam.safetensors", ["--optimizer", "adam"])
    finally:
        shutil.rmtree(tmp)
    n, h, data = split(good)
    resume = ["--resume", "@CASE@/ckpt.safetensors"]
    ck = "checkpoints"
    case(ck, "empty", resume, 1, "truncated: 0 bytes", {"ckpt.safetensors": b""})
    case(ck, "truncated_length", resume, 1, "truncated: 5 bytes", {"ckpt.safetensors": good[:5]})
    case(ck, "truncated_header", resume, 1, "runs past the end of the file", {"ckpt.safetensors": good[:8 + n // 2]})
    case(ck, "truncated_data", resume, 1, "run past the data section", {"ckpt.safetensors": good[:len(good) - 64]})
    case(ck, "oversized_header", resume, 1, "runs past the end of the file",
         {"ckpt.safetensors": struct.pack("<Q", 1 << 62) + good[8:]})
    flipped = bytearray(good)
    flipped[-7] ^= 0x40
    case(ck, "corrupted_data", resume, 1, "data checksum mismatch", {"ckpt.safetensors": bytes(flipped)})
    case(ck, "corrupted_metadata", resume, 1, "metadata checksum mismatch",
         {"ckpt.safetensors": with_header(good, '"step":"0"', '"step":"7"')})
    case(ck, "bad_json", resume, 1, "header is not valid JSON",
         {"ckpt.safetensors": with_header(good, '{"__metadata__":', '{"__metadata__" ')})
    case(ck, "wrong_version", resume, 1, "format version '9'",
         {"ckpt.safetensors": with_header(good, '"format_version":"2"', '"format_version":"9"')})
    case(ck, "not_kiln", resume, 1, "no format_version",
         {"ckpt.safetensors": with_header(good, '"format_version"', '"format_vers1on"')})
    case(ck, "other_model", resume, 2, "tensor 1.weight has shape [16, 784], the model expects [8, 784]",
         {"ckpt.safetensors": wide})
    case(ck, "other_optimizer", resume, 2, "saved with optimizer 'adam', this run uses 'sgd'",
         {"ckpt.safetensors": adam})
    case(ck, "missing_file", ["--resume", "@CASE@/nope.safetensors"], 1, "nope.safetensors: cannot open")

    y = "yaml"
    cfg = ["--config", "@CASE@/config.yaml"]
    case(y, "unknown_key", cfg, 2, "config.yaml: key 'learning_rate': unknown option",
         {"config.yaml": "learning_rate: 0.1\n"})
    case(y, "misspelled_key", cfg, 2, "did you mean 'batch-size'", {"config.yaml": "batch_szie: 32\n"})
    case(y, "wrong_type_int", cfg, 2, "key 'epochs': 'three' is not an integer", {"config.yaml": "epochs: three\n"})
    case(y, "wrong_type_float", cfg, 2, "key 'lr': 'fast' is not a finite number", {"config.yaml": "lr: fast\n"})
    case(y, "wrong_type_bool", cfg, 2, "key 'shuffle': 'maybe' is not a boolean", {"config.yaml": "shuffle: maybe\n"})
    case(y, "list_for_scalar", cfg, 2, "key 'lr': expected a single float", {"config.yaml": "lr: [0.1, 0.2]\n"})
    case(y, "nested_mapping", cfg, 2, "key 'optimizer': nested mappings", {"config.yaml": "optimizer:\n  name: sgd\n"})
    case(y, "not_yaml", cfg, 2, "config.yaml: not valid YAML", {"config.yaml": "lr: [0.1\n"})
    case(y, "not_mapping", cfg, 2, "expected a mapping", {"config.yaml": "- lr\n- 0.1\n"})
    case(y, "bad_value", cfg, 2, "config.yaml: key 'batch_size': --batch-size 0", {"config.yaml": "batch_size: 0\n"})
    # a name in the wrong case names the file and key (it named neither until 2026-12-04)
    case(y, "schedule_case", cfg, 2, "config.yaml: key 'schedule': --schedule Cosine: expected constant|",
         {"config.yaml": "schedule: Cosine\n"})
    case(y, "missing_file", ["--config", "@CASE@/nope.yaml"], 2, "nope.yaml: cannot open")
    case(y, "sweep_file", cfg, 2, "key 'parameters': this is a sweep file; run it with: sweep",
         {"config.yaml": "method: grid\nparameters:\n  lr: {values: [0.1, 0.01]}\n"})
    case(y, "duplicate_key", cfg, 2, "key 'batch-size' (line 2): already set at line 1",
         {"config.yaml": "batch_size: 16\nbatch-size: 8\n"})
    case(y, "two_documents", cfg, 2, "config.yaml: line 2: a second YAML document", {"config.yaml": "epochs: 1\n---\nepochs: 2\n"})
    case(y, "document_end", cfg, 2, "config.yaml: line 3: text after the end of the YAML document",
         {"config.yaml": "epochs: 1\n...\nlr: 100\n"})
    case(y, "block_scalar", cfg, 2, "key 'lr': the value has a line break", {"config.yaml": "lr: |\n  0.1\n"})
    # DEL is a terminal control too: it was echoed raw in the error (found by fuzz_yaml_config)
    case(y, "delete_character", cfg, 2, "key 'shuffle': the value has a line break or control character",
         {"config.yaml": "shuffle: true\x7f\n"})
    # the momentum range's error names its flags, so the file's key is named (it named neither)
    case(y, "momentum_range", cfg, 2,
         "config.yaml: key 'base_momentum': --base-momentum 0.99 / --max-momentum 0.95 (its default): the range must satisfy",
         {"config.yaml": "base_momentum: 0.99\n"})
    case(y, "directory", ["--config", "@CASE@/config.yaml"], 2, "config.yaml: is a directory, not a file",
         {"config.yaml/keep": ""})

    c = "cli"
    case(c, "lr_negative", ["--lr", "-1"], 2, "--lr")
    case(c, "batch_zero", ["--batch-size", "0"], 2, "--batch-size 0")
    case(c, "dropout_too_big", ["--dropout", "1.5"], 2, "dropout")
    case(c, "dropout_kind", ["--dropout", "0.1", "--dropout-kind", "spatial"], 2,
         "--dropout-kind spatial: expected element|channel")
    case(c, "groups_not_dividing", ["--model", "cnn", "--norm", "group", "--groups", "3"], 2, "groups")
    case(c, "pool_after_range", ["--pool-after", "8"], 2, "--pool-after 8: expected 0..7")
    case(c, "device_tpu", ["--device", "tpu"], 2, "--device tpu")
    case(c, "optimizer_case", ["--optimizer", "Adam"], 2, "--optimizer Adam: expected sgd|adam|adamw|rmsprop (lower case)")
    case(c, "epochs_not_int", ["--epochs", "abc"], 2, "--epochs: 'abc' is not an integer")
    case(c, "unknown_flag", ["--lrate", "0.1"], 2, "unknown option 'lrate'")
    case(c, "missing_value", ["--lr"], 2, "--lr needs a value")
    # a forgotten value: the next flag is not taken for it (--log --no-shuffle logged to a file
    # named --no-shuffle and shuffled)
    case(c, "value_is_a_flag", ["--log", "--no-shuffle"], 2,
         "--log needs a value, got the flag --no-shuffle (a value that starts with -- is written --log=VALUE)")
    case(c, "config_value_is_a_flag", ["--config", "--lr"], 2, "--config needs a value, got the flag --lr")
    # argparse's "--flag false": said as such (it was "unexpected argument 'false'")
    case(c, "bool_with_value", ["--shuffle", "false"], 2,
         "--shuffle takes no value (it got 'false'): write --shuffle or --no-shuffle, or --shuffle=false")
    # and "--no-shuffle false" ("unexpected argument 'false'"), "--no-shuffle=false" ("unknown
    # option 'no-shuffle'")
    case(c, "negated_bool_with_value", ["--no-shuffle", "false"], 2,
         "--no-shuffle takes no value (it got 'false'): write --no-shuffle or --shuffle, or --shuffle=true|false")
    case(c, "negated_bool_equals", ["--no-shuffle=false"], 2,
         "--no-shuffle takes no value (it got 'false'): write --no-shuffle or --shuffle, or --shuffle=true|false")
    # both ends of the range ("at most 9223372036854775807" read as a number too large)
    case(c, "seed_negative", ["--seed", "-1"], 2, "--seed: '-1' is out of range (0 to 9223372036854775807)")
    case(c, "positional", ["mnist"], 2, "unexpected argument 'mnist'")
    case(c, "dataset", ["--dataset", "imagenet"], 2, "--dataset imagenet")
    case(c, "save_dir_missing", ["--save", "@CASE@/no/such/dir/out.safetensors"], 2, "does not exist")
    case(c, "data_dir_missing", ["--data-dir", "@CASE@/nowhere"], 1, "nowhere")
    case(c, "early_stop_negative", ["--early-stop", "-1"], 2, "--early-stop -1: must be >= 0")
    case(c, "early_stop_metric", ["--early-stop", "2", "--early-stop-metric", "auc"], 2,
         "--early-stop-metric auc: expected loss|acc")
    case(c, "restore_best_alone", ["--restore-best"], 2, "--restore-best needs --early-stop N")
    case(c, "val_split_one", ["--val-split", "1"], 2, "--val-split 1: must be in [0, 1)")
    case(c, "epochs_wraps", ["--epochs", "4294967297"], 2, "--epochs: '4294967297' is out of range")
    case(c, "save_is_directory", ["--save", "@CASE@"], 2, "is a directory; name a file")
    case(c, "save_equals_log", ["--save", "@CASE@/x", "--log", "@CASE@/x"], 2, "--save and --log name the same file")
    # spelt two ways, the file not there yet (only the same text was refused)
    case(c, "save_equals_log_spelt", ["--save", "@CASE@/x", "--log", "@CASE@/./x"], 2,
         "--save and --log name the same file")
    case(c, "resume_directory", ["--resume", "@CASE@"], 1, "is a directory, not a file")
    # a device is read whole no more than a directory (/dev/zero never ends: memory ran out)
    case(c, "resume_device", ["--resume", "/dev/zero"], 1,
         "checkpoint /dev/zero: is not a regular file (a pipe or device)")
    case(c, "val_split_leaves_nothing", ["--train-limit", "10", "--val-split", "0.9"], 2,
         "--val-split 0.9 of 10 training samples leaves 0 to train on")
    # Outputs that cannot be created fail before training, not after it (/proc takes no files).
    case(c, "save_in_proc", ["--save", "/proc/kiln-out.safetensors"], 2,
         "--save /proc/kiln-out.safetensors: cannot create a file in /proc")
    case(c, "checkpoint_dir_in_proc", ["--checkpoint-dir", "/proc/kiln-checkpoints"], 2,
         "checkpoint directory /proc/kiln-checkpoints: cannot create it in /proc")
    case(c, "checkpoint_dir_name_too_long", ["--checkpoint-dir", "@CASE@/" + "d" * 300], 2,
         "File name too long")
    case(c, "epochs_too_many", ["--epochs", "2147483647"], 2, "--epochs 2147483647: must be <= 1000000")
    # An output at a periodic checkpoint's name in the checkpoint directory: the checkpoint
    # would replace it and --keep-last delete it (the log was lost with exit 0).
    case(c, "log_at_periodic_checkpoint",
         ["--checkpoint-every", "1", "--checkpoint-dir", "@CASE@", "--log", "@CASE@/ckpt-epoch-1.safetensors"],
         2, "a periodic checkpoint's name in the checkpoint directory")
    # The range test's second file, CSV.suggestions, over the run's --config (it was replaced).
    case(c, "lr_find_suggestions_over_config",
         ["--lr-find", "--num-it", "5", "--lr-find-csv", "@CASE@/r", "--config", "@CASE@/r.suggestions"],
         2, "r.suggestions is the --config file; name another", files={"r.suggestions": "num_it: 5\n"})


if __name__ == "__main__":
    main()
