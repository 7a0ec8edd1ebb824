// Checkpoints: the JSON parser, safetensors round trip (model, buffers, optimizer state and
// schedule state bit for bit), the documented header names, every corruption case failing
// with a one-line error naming the file, atomic writes surviving a write failure, and the
// trainer resuming mid-epoch to the same weights as an uninterrupted run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <locale.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <clocale>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <locale>
#include <map>
#include <random>
#include <thread>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/json.h"
#include "engine/numtext.h"
#include "engine/trainer.h"
#include "layers/dropout.h"
#include "layers/models.h"
#include "tests/test_util.h"
#include "tuning/lr_finder.h"
#include "tuning/options.h"
#include "tuning/run.h"
#include "tuning/run_checkpoint.h"

using namespace kiln;

namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "kiln_ckpt_" + std::to_string(getpid()) + "_" + name;
}

std::vector<uint8_t> read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_all(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A small model with every kind of state: weights, BN buffers (num_batches_tracked), Adam
// moments, a plateau schedule with history; on the CPU or the GPU.
struct Rig {
  ModelOptions mo;
  OptimOptions oo;
  ScheduleOptions so;
  Device dev;
  Context ctx;
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<Schedule> sched;
  explicit Rig(int width = 16, uint64_t seed = 1, Device d = Device::CPU) : dev(d), ctx(d, 7) {
    mo.model = "mlp";
    mo.width = width;
    mo.norm = "batch";
    oo.name = "adam";
    oo.lr = 0.01f;
    so.name = "plateau";
    so.patience = 0;
    model = make_model(mo, {1, 4, 4}, 3);
    model->build(dev, seed);
    opt = make_optimizer(oo, *model);
    sched = make_schedule(so, oo.lr, 10, 5);
  }
  // A few real steps so that moments, BN statistics and the plateau state are non-trivial.
  void train(int steps, uint64_t seed) {
    std::vector<float> x = test::random_vec(8 * 16, seed);
    Tensor xt = Tensor::from_vector(x, {8, 1, 4, 4}, dev);
    for (int s = 0; s < steps; ++s) {
      model->train(ctx);
      Tensor y = model->forward(ctx, xt);
      Tensor dy = Tensor::from_vector(test::random_vec(y.numel(), seed + 100 + s), y.shape(), dev);
      model->backward(ctx, dy);
      opt->step(ctx, sched->lr(0, s));
    }
    sched->on_epoch_end(0, 1.0f);
    sched->on_epoch_end(1, 2.0f);  // worse: with patience 0 the lr drops
  }
  std::vector<std::pair<std::string, std::vector<float>>> snapshot() {
    std::vector<std::pair<std::string, std::vector<float>>> out;
    for (auto& [n, t] : model->state_dict()) out.emplace_back(n, t.to_vector());
    for (auto& [n, t] : opt->state()) out.emplace_back("optimizer." + n, t.to_vector());
    return out;
  }
};

CheckpointInfo sample_info() {
  CheckpointInfo info;
  info.pos.epoch = 2;
  info.pos.batch = 5;
  info.pos.step = 25;
  info.pos.train_sums[0] = 1.0 / 3.0;
  info.pos.train_sums[1] = 17;
  info.pos.train_sums[2] = 40;
  info.pos.last_lr = 0.1f / 3.0f;
  info.pos.last_momentum = 0.9f;
  info.pos.epoch_steps = {12, 8};  // + 5 batches of epoch 3 = step 25
  info.seed =
      18446744073709551615ull;  // 2^64 - 1: a library caller's seed reads back (from 2026-12-07)
  info.config = "{\"model\":\"mlp\"}";
  return info;
}

// Loading `bytes` into a fresh rig must throw an Error whose one-line message names the file and
// contains `want`.
void expect_load_error(const std::vector<uint8_t>& bytes, const std::string& want, int width = 16) {
  std::string path = temp_path("bad.safetensors");
  write_all(path, bytes);
  Rig r(width, 99);
  auto before = r.snapshot();
  try {
    load_checkpoint(path, r.ctx, *r.model, r.opt.get(), r.sched.get());
    ADD_FAILURE() << "no error for a checkpoint that should fail with '" << want << "'";
  } catch (const Error& e) {
    std::string m = e.message();
    EXPECT_NE(m.find("checkpoint " + path), std::string::npos) << m;
    EXPECT_NE(m.find(want), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  auto after = r.snapshot();  // a failed load changes nothing
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(test::bitwise_equal(before[i].second, after[i].second)) << before[i].first;
  std::remove(path.c_str());
}

// The checksums as docs/FORMATS.md defines them, written independently of engine/checkpoint.cpp:
// data (version 2): tensors sorted by name, each name NUL dtype NUL shape NUL bytes; metadata:
// sorted keys, each key and value followed by NUL, meta_crc32 itself left out.
using test::hex;
using test::meta_crc_hex;
using test::reseal;
using test::set_meta;

}  // namespace

TEST(Json, ParsesValuesAndKeepsNumberText) {
  JsonValue v = parse_json(" {\"a\": [1, -2.5e3, true, false, null], \"b\": \"x\\u00e9\\ud83d\\ude00\\n\", \"n\": 18446744073709551615, \"i\": 9007199254740993} ");
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.find("a")->items.size(), 5u);
  EXPECT_EQ(v.find("a")->items[1].number, -2500.0);
  EXPECT_TRUE(v.find("a")->items[2].boolean);
  EXPECT_EQ(v.find("a")->items[4].type, JsonValue::Type::Null);
  EXPECT_EQ(v.find("b")->text, "x\xc3\xa9\xf0\x9f\x98\x80\n");
  EXPECT_EQ(v.find("i")->as_int64(), 9007199254740993LL);  // beyond double precision
  EXPECT_THROW(v.find("n")->as_int64(), Error);             // does not fit
  EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(Json, RejectsMalformedTextWithOffset) {
  struct Case {
    const char* text;
    const char* want;
  } cases[] = {{"{\"a\":1,}", "offset 7"},        {"[1,2", "end of the text"},
               {"01", "leading zeros"},           {"{\"a\":1,\"a\":2}", "duplicate key"},
               {"\"abc", "unterminated"},          {"[1] x", "after the value"},
               {"\"\\ud800\"", "surrogate"},       {"NaN", "unexpected 'N'"},
               {"\"a\tb\"", "control character"},  {"", "end of the text"},
               {"-", "expected a digit"},          {"1.", "after '.'"}};
  for (const auto& c : cases) {
    try {
      parse_json(c.text);
      ADD_FAILURE() << "accepted: " << c.text;
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(c.want), std::string::npos) << c.text << " -> " << e.message();
    }
  }
  EXPECT_THROW(parse_json(std::string(600, '[') + std::string(600, ']')), Error);  // depth limit
  EXPECT_NO_THROW(parse_json(std::string(500, '[') + std::string(500, ']')));
}

// Duplicate keys in large objects (the hash set past 16 keys): found wherever the first copy
// is (among the first 16 or after), with the offset of the second; 100,000 distinct keys parse
// (each key scanned all before it, quadratic: a hostile header of millions took hours).
TEST(Json, DuplicateKeysInLargeObjectsAreFound) {
  auto object = [](int n, int dup_of) {
    std::string t = "{";
    for (int i = 0; i < n; ++i)
      t += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
    if (dup_of >= 0) t += ",\"k" + std::to_string(dup_of) + "\":0";
    return t + "}";
  };
  const JsonValue v = parse_json(object(100000, -1));
  ASSERT_EQ(v.members.size(), 100000u);
  EXPECT_EQ(v.find("k99999")->as_int64(), 99999);
  for (int n : {5, 16, 17, 40}) {
    for (int dup_of : {0, n / 2, n - 1}) {
      const std::string t = object(n, dup_of);
      try {
        parse_json(t);
        ADD_FAILURE() << "accepted a duplicate of k" << dup_of << " among " << n << " keys";
      } catch (const Error& e) {
        EXPECT_NE(e.message().find("duplicate key \"k" + std::to_string(dup_of) + "\""),
                  std::string::npos)
            << e.message();
        EXPECT_NE(e.message().find("offset " + std::to_string(t.rfind(",\"k") + 1)),
                  std::string::npos)
            << e.message();
      }
    }
  }
}

TEST(Json, EveryControlCharacterAndShortEscapeRoundTrips) {
  // What json_escape writes parses back to the same bytes for every control character (NUL
  // included), the quote, the backslash, '/' and DEL, as a value and as a key; the output has
  // no raw control character (RFC 8259 forbids them). The parser reads every short escape JSON
  // has (\" \\ \/ \b \f \n \r \t), which other writers (Python's json) use for the ones
  // json_escape writes as \u00XX.
  std::string all;
  for (int c = 0; c < 0x20; ++c) all += static_cast<char>(c);
  all += "\"\\/\x7f path\\with\ttab";
  const std::string esc = json_escape(all);
  for (unsigned char ch : esc) EXPECT_GE(ch, 0x20) << "raw control character in " << esc;
  EXPECT_EQ(parse_json(esc).text, all);
  EXPECT_EQ(json_escape("a\\b\tc\rd\ne\"f"), "\"a\\\\b\\tc\\rd\\ne\\\"f\"");
  EXPECT_EQ(json_escape("\x7f"), "\"\\u007f\"");  // DEL: a terminal control, escaped too
  // escape_controls (the apps' error line): controls and DEL escaped, the rest (UTF-8, quotes,
  // backslashes) as is, no quotes added
  EXPECT_EQ(escape_controls("a\tb\nc\rd\x7f\x1b[2K\xc3\xa9 \"q\" \\"),
            "a\\tb\\nc\\rd\\u007f\\u001b[2K\xc3\xa9 \"q\" \\");
  EXPECT_EQ(parse_json("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"").text, "\" \\ / \b \f \n \r \t");
  JsonObject o;
  o.add(all, all);
  const JsonValue v = parse_json(o.str());
  ASSERT_EQ(v.members.size(), 1u);
  EXPECT_EQ(v.members[0].first, all);
  EXPECT_EQ(v.members[0].second.text, all);
  for (const char* bad : {"\"\\a\"", "\"\\x41\"", "\"\\U0041\""})
    EXPECT_THROW(parse_json(bad), Error) << bad;
}

TEST(Checkpoint, RoundTripIsBitwise) {
  Rig a(16, 1);
  a.train(4, 11);
  std::string path = temp_path("rt.safetensors");
  CheckpointInfo in = sample_info();
  in.train_data = "100 images, labels crc32 0badf00d";
  in.run_id = "0123456789abcdef";
  save_checkpoint(path, a.ctx, *a.model, a.opt.get(), a.sched.get(), in);
  EXPECT_EQ(checkpoint_run_id(path), in.run_id);
  EXPECT_EQ(checkpoint_tag(path).step, in.pos.step);
  EXPECT_EQ(checkpoint_run_id(path + ".missing"), "");
  EXPECT_EQ(checkpoint_tag(path + ".missing").step, -1);
  const std::string fifo = path + ".fifo";  // a FIFO of a checkpoint's name: no blocking open
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(checkpoint_run_id(fifo), "");
  std::remove(fifo.c_str());
  Rig b(16, 2);  // different init, and an optimizer that saw a non-finite gradient (a fit
  {              // that diverged): the load clears that flag, or the next fit failed at once
    Tensor x = Tensor::from_vector(test::random_vec(8 * 16, 5), {8, 1, 4, 4}, b.dev);
    b.model->train(b.ctx);
    Tensor y = b.model->forward(b.ctx, x);
    b.model->backward(b.ctx,
                      Tensor::from_vector(std::vector<float>(y.numel(), NAN), y.shape(), b.dev));
    b.opt->step(b.ctx, 0.01f);
    ASSERT_NE(*b.opt->nonfinite_flag(), 0);
  }
  CheckpointInfo got = load_checkpoint(path, b.ctx, *b.model, b.opt.get(), b.sched.get());
  EXPECT_EQ(*b.opt->nonfinite_flag(), 0);
  auto sa = a.snapshot(), sb = b.snapshot();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i)
    EXPECT_TRUE(test::bitwise_equal(sa[i].second, sb[i].second)) << sa[i].first;
  EXPECT_EQ(b.opt->steps_taken(), 4);
  EXPECT_EQ(b.sched->state(), a.sched->state());
  EXPECT_EQ(b.sched->lr(0, 0), a.sched->lr(0, 0));
  EXPECT_LT(b.sched->lr(0, 0), 0.01f);  // the plateau drop came back too
  CheckpointInfo want = sample_info();
  EXPECT_EQ(got.pos.epoch, want.pos.epoch);
  EXPECT_EQ(got.pos.batch, want.pos.batch);
  EXPECT_EQ(got.pos.step, want.pos.step);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got.pos.train_sums[i], want.pos.train_sums[i]);
  EXPECT_EQ(got.pos.last_lr, want.pos.last_lr);
  EXPECT_EQ(got.pos.last_momentum, want.pos.last_momentum);
  EXPECT_EQ(got.pos.epoch_steps, want.pos.epoch_steps);
  EXPECT_EQ(checkpoint_position(read_checkpoint(path), "x").epoch_steps, want.pos.epoch_steps);
  EXPECT_EQ(got.seed, want.seed);
  EXPECT_EQ(got.config, want.config);
  EXPECT_EQ(got.train_data, in.train_data);
  EXPECT_EQ(got.run_id, in.run_id);
  EXPECT_EQ(got.kiln_version, kiln_version());
  std::remove(path.c_str());
  // config must be a JSON object (kiln_eval rebuilds the model from it): other text is refused
  for (const char* bad : {"not json {", "[1, 2]", "{\"model\": "}) {
    CheckpointInfo info = sample_info();
    info.config = bad;
    try {
      save_checkpoint(path, a.ctx, *a.model, a.opt.get(), a.sched.get(), info);
      ADD_FAILURE() << "saved config '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("config is not a JSON object"), std::string::npos) << e.message();
    }
    EXPECT_FALSE(std::ifstream(path).good()) << bad;
  }
}

