// Datasets: IDX and CIFAR-10 readers (round trips, the real MNIST subset, every bad-file case of
// tests/bad_inputs/), the BatchIterator's order and coverage, the crop/flip augmentation against
// an independent re-derivation, and the GPU gather/augmentation against the CPU reference.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/dataset.h"
#include "engine/error.h"
#include "kernels/data/data.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

// A fresh directory per test, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() / ("kiln_data_" + std::string(info->test_suite_name()) + "_" +
                                        info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// One gzip member of `in`; with `name`, the header's FNAME field holds it (a way to set the
// member's length to the byte).
std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t>& in, const std::string& name = "") {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  gz_header head{};
  std::vector<char> name_buf(name.begin(), name.end());
  name_buf.push_back(0);
  if (!name.empty()) {
    head.name = reinterpret_cast<Bytef*>(name_buf.data());
    EXPECT_EQ(deflateSetHeader(&zs, &head), Z_OK);
  }
  std::vector<uint8_t> out(deflateBound(&zs, in.size()) + 64 + name_buf.size());
  zs.next_in = const_cast<uint8_t*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::vector<uint8_t> make_idx(const std::vector<uint32_t>& dims,
                              const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> b = {0, 0, 8, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

std::vector<uint8_t> pattern(size_t n, int mul = 7) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * mul + 3) % 256);
  return v;
}

// The message of the kiln::Error fn throws (fails the test if it throws nothing else).
template <typename F>
std::string error_of(F&& fn, ErrorKind want = ErrorKind::Runtime) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), want) << e.what();
    return e.message();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-kiln exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

// Line 2 of a bad-input case's `expect` file: a substring its error message must contain.
std::string expected_message(const fs::path& case_dir) {
  std::ifstream f(case_dir / "expect");
  std::string code, msg;
  std::getline(f, code);
  std::getline(f, msg);
  EXPECT_EQ(code, "1") << case_dir;
  EXPECT_FALSE(msg.empty()) << case_dir;
  return msg;
}

// A CPU dataset whose sample i is filled with the value i (so a gathered row names its source).
Dataset indexed_dataset(int64_t n, const Shape& sample) {
  Shape shape = {n};
  shape.insert(shape.end(), sample.begin(), sample.end());
  int64_t row = shape_numel(sample);
  std::vector<float> v(static_cast<size_t>(n * row));
  for (int64_t i = 0; i < n; ++i) std::fill_n(v.begin() + i * row, row, static_cast<float>(i));
  Dataset ds;
  ds.name = "synthetic";
  ds.images = Tensor::from_vector(v, shape, Device::CPU);
  for (int64_t i = 0; i < n; ++i) ds.host_labels.push_back(static_cast<int32_t>((i * 3) % 10));
  ds.labels = std::make_shared<Buffer>(n * sizeof(int32_t), Device::CPU);
  copy_bytes(ds.labels->data(), Device::CPU, ds.host_labels.data(), Device::CPU,
             n * sizeof(int32_t));
  return ds;
}

Dataset random_dataset(int64_t n, const Shape& sample, uint64_t seed) {
  Dataset ds = indexed_dataset(n, sample);
  ds.images = Tensor::from_vector(test::random_vec(ds.images.numel(), seed), ds.images.shape(),
                                  Device::CPU);
  return ds;
}

// All sample indices of one epoch, in order, read back from an indexed_dataset.
std::vector<int64_t> epoch_order(BatchIterator& it, int epoch) {
  it.start_epoch(epoch);
  std::vector<int64_t> order;
  Tensor images;
  Buffer labels;
  int64_t count = 0;
  for (int64_t b = 0; it.batch(b, images, labels, count); ++b) {
    std::vector<float> v = images.to_vector();
    int64_t row = images.numel() / count;
    for (int64_t j = 0; j < count; ++j) order.push_back(static_cast<int64_t>(v[j * row]));
  }
  return order;
}

const fs::path kBad = fs::path(KILN_SOURCE_DIR) / "tests" / "bad_inputs";

}  // namespace

// ---- IDX --------------------------------------------------------------------------------------
TEST(Idx, RoundTripRawAndGz) {
  TempDir t;
  std::vector<uint8_t> payload = pattern(5 * 3 * 4);
  std::vector<uint8_t> file = make_idx({5, 3, 4}, payload);
  write_file(t.file("a.idx"), file);
  write_file(t.file("a.idx.gz"), gzip_bytes(file));
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    IdxArray a = read_idx(t.file(name));
    EXPECT_EQ(a.dims, (std::vector<int64_t>{5, 3, 4})) << name;
    EXPECT_EQ(a.data, payload) << name;
    EXPECT_EQ(read_file_maybe_gz(t.file(name)), file) << name;
  }
}

// A file larger than the memory left is OutOfMemory naming it, from every public reader of
// data files: the one exception type a library caller catches. Until 2026-12-06 read_idx,
// read_file_maybe_gz, load_idx_pair and load_cifar_files let std::bad_alloc out (the apps'
// load_dataset wrapped it, naming no file). A child caps its address space 24 MiB above what
// it maps and reads 96 MiB gzips of zeros. An image file whose header disagrees with its labels
// or with the shape asked for is refused by its header under the same cap: before 2026-12-07 a
// 100 KB gzip was inflated (to gigabytes, for a bigger one) before its shape was looked at.
TEST(Idx, AFileLargerThanTheMemoryLeftIsOutOfMemoryNamingIt) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizers reserve address space an RLIMIT_AS would take from them";
#else
  TempDir t;
  const int64_t n = 96 << 20;
  write_file(t.file("big.idx.gz"),
             gzip_bytes(make_idx({static_cast<uint32_t>(n)}, std::vector<uint8_t>(n))));
  const int64_t records = n / 3073 + 1;
  write_file(t.file("big.bin.gz"), gzip_bytes(std::vector<uint8_t>(records * 3073)));
  const uint32_t images = n / 784 + 1;
  write_file(t.file("img.idx.gz"),
             gzip_bytes(make_idx({images, 28, 28}, std::vector<uint8_t>(images * 784u))));
  write_file(t.file("lbl.idx"), make_idx({images}, std::vector<uint8_t>(images)));
  write_file(t.file("ten.idx"), make_idx({10}, std::vector<uint8_t>(10)));
  const std::string big = t.file("big.idx.gz"), cifar = t.file("big.bin.gz");
  const std::string img = t.file("img.idx.gz"), lbl = t.file("lbl.idx"), ten = t.file("ten.idx");
  test::expect_child_passes(
      [&] {
        if (!test::cap_address_space(24u << 20)) return 9;
        auto oom_naming = [](const std::string& path, const auto& f) {
          try {
            f();
          } catch (const Error& e) {
            return e.kind() == ErrorKind::OutOfMemory &&
                   e.message() == "reading " + path + ": out of memory";
          } catch (...) {
          }
          return false;
        };
        auto refused = [](const std::string& text, const auto& f) {
          try {
            f();
          } catch (const Error& e) {
            return e.kind() == ErrorKind::Runtime && e.message().find(text) != std::string::npos;
          } catch (...) {
          }
          return false;
        };
        if (!oom_naming(big, [&] { read_idx(big); })) return 1;
        if (!oom_naming(big, [&] { read_file_maybe_gz(big); })) return 2;
        const std::vector<float> mean{0}, sd{1};
        if (!oom_naming(img,
                        [&] { load_idx_pair(img, lbl, "pair", 0, false, mean, sd, Device::CPU); }))
          return 3;
        if (!oom_naming(cifar, [&] { load_cifar_files({cifar}, "c", 0, false, Device::CPU); }))
          return 4;
        if (!refused(img + " holds " + std::to_string(images) + " images but " + ten +
                         " holds 10 labels",
                     [&] { load_idx_pair(img, ten, "pair", 0, false, mean, sd, Device::CPU); }))
          return 5;
        if (!refused(img + ": images are [1, 28, 28], expected [1, 27, 28] for pair", [&] {
              load_idx_pair(img, lbl, "pair", 0, false, mean, sd, Device::CPU, {1, 27, 28});
            }))
          return 6;
        if (!refused("stop", [&] {
              read_idx(big, -1, [](const std::vector<int64_t>&) { KILN_FAIL("stop"); });
            }))
          return 7;
        return 0;
      },
      "1: read_idx, 2: read_file_maybe_gz, 3: load_idx_pair, 4: load_cifar_files did not give "
      "OutOfMemory 'reading FILE: out of memory'; 5: a label count, 6: a sample shape, 7: "
      "read_idx's header check did not refuse before the data; 9: no cap set");