TEST(Checkpoint, EarlyStopStateAndBestSnapshotRoundTrip) {
  // --early-stop's counters and --restore-best's snapshot (the model's state_dict at its best
  // epoch, num_batches_tracked included) come back exactly; a snapshot missing a tensor fails.
  Rig a(16, 1);
  a.train(2, 11);
  CheckpointInfo info = sample_info();
  info.pos.early_stop.best = 0.1234567890123;
  info.pos.early_stop.wait = 2;
  info.pos.early_stop.best_epoch = 5;
  for (auto& [n, t] : a.model->state_dict())
    info.early_stop_best.emplace_back(n, t.to(Device::CPU));
  a.train(2, 12);  // the live model moves on from the snapshot
  std::vector<uint8_t> bytes = encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), info);
  Rig b(16, 2);
  CheckpointInfo got =
      load_checkpoint_bytes(bytes, "checkpoint x", b.ctx, *b.model, b.opt.get(), b.sched.get());
  EXPECT_EQ(got.pos.early_stop.best, info.pos.early_stop.best);
  EXPECT_EQ(got.pos.early_stop.wait, 2);
  EXPECT_EQ(got.pos.early_stop.best_epoch, 5);
  ASSERT_EQ(got.early_stop_best.size(), info.early_stop_best.size());
  for (size_t i = 0; i < got.early_stop_best.size(); ++i) {
    EXPECT_EQ(got.early_stop_best[i].first, info.early_stop_best[i].first);
    EXPECT_TRUE(test::bitwise_equal(got.early_stop_best[i].second.to_vector(),
                                    info.early_stop_best[i].second.to_vector()))
        << got.early_stop_best[i].first;
  }
  EXPECT_FALSE(test::bitwise_equal(b.model->state_dict()[0].second.to_vector(),
                                   info.early_stop_best[0].second.to_vector()))
      << "the live weights load as the model, the snapshot separately";
  // without a snapshot: none, and a fresh early-stopping state from a checkpoint that has none
  CheckpointInfo plain = load_checkpoint_bytes(
      encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), sample_info()), "checkpoint y",
      b.ctx, *b.model, b.opt.get(), b.sched.get());
  EXPECT_TRUE(plain.early_stop_best.empty());
  EXPECT_TRUE(std::isnan(plain.pos.early_stop.best));
  info.early_stop_best.pop_back();
  bytes = encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), info);
  try {
    load_checkpoint_bytes(bytes, "checkpoint z", b.ctx, *b.model, b.opt.get(), b.sched.get());
    ADD_FAILURE() << "a partial snapshot loaded";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("checkpoint z: missing tensor early_stop.best."), std::string::npos)
        << e.message();
  }
}

TEST(CheckpointGpu, CrossDeviceRoundTripsAreBitwise) {
  // A checkpoint written from GPU state loads on the CPU (and back) with every tensor equal bit
  // for bit: one file format whatever the device, as torch.load(map_location=...) gives.
  KILN_SKIP_WITHOUT_GPU();
  for (Device from : {Device::CUDA, Device::CPU}) {
    const Device to = from == Device::CUDA ? Device::CPU : Device::CUDA;
    Rig a(16, 1, from);
    a.train(4, 11);
    std::string path = temp_path("xdev.safetensors");
    save_checkpoint(path, a.ctx, *a.model, a.opt.get(), a.sched.get(), sample_info());
    Rig b(16, 2, to);
    load_checkpoint(path, b.ctx, *b.model, b.opt.get(), b.sched.get());
    auto sa = a.snapshot(), sb = b.snapshot();
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i)
      EXPECT_TRUE(test::bitwise_equal(sa[i].second, sb[i].second))
          << sa[i].first << " from " << device_name(from);
    EXPECT_EQ(b.opt->steps_taken(), 4);
    std::remove(path.c_str());
  }
}

// BatchNorm's batch count is two floats in kiln (count mod 2^24, count / 2^24) and torch's I64
// in the file: 2^24 + 5 batches is written as 16777221 and read back exactly.
TEST(Checkpoint, BatchCounterPast2To24IsExact) {
  Rig a;
  a.train(1, 3);
  auto counter = [](Model& m) {
    for (auto& [n, t] : m.state_dict())
      if (n == "2.num_batches_tracked") return t;
    ADD_FAILURE() << "no 2.num_batches_tracked";
    return Tensor();
  };
  Tensor c = counter(*a.model);
  ASSERT_EQ(c.numel(), 2);
  c.data()[0] = 5;
  c.data()[1] = 1;
  std::vector<uint8_t> bytes =
      encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), sample_info());
  SafetensorsFile f = decode_safetensors(bytes.data(), bytes.size(), "x");
  const StTensor* t = f.find("2.num_batches_tracked");
  ASSERT_NE(t, nullptr);
  int64_t stored;
  std::memcpy(&stored, t->data.data(), 8);
  EXPECT_EQ(stored, 16777221);
  Rig b(16, 2);
  load_checkpoint_bytes(bytes, "checkpoint x", b.ctx, *b.model, b.opt.get(), b.sched.get());
  EXPECT_EQ(counter(*b.model).to_vector(), (std::vector<float>{5, 1}));
  // torch may store the count as one float: a whole one below 2^48 loads, a larger one is
  // refused before any conversion (1e30 was cast to int64 first: undefined behaviour).
  for (const float v : {3e9f, 1e19f, 1e30f}) {
    SafetensorsFile g = decode_safetensors(bytes.data(), bytes.size(), "x");
    for (StTensor& st : g.tensors)
      if (st.name == "2.num_batches_tracked") {
        st.dtype = "F32";
        st.shape = {};
        st.data.assign(reinterpret_cast<const uint8_t*>(&v),
                       reinterpret_cast<const uint8_t*>(&v) + 4);
      }
    test::reseal(g);
    const std::vector<uint8_t> fb = encode_safetensors(g);
    Rig r(16, 2);
    if (v < 2.8e14f) {
      load_checkpoint_bytes(fb, "checkpoint x", r.ctx, *r.model, r.opt.get(), r.sched.get());
      EXPECT_EQ(counter(*r.model).to_vector(),
                (std::vector<float>{3e9f - 178.0f * 16777216.0f, 178}));
    } else {
      try {
        load_checkpoint_bytes(fb, "checkpoint x", r.ctx, *r.model, r.opt.get(), r.sched.get());
        ADD_FAILURE() << v;
      } catch (const Error& e) {
        EXPECT_NE(e.message().find("2.num_batches_tracked is 1e+"), std::string::npos)
            << e.message();
        EXPECT_NE(e.message().find(", not a count below 2^48"), std::string::npos) << e.message();
      }
    }
  }
}

TEST(Checkpoint, HeaderIsJsonWithTorchNames) {
  Rig a;
  a.train(1, 3);
  std::vector<uint8_t> bytes = encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), sample_info());
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(bytes[i]) << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u);  // data section 8-byte aligned
  JsonValue h = parse_json(std::string(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n)));
  // MLP: Flatten, Linear, BatchNorm1d, ReLU, ... (PyTorch nn.Sequential indices)
  const JsonValue* w = h.find("1.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->find("dtype")->text, "F32");
  EXPECT_EQ(w->find("shape")->items.size(), 2u);
  const JsonValue* nbt = h.find("2.num_batches_tracked");
  ASSERT_NE(nbt, nullptr);
  EXPECT_EQ(nbt->find("dtype")->text, "I64");  // as torch
  EXPECT_TRUE(nbt->find("shape")->items.empty());
  EXPECT_NE(h.find("2.running_mean"), nullptr);
  EXPECT_NE(h.find("optimizer.1.weight.exp_avg_sq"), nullptr);
  const JsonValue* m = h.find("__metadata__");
  ASSERT_NE(m, nullptr);
  for (const char* k : {"format", "format_version", "kiln_version", "config", "epoch", "batch", "step", "seed",
                        "train_sums", "last_lr", "last_momentum", "optimizer", "optimizer_steps", "schedule_state",
                        "data_crc32", "meta_crc32"}) {
    ASSERT_NE(m->find(k), nullptr) << k;
    EXPECT_TRUE(m->find(k)->is_string()) << k;
  }
  EXPECT_EQ(m->find("format_version")->text, "2");
  EXPECT_EQ(m->find("optimizer")->text, "adam");
}

TEST(Checkpoint, CorruptionsFailNamingTheFile) {
  Rig a;
  a.train(2, 5);
  std::vector<uint8_t> good = encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), sample_info());
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(good[i]) << (8 * i);
  auto header = [&](const std::vector<uint8_t>& b) { return std::string(b.begin() + 8, b.begin() + 8 + static_cast<long>(n)); };
  auto with_header = [&](std::string h) {  // same length keeps the offsets valid
    std::vector<uint8_t> b = good;
    h.resize(n, ' ');
    std::memcpy(b.data() + 8, h.data(), n);
    return b;
  };
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
  };

  expect_load_error({}, "truncated: 0 bytes");
  expect_load_error(std::vector<uint8_t>(good.begin(), good.begin() + 5), "truncated");
  expect_load_error(std::vector<uint8_t>(good.begin(), good.begin() + 8 + static_cast<long>(n) / 2),
                    "runs past the end of the file");
  expect_load_error(std::vector<uint8_t>(good.begin(), good.end() - 100), "run past the data section");
  std::vector<uint8_t> huge = good;
  huge[7] = 0x7f;
  expect_load_error(huge, "runs past the end of the file");
  expect_load_error(with_header(replace(header(good), "{\"__metadata__\"", "[\"__metadata__\"")), "not valid JSON");
  std::vector<uint8_t> flipped = good;
  flipped[good.size() - 3] ^= 0x10;
  expect_load_error(flipped, "data checksum mismatch");
  expect_load_error(with_header(replace(header(good), "\"epoch\":\"2\"", "\"epoch\":\"3\"")), "metadata checksum mismatch");
  expect_load_error(
      with_header(replace(header(good), "\"format_version\":\"2\"", "\"format_version\":\"9\"")),
      "format version '9'");
  expect_load_error(with_header(replace(header(good), "\"dtype\":\"F32\"", "\"dtype\":\"F16\"")), "data_offsets span");
  expect_load_error(with_header(replace(header(good), "\"dtype\":\"F32\"", "\"dtype\":\"Q99\"")), "unknown dtype");
  // Renamed with the checksums recomputed: the file is sound, the model misses a tensor.
  SafetensorsFile renamed = decode_safetensors(good.data(), good.size(), "x");
  for (auto& t : renamed.tensors)
    if (t.name == "1.weight") t.name = "9.weight";
  reseal(renamed);
  expect_load_error(encode_safetensors(renamed), "missing tensor 1.weight");
  // The per-epoch steps must account for the checkpoint's step (a sound file, resealed).
  for (const auto& [steps, want] : std::vector<std::pair<std::string, std::string>>{
           {"[12,9]",
            "epoch_steps add up to 21 steps and batch 5 of epoch 3 follows them, but "
            "the checkpoint is at step 25"},
           {"[20]", "epoch_steps must list the steps of each of the 2 epochs before"},
           {"[1000000000000000,1000000000000000]", "add up to more than the checkpoint's step 25"},
           {"[12,-8]", "epoch_steps: expected whole step counts"},
           {"[12,8.5]", "epoch_steps: expected whole step counts"},
           {"{}", "epoch_steps must list"},
           {"[12,", "__metadata__ epoch_steps: "}}) {
    SafetensorsFile f = decode_safetensors(good.data(), good.size(), "x");
    for (auto& kv : f.metadata)
      if (kv.first == "epoch_steps") kv.second = steps;
    reseal(f);
    expect_load_error(encode_safetensors(f), want);
  }
  // Counters past 1e15 (a sound file, resealed): 2^63-1 optimizer steps wrapped negative at the
  // next step (reported as a divergence), a step of 2^63-1 after one more. Values that are not
  // numbers come back escaped, on one line (expect_load_error checks for a newline).
  for (const auto& [key, value, want] : std::vector<std::array<std::string, 3>>{
           {"optimizer_steps", "9223372036854775807",
            "optimizer_steps 9223372036854775807 is past 1000000000000000"},
           {"step", "1000000000000001", "step 1000000000000001 is past 1000000000000000"},
           {"batch", "26", "batch 26 is past step 25"},
           {"step", "2\n\x1b[2Kkiln: all good",
            "step \"2\\n\\u001b[2Kkiln: all good\" is not a non-negative integer"},
           {"early_stop", "0.5 x\n2", "early_stop \"0.5 x\\n2\": expected"},
           // a patience count of INT_MAX wrapped at its next increment: early stopping never fired
           {"early_stop", "0.5 2147483647 1",
            "early_stop 0.5 2147483647 1: expected 'best wait best_epoch' (counts up to 2^30)"},
           {"optimizer", "adam\x1b[2J\nx",
            "saved with optimizer '\"adam\\u001b[2J\\nx\"', this run uses 'adam'"},
           // Sums and values that trained on as NaN, or failed later without the file's name
           // (until 2026-12-07).
           {"train_sums", "[\"a\",null,{}]",
            ": expected [loss, correct, count], finite, with whole counts"},
           {"train_sums", "[1.5,3,2]", "[1.5,3,2]: expected [loss, correct, count]"},
           {"train_sums", "[1.5,2.5,3]", "[1.5,2.5,3]: expected [loss, correct, count]"},
           {"train_sums", "[1e999,1,2]", "train_sums"},
           {"last_lr", "nan",
            "last_lr nan, last_momentum 0.9: not an lr >= 0 and a finite momentum"},
           {"last_lr", "-0.5", "not an lr >= 0"},
           {"watched_acc", "1e999", "watched_acc 1e999 is not an accuracy"},
           {"seed", "18446744073709551616",
            "seed 18446744073709551616 is not a non-negative integer below 2^64"},
           {"seed", "-1", "seed -1 is not a non-negative integer"},
           {"schedule_state", "plateau zz 0x1p0 1 1",
            "__metadata__ schedule_state: plateau schedule state plateau zz 0x1p0 1 1 is not "
            "readable"},
           {"schedule_state", "plateau -0x1p-1 0x1p0 1 1", "lr -0.5 is not a float lr >= 0"},
           {"schedule_state", "plateau 0x1p200 0x1p0 1 1", "is not a float lr >= 0"}}) {
    SafetensorsFile f = decode_safetensors(good.data(), good.size(), "x");
    bool found = false;
    for (auto& kv : f.metadata)
      if (kv.first == key) kv.second = value, found = true;
    if (!found) f.metadata.emplace_back(key, value);
    reseal(f);
    expect_load_error(encode_safetensors(f), want);
  }
  {  // a stored checksum that is not one, with a newline and a terminal escape: escaped
    SafetensorsFile f = decode_safetensors(good.data(), good.size(), "x");
    for (auto& kv : f.metadata)
      if (kv.first == "data_crc32") kv.second = "0000\nkiln: all good\x1b[2K";
    expect_load_error(encode_safetensors(f),
                      "(stored \"0000\\nkiln: all good\\u001b[2K\", computed");
  }

  // A different model shape names the tensor and both shapes.
  Rig wide(24, 1);
  std::vector<uint8_t> other = encode_checkpoint(wide.ctx, *wide.model, wide.opt.get(), wide.sched.get(), sample_info());
  expect_load_error(other, "tensor 1.weight has shape [24, 16], the model expects [16, 16]");
  // A different optimizer.
  Rig sgd;
  sgd.oo.name = "sgd";
  sgd.oo.momentum = 0.9f;
  sgd.opt = make_optimizer(sgd.oo, *sgd.model);
  std::vector<uint8_t> sgd_bytes = encode_checkpoint(sgd.ctx, *sgd.model, sgd.opt.get(), nullptr, sample_info());
  expect_load_error(sgd_bytes, "saved with optimizer 'sgd', this run uses 'adam'");
}