#endif
}

// A record limit keeps only the first records (--train-limit of a large file needed the whole
// file's memory: a 9.7 MB gzip of zeros declaring 12.7M images asked for ~50 GB), while the rest
// is still read: its length, trailing bytes and gzip CRC are checked as before.
TEST(Idx, RecordLimitKeepsTheFirstRecordsAndStillChecksTheRest) {
  TempDir t;
  std::vector<uint8_t> payload = pattern(5 * 3 * 4);
  std::vector<uint8_t> file = make_idx({5, 3, 4}, payload);
  write_file(t.file("a.idx"), file);
  write_file(t.file("a.idx.gz"), gzip_bytes(file));
  std::vector<uint8_t> cut(file.begin(), file.end() - 1), extra = file;
  extra.push_back(7);
  write_file(t.file("cut.gz"), gzip_bytes(cut));
  write_file(t.file("extra.gz"), gzip_bytes(extra));
  std::vector<uint8_t> gz = gzip_bytes(file);
  gz[gz.size() - 6] ^= 1;  // the CRC32 in the trailer
  write_file(t.file("crc.gz"), gz);
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    for (int64_t limit : {0, 2, 5, 9}) {
      IdxArray a = read_idx(t.file(name), limit);
      EXPECT_EQ(a.dims, (std::vector<int64_t>{5, 3, 4})) << name;
      const size_t kept = static_cast<size_t>(std::min<int64_t>(limit, 5)) * 12;
      EXPECT_EQ(a.data, std::vector<uint8_t>(payload.begin(), payload.begin() + kept))
          << name << " " << limit;
    }
  }
  EXPECT_NE(error_of([&] {
              read_idx(t.file("cut.gz"), 2);
            }).find("truncated: expected 60 bytes of data after the 16-byte header, found 59"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_idx(t.file("extra.gz"), 2); }).find("1 trailing bytes"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_idx(t.file("crc.gz"), 2); }), "");
}

// A library caller's normalisation: a std of 0 filled the images with +-inf (torchvision's
// Normalize refuses it: "std evaluated to zero"), a NaN mean with NaN.
TEST(Idx, PairNormalisationNeedsNonZeroFiniteStd) {
  TempDir t;
  write_file(t.file("img"), make_idx({2, 2, 2}, pattern(8)));
  write_file(t.file("lbl"), make_idx({2}, {3, 7}));
  Dataset ok =
      load_idx_pair(t.file("img"), t.file("lbl"), "toy", 0, true, {0.5f}, {0.25f}, Device::CPU);
  EXPECT_EQ(ok.size(), 2);
  const std::pair<std::vector<float>, std::vector<float>> bad[] = {
      {{0.5f}, {0.f}}, {{0.5f}, {-0.f}}, {{std::nanf("")}, {1.f}}, {{0.5f}, {INFINITY}}};
  for (const auto& [mean, std_] : bad) {
    try {
      load_idx_pair(t.file("img"), t.file("lbl"), "toy", 0, true, mean, std_, Device::CPU);
      ADD_FAILURE() << "loaded with mean " << mean[0] << " std " << std_[0];
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_EQ(e.message().rfind("toy: normalisation mean ", 0), 0u) << e.message();
    }
  }
  // without normalisation the vectors are not read
  EXPECT_EQ(
      load_idx_pair(t.file("img"), t.file("lbl"), "toy", 0, false, {}, {}, Device::CPU).size(), 2);
}

TEST(Idx, MultiMemberGzipAndOneDim) {
  TempDir t;
  std::vector<uint8_t> file = make_idx({70000}, pattern(70000, 11));
  std::vector<uint8_t> first(file.begin(), file.begin() + 1000),
      rest(file.begin() + 1000, file.end());
  std::vector<uint8_t> gz = gzip_bytes(first), gz2 = gzip_bytes(rest);
  gz.insert(gz.end(), gz2.begin(), gz2.end());  // `cat a.gz b.gz` is one valid gzip file
  write_file(t.file("l.gz"), gz);
  IdxArray a = read_idx(t.file("l.gz"));
  EXPECT_EQ(a.dims, (std::vector<int64_t>{70000}));
  EXPECT_EQ(a.data, std::vector<uint8_t>(file.begin() + 8, file.end()));
  // The first member 65535 bytes long (mod the reader's 64 KiB buffer): the next member's magic
  // straddles two reads, one byte in each.
  const size_t plain = gzip_bytes(first).size(), name_len = (65535 - plain) % 65536 - 1;
  gz = gzip_bytes(first, std::string(name_len, 'n'));
  ASSERT_EQ(gz.size() % 65536, 65535u);
  gz.insert(gz.end(), gz2.begin(), gz2.end());
  write_file(t.file("straddle.gz"), gz);
  IdxArray b = read_idx(t.file("straddle.gz"));
  EXPECT_EQ(b.data, a.data);
  // Zero padding after a member (a tape or disk block; gzip -t and Python's gzip, which
  // torchvision reads with, accept it): between members, and at the end past a buffer's length.
  std::vector<uint8_t> padded = gzip_bytes(first);
  padded.insert(padded.end(), 3, 0);
  padded.insert(padded.end(), gz2.begin(), gz2.end());
  padded.insert(padded.end(), 70000, 0);
  write_file(t.file("padded.gz"), padded);
  EXPECT_EQ(read_idx(t.file("padded.gz")).data, a.data);
  // One stray byte after the last member is still corruption, after padding too.
  gz.push_back(0x1f);
  write_file(t.file("stray.gz"), gz);
  std::string m = error_of([&] { read_idx(t.file("stray.gz")); });
  EXPECT_NE(m.find("unexpected bytes after the gzip stream"), std::string::npos) << m;
  padded.push_back(0x1f);
  write_file(t.file("stray2.gz"), padded);
  m = error_of([&] { read_idx(t.file("stray2.gz")); });
  EXPECT_NE(m.find("unexpected bytes after the gzip stream at compressed byte offset " +
                   std::to_string(padded.size() - 1)),
            std::string::npos)
      << m;
}

TEST(Idx, MissingFileNamesIt) {
  std::string m = error_of([] { read_idx("/nonexistent/kiln/x-idx3-ubyte"); });
  EXPECT_NE(m.find("/nonexistent/kiln/x-idx3-ubyte: cannot open"), std::string::npos) << m;
}

// A gzip file whose header claims 2e9 bytes but inflates to 64: truncated, found without
// allocating what the header claims (reads grow with the data actually present).
TEST(Idx, GzipLyingHeaderIsTruncatedError) {
  TempDir t;
  write_file(t.file("big.gz"), gzip_bytes(make_idx({2000000000u, 1, 1}, pattern(64))));
  std::string m = error_of([&] { read_idx(t.file("big.gz")); });
  EXPECT_NE(m.find("big.gz: truncated: expected 2000000000 bytes of data after the 16-byte header, "
                   "found 64"),
            std::string::npos)
      << m;
}

// Every case of tests/bad_inputs/idx: read through load_dataset (as the apps do), it fails with
// a runtime error naming the broken file and saying what is wrong.
TEST(IdxBadInputs, EveryCaseNamesFileAndProblem) {
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(kBad / "idx")) {
    if (!entry.is_directory()) continue;
    ++cases;
    const std::string expect = expected_message(entry.path());
    DataOptions o;
    o.data_dir = entry.path().string();
    std::string m = error_of([&] { load_dataset(o, "train", Device::CPU); });
    SCOPED_TRACE(entry.path().filename().string() + ": " + m);
    EXPECT_NE(m.find(expect), std::string::npos);
    EXPECT_TRUE(m.find("train-images-idx3-ubyte") != std::string::npos ||
                m.find("train-labels-idx1-ubyte") != std::string::npos);
    EXPECT_EQ(m.find('\n'), std::string::npos);
    // The test split of every case is intact, so the error really is the broken file's.
    EXPECT_EQ(load_dataset(o, "test", Device::CPU).size(), 3);
  }
  EXPECT_GE(cases, 14);
}

// ---- MNIST subset and load_dataset ------------------------------------------------------------
TEST(MnistSubset, TrainShapeLabelsAndNormalisation) {
  DataOptions o;
  o.data_dir = test::data_dir();
  Dataset ds = load_dataset(o, "train", Device::CPU);
  EXPECT_EQ(ds.images.shape(), (Shape{2000, 1, 28, 28}));
  EXPECT_EQ(ds.name, "mnist/train");
  ASSERT_EQ(ds.host_labels.size(), 2000u);
  // The first labels of the real MNIST training set.
  EXPECT_EQ(std::vector<int32_t>(ds.host_labels.begin(), ds.host_labels.begin() + 5),
            (std::vector<int32_t>{5, 0, 4, 1, 9}));
  std::vector<int> hist(10);
  for (int32_t l : ds.host_labels) ++hist.at(l);
  for (int c = 0; c < 10; ++c)
    EXPECT_TRUE(hist[c] > 150 && hist[c] < 260) << "class " << c << ": " << hist[c];
  double sum = 0, sq = 0;
  std::vector<float> v = ds.images.to_vector();
  for (float x : v) sum += x, sq += double(x) * x;
  double mean = sum / v.size(), sd = std::sqrt(sq / v.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.03);
  EXPECT_NEAR(sd, 1.0, 0.03);
  EXPECT_EQ(std::memcmp(ds.label_data(), ds.host_labels.data(), 2000 * sizeof(int32_t)), 0);
}

TEST(MnistSubset, TestSplitLimitAndNoNormalisation) {
  DataOptions o;
  o.data_dir = test::data_dir();
  o.normalize = false;
  o.test_limit = 100;
  Dataset ds = load_dataset(o, "test", Device::CPU);
  EXPECT_EQ(ds.images.shape(), (Shape{100, 1, 28, 28}));
  EXPECT_EQ(std::vector<int32_t>(ds.host_labels.begin(), ds.host_labels.begin() + 5),
            (std::vector<int32_t>{7, 2, 1, 0, 4}));
  // Unnormalised pixels are bytes / 255 and match the file.
  IdxArray raw = read_idx(test::data_dir() + "/mnist/t10k-images-idx3-ubyte.gz");
  std::vector<float> v = ds.images.to_vector();
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], raw.data[i] / 255.f) << i;
  o.normalize = true;
  std::vector<float> n = load_dataset(o, "test", Device::CPU).images.to_vector();
  EXPECT_FLOAT_EQ(n[0], (0.f - 0.1307f) / 0.3081f);
  EXPECT_FLOAT_EQ(n[202], (raw.data[202] / 255.f - 0.1307f) / 0.3081f);
}

TEST(LoadDataset, UsageErrorsAndMissingFiles) {
  DataOptions o;
  o.dataset = "imagenet";
  std::string m = error_of([&] { load_dataset(o, "train", Device::CPU); }, ErrorKind::Usage);
  EXPECT_NE(m.find("mnist, fashion-mnist or cifar10"), std::string::npos) << m;
  o.dataset = "mnist";
  m = error_of([&] { load_dataset(o, "validation", Device::CPU); }, ErrorKind::Usage);
  TempDir t;
  o.data_dir = t.path.string();
  m = error_of([&] { load_dataset(o, "train", Device::CPU); });
  // names each missing file, the .gz alternative, and every directory searched
  EXPECT_NE(m.find("cannot find train-images-idx3-ubyte, train-labels-idx1-ubyte (raw or .gz)"), std::string::npos) << m;
  EXPECT_NE(m.find(" in " + t.file("mnist") + ", " + t.path.string() + ", " + t.file("MNIST/raw") +
                   ", " + t.file("raw") + "; run scripts/fetch_data.sh"),
            std::string::npos)
      << m;
  o.dataset = "cifar10";
  m = error_of([&] { load_dataset(o, "test", Device::CPU); });
  EXPECT_NE(m.find("test_batch.bin"), std::string::npos) << m;
  EXPECT_NE(m.find("--cifar-dir"), std::string::npos) << m;
}