TEST(Checkpoint, DecoderRejectsBadLayouts) {
  SafetensorsFile f;
  f.tensors.push_back({"a", "F32", {2}, std::vector<uint8_t>(8, 1)});
  f.tensors.push_back({"b", "I64", {1}, std::vector<uint8_t>(8, 2)});
  std::vector<uint8_t> good = encode_safetensors(f);
  SafetensorsFile back = decode_safetensors(good.data(), good.size(), "x");
  ASSERT_EQ(back.tensors.size(), 2u);
  ASSERT_NE(back.find("b"), nullptr);
  EXPECT_EQ(back.find("b")->data, f.tensors[1].data);
  EXPECT_EQ(back.tensors[0].name, "b");  // the I64 first: both start at a multiple of their size
  auto craft = [](const std::string& header, size_t data_bytes) {
    std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(uint64_t(header.size()) >> (8 * i));
    std::memcpy(b.data() + 8, header.data(), header.size());
    return b;
  };
  struct Case {
    std::string header, want;
  } cases[] = {
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", "overlaps"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", "leaves a hole"},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "non-negative"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", "overflows"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "bytes after the last tensor"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", "unexpected keys"},
      {R"({"__metadata__":{"k":1}})", "metadata values are strings"},
      {R"([1])", "expected an object"},
  };
  for (const auto& c : cases) {
    std::vector<uint8_t> b = craft(c.header, 16);
    try {
      decode_safetensors(b.data(), b.size(), "file.st");
      ADD_FAILURE() << "accepted " << c.header;
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(c.want), std::string::npos) << c.header << " -> " << e.message();
      EXPECT_EQ(e.message().rfind("file.st: ", 0), 0u) << e.message();
    }
  }
}

TEST(Safetensors, HeadersAreValidUtf8BothWays) {
  // A non-UTF-8 byte (a Latin-1 path in the config) is written as \u00XX, which the reference
  // reader accepts and which reads back as that code point.
  SafetensorsFile f;
  f.metadata = {{"config", std::string("caf\xe9 \xc3\xa9 \xed\xa0\x80 \xf0\x9f\x98\x80")}};
  f.tensors.push_back({"t\xff", "F32", {1}, std::vector<uint8_t>(4, 0)});
  std::vector<uint8_t> bytes = encode_safetensors(f);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(bytes[i]) << (8 * i);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(utf8_error_offset(header), std::string::npos) << header;
  SafetensorsFile back = decode_safetensors(bytes.data(), bytes.size(), "x");
  // Valid sequences (é, the emoji) pass through; the lone e9 and the surrogate become U+00E9,
  // U+00ED ...
  EXPECT_EQ(*back.meta("config"), "caf\xc3\xa9 \xc3\xa9 \xc3\xad\xc2\xa0\xc2\x80 \xf0\x9f\x98\x80");
  EXPECT_EQ(back.tensors[0].name, "t\xc3\xbf");
  // A header with raw invalid bytes is refused, naming the byte.
  for (const std::string& bad :
       {std::string("\xff"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
        std::string("\xf4\x90\x80\x80"), std::string("\xe2\x82")}) {
    const std::string h = "{\"__metadata__\":{\"k\":\"" + bad + "\"}}";
    std::vector<uint8_t> b(8 + h.size());
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(uint64_t(h.size()) >> (8 * i));
    std::memcpy(b.data() + 8, h.data(), h.size());
    try {
      decode_safetensors(b.data(), b.size(), "file.st");
      ADD_FAILURE() << "accepted a header with bytes " << json_escape(bad);
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("file.st: header is not valid UTF-8 (byte 30 of the file)"),
                std::string::npos)
          << e.message();
    }
  }
  EXPECT_EQ(utf8_error_offset("ok \xc3\xa9 \xef\xbf\xbf \xf4\x8f\xbf\xbf"), std::string::npos);
  // Names from a file go into error messages escaped: one line, no terminal escapes.
  EXPECT_EQ(printable("1.weight"), "1.weight");
  EXPECT_EQ(printable("a\nb\x1b[2J"), "\"a\\nb\\u001b[2J\"");
}

TEST(Safetensors, HeaderLengthLimitIsTheReferences100MillionBytes) {
  std::vector<uint8_t> b(8 + 100000001, ' ');
  const uint64_t n = 100000001;
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (8 * i));
  try {
    decode_safetensors(b.data(), b.size(), "big.st");
    ADD_FAILURE() << "accepted a 100,000,001-byte header";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("exceeds the 100,000,000-byte limit"), std::string::npos)
        << e.message();
  }
}

namespace {
// The checkpoint re-encoded with its tensors in another order (as another safetensors writer
// may store them): the same names, dtypes, shapes and bytes, laid out differently.
std::vector<uint8_t> reordered(const std::vector<uint8_t>& bytes) {
  SafetensorsFile f = decode_safetensors(bytes.data(), bytes.size(), "x");
  std::reverse(f.tensors.begin(), f.tensors.end());
  return encode_safetensors(f);
}
}  // namespace

TEST(Checkpoint, ChecksumCoversNamesAndHoldsAnyTensorOrder) {
  Rig a(5);  // odd width: an I64 counter after 5-float tensors would sit off 8-byte alignment
  a.train(2, 5);
  const std::vector<uint8_t> good =
      encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), sample_info());
  // Every tensor starts at a multiple of its element size.
  SafetensorsFile f = decode_safetensors(good.data(), good.size(), "x");
  uint64_t hl = 0;
  for (int i = 0; i < 8; ++i) hl |= uint64_t(good[i]) << (8 * i);
  JsonValue h = parse_json(std::string(good.begin() + 8, good.begin() + 8 + static_cast<long>(hl)));
  for (const auto& [name, v] : h.members) {
    if (name == "__metadata__") continue;
    const int64_t begin = v.find("data_offsets")->items[0].as_int64();
    EXPECT_EQ(begin % static_cast<int64_t>(st_dtype_size(v.find("dtype")->text)), 0) << name;
  }
  // Stored in another order, the file still verifies and loads the same state.
  std::string path = temp_path("reordered.safetensors");
  write_all(path, reordered(good));
  Rig b(5, 9);
  load_checkpoint(path, b.ctx, *b.model, b.opt.get(), b.sched.get());
  EXPECT_EQ(b.snapshot(), a.snapshot());
  // Two same-shape tensors with their names swapped: the bytes are all there, the checksum
  // (which covers each tensor's name) says the file is corrupt.
  for (auto& t : f.tensors) {
    if (t.name == "2.running_mean")
      t.name = "2.running_var";
    else if (t.name == "2.running_var")
      t.name = "2.running_mean";
  }
  expect_load_error(encode_safetensors(f), "data checksum mismatch", 5);
  // The documented formula, computed here, is the one the file carries.
  SafetensorsFile sealed = decode_safetensors(good.data(), good.size(), "x");
  const std::string stored = *sealed.meta("data_crc32");
  reseal(sealed);
  EXPECT_EQ(*sealed.meta("data_crc32"), stored);
  // A version-1 file (checksum over the bytes alone, in header order) still loads.
  SafetensorsFile v1 = decode_safetensors(good.data(), good.size(), "x");
  uint32_t c = 0;
  for (const auto& t : v1.tensors) c = crc32(t.data.data(), t.data.size(), c);
  set_meta(v1, "format_version", "1");
  set_meta(v1, "data_crc32", hex(c));
  set_meta(v1, "meta_crc32", meta_crc_hex(v1.metadata));
  write_all(path, encode_safetensors(v1));
  Rig c1(5, 11);
  load_checkpoint(path, c1.ctx, *c1.model, c1.opt.get(), c1.sched.get());
  EXPECT_EQ(c1.snapshot(), a.snapshot());
  std::remove(path.c_str());
}

TEST(Checkpoint, AtomicWriteNeverReplacesANonRegularFile) {
  // The rename would put a regular file where a device or FIFO was (--save /dev/null as root
  // replaced /dev/null); a FIFO stands in for the device here.
  const std::string fifo = temp_path("fifo");
  std::remove(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const char bytes[] = "data";
  try {
    write_file_atomic(fifo, bytes, sizeof bytes);
    ADD_FAILURE() << "replaced a FIFO";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find(fifo + ": exists and is not a regular file"), std::string::npos)
        << e.message();
  }
  struct stat st;
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  std::remove(fifo.c_str());
}

TEST(Checkpoint, FailedWriteLeavesOldFileIntact) {
  Rig a;
  std::string path = temp_path("atomic.safetensors");
  write_all(path, {'o', 'l', 'd'});
  // Simulate a full disk midway: a file-size limit below the checkpoint size makes write()
  // fail with EFBIG after the first bytes (SIGXFSZ ignored so it is an error, not a kill).
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 1000;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    save_checkpoint(path, a.ctx, *a.model, a.opt.get(), a.sched.get(), sample_info());
  } catch (const Error& e) {
    msg = e.message();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(msg.find(path + ": write failed, previous file left untouched"), std::string::npos) << msg;
  EXPECT_EQ(read_all(path), (std::vector<uint8_t>{'o', 'l', 'd'}));
  // No temp file left behind.
  std::string dir = ::testing::TempDir();
  std::string probe = "ls " + dir + " | grep -c 'kiln_ckpt_" + std::to_string(getpid()) + "_atomic.safetensors.tmp' > /dev/null";
  EXPECT_NE(std::system(probe.c_str()), 0);
  // And a good write replaces it.
  save_checkpoint(path, a.ctx, *a.model, a.opt.get(), a.sched.get(), sample_info());
  Rig b(16, 3);
  load_checkpoint(path, b.ctx, *b.model, b.opt.get(), b.sched.get());
  std::remove(path.c_str());
}

namespace {
std::atomic<int> g_alarms{0};
void count_alarm(int) {
  g_alarms.fetch_add(1, std::memory_order_relaxed);
}

// Runs `work` on this thread while a 1 ms timer's SIGALRM handler, installed without
// SA_RESTART (as an embedding program's or a profiler's may be), interrupts it, and `helper`
// in a thread that never takes the signal; returns how often the handler ran during `work`.
// The helper's wait until the work has been interrupted more than 5 times (at most 5 s): a fixed
// sleep saw fewer alarms on a loaded machine, whose scheduler merges the pending ones.
void until_interrupted_often() {
  for (int i = 0; i < 5000 && g_alarms.load() <= 5; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

int interrupted_every_ms(const std::function<void()>& work, const std::function<void()>& helper) {
  sigset_t alrm, old_mask;
  sigemptyset(&alrm);
  sigaddset(&alrm, SIGALRM);
  EXPECT_EQ(pthread_sigmask(SIG_BLOCK, &alrm, &old_mask), 0);  // the helper inherits the block
  // Counted from 0 before the helper starts: it waits for this run's alarms, not the count the
  // previous test left (> 5; a main thread preempted after the start let it go on at once).
  g_alarms = 0;
  std::thread other(helper);
  struct sigaction sa = {};
  struct sigaction old_sa = {};
  sa.sa_handler = count_alarm;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART
  EXPECT_EQ(sigaction(SIGALRM, &sa, &old_sa), 0);
  EXPECT_EQ(pthread_sigmask(SIG_UNBLOCK, &alrm, nullptr), 0);
  struct itimerval tick = {};
  struct itimerval off = {};
  tick.it_interval.tv_usec = tick.it_value.tv_usec = 1000;
  EXPECT_EQ(setitimer(ITIMER_REAL, &tick, nullptr), 0);
  work();
  setitimer(ITIMER_REAL, &off, nullptr);
  const int alarms = g_alarms.load();
  other.join();
  sigaction(SIGALRM, &old_sa, nullptr);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  return alarms;
}
}  // namespace

// write_all against a slow reader while a signal handler without SA_RESTART interrupts the
// writer: every byte arrives, in order, through interrupted (EINTR) and short writes. Then the
// errors: /dev/full's ENOSPC, and fsync_retry's errno on a descriptor that cannot be synced.
TEST(FileIo, WriteAllSurvivesSignalsAndShortWritesAndReportsErrno) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::vector<uint8_t> data(1 << 22);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 2654435761u >> 24);
  std::vector<uint8_t> got;
  int err = -1;
  const int alarms = interrupted_every_ms(
      [&] {
        err = kiln::write_all(fds[1], data.data(), data.size());
        close(fds[1]);  // the reader's end of file
      },
      [&] {
        std::vector<uint8_t> buf(4096);
        std::this_thread::sleep_for(
            std::chrono::milliseconds(20));  // the pipe fills, the writer waits
        until_interrupted_often();
        for (;;) {
          const ssize_t r = read(fds[0], buf.data(), buf.size());
          if (r < 0 && errno == EINTR) continue;
          if (r <= 0) break;
          got.insert(got.end(), buf.data(), buf.data() + r);
          if (got.size() % (1 << 16) < 4096)
            std::this_thread::sleep_for(std::chrono::microseconds(300));
        }
      });
  close(fds[0]);
  EXPECT_EQ(err, 0) << std::strerror(err);
  EXPECT_GT(alarms, 5);  // the writer was interrupted, again and again
  EXPECT_TRUE(got == data) << got.size() << " of " << data.size() << " bytes, or out of order";

  const int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (full >= 0) {
    EXPECT_EQ(kiln::write_all(full, data.data(), 100), ENOSPC);
    close(full);
  }
  EXPECT_EQ(kiln::write_all(fds[1], data.data(), 1), EBADF);  // closed above
  EXPECT_EQ(kiln::fsync_retry(fds[1]), EBADF);
  EXPECT_EQ(kiln::write_all(-1, data.data(), 0), 0);  // nothing to write: no call
}