TEST(LoadDataset, OtherToolsLayoutsLoad) {
  // torchvision's download folder (root/MNIST/raw/, raw and .gz side by side) from its root,
  // and the Kaggle / Windows-unzip names with a dot (t10k-images.idx3-ubyte), raw or .gz.
  const fs::path src = fs::path(test::data_dir()) / "mnist";
  DataOptions o;
  o.test_limit = 10;
  o.normalize = false;
  const std::vector<float> want = [&] {
    o.data_dir = test::data_dir();
    return load_dataset(o, "test", Device::CPU).images.to_vector();
  }();
  for (const std::string layout : {"torchvision", "kaggle"}) {
    TempDir t;
    const bool tv = layout == "torchvision";
    const fs::path dir = tv ? t.path / "MNIST" / "raw" : t.path;
    fs::create_directories(dir);
    for (const std::string f : {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
      const std::string name =
          tv ? f + ".gz"
             : f.substr(0, f.find("-idx")) + ".idx" + f.substr(f.find("-idx") + 4) + ".gz";
      fs::copy_file(src / (f + ".gz"), dir / name);
    }
    o.data_dir = t.path.string();
    Dataset ds = load_dataset(o, "test", Device::CPU);
    EXPECT_EQ(ds.images.to_vector(), want) << layout;
    EXPECT_EQ(ds.note, "") << layout;
  }
}

TEST(LoadDataset, MissingFilesSayWhy) {
  TempDir t;
  DataOptions o;
  const auto why = [&](const std::string& dir, const std::string& dataset = "mnist") {
    o.data_dir = dir;
    o.dataset = dataset;
    return error_of([&] { load_dataset(o, "test", Device::CPU); });
  };
  auto has = [](const std::string& m, const std::string& part) {
    return m.find(part) != std::string::npos;
  };
  std::string m = why(t.file("nope"));
  EXPECT_TRUE(has(m, "; " + t.file("nope") + ": No such file or directory")) << m;
  m = why("no-such-dir-here");
  EXPECT_TRUE(has(m, "; no-such-dir-here (relative to " + fs::current_path().string() + "): "))
      << m;
  m = why("~/no-such-dir-here");
  EXPECT_TRUE(has(m, "'~' is not expanded here")) << m;
  write_file(t.file("mnist.npz"), {'P', 'K', 3, 4});
  m = why(t.file("mnist.npz"));
  EXPECT_TRUE(has(m, "is a file, not the directory holding the files; mnist.npz is Keras'")) << m;
  m = why(t.path.string());  // the .npz in the directory
  EXPECT_TRUE(has(m, "mnist.npz is Keras' NumPy archive, not IDX")) << m;
  fs::remove(t.file("mnist.npz"));
  fs::create_symlink(t.file("gone"), t.file("t10k-images-idx3-ubyte.gz"));
  m = why(t.path.string());
  EXPECT_TRUE(has(m, t.file("t10k-images-idx3-ubyte.gz") + " is a dangling symlink")) << m;
  fs::remove(t.file("t10k-images-idx3-ubyte.gz"));
  // <data_dir>/mnist a file (access() answered EACCES for it: "permission denied")
  write_file(t.file("mnist"), {'x'});
  m = why(t.path.string());
  EXPECT_TRUE(has(m, t.file("mnist") + " is a file, not the directory holding the files")) << m;
  EXPECT_FALSE(has(m, "permission denied")) << m;
  fs::remove(t.file("mnist"));
  fs::create_directories(t.path / "cifar-10-batches-py");
  write_file(t.file("cifar-10-batches-py/data_batch_1"), {0x80, 2});
  m = why(t.path.string(), "cifar10");
  EXPECT_TRUE(has(m, "the Python (pickle) version of CIFAR-10")) << m;
  fs::remove_all(t.path / "cifar-10-batches-py");
  write_file(t.file("cifar-10-binary.tar.gz"), {0x1f, 0x8b});
  m = why(t.path.string(), "cifar10");
  EXPECT_TRUE(has(m, "unpack it first: tar xzf " + t.file("cifar-10-binary.tar.gz"))) << m;
  fs::remove(t.file("cifar-10-binary.tar.gz"));
  write_file(t.file("train.bin"), {1, 2});
  m = why(t.path.string(), "cifar10");
  EXPECT_TRUE(has(m, "this looks like CIFAR-100")) << m;
  fs::remove(t.file("train.bin"));
  m = why(t.path.string(), "cifar10");
  EXPECT_TRUE(has(m, "must be supplied: --data-dir at the unpacked cifar-10-binary.tar.gz")) << m;
  m = why(t.file("nope"));  // a location hint comes with the usual advice, a layout's without
  EXPECT_TRUE(has(m, ": No such file or directory; run scripts/fetch_data.sh")) << m;
  write_file(t.file("mnist.npz"), {'P', 'K', 3, 4});
  m = why(t.path.string());
  EXPECT_FALSE(has(m, "fetch_data.sh to download")) << m;
  // The message ends with a layout's hint (it ended in "; "), which is found in
  // <data_dir>/<dataset>/ too, where fetch_data.sh puts the data (the usual advice came there).
  const auto ends_with = [](const std::string& m, const std::string& tail) {
    return m.size() >= tail.size() && m.compare(m.size() - tail.size(), tail.size(), tail) == 0;
  };
  EXPECT_TRUE(ends_with(m, "(docs/FORMATS.md)")) << m;
  fs::remove(t.file("mnist.npz"));
  fs::create_directories(t.path / "mnist");
  write_file(t.file("mnist/mnist.npz"), {'P', 'K', 3, 4});
  m = why(t.path.string());
  EXPECT_TRUE(has(m, "mnist.npz is Keras' NumPy archive, not IDX")) << m;
  fs::create_directories(t.path / "cifar10");
  write_file(t.file("cifar10/cifar-10-binary.tar.gz"), {0x1f, 0x8b});
  m = why(t.path.string(), "cifar10");
  const std::string sub = t.file("cifar10");
  EXPECT_TRUE(
      ends_with(m, "; unpack it first: tar xzf " + sub + "/cifar-10-binary.tar.gz -C " + sub))
      << m;
  fs::remove(t.file("cifar10/cifar-10-binary.tar.gz"));
  write_file(t.file("cifar10/data_batch_1"), {0x80, 2});
  m = why(t.path.string(), "cifar10");
  EXPECT_TRUE(ends_with(m, "; kiln reads the binary version: cifar-10-binary.tar.gz, unpacked"))
      << m;
}

TEST(LoadDataset, ALimitPastTheSetIsNoted) {
  // The committed subset holds 2,000 training and 500 test images: a limit past them takes
  // all, and says so (a sweep over train_limit ran one trial twice under two labels).
  DataOptions o;
  o.data_dir = test::data_dir();
  o.train_limit = 60000;
  o.test_limit = 500;
  const Dataset train = load_dataset(o, "train", Device::CPU);
  EXPECT_EQ(train.size(), 2000);
  EXPECT_EQ(train.note, "--train-limit 60000 is past the 2000 images of mnist/train: all are used");
  EXPECT_EQ(load_dataset(o, "test", Device::CPU).note, "");  // exactly the set: nothing to say
  o.test_limit = 501;
  EXPECT_NE(load_dataset(o, "test", Device::CPU).note.find("--test-limit 501 is past the 500"),
            std::string::npos);
}

TEST(LoadDataset, NotesFilesThatLookLikeAnotherDataset) {
  // MNIST's test files (mean pixel 0.13), bright ones (0.29, Fashion-MNIST's) and inverted
  // ones (0.87) in each split: the note names the split's images file and what it looks like.
  TempDir t;
  const fs::path src = fs::path(test::data_dir()) / "mnist";
  IdxArray img = read_idx((src / "t10k-images-idx3-ubyte.gz").string());
  const IdxArray labels = read_idx((src / "t10k-labels-idx1-ubyte.gz").string());
  const uint32_t n = 200;
  auto images = [&](int kind) {  // 0 as is, 1 brightened, 2 inverted
    std::vector<uint8_t> px(img.data.begin(), img.data.begin() + n * 784);
    for (uint8_t& p : px)
      p = kind == 0 ? p : kind == 1 ? static_cast<uint8_t>(std::min(255, p + 42)) : 255 - p;
    return make_idx({n, 28, 28}, px);
  };
  const std::vector<uint8_t> lab =
      make_idx({n}, std::vector<uint8_t>(labels.data.begin(), labels.data.begin() + n));
  DataOptions o;
  o.data_dir = t.path.string();
  for (const std::string split : {"train", "test"}) {
    const std::string pre = split == "train" ? "train" : "t10k";
    write_file(t.file(pre + "-labels-idx1-ubyte"), lab);
    for (int kind : {0, 1, 2}) {
      write_file(t.file(pre + "-images-idx3-ubyte"), images(kind));
      for (const std::string dataset : {"mnist", "fashion-mnist"}) {
        o.dataset = dataset;
        const std::string note = load_dataset(o, split, Device::CPU).note;
        const std::string what = split + " " + std::to_string(kind) + " as " + dataset;
        if ((kind == 0 && dataset == "mnist") || (kind == 1 && dataset == "fashion-mnist")) {
          EXPECT_EQ(note, "") << what;
          continue;
        }
        EXPECT_EQ(note.rfind(t.file(pre + "-images-idx3-ubyte") + ": mean pixel ", 0), 0u)
            << what << ": " << note;
        const std::string says = kind == 2   ? "is neither MNIST's (0.131) nor Fashion-MNIST's"
                                 : kind == 1 ? "is Fashion-MNIST's (MNIST's is 0.131), not mnist's"
                                             : "is MNIST's (Fashion-MNIST's is 0.286), not "
                                               "fashion-mnist's";
        EXPECT_NE(note.find(says), std::string::npos) << what << ": " << note;
      }
    }
    // Under 100 images nothing is decided.
    o.dataset = "mnist";
    (split == "train" ? o.train_limit : o.test_limit) = 99;
    EXPECT_EQ(load_dataset(o, split, Device::CPU).note, "") << split;
    (split == "train" ? o.train_limit : o.test_limit) = 0;
    write_file(t.file(pre + "-images-idx3-ubyte"), images(0));
  }
  // A validation split keeps the training file's note on both parts.
  write_file(t.file("train-images-idx3-ubyte"), images(1));
  o.val_split = 0.25;
  TrainValSplit tv = load_train_val(o, Device::CPU);
  EXPECT_NE(tv.train.note.find("is Fashion-MNIST's"), std::string::npos) << tv.train.note;
  EXPECT_EQ(tv.val.note, tv.train.note);
}

TEST(LoadDataset, ASplitsFilesComeFromOneDirectory) {
  // Images in DIR/mnist, labels only in DIR: no directory holds both, so no silent mix of two
  // copies; with both also in DIR, DIR's pair loads (not DIR/mnist's images with DIR's labels).
  TempDir t;
  const fs::path src = fs::path(test::data_dir()) / "mnist";
  fs::create_directories(t.path / "mnist");
  fs::copy_file(src / "t10k-images-idx3-ubyte.gz", t.path / "mnist" / "t10k-images-idx3-ubyte.gz");
  fs::copy_file(src / "t10k-labels-idx1-ubyte.gz", t.path / "t10k-labels-idx1-ubyte.gz");
  DataOptions o;
  o.data_dir = t.path.string();
  o.test_limit = 10;
  std::string m = error_of([&] { load_dataset(o, "test", Device::CPU); });
  EXPECT_NE(m.find("mnist/test: its files are split across directories (" +
                   t.file("mnist/t10k-images-idx3-ubyte.gz") + ", " +
                   t.file("t10k-labels-idx1-ubyte.gz") + "); put them in one"),
            std::string::npos)
      << m;
  // What an output must spare is no error: the files as found (kiln_eval --dump-logits, which
  // looks at the split it does not score too, failed on it).
  EXPECT_EQ(dataset_files(o, "test").files,
            (std::vector<std::string>{t.file("mnist/t10k-images-idx3-ubyte.gz"),
                                      t.file("t10k-labels-idx1-ubyte.gz")}));
  EXPECT_TRUE(dataset_files(o, "train").files.empty());  // none there
  fs::copy_file(src / "t10k-images-idx3-ubyte.gz", t.path / "t10k-images-idx3-ubyte.gz");
  fs::resize_file(t.path / "mnist" / "t10k-images-idx3-ubyte.gz", 10);  // DIR/mnist's is broken
  EXPECT_EQ(load_dataset(o, "test", Device::CPU).size(), 10);
}

TEST(LoadDataset, ValidationSplitIsTheLastFractionLikeKeras) {
  DataOptions o;
  o.data_dir = test::data_dir();
  o.train_limit = 90;
  const std::vector<float> all = load_dataset(o, "train", Device::CPU).images.to_vector();
  const std::vector<int32_t> labels = load_dataset(o, "train", Device::CPU).host_labels;
  const int64_t row = 28 * 28;
  // Keras: split_at = int(n * (1 - validation_split)) in double precision; 90 * (1 - 0.3) is
  // 62.99999999999999, so 62 samples train and 28 validate (not 63 and 27).
  o.val_split = 0.3;
  TrainValSplit tv = load_train_val(o, Device::CPU);
  ASSERT_EQ(tv.train.size(), 62);
  ASSERT_EQ(tv.val.size(), 28);
  EXPECT_EQ(tv.train.images.to_vector(), std::vector<float>(all.begin(), all.begin() + 62 * row));
  EXPECT_EQ(tv.val.images.to_vector(), std::vector<float>(all.begin() + 62 * row, all.end()));
  EXPECT_EQ(tv.train.host_labels, std::vector<int32_t>(labels.begin(), labels.begin() + 62));
  EXPECT_EQ(tv.val.host_labels, std::vector<int32_t>(labels.begin() + 62, labels.end()));
  // the label buffers the batch gather reads hold the same labels
  auto buffer = [](const Dataset& d) {
    return std::vector<int32_t>(d.label_data(), d.label_data() + d.size());
  };
  EXPECT_EQ(buffer(tv.train), tv.train.host_labels);
  EXPECT_EQ(buffer(tv.val), tv.val.host_labels);
  // the named splits are the same rows
  EXPECT_EQ(load_dataset(o, "train", Device::CPU).host_labels, tv.train.host_labels);
  EXPECT_EQ(load_dataset(o, "val", Device::CPU).images.to_vector(), tv.val.images.to_vector());
  EXPECT_NE(tv.val.name.find("val"), std::string::npos) << tv.val.name;
  // a batch of the validation split is its first rows
  BatchIterator it(tv.val, 8, false, 0);
  it.start_epoch(0);
  Tensor x;
  Buffer y;
  int64_t n = 0;
  ASSERT_TRUE(it.batch(0, x, y, n));
  EXPECT_EQ(x.to_vector(), std::vector<float>(all.begin() + 62 * row, all.begin() + 70 * row));

  o.val_split = 0;  // no split: no validation set, and asking for one is a usage error
  EXPECT_EQ(load_train_val(o, Device::CPU).val.size(), 0);
  std::string m = error_of([&] { load_dataset(o, "val", Device::CPU); }, ErrorKind::Usage);
  EXPECT_NE(m.find("--val-split"), std::string::npos) << m;
  o.train_limit = 10;  // int(10 * 0.1) = 0 left to train on (Keras would train on nothing)
  o.val_split = 0.9;
  m = error_of([&] { load_train_val(o, Device::CPU); }, ErrorKind::Usage);
  EXPECT_NE(m.find("--val-split 0.9 of 10 training samples leaves 0 to train on"),
            std::string::npos)
      << m;
  for (double bad : {1.0, -0.1}) {
    o.val_split = bad;
    m = error_of([&] { load_train_val(o, Device::CPU); }, ErrorKind::Usage);
    EXPECT_NE(m.find("must be in [0, 1)"), std::string::npos) << m;
  }
}

// ---- CIFAR-10 ---------------------------------------------------------------------------------
TEST(Cifar, GeneratedFilesLoadWithLayoutAndNormalisation) {
  TempDir t;
  // Records per train file 3, 2, 1, 1, 2 (labels i % 10, pixels a function of (i, k)); test: 4.
  const int per_file[5] = {3, 2, 1, 1, 2};
  std::vector<std::vector<uint8_t>> records;
  auto record = [](int i) {
    std::vector<uint8_t> r(3073);
    r[0] = static_cast<uint8_t>(i % 10);
    for (int k = 0; k < 3072; ++k) r[1 + k] = static_cast<uint8_t>((i * 31 + k * 5) % 256);
    return r;
  };
  int i = 0;
  for (int f = 0; f < 5; ++f) {
    std::vector<uint8_t> bytes;
    for (int r = 0; r < per_file[f]; ++r, ++i) {
      records.push_back(record(i));
      bytes.insert(bytes.end(), records.back().begin(), records.back().end());
    }
    std::string name = "cifar10/data_batch_" + std::to_string(f + 1) + ".bin";
    write_file(t.file(name), f == 2 ? gzip_bytes(bytes) : bytes);  // gzip is fine too
  }
  std::vector<uint8_t> test_bytes;
  for (int r = 0; r < 4; ++r) {
    std::vector<uint8_t> rec = record(100 + r);
    test_bytes.insert(test_bytes.end(), rec.begin(), rec.end());
  }
  write_file(t.file("cifar10/test_batch.bin"), test_bytes);

  DataOptions o;
  o.dataset = "cifar10";
  o.data_dir = t.path.string();
  Dataset ds = load_dataset(o, "train", Device::CPU);
  ASSERT_EQ(ds.images.shape(), (Shape{9, 3, 32, 32}));
  const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, sd[3] = {0.2470f, 0.2435f, 0.2616f};
  std::vector<float> v = ds.images.to_vector();
  for (int n = 0; n < 9; ++n) {
    EXPECT_EQ(ds.host_labels[n], n % 10);
    for (int c = 0; c < 3; ++c)
      for (int p : {0, 33, 1023}) {
        float want = (records[n][1 + c * 1024 + p] / 255.f - mean[c]) / sd[c];
        ASSERT_FLOAT_EQ(v[(n * 3 + c) * 1024 + p], want) << n << " " << c << " " << p;
      }
  }
  // Black, the augmentation's padding: a 0 byte normalised (torchvision pads before Normalize);
  // without normalisation, 0.
  ASSERT_EQ(ds.black.size(), 3u);
  for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(ds.black[c], -mean[c] / sd[c]) << c;
  EXPECT_NEAR(ds.black[0], -1.9895, 1e-4);
  EXPECT_EQ(slice_rows(ds, 1, 3, "s").black, ds.black);
  DataOptions raw = o;
  raw.normalize = false;
  EXPECT_EQ(load_dataset(raw, "train", Device::CPU).black, (std::vector<float>{0, 0, 0}));
  o.train_limit = 4;  // spans the first two files
  Dataset lim = load_dataset(o, "train", Device::CPU);
  EXPECT_EQ(lim.size(), 4);
  EXPECT_EQ(lim.images.to_vector(), std::vector<float>(v.begin(), v.begin() + 4 * 3072));
  Dataset test = load_dataset(o, "test", Device::CPU);
  EXPECT_EQ(test.size(), 4);
  EXPECT_EQ(test.host_labels[0], 0);  // 100 % 10
}

TEST(CifarBadInputs, EveryCaseNamesFileAndRecord) {
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(kBad / "cifar")) {
    if (!entry.is_directory()) continue;
    ++cases;
    const std::string expect = expected_message(entry.path());
    DataOptions o;
    o.dataset = "cifar10";
    o.data_dir = entry.path().string();
    std::string m = error_of([&] { load_dataset(o, "train", Device::CPU); });
    SCOPED_TRACE(entry.path().filename().string() + ": " + m);
    EXPECT_NE(m.find(expect), std::string::npos);
    EXPECT_NE(m.find("data_batch_"), std::string::npos);
    // The same under --train-limit 1: every record is checked, not only those kept (a limit
    // passed over a corrupt record, a short gzip stream or a bad later file).
    o.train_limit = 1;
    EXPECT_EQ(error_of([&] { load_dataset(o, "train", Device::CPU); }), m);
    EXPECT_EQ(load_dataset(o, "test", Device::CPU).size(), 1);
  }
  EXPECT_GE(cases, 4);
}