// flock_retry waits out a lock another open file description holds while a signal handler
// without SA_RESTART interrupts the wait (kiln's own handlers restart it): it returns once the
// holder lets go, not with EINTR.
TEST(FileIo, FlockRetryWaitsThroughSignals) {
  const std::string path = temp_path("flock");
  const int holder = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  const int waiter = open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(holder, 0);
  ASSERT_GE(waiter, 0);
  ASSERT_EQ(kiln::flock_retry(holder, LOCK_EX), 0);
  int err = -1;
  const int alarms =
      interrupted_every_ms([&] { err = kiln::flock_retry(waiter, LOCK_EX); },
                           [&] {
                             std::this_thread::sleep_for(std::chrono::milliseconds(40));
                             until_interrupted_often();
                             kiln::flock_retry(holder, LOCK_UN);
                           });
  EXPECT_EQ(err, 0) << std::strerror(err);
  EXPECT_GT(alarms, 5);  // the wait was interrupted, again and again
  EXPECT_EQ(kiln::flock_retry(-1, LOCK_EX), EBADF);
  close(waiter);
  close(holder);
  std::remove(path.c_str());
}

// A write removes the temp files that killed writers of this machine left for the same path, and
// nothing else: a live writer's, another machine's (same pid, other host tag), another file's.
TEST(Checkpoint, AtomicWriteRemovesStaleTempFilesOfDeadWriters) {
  const std::string dir = ::testing::TempDir() + "kiln_stale_" + std::to_string(getpid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  const std::string path = dir + "/run.safetensors";
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);  // reaped: the pid names no process now
  const std::string dead = atomic_temp_name(path, child, 3);
  const std::string live = atomic_temp_name(path, getpid(), 1000000);
  const std::string other_file = atomic_temp_name(dir + "/other.safetensors", child, 0);
  std::string foreign = dead;  // another machine's: flip one hex digit of the host tag
  const size_t tag_at = path.size() + 5;
  foreign[tag_at] = foreign[tag_at] == '0' ? '1' : '0';
  for (const std::string& f : {dead, live, other_file, foreign}) std::ofstream(f) << "partial";
  EXPECT_TRUE(is_stale_temp_file(dead.substr(dir.size() + 1)));
  EXPECT_FALSE(is_stale_temp_file(live.substr(dir.size() + 1)));
  EXPECT_FALSE(is_stale_temp_file(foreign.substr(dir.size() + 1)));
  EXPECT_FALSE(is_stale_temp_file("run.safetensors"));
  write_file_atomic(path, "new", 3);
  auto exists = [](const std::string& f) { return ::access(f.c_str(), F_OK) == 0; };
  EXPECT_FALSE(exists(dead));
  EXPECT_TRUE(exists(live));
  EXPECT_TRUE(exists(other_file));  // written next time other.safetensors is
  EXPECT_TRUE(exists(foreign));
  EXPECT_EQ(read_all(path), (std::vector<uint8_t>{'n', 'e', 'w'}));
  for (const std::string& f : {path, live, other_file, foreign}) std::remove(f.c_str());
  // Temp names this very pid left in an earlier life (a restarted container): the write takes
  // the next free one instead of failing at the end of a run.
  std::vector<std::string> taken;
  for (unsigned k = 0; k < 5000; ++k) {
    taken.push_back(atomic_temp_name(path, getpid(), k));
    std::ofstream(taken.back()) << "x";
  }
  write_file_atomic(path, "again", 5);
  EXPECT_EQ(read_all(path).size(), 5u);
  for (const std::string& f : taken) std::remove(f.c_str());
  std::remove(path.c_str());
  // A name near NAME_MAX (255) still has room for its temp file (the tag, pid and counter).
  const std::string longest = dir + "/" + std::string(250, 'm');
  write_file_atomic(longest, "long", 4);
  EXPECT_EQ(read_all(longest).size(), 4u);
  std::remove(longest.c_str());
  ::rmdir(dir.c_str());
}

// Two outputs of a run name the same file when they are one inode, or, not there yet, the same
// name in the same directory however either is spelt (--save a --log ./a replaced the log with
// the checkpoint: only the same text was caught).
TEST(Checkpoint, SameFileKnowsANameSpeltTwoWays) {
  const std::string dir = temp_path("same");
  test::RemoveAtExit cleanup;  // (in this order: the files, then the directories)
  const std::string f = cleanup.add(dir + "/f"), link = cleanup.add(dir + "/link");
  cleanup.add(dir + "/sub");
  cleanup.add(dir);
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir + "/sub").c_str(), 0755), 0);
  EXPECT_TRUE(same_file(dir + "/x", dir + "/x"));
  EXPECT_TRUE(same_file(dir + "/x", dir + "/./x"));
  EXPECT_TRUE(same_file(dir + "/x", dir + "/sub/../x"));
  EXPECT_TRUE(same_file(dir + "//x", dir + "/x"));
  EXPECT_FALSE(same_file(dir + "/x", dir + "/y"));
  EXPECT_FALSE(same_file(dir + "/x", dir + "/sub/x"));
  // Directories that do not exist either: compared by their spelling ("." parts dropped)
  EXPECT_TRUE(same_file(dir + "/no/x", dir + "/./no/x"));
  EXPECT_FALSE(same_file(dir + "/no/x", dir + "/other/x"));
  // Existing files: by inode (a link is its target); one there and one not: two files
  std::ofstream(f) << "f";
  ASSERT_EQ(::symlink(f.c_str(), link.c_str()), 0);
  EXPECT_TRUE(same_file(link, dir + "/sub/../f"));
  EXPECT_FALSE(same_file(f, dir + "/x"));
}

// Pruning periodic checkpoints also removes their dead writers' temp files: this kiln's
// (tagged) and an older kiln's (<name>.tmp.<pid>.<k>), but not another machine's tagged one.
TEST(Checkpoint, PruneRemovesDeadWritersTempFilesOldAndNew) {
  const std::string dir = ::testing::TempDir() + "kiln_prune_" + std::to_string(getpid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  const std::string name = dir + "/ckpt-epoch-1.safetensors";
  const std::string tagged = atomic_temp_name(name, child, 0);
  const std::string untagged = name + ".tmp." + std::to_string(child) + ".0";
  std::string foreign = tagged;
  const size_t tag_at = name.size() + 5;
  foreign[tag_at] = foreign[tag_at] == '0' ? '1' : '0';
  for (const std::string& f : {name, tagged, untagged, foreign}) std::ofstream(f) << "x";
  TrainPosition upto;
  upto.epoch = 1;
  prune_checkpoints(dir, 1, upto);
  auto exists = [](const std::string& f) { return ::access(f.c_str(), F_OK) == 0; };
  EXPECT_TRUE(exists(name));
  EXPECT_FALSE(exists(tagged));
  EXPECT_FALSE(exists(untagged));
  EXPECT_TRUE(exists(foreign));
  for (const std::string& f : {name, foreign}) std::remove(f.c_str());
  // Checkpoints with one modification time (a coarse clock: 1 s on NFSv3) are ordered by their
  // number, not their name's text (step-100 before step-99), and the one just written stays.
  for (const char* n : {"ckpt-step-99", "ckpt-step-100", "ckpt-step-101"}) {
    const std::string f = dir + "/" + n + ".safetensors";
    std::ofstream(f) << "x";
    const struct timespec same[2] = {{1700000000, 0}, {1700000000, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), same, 0), 0);
  }
  upto.step = 101;
  upto.batch = 3;  // mid-epoch: the step checkpoint's name
  EXPECT_EQ(prune_checkpoints(dir, 2, upto), "");
  EXPECT_FALSE(exists(dir + "/ckpt-step-99.safetensors"));
  EXPECT_TRUE(exists(dir + "/ckpt-step-100.safetensors"));
  EXPECT_TRUE(exists(dir + "/ckpt-step-101.safetensors"));
  // What cannot be deleted (here a directory of a checkpoint's name; for a user, a read-only
  // directory or a file another user owns) is reported, not passed over in silence.
  const std::string stuck = dir + "/ckpt-step-98.safetensors";
  ASSERT_EQ(::mkdir(stuck.c_str(), 0755), 0);
  const struct timespec old_time[2] = {{1600000000, 0}, {1600000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, stuck.c_str(), old_time, 0), 0);
  EXPECT_EQ(prune_checkpoints(dir, 1, upto), stuck + ": " + std::strerror(EISDIR));
  EXPECT_FALSE(exists(dir + "/ckpt-step-100.safetensors"));  // the others are still pruned
  EXPECT_TRUE(exists(dir + "/ckpt-step-101.safetensors"));
  ::rmdir(stuck.c_str());
  // On such a clock an epoch checkpoint sorts by the step in its metadata, not before every
  // step checkpoint: epoch 9 ended at step 104, after ckpt-step-102 (and -101).
  for (const auto& [n, step] :
       {std::pair<std::string, std::string>{"ckpt-step-102", "102"}, {"ckpt-epoch-9", "104"}}) {
    const std::string f = dir + "/" + n + ".safetensors";
    const std::string header = "{\"__metadata__\":{\"step\":\"" + step + "\"}}";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = char((header.size() >> (8 * i)) & 0xff);
    std::ofstream(f, std::ios::binary) << bytes << header;
    EXPECT_EQ(checkpoint_tag(f).step, std::stoll(step));
    const struct timespec same[2] = {{1700000001, 0}, {1700000001, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), same, 0), 0);
  }
  upto.epoch = 9;
  upto.step = 106;  // (batch 3: ckpt-step-106 just written, kept whatever its time)
  EXPECT_EQ(prune_checkpoints(dir, 2, upto), "");
  EXPECT_FALSE(exists(dir + "/ckpt-step-101.safetensors"));
  EXPECT_FALSE(exists(dir + "/ckpt-step-102.safetensors"));
  EXPECT_TRUE(exists(dir + "/ckpt-epoch-9.safetensors"));
  std::remove((dir + "/ckpt-epoch-9.safetensors").c_str());
  ::rmdir(dir.c_str());
}

// The trainer stopped mid-epoch at a step checkpoint and continued in a fresh process-like
// rig from the saved file ends bit for bit where an uninterrupted run ends.
TEST(Checkpoint, TrainerResumesMidEpochExactly) {
  Dataset ds;
  ds.name = "synthetic";
  int64_t N = 100;
  ds.images = Tensor::from_vector(test::random_vec(N * 16, 21), {N, 1, 4, 4}, Device::CPU);
  ds.host_labels.resize(N);
  for (int64_t i = 0; i < N; ++i) ds.host_labels[i] = static_cast<int32_t>(i % 3);
  ds.labels = std::make_shared<Buffer>(N * sizeof(int32_t), Device::CPU);
  std::memcpy(ds.labels->data(), ds.host_labels.data(), N * sizeof(int32_t));
  TrainOptions to;
  to.epochs = 3;
  to.batch_size = 16;
  to.progress = 0;
  auto run = [&](Rig& r, const TrainPosition* from, long long stop_after_step, std::string* ckpt) {
    Trainer t(*r.model, *r.opt, *r.sched, r.ctx, to);
    volatile std::sig_atomic_t flag = 0;
    t.stop_flag = &flag;
    t.checkpoint_every_steps = 4;
    t.on_checkpoint = [&](const TrainPosition& p, const std::string&) {
      if (!ckpt) return;
      CheckpointInfo info;
      info.pos = p;
      save_checkpoint(*ckpt, r.ctx, *r.model, r.opt.get(), r.sched.get(), info);
    };
    t.on_step = [&](long long s, float) {
      if (s == stop_after_step) flag = SIGTERM;
      return true;
    };
    if (from) {
      t.fit(ds, &ds, *from);
    } else {
      t.fit(ds, &ds);
    }
    return t.history();
  };
  Rig full(16, 5);
  auto hist_full = run(full, nullptr, -1, nullptr);
  std::string path = temp_path("resume.safetensors");
  Rig first(16, 5);
  run(first, nullptr, 9, &path);  // 7 batches per epoch: stops after step 10, in epoch 2
  Rig second(16, 77);
  CheckpointInfo info = load_checkpoint(path, second.ctx, *second.model, second.opt.get(), second.sched.get());
  EXPECT_EQ(info.pos.epoch, 1);
  EXPECT_EQ(info.pos.batch, 3);
  EXPECT_GT(info.pos.train_sums[2], 0);
  auto hist_resumed = run(second, &info.pos, -1, nullptr);
  auto sf = full.snapshot(), sr = second.snapshot();
  for (size_t i = 0; i < sf.size(); ++i)
    EXPECT_TRUE(test::bitwise_equal(sf[i].second, sr[i].second)) << sf[i].first;
  ASSERT_EQ(hist_resumed.size(), 2u);
  EXPECT_EQ(hist_resumed[0].train_loss, hist_full[1].train_loss);  // the epoch's metrics survive too
  EXPECT_EQ(hist_resumed[1].test_acc, hist_full[2].test_acc);
  // Resumed with --epochs at or below the checkpoint's epoch, nothing trains: the position it
  // hands on (a --save at the end) keeps the epoch's sums as given, not the device
  // accumulator's (never loaded in this fit).
  Rig third(16, 78);
  to.epochs = 1;
  Trainer idle(*third.model, *third.opt, *third.sched, third.ctx, to);
  EXPECT_TRUE(idle.fit(ds, &ds, info.pos).empty());
  const TrainPosition kept = idle.position();
  EXPECT_EQ(kept.batch, info.pos.batch);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(kept.train_sums[k], info.pos.train_sums[k]) << k;
  std::remove(path.c_str());
}

// ---- a host program's locale --------------------------------------------------------------
// An embedding program may call setlocale / std::locale::global with a locale whose decimal
// point is ',' (de_DE): printf, strtod and streams then write and read "0,5". kiln's files must
// not change (engine/numtext.h). The locale comes from the system, else is compiled with
// localedef (Debian's `locales` package, which scripts/install_deps.sh installs) into a
// temporary directory named by LOCPATH.
// glibc keeps the LOCPATH list that newlocale/setlocale parse (an argz) for good: LeakSanitizer
// (asan and emu presets) reports it as a leak, the C library's, not kiln's.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:argz_add_sep\n";  // __argz_add_sep with libc6-dbg, argz_add_sep without
}

namespace {

std::string comma_locale() {
  for (const char* name : {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "nl_NL.UTF-8"})
    if (locale_t l = newlocale(LC_ALL_MASK, name, static_cast<locale_t>(0))) {
      freelocale(l);
      return name;
    }
  const std::string dir = ::testing::TempDir() + "kiln_locale_" + std::to_string(getpid());
  const std::string cmd = "mkdir -p '" + dir + "' && localedef -c -i de_DE -f UTF-8 '" + dir +
                          "/de_DE.UTF-8' >/dev/null 2>&1";
  if (std::ifstream("/usr/share/i18n/locales/de_DE").good() && std::system(cmd.c_str()) >= 0) {
    setenv("LOCPATH", dir.c_str(), 1);
    if (locale_t l = newlocale(LC_ALL_MASK, "de_DE.UTF-8", static_cast<locale_t>(0))) {
      freelocale(l);
      return "de_DE.UTF-8";
    }
    unsetenv("LOCPATH");
  }
  return "";
}

// The host's locale for the scope of a test: both the C locale and the C++ global one.
struct HostLocale {
  explicit HostLocale(const std::string& name) { std::locale::global(std::locale(name.c_str())); }
  ~HostLocale() {
    std::locale::global(std::locale::classic());
    std::setlocale(LC_ALL, "C");
  }
};

}  // namespace

// A run continued from a checkpoint of an older kiln (no epoch_steps) with another batch size
// records the steps its schedule was sized with, so its own later checkpoints resume it
// exactly: cyclic's half cycle is the first epoch's steps (4 at batch 32, then 2 an epoch at
// 64); shared evenly over the two past epochs (3, 3) they gave other weights.
TEST(Checkpoint, ARunContinuedFromAnOlderCheckpointResumesExactly) {
  const std::string dir = ::testing::TempDir() + "kiln_upgrade_" + std::to_string(getpid());
  RunConfig c;
  c.device = "cpu";
  c.data.data_dir = test::data_dir();
  c.data.train_limit = 128;
  c.data.test_limit = 32;
  c.train.shuffle = false;
  c.model.model = "mlp";
  c.model.width = 16;
  c.model.depth = 1;
  c.optim.name = "sgd";
  c.optim.lr = 0.1f;
  c.optim.momentum = 0.9f;
  c.sched.name = "cyclic";
  c.train.epochs = 3;
  c.train.batch_size = 32;
  c.train.progress = 0;
  c.checkpoint_dir = dir + "/a";
  c.checkpoint_every = 1;
  run_training(c, {});
  // ckpt-epoch-1 as an older kiln wrote it: no epoch_steps, no run_id
  const std::string old = dir + "/old.safetensors";
  {
    SafetensorsFile f = read_checkpoint(dir + "/a/ckpt-epoch-1.safetensors");
    std::vector<std::pair<std::string, std::string>> kept;
    for (const auto& kv : f.metadata)
      if (kv.first != "epoch_steps" && kv.first != "run_id") kept.push_back(kv);
    ASSERT_EQ(kept.size() + 2, f.metadata.size());
    f.metadata = kept;
    reseal(f);
    const std::vector<uint8_t> bytes = encode_safetensors(f);
    write_file_atomic(old, bytes.data(), bytes.size());
  }
  RunConfig b = c;
  b.train.batch_size = 64;
  b.resume = old;
  b.checkpoint_dir = dir + "/b";
  b.save = dir + "/b.safetensors";
  run_training(b, {});
  EXPECT_EQ(
      checkpoint_position(read_checkpoint(dir + "/b/ckpt-epoch-2.safetensors"), "x").epoch_steps,
      (std::vector<long long>{4, 2}));
  RunConfig r = b;
  r.resume = dir + "/b/ckpt-epoch-2.safetensors";
  r.checkpoint_dir = dir + "/r";
  r.save = dir + "/r.safetensors";
  run_training(r, {});
  const SafetensorsFile want = read_safetensors(b.save), got = read_safetensors(r.save);
  ASSERT_EQ(want.tensors.size(), got.tensors.size());
  for (size_t i = 0; i < want.tensors.size(); ++i)
    EXPECT_EQ(want.tensors[i].data, got.tensors[i].data) << want.tensors[i].name;
  std::filesystem::remove_all(dir);
}