TEST(Cifar, BadSizeCaughtBeforeReadingRecords) {
  TempDir t;
  write_file(t.file("b.bin"), std::vector<uint8_t>(3073 * 2 + 5));
  std::string m = error_of([&] { load_cifar_files({t.file("b.bin")}, "x", 0, true, Device::CPU); });
  EXPECT_NE(m.find(t.file("b.bin") + ": size 6151 is not a multiple"), std::string::npos) << m;
  EXPECT_NE(m.find("record 2 (at byte 6146) has only 5 bytes"), std::string::npos) << m;
}

// A raw file past the record cap is refused by its size, naming it, before memory is reserved
// for its records (a sparse 3 GB file of valid zero records here; it was "out of memory").
TEST(Cifar, TooManyRecordsRefusedBySize) {
  TempDir t;
  const std::string path = t.file("huge.bin");
  std::ofstream(path).close();
  ASSERT_EQ(::truncate(path.c_str(), 3073LL * 1000001), 0);
  std::string m = error_of([&] { load_cifar_files({path}, "x", 10, true, Device::CPU); });
  EXPECT_NE(m.find(path + ": 1000001 records, more than 1000000; not a CIFAR-10 batch"),
            std::string::npos)
      << m;
  std::remove(path.c_str());
}

// ---- BatchIterator ----------------------------------------------------------------------------
TEST(BatchIterator, CoversEverySampleOncePartialLastBatch) {
  Dataset ds = indexed_dataset(103, {1, 2, 3});
  BatchIterator it(ds, 10, true, 42);
  EXPECT_EQ(it.batches_per_epoch(), 11);
  it.start_epoch(0);
  Tensor images;
  Buffer labels;
  int64_t count = 0;
  std::vector<int> seen(103);
  const float* first_ptr = nullptr;
  for (int64_t b = 0; b < 11; ++b) {
    ASSERT_TRUE(it.batch(b, images, labels, count));
    EXPECT_EQ(count, b == 10 ? 3 : 10);
    EXPECT_EQ(images.shape(), (Shape{count, 1, 2, 3}));
    if (b == 0) first_ptr = images.data();
    EXPECT_EQ(images.data(), first_ptr) << "batch tensor must be reused";
    EXPECT_GE(labels.bytes(), 10 * sizeof(int32_t));
    std::vector<float> v = images.to_vector();
    for (int64_t j = 0; j < count; ++j) {
      int64_t i = static_cast<int64_t>(v[j * 6]);
      for (int k = 0; k < 6; ++k) ASSERT_EQ(v[j * 6 + k], float(i));
      ++seen.at(i);
      EXPECT_EQ(static_cast<int32_t*>(labels.data())[j], ds.host_labels[i]);
    }
  }
  for (int i = 0; i < 103; ++i) EXPECT_EQ(seen[i], 1) << "sample " << i;
  EXPECT_FALSE(it.batch(11, images, labels, count));
  EXPECT_FALSE(it.batch(-1, images, labels, count));
}

TEST(BatchIterator, OrderDependsOnlyOnSeedAndEpoch) {
  Dataset ds = indexed_dataset(50, {1, 1, 4});
  BatchIterator a(ds, 7, true, 123), b(ds, 16, true, 123), c(ds, 7, true, 124);
  std::vector<int64_t> a0 = epoch_order(a, 0), a1 = epoch_order(a, 1);
  EXPECT_EQ(a0, epoch_order(b, 0));  // batch size does not change the order
  EXPECT_EQ(a1, epoch_order(b, 1));
  EXPECT_EQ(a0, epoch_order(a, 0));  // revisiting an epoch repeats it (resume)
  EXPECT_NE(a0, a1);
  EXPECT_NE(a0, epoch_order(c, 0));
  std::vector<int64_t> sorted = a0;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(sorted[i], i);
  BatchIterator seq(ds, 7, false, 123);
  EXPECT_EQ(epoch_order(seq, 3), sorted);
}

TEST(BatchIterator, UsageErrors) {
  Dataset ds = indexed_dataset(5, {1, 28, 28});
  error_of([&] { BatchIterator it(ds, 0, true, 1); }, ErrorKind::Usage);
  std::string m = error_of([&] { BatchIterator it(ds, 2, true, 1, true); }, ErrorKind::Usage);
  EXPECT_NE(m.find("3x32x32"), std::string::npos) << m;
  // it keeps a reference: a temporary dataset would dangle, so it does not compile
  static_assert(!std::is_constructible_v<BatchIterator, Dataset&&, int64_t, bool, uint64_t>);
  static_assert(std::is_constructible_v<BatchIterator, const Dataset&, int64_t, bool, uint64_t>);
  Dataset unlabelled;
  unlabelled.images = Tensor::zeros({3, 1, 2, 2}, Device::CPU);
  m = error_of([&] { unlabelled.label_data(); }, ErrorKind::Runtime);
  EXPECT_NE(m.find("3 images has no labels"), std::string::npos) << m;
}