TEST(Locale, FilesKeepDotDecimalsUnderACommaLocale) {
  const std::string name = comma_locale();
  if (name.empty()) GTEST_SKIP() << "no locale with a decimal comma (install Debian's `locales`)";
  // Written in the C locale, read under the host's; and the other way round.
  Rig a(16, 1);
  a.train(4, 11);
  CheckpointInfo info = sample_info();
  info.pos.early_stop.best = 0.1234567890123;
  info.pos.watched_acc = 0.975;
  const std::vector<uint8_t> c_bytes =
      encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), info);
  const std::string dir = ::testing::TempDir() + "kiln_loc_" + std::to_string(getpid());
  const std::string sched_file = dir + ".schedule";
  write_all(sched_file,
            {'0', ' ', '0', '.', '0', '5', '\n', '2', ' ', '2', '.', '5', 'e', '-', '3', '\n'});
  std::vector<uint8_t> host_bytes;
  {
    HostLocale host(name);
    char probe[16];
    std::snprintf(probe, sizeof probe, "%g", 0.5);
    ASSERT_STREQ(probe, "0,5") << name << " is not in effect: this test would show nothing";

    EXPECT_EQ(json_number(0.5), "0.5");
    EXPECT_EQ(json_number(0.0123f), "0.0123");
    EXPECT_EQ(format_c("%.3f", 2.5), "2.500");
    // messages and layer names (error.h builds messages in the classic locale): "[1.234.567, 3]"
    // and "Dropout(p=0,5)" until 2026-12-07 (the embedding harness)
    EXPECT_EQ(shape_str({1234567, 3}), "[1234567, 3]");
    EXPECT_EQ(Dropout(0.5).describe(), "Dropout(p=0.5)");
    try {
      Tensor::zeros({1234567, 3}, Device::CPU).reshape({1000, 3});
      ADD_FAILURE() << "reshape to fewer elements";
    } catch (const Error& e) {
      EXPECT_EQ(e.message(), "reshape [1234567, 3] -> [1000, 3]: sizes differ");
    }
    JsonValue v = parse_json("{\"lr\":0.0123,\"e\":2.5e-3}");
    ASSERT_TRUE(v.find("lr") && v.find("e"));
    EXPECT_EQ(v.find("lr")->number, 0.0123);
    EXPECT_EQ(v.find("e")->number, 2.5e-3);

    // a checkpoint written in the C locale loads; one written now has '.' decimals
    Rig b(16, 2);
    CheckpointInfo got = load_checkpoint_bytes(c_bytes, "c-locale checkpoint", b.ctx, *b.model,
                                               b.opt.get(), b.sched.get());
    EXPECT_EQ(got.pos.last_lr, info.pos.last_lr);
    EXPECT_EQ(got.pos.train_sums[0], info.pos.train_sums[0]);
    EXPECT_EQ(got.pos.early_stop.best, info.pos.early_stop.best);
    EXPECT_EQ(got.pos.watched_acc, info.pos.watched_acc);
    EXPECT_EQ(b.sched->state(), a.sched->state());
    EXPECT_EQ(b.sched->lr(0, 0), a.sched->lr(0, 0));
    host_bytes = encode_checkpoint(a.ctx, *a.model, a.opt.get(), a.sched.get(), info);
    EXPECT_EQ(a.sched->state().find(','), std::string::npos) << a.sched->state();

    // a manual schedule file, the run options (--lr, YAML values) and the LR finder's CSV
    ScheduleOptions so;
    so.name = "manual";
    so.file = sched_file;
    auto manual = make_schedule(so, 0.1f, 10, 5);
    EXPECT_EQ(manual->lr(0, 0), 0.05f);
    EXPECT_EQ(manual->lr(3, 0), 2.5e-3f);
    RunConfig cfg;
    const char* argv[] = {"x", "--lr", "0.0123", "--val-split", "0.25"};
    parse_args(cfg, 5, const_cast<char**>(argv), run_options());
    EXPECT_EQ(cfg.optim.lr, 0.0123f);
    const std::string cj = run_config_json(cfg);
    EXPECT_NE(cj.find("0.0123"), std::string::npos) << cj;
    EXPECT_EQ(cj.find("0,0123"), std::string::npos) << cj;
    LrFindResult r;
    r.points.push_back({0, 0.5, 2.25, 2.25});
    write_lr_find_csv(dir + ".csv", r);
    std::ifstream csv(dir + ".csv");
    std::string header, row;
    std::getline(csv, header);
    std::getline(csv, row);
    EXPECT_EQ(row, "0,0.5,2.25,2.25");
  }
  Rig c(16, 3);
  CheckpointInfo back = load_checkpoint_bytes(host_bytes, "host-locale checkpoint", c.ctx, *c.model,
                                              c.opt.get(), c.sched.get());
  EXPECT_EQ(back.pos.last_lr, info.pos.last_lr);
  EXPECT_EQ(back.pos.early_stop.best, info.pos.early_stop.best);
  EXPECT_EQ(c.sched->state(), a.sched->state());
  EXPECT_EQ(host_bytes, c_bytes) << "the host's locale changed the checkpoint's bytes";
  for (const std::string& f : {sched_file, dir + ".csv", dir + ".csv.suggestions"})
    std::remove(f.c_str());
  if (const char* built = std::getenv("LOCPATH");
      built && std::string(built).find("kiln_locale_") != std::string::npos) {
    std::system(("rm -rf '" + std::string(built) + "'").c_str());  // the locale compiled above
    unsetenv("LOCPATH");
  }
}

// Sweep workers started together: one makes DIR/trials while another checks the checkpoint
// directory below it. A part of the path made between two looks at it was taken for a broken
// symbolic link (stat saw it missing, lstat then present: a worker exited 2 and its trials
// stayed unrecorded; the sweep harness, 2026-12-07). Here a thread makes directories while the
// check aims at the next one to be made, thousands of times.
TEST(CheckpointDir, APartMadeMeanwhileIsNoBrokenLink) {
  const std::string base = ::testing::TempDir() + "kiln_ckdir_race_" + std::to_string(getpid());
  std::filesystem::create_directories(base);
  constexpr int kDirs = 3000;
  std::atomic<int> made{0};
  std::thread maker([&] {
    for (int i = 0; i < kDirs; ++i) {
      ::mkdir((base + "/d" + std::to_string(i)).c_str(), 0755);
      made.store(i + 1);
    }
  });
  RunConfig c;
  c.checkpoint_every = 1;
  int checks = 0, errors = 0;
  std::string first;
  for (int k; (k = made.load()) < kDirs; ++checks) {
    c.checkpoint_dir = base + "/d" + std::to_string(k) + "/sub";
    try {
      check_output_paths(c);
    } catch (const Error& e) {
      if (errors++ == 0) first = e.message();
    }
  }
  maker.join();
  EXPECT_GT(checks, 0) << "the maker finished before any check ran";
  EXPECT_EQ(errors, 0) << "of " << checks << " checks; first: " << first;
  std::filesystem::remove_all(base);
}

// The same, every time: the walk's seam (detail::checkpoint_dir_before_look) makes a part before
// the walk's second look at it, so an order whose second look follows a miss (stat, then lstat:
// missing, then present) always sees it appear. The race above caught that order only
// sometimes on a loaded machine.
TEST(CheckpointDir, APartMadeRightAfterItsLookIsNoBrokenLink) {
  const std::string base = ::testing::TempDir() + "kiln_ckdir_seam_" + std::to_string(getpid());
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  static std::map<std::string, int> looks;
  static int made;
  looks.clear();
  made = 0;
  detail::checkpoint_dir_before_look = [](const std::string& part) {
    // (a part below one still missing: ENOENT)
    if (++looks[part] == 2) made += ::mkdir(part.c_str(), 0755) == 0;
  };
  RunConfig c;
  c.checkpoint_every = 1;
  c.checkpoint_dir = base + "/trials/sub";
  std::string error;
  try {
    check_output_paths(c);
  } catch (const Error& e) {
    error = e.message();
  }
  detail::checkpoint_dir_before_look = nullptr;
  EXPECT_EQ(error, "");
  EXPECT_GT(looks[base + "/trials"], 0) << "the walk never looked at the missing part";
  // Made only if the walk looked twice at a missing part: then it must have taken it as made.
  if (made > 0) EXPECT_TRUE(std::filesystem::is_directory(base + "/trials"));
  std::filesystem::remove_all(base);
}