// ---- augmentation -----------------------------------------------------------------------------
// The reference against a literal re-derivation: pad with each channel's black to 40x40, crop
// 32x32 at the hashed offset, then mirror if the hash says so.
TEST(Augment, CropFlipMatchesExplicitPadCropFlip) {
  Dataset ds = random_dataset(23, {3, 32, 32}, 7);
  ds.black = {-1.5f, 0.25f, -2.0f};  // a different fill per channel
  const uint64_t seed = 99;
  BatchIterator it(ds, 8, true, seed, true);
  std::vector<float> src = ds.images.to_vector();
  int flips = 0, shifted = 0;
  for (int epoch : {0, 5}) {
    it.start_epoch(epoch);
    Tensor images;
    Buffer labels;
    int64_t count;
    for (int64_t b = 0; it.batch(b, images, labels, count); ++b) {
      std::vector<float> got = images.to_vector();
      for (int64_t j = 0; j < count; ++j) {
        // Labels come through the same permutation; recover the index from them and the data.
        int32_t lab = static_cast<int32_t*>(labels.data())[j];
        bool matched = false;
        for (int64_t i = 0; i < ds.size() && !matched; ++i) {
          if (ds.host_labels[i] != lab) continue;
          CropFlip p = augment_params(seed, epoch, i, 4);
          std::vector<float> padded(3 * 40 * 40), want(3 * 1024);
          for (int c = 0; c < 3; ++c)
            std::fill(padded.begin() + c * 1600, padded.begin() + (c + 1) * 1600, ds.black[c]);
          for (int c = 0; c < 3; ++c)
            for (int y = 0; y < 32; ++y)
              for (int x = 0; x < 32; ++x)
                padded[(c * 40 + y + 4) * 40 + x + 4] = src[((i * 3 + c) * 32 + y) * 32 + x];
          for (int c = 0; c < 3; ++c)
            for (int y = 0; y < 32; ++y)
              for (int x = 0; x < 32; ++x) {
                float v = padded[(c * 40 + y + p.oy) * 40 + x + p.ox];
                want[(c * 32 + y) * 32 + (p.flip ? 31 - x : x)] = v;
              }
          matched = std::equal(want.begin(), want.end(), got.begin() + j * 3072);
          if (matched) flips += p.flip, shifted += (p.oy != 4 || p.ox != 4);
        }
        EXPECT_TRUE(matched) << "epoch " << epoch << " batch " << b << " row " << j;
      }
    }
  }
  EXPECT_GT(flips, 5);
  EXPECT_GT(shifted, 30);
}

// torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip draw the two offsets and the
// flip independently and uniformly: every one of the 9 x 9 x 2 combinations comes up about as
// often (16,200 draws, 100 expected each; a broken offset, e.g. ox = oy, leaves 18 of 162, which
// the tests that re-derive crops from augment_params itself cannot see).
TEST(Augment, HashCoversAllOffsetsAndIsBalanced) {
  int count[9][9][2] = {};
  int flips = 0;
  const int draws = 16200;
  for (uint64_t i = 0; i < draws; ++i) {
    CropFlip p = augment_params(1, 2, i, 4);
    ASSERT_TRUE(p.oy >= 0 && p.oy <= 8 && p.ox >= 0 && p.ox <= 8);
    ++count[p.oy][p.ox][p.flip], flips += p.flip;
  }
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 9; ++x)
      for (int f = 0; f < 2; ++f)
        EXPECT_TRUE(count[y][x][f] >= 55 && count[y][x][f] <= 145)
            << "oy " << y << " ox " << x << " flip " << f << ": " << count[y][x][f] << " of "
            << draws;
  EXPECT_NEAR(flips / double(draws), 0.5, 0.02);
  // Each of seed, epoch and index changes the hash.
  EXPECT_NE(augment_hash(1, 2, 3), augment_hash(1, 3, 3));
  EXPECT_NE(augment_hash(1, 2, 3), augment_hash(2, 2, 3));
  EXPECT_NE(augment_hash(1, 2, 3), augment_hash(1, 2, 4));
}

TEST(Augment, DoubleReferenceMatchesFloat) {
  std::vector<float> src = test::random_vec(4 * 2 * 5 * 6, 3);
  std::vector<double> srcd(src.begin(), src.end());
  std::vector<int32_t> idx = {3, 0, 3, 1}, labels = {0, 1, 2, 3};
  CropFlipShape s;
  s.n_src = 4, s.count = 4, s.c = 2, s.h = 5, s.w = 6, s.pad = 2, s.seed = 5, s.epoch = 1;
  std::vector<float> out(src.size());
  std::vector<double> outd(src.size());
  std::vector<int32_t> l1(4), l2(4);
  crop_flip_gather_fwd_ref(src.data(), labels.data(), idx.data(), s, out.data(), l1.data());
  crop_flip_gather_fwd_ref(srcd.data(), labels.data(), idx.data(), s, outd.data(), l2.data());
  for (size_t k = 0; k < out.size(); ++k) ASSERT_EQ(out[k], static_cast<float>(outd[k]));
  EXPECT_EQ(l1, (std::vector<int32_t>{3, 0, 3, 1}));
  idx[2] = 4;  // out of range: the reference refuses instead of reading past the end
  error_of([&] {
    crop_flip_gather_fwd_ref(src.data(), labels.data(), idx.data(), s, out.data(), l1.data());
  });
}

// ---- GPU --------------------------------------------------------------------------------------
// The device iterator (gather kernel, float4 and scalar paths; crop/flip kernel) against the CPU
// iterator with the same seed, outputs poisoned, awkward shapes and partial batches.
static void compare_iterators(const Dataset& host, int64_t bs, bool augment, uint64_t seed) {
  Dataset dev = host.to(Device::CUDA);
  BatchIterator ci(host, bs, true, seed, augment), gi(dev, bs, true, seed, augment);
  for (int epoch : {0, 1}) {
    ci.start_epoch(epoch);
    gi.start_epoch(epoch);
    Tensor cimg, gimg;
    Buffer clab, glab;
    int64_t cc = 0, gc = 0;
    for (int64_t b = 0; b < ci.batches_per_epoch(); ++b) {
      Shape s = host.images.shape();
      s[0] = std::min(bs, host.size() - b * bs);
      gimg = test::poisoned(s, Device::CUDA);
      glab = Buffer(bs * sizeof(int32_t), Device::CUDA);
      std::vector<int32_t> poison(bs, -7);
      copy_bytes(glab.data(), Device::CUDA, poison.data(), Device::CPU, bs * sizeof(int32_t));
      ASSERT_TRUE(ci.batch(b, cimg, clab, cc));
      ASSERT_TRUE(gi.batch(b, gimg, glab, gc));
      ASSERT_EQ(cc, gc);
      EXPECT_TRUE(test::all_close(gimg.to_vector(), cimg.to_vector(), 0, 0))
          << "epoch " << epoch << " batch " << b;
      std::vector<int32_t> gl(gc);
      copy_bytes(gl.data(), Device::CPU, glab.data(), Device::CUDA, gc * sizeof(int32_t));
      EXPECT_EQ(gl, std::vector<int32_t>(static_cast<int32_t*>(clab.data()),
                                         static_cast<int32_t*>(clab.data()) + cc));
    }
  }
}

TEST(DataGpu, GatherFloat4RowsMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  compare_iterators(random_dataset(1001, {1, 28, 28}, 11), 128, false, 5);
}

TEST(DataGpu, GatherOddRowsMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  compare_iterators(random_dataset(37, {1, 5, 3}, 12), 8, false, 6);
  compare_iterators(random_dataset(1, {1, 1, 1}, 13), 3, false, 7);
}

TEST(DataGpu, ValidationSplitOnTheDeviceHoldsTheSameRows) {
  KILN_SKIP_WITHOUT_GPU();
  DataOptions o;
  o.data_dir = test::data_dir();
  o.train_limit = 301;
  o.val_split = 0.25;
  TrainValSplit cpu = load_train_val(o, Device::CPU), gpu = load_train_val(o, Device::CUDA);
  ASSERT_EQ(gpu.val.device(), Device::CUDA);
  for (auto [c, g] : {std::pair{&cpu.train, &gpu.train}, std::pair{&cpu.val, &gpu.val}}) {
    ASSERT_EQ(c->size(), g->size());
    EXPECT_EQ(c->images.to_vector(), g->images.to_vector());
    std::vector<int32_t> lab(static_cast<size_t>(g->size()));
    copy_bytes(lab.data(), Device::CPU, g->label_data(), Device::CUDA,
               lab.size() * sizeof(int32_t));
    EXPECT_EQ(lab, c->host_labels);
  }
  compare_iterators(cpu.val, 16, false, 8);  // the CPU rows uploaded gather alike
}

TEST(DataGpu, CropFlipMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  Dataset ds = random_dataset(301, {3, 32, 32}, 14);
  ds.black = {-1.99f, -1.98f, -1.71f};  // CIFAR-10's, roughly: the padding is not 0
  compare_iterators(ds, 64, true, 8);
}

// The launcher on an unaligned destination (a view one float in) must take the scalar path.
TEST(DataGpu, GatherUnalignedDestination) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  Dataset host = random_dataset(9, {1, 2, 4}, 15), dev = host.to(Device::CUDA);
  std::vector<int32_t> idx = {8, 0, 4, 4, 2};
  Buffer didx(idx.size() * sizeof(int32_t), Device::CUDA);
  copy_bytes(didx.data(), Device::CUDA, idx.data(), Device::CPU, idx.size() * sizeof(int32_t));
  Tensor out = test::poisoned({1 + 5 * 8}, Device::CUDA);
  GatherShape s;
  s.n_src = 9, s.count = 5, s.row = 8;
  gather_rows_fwd(dev.images.data(), nullptr, static_cast<int32_t*>(didx.data()), s, out.data() + 1,
                  nullptr, nullptr);
  stream_sync(nullptr);
  std::vector<float> want(5 * 8);
  gather_rows_fwd_ref(host.images.data(), nullptr, idx.data(), s, want.data(), nullptr);
  std::vector<float> got = out.to_vector();
  EXPECT_TRUE(std::isnan(got[0]));
  EXPECT_TRUE(test::all_close(std::vector<float>(got.begin() + 1, got.end()), want, 0, 0));
#endif
}

// An empty gather (count 0): no zero-block grid is launched and nothing is written.
TEST(DataGpuEmpty, EmptyGatherLaunchesNothing) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  Dataset host = random_dataset(4, {3, 4, 4}, 16), dev = host.to(Device::CUDA);
  Buffer didx(sizeof(int32_t), Device::CUDA);
  Tensor out = test::poisoned({1}, Device::CUDA);
  const int32_t poison = -77;
  Buffer lab(sizeof(int32_t), Device::CUDA);
  copy_bytes(lab.data(), Device::CUDA, &poison, Device::CPU, sizeof poison);
  GatherShape g;
  g.n_src = 4, g.count = 0, g.row = 48;
  gather_rows_fwd(dev.images.data(), dev.label_data(), static_cast<int32_t*>(didx.data()), g,
                  out.data(), static_cast<int32_t*>(lab.data()), nullptr);
  CropFlipShape c;
  c.n_src = 4, c.count = 0, c.c = 3, c.h = 4, c.w = 4, c.pad = 1;
  crop_flip_gather_fwd(dev.images.data(), dev.label_data(), static_cast<int32_t*>(didx.data()), c,
                       out.data(), static_cast<int32_t*>(lab.data()), nullptr);
  stream_sync(nullptr);
  EXPECT_TRUE(std::isnan(out.to_vector()[0]));
  int32_t got = 0;
  copy_bytes(&got, Device::CPU, lab.data(), Device::CUDA, sizeof got);
  EXPECT_EQ(got, poison);
#endif
}
