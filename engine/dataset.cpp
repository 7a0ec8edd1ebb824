// Dataset loading (MNIST / Fashion-MNIST IDX pairs, CIFAR-10 binary batches), normalisation,
// device upload, and the BatchIterator that gathers shuffled batches on the dataset's device.
// Everything is validated on the host once; after upload no batch touches host memory except
// the once-per-epoch permutation.
#include "engine/dataset.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <iomanip>
#include <random>
#include <sstream>

#include "engine/data_reader.h"
#include "engine/error.h"
#include "engine/numtext.h"
#include "kernels/data/data.h"

namespace kiln {

// ---- statistics and normalisation -------------------------------------------------------------
void dataset_stats(const std::string& dataset, std::vector<float>& mean, std::vector<float>& std) {
  // Means/stds of the training sets in [0, 1] units, the values torchvision examples use.
  if (dataset == "mnist") {
    mean = {0.1307f};
    std = {0.3081f};
  } else if (dataset == "fashion-mnist") {
    mean = {0.2860f};
    std = {0.3530f};
  } else if (dataset == "cifar10") {
    mean = {0.4914f, 0.4822f, 0.4465f};
    std = {0.2470f, 0.2435f, 0.2616f};
  } else {
    KILN_USAGE_FAIL("unknown dataset '" << dataset
                                        << "' (expected mnist, fashion-mnist or cifar10)");
  }
}

// u8 [n, c, plane] -> float (x/255 - mean[c]) / std[c], or x/255; *black gets each channel's
// value of a 0 byte (Dataset::black).
static void to_float(const uint8_t* src, int64_t n, int64_t c, int64_t plane, bool normalize,
                     const std::vector<float>& mean, const std::vector<float>& std, float* dst,
                     std::vector<float>* black) {
  black->assign(static_cast<size_t>(c), 0.f);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float m = normalize ? mean[mean.size() == 1 ? 0 : ch] : 0.f;
    const float s = normalize ? std[std.size() == 1 ? 0 : ch] : 1.f;
    (*black)[static_cast<size_t>(ch)] = (0.f / 255.f - m) / s;
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* in = src + (i * c + ch) * plane;
      float* out = dst + (i * c + ch) * plane;
      for (int64_t k = 0; k < plane; ++k) out[k] = (static_cast<float>(in[k]) / 255.f - m) / s;
    }
  }
}

static Dataset make_host_dataset(const std::string& name, const Shape& shape,
                                 const std::vector<int32_t>& labels) {
  Dataset ds;
  ds.name = name;
  ds.images = Tensor::empty(shape, Device::CPU);
  ds.host_labels = labels;
  ds.labels = std::make_shared<Buffer>(labels.size() * sizeof(int32_t), Device::CPU);
  copy_bytes(ds.labels->data(), Device::CPU, labels.data(), Device::CPU,
             labels.size() * sizeof(int32_t));
  return ds;
}

void Dataset::check_labels() const {
  const int64_t n = size();
  if (n == 0) return;
  KILN_CHECK(labels && labels->data(), name << ": " << n << " samples and no labels");
  KILN_CHECK(labels->bytes() >= static_cast<size_t>(n) * sizeof(int32_t),
             name << ": the labels buffer holds " << labels->bytes() / sizeof(int32_t)
                  << " labels for " << n << " samples");
  KILN_CHECK(labels->device() == device(), name << ": labels on " << device_name(labels->device())
                                                << ", images on " << device_name(device()));
}

Dataset Dataset::to(Device d) const {
  Dataset out;
  out.name = name;
  out.num_classes = num_classes;
  out.black = black;
  out.note = note;
  out.files = files;
  out.shadows = shadows;
  out.host_labels = host_labels;
  out.images = images.to(d);
  check_labels();  // copied from the buffer (what training reads)
  const size_t bytes = static_cast<size_t>(size()) * sizeof(int32_t);
  out.labels = std::make_shared<Buffer>(bytes, d);
  if (bytes) copy_bytes(out.labels->data(), d, labels->data(), labels->device(), bytes);
  return out;
}

// ---- IDX pairs --------------------------------------------------------------------------------
Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path,
                      const std::string& name, int64_t limit, bool normalize,
                      const std::vector<float>& mean, const std::vector<float>& std, Device device,
                      const std::vector<int64_t>& sample_shape) {
  // Both headers are checked, and agree, before any data is read: a small gzip that inflates to
  // gigabytes is refused by what its header says.
  const auto check_labels = [&](const std::vector<int64_t>& dims) {
    KILN_CHECK(dims.size() == 1,
               labels_path << ": expected a label file with dims (N), found " << shape_str(dims));
  };
  const std::vector<int64_t> label_dims = read_idx_dims(labels_path);
  check_labels(label_dims);
  int64_t n_all = 0;
  const auto check_count = [&](int64_t labels) {
    KILN_CHECK(n_all == labels, images_path << " holds " << n_all << " images but " << labels_path
                                            << " holds " << labels << " labels");
  };
  const auto check_images = [&](const std::vector<int64_t>& dims) {
    KILN_CHECK(dims.size() == 3 || dims.size() == 4,
               images_path << ": expected an image file with dims (N, rows, cols) or (N, C, rows, "
                              "cols), found "
                           << shape_str(dims));
    n_all = dims[0];
    check_count(label_dims[0]);
    KILN_CHECK(n_all > 0, images_path << ": holds no images");
    KILN_CHECK(n_all <= INT32_MAX, images_path << ": " << n_all << " images exceed int32 indices");
    const std::vector<int64_t> sample = {dims.size() == 4 ? dims[1] : 1, dims[dims.size() - 2],
                                         dims.back()};
    KILN_CHECK(sample_shape.empty() || sample == sample_shape,
               images_path << ": images are " << shape_str(sample) << ", expected "
                           << shape_str(sample_shape) << " for " << name);
  };
  IdxArray im = read_idx(images_path, limit > 0 ? limit : -1, check_images);  // only those kept
  // Read again in full: the file may have changed since its header was read.
  IdxArray lb = read_idx(labels_path, -1, [&](const std::vector<int64_t>& dims) {
    check_labels(dims);
    check_count(dims[0]);
  });
  for (int64_t i = 0; i < n_all; ++i)
    KILN_CHECK(lb.data[i] < 10, labels_path << ": label " << int(lb.data[i]) << " of record " << i
                                            << " (byte " << 8 + i << ") is outside 0..9");
  const int64_t c = im.dims.size() == 4 ? im.dims[1] : 1;
  const int64_t h = im.dims[im.dims.size() - 2], w = im.dims.back();
  KILN_CHECK(c > 0 && h > 0 && w > 0, images_path << ": empty image dims " << shape_str(im.dims));
  KILN_USAGE_CHECK(
      !normalize || ((mean.size() == 1 || int64_t(mean.size()) == c) && mean.size() == std.size()),
      name << ": " << mean.size() << " means / " << std.size() << " stds for " << c << " channels");
  for (size_t i = 0; normalize && i < std.size(); ++i)  // as torchvision's Normalize: no std of 0
    KILN_USAGE_CHECK(std::isfinite(mean[i]) && std::isfinite(std[i]) && std[i] != 0,
                     name << ": normalisation mean " << mean[i] << ", std " << std[i]
                          << " (channel " << i << "): the std must be non-zero and both finite");
  const int64_t n = limit > 0 ? std::min(limit, n_all) : n_all;
  Dataset ds = make_host_dataset(name, {n, c, h, w},
                                 std::vector<int32_t>(lb.data.begin(), lb.data.begin() + n));
  to_float(im.data.data(), n, c, h * w, normalize, mean, std, ds.images.data(), &ds.black);
  return device == Device::CPU ? ds : ds.to(device);
}

// ---- CIFAR-10 ---------------------------------------------------------------------------------
Dataset load_cifar_files(const std::vector<std::string>& paths, const std::string& name,
                         int64_t limit, bool normalize, Device device) {
  constexpr int64_t kRecord = 3073, kPixels = 3072;
  // Real batches hold 10000 records; the cap keeps a hostile .gz from filling memory.
  constexpr int64_t kMaxRecordsPerFile = 1000000;
  KILN_USAGE_CHECK(!paths.empty(), name << ": no CIFAR-10 files given");
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  std::vector<uint8_t> rec(kRecord);
  // Every record of every file is read and checked, as read_idx checks a whole file whatever
  // the limit (a corrupt set must not pass under --train-limit); the first `limit` are kept.
  auto full = [&] { return limit > 0 && static_cast<int64_t>(labels.size()) >= limit; };
  // A library caller gets OutOfMemory naming the file being read, not std::bad_alloc (the
  // apps' load_dataset adds what it was loading in front).
  auto read_file = [&](const std::string& path) {
    DataReader r(path);
    const int64_t size = r.raw_size();
    KILN_CHECK(size != 0, path << ": empty file (expected 3073-byte CIFAR-10 records)");
    if (size > 0) {
      KILN_CHECK(size % kRecord == 0,
                 path << ": size " << size
                      << " is not a multiple of the 3073-byte CIFAR-10 record: "
                      << "record " << size / kRecord << " (at byte " << size / kRecord * kRecord
                      << ") has only " << size % kRecord << " bytes");
      KILN_CHECK(size / kRecord <= kMaxRecordsPerFile,  // before reserving memory for them all
                 path << ": " << size / kRecord << " records, more than " << kMaxRecordsPerFile
                      << "; not a CIFAR-10 batch");
      int64_t records = size / kRecord;  // only what --train-limit/--test-limit will keep
      if (limit > 0)
        records = std::min<int64_t>(
            records, std::max<int64_t>(0, limit - static_cast<int64_t>(labels.size())));
      pixels.reserve(pixels.size() + static_cast<size_t>(records) * kPixels);
    }
    for (int64_t i = 0;; ++i) {
      size_t got = r.read(rec.data(), kRecord);
      if (got == 0) {
        KILN_CHECK(i > 0, path << ": empty file (expected 3073-byte CIFAR-10 records)");
        break;
      }
      KILN_CHECK(got == static_cast<size_t>(kRecord),
                 path << ": data is not a multiple of the 3073-byte CIFAR-10 record: record " << i
                      << " (at byte " << i * kRecord << (r.gzip() ? ", uncompressed" : "")
                      << ") has only " << got << " bytes");
      KILN_CHECK(i < kMaxRecordsPerFile,
                 path << ": more than " << kMaxRecordsPerFile << " records; not a CIFAR-10 batch");
      KILN_CHECK(rec[0] < 10, path << ": record " << i << " (at byte " << i * kRecord
                                   << ") has label " << int(rec[0]) << ", expected 0..9");
      if (full()) continue;
      labels.push_back(rec[0]);
      pixels.insert(pixels.end(), rec.begin() + 1, rec.end());
    }
  };
  for (const std::string& path : paths)
    with_memory_context([&] { return "reading " + path; }, [&] { read_file(path); });
  std::vector<float> mean, std;
  dataset_stats("cifar10", mean, std);
  const int64_t n = static_cast<int64_t>(labels.size());
  Dataset ds = make_host_dataset(name, {n, 3, 32, 32}, labels);
  to_float(pixels.data(), n, 3, 1024, normalize, mean, std, ds.images.data(), &ds.black);
  return device == Device::CPU ? ds : ds.to(device);
}

// ---- finding files ----------------------------------------------------------------------------
static bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The names a file of `base` is distributed under: the original, and for IDX files the
// Kaggle / Windows-unzip spelling with a dot before "idx" (train-images.idx3-ubyte).
static std::vector<std::string> name_variants(const std::string& base) {
  std::vector<std::string> v = {base};
  const size_t k = base.find("-idx");
  if (k != std::string::npos) v.push_back(base.substr(0, k) + "." + base.substr(k + 1));
  return v;
}

// Every <dir>/<name>[.gz] a file of `base` may be, in the order they are tried: the candidate
// dirs, each name spelling, raw before .gz.
static std::vector<std::string> search_order(const std::vector<std::string>& dirs,
                                             const std::string& base) {
  std::vector<std::string> out;
  for (const std::string& d : dirs)
    for (const std::string& b : name_variants(base))
      for (const char* ext : {"", ".gz"}) out.push_back(d + "/" + b + ext);
  return out;
}

// First existing candidate, or "".
static std::string find_file(const std::vector<std::string>& dirs, const std::string& base) {
  for (const std::string& p : search_order(dirs, base))
    if (is_file(p)) return p;
  return "";
}

// The paths find_file(dirs, base) tries before `found` (which it returned) that a file written
// there would be read instead of it: those in found's own directory, and in an earlier one when
// `completes(dir)`. A split of several files is taken from the first directory holding them all,
// so a file written in an earlier directory replaces nothing there unless that directory holds
// every other file of the split (with the one written, later runs read that directory); a split
// of one file is always completed.
static std::vector<std::string> read_before(
    const std::vector<std::string>& dirs, const std::string& base, const std::string& found,
    const std::function<bool(const std::string&)>& completes) {
  const auto dir_of = [](const std::string& p) { return p.substr(0, p.rfind('/')); };
  std::vector<std::string> out;
  for (const std::string& p : search_order(dirs, base)) {
    if (p == found) break;
    if (dir_of(p) == dir_of(found) || completes(dir_of(p))) out.push_back(p);
  }
  return out;
}

static bool exists_any(const std::string& p) {  // lstat: a dangling symlink exists
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// Why the files of a split are not where they were looked for, as one clause, or "": the data
// directory missing, a file, or unreadable; '~' not expanded; a dangling link (the usual advice
// follows these); or another tool's layout of the data (*layout set: the advice would not help).
static std::string missing_hint(const std::string& data_dir, const std::vector<std::string>& dirs,
                                const std::vector<std::string>& missing, bool cifar, bool* layout) {
  struct stat st {};
  *layout = false;
  if (data_dir.empty()) return "";
  if (data_dir[0] == '~' && ::stat(data_dir.c_str(), &st) != 0)
    return "'~' is not expanded here: write the full path (or --data-dir ~/x without '=')";
  const auto npz_hint = [] {
    return std::string(
        "mnist.npz is Keras' NumPy archive, not IDX: use the IDX .gz files "
        "(scripts/fetch_data.sh) or write them from its arrays (docs/FORMATS.md)");
  };
  if (::stat(data_dir.c_str(), &st) != 0) {
    const std::string err = std::strerror(errno);
    char cwd[4096];
    const bool rel = data_dir[0] != '/' && ::getcwd(cwd, sizeof cwd);
    return data_dir + (rel ? " (relative to " + std::string(cwd) + ")" : std::string()) + ": " +
           err;
  }
  if (!S_ISDIR(st.st_mode)) {
    const bool npz = data_dir.size() > 4 && data_dir.compare(data_dir.size() - 4, 4, ".npz") == 0;
    return data_dir + " is a file, not the directory holding the files" +
           (npz && !cifar ? "; " + npz_hint() : std::string());
  }
  if (::access(data_dir.c_str(), R_OK | X_OK) != 0 && errno == EACCES)
    return data_dir + " cannot be read (permission denied)";
  for (const std::string& d : dirs) {
    // (access() answers EACCES for a file without x too: <data_dir>/mnist as a file is no
    // permission matter)
    if (::stat(d.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      return d + " is a file, not the directory holding the files";
    if (::access(d.c_str(), R_OK | X_OK) != 0 && errno == EACCES)
      return d + " cannot be read (permission denied)";
  }
  for (const std::string& d : dirs)
    for (const std::string& b : missing)
      for (const char* ext : {"", ".gz"})
        if (exists_any(d + "/" + b + ext) && !is_file(d + "/" + b + ext))
          return d + "/" + b + ext + " is a dangling symlink or not a regular file";
  *layout = true;  // from here on, the data is there in a form kiln does not read
  for (const std::string& d : dirs) {  // <data_dir>/<dataset>/ first, where fetch_data.sh puts it
    if (!cifar) {
      if (exists_any(d + "/mnist.npz") || exists_any(d + "/fashion-mnist.npz")) return npz_hint();
      continue;
    }
    if (exists_any(d + "/data_batch_1") || exists_any(d + "/cifar-10-batches-py"))
      return "this is the Python (pickle) version of CIFAR-10 (torchvision, Keras); kiln reads "
             "the binary version: cifar-10-binary.tar.gz, unpacked";
    if (exists_any(d + "/cifar-10-binary.tar.gz"))
      return "unpack it first: tar xzf " + d + "/cifar-10-binary.tar.gz -C " + d;
    if (exists_any(d + "/train.bin") || exists_any(d + "/cifar-100-binary"))
      return "this looks like CIFAR-100 (train.bin/test.bin, 2 label bytes a record), which "
             "kiln does not read";
  }
  *layout = false;
  return "";
}

static std::string join(const std::vector<std::string>& v, const char* sep) {
  ClassicOStringStream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? sep : "") << v[i];
  return os.str();
}

Dataset slice_rows(const Dataset& ds, int64_t begin, int64_t end, const std::string& name) {
  KILN_CHECK(0 <= begin && begin <= end && end <= ds.size(),
             ds.name << ": rows [" << begin << ", " << end << ") out of range for " << ds.size());
  Dataset out;
  out.name = name;
  out.num_classes = ds.num_classes;
  out.black = ds.black;
  out.note = ds.note;
  out.files = ds.files;
  out.shadows = ds.shadows;
  out.images = ds.images.rows(begin, end);
  if (static_cast<int64_t>(ds.host_labels.size()) == ds.size())
    out.host_labels.assign(ds.host_labels.begin() + begin, ds.host_labels.begin() + end);
  ds.check_labels();  // copied from the buffer (what training reads)
  const size_t bytes = static_cast<size_t>(end - begin) * sizeof(int32_t);
  out.labels = std::make_shared<Buffer>(bytes, ds.device());
  if (bytes)
    copy_bytes(out.labels->data(), ds.device(), ds.label_data() + begin, ds.labels->device(),
               bytes);
  return out;
}

static Dataset load_dataset_impl(const DataOptions& opts, const std::string& split, Device device);

static TrainValSplit load_train_val_impl(const DataOptions& opts, Device device);

TrainValSplit load_train_val(const DataOptions& opts, Device device) {
  return with_memory_context(
      [&] {
        return "loading " + opts.dataset + (opts.val_split > 0 ? " train and val" : " train");
      },
      [&] { return load_train_val_impl(opts, device); });
}

static TrainValSplit load_train_val_impl(const DataOptions& opts, Device device) {
  const double f = opts.val_split;
  KILN_USAGE_CHECK(f >= 0 && f < 1, "--val-split " << f << ": must be in [0, 1)");
  TrainValSplit out;
  if (f == 0) {
    out.train = load_dataset_impl(opts, "train", device);
    return out;
  }
  DataOptions whole = opts;
  whole.val_split = 0;
  Dataset all = load_dataset_impl(whole, "train", Device::CPU);
  const int64_t n = all.size();
  // Keras: split_at = int(n * (1 - validation_split)), in double precision.
  const auto at = static_cast<int64_t>(static_cast<double>(n) * (1.0 - f));
  KILN_USAGE_CHECK(at >= 1 && at < n, "--val-split " << f << " of " << n
                                                     << " training samples leaves " << at
                                                     << " to train on and " << n - at
                                                     << " to validate on; both need at least 1");
  const std::string base = opts.dataset + "/";
  out.train = slice_rows(all, 0, at, base + "train[:" + std::to_string(at) + "]");
  out.val = slice_rows(all, at, n, base + "val (train[" + std::to_string(at) + ":])");
  if (device != Device::CPU) {
    out.train = out.train.to(device);
    out.val = out.val.to(device);
  }
  return out;
}

// Where split "train" or "test" of opts.dataset is: the files load_dataset reads (Dataset::files)
// and the names tried before them (Dataset::shadows). Files not all there: an error naming
// them, the directories searched and why (or, with `missing_ok`, nothing).
static Dataset locate_split(const DataOptions& opts, const std::string& split, bool missing_ok) {
  const std::string name = opts.dataset + "/" + split;
  std::vector<std::string> dirs = {opts.data_dir + "/" + opts.dataset, opts.data_dir};
  const bool cifar = opts.dataset == "cifar10";
  if (!cifar) {
    // torchvision: root/MNIST/raw/ (root/FashionMNIST/raw/), raw and .gz side by side.
    dirs.push_back(opts.data_dir + (opts.dataset == "mnist" ? "/MNIST/raw" : "/FashionMNIST/raw"));
    dirs.push_back(opts.data_dir + "/raw");
  }
  if (cifar) {
    // The official tarball unpacks to cifar-10-batches-bin/.
    dirs.insert(dirs.begin() + 1, opts.data_dir + "/cifar10/cifar-10-batches-bin");
    dirs.push_back(opts.data_dir + "/cifar-10-batches-bin");
  }
  std::vector<std::string> bases;
  if (cifar) {
    if (split == "train")
      for (int i = 1; i <= 5; ++i) bases.push_back("data_batch_" + std::to_string(i) + ".bin");
    else
      bases.push_back("test_batch.bin");
  } else {
    const std::string pre = split == "train" ? "train" : "t10k";
    bases = {pre + "-images-idx3-ubyte", pre + "-labels-idx1-ubyte"};
  }
  Dataset out;
  out.name = name;
  std::vector<std::string> found, missing;
  for (const std::string& b : bases) {
    std::string p = find_file(dirs, b);
    (p.empty() ? missing : found).push_back(p.empty() ? b : p);
  }
  if (!missing.empty() && missing_ok) return out;
  // A split's files come from one directory: images of one copy with another's labels (or
  // CIFAR batches of two copies) would load without a word. The first that holds them all.
  if (missing.empty()) {
    std::vector<std::string> whole;
    for (const std::string& d : dirs) {
      whole.clear();
      for (const std::string& b : bases) {
        std::string p = find_file({d}, b);
        if (p.empty()) break;
        whole.push_back(p);
      }
      if (whole.size() == bases.size()) break;
    }
    // (with missing_ok, what an output must spare: the files as found, wherever they are)
    KILN_CHECK(whole.size() == bases.size() || missing_ok,
               name << ": its files are split across directories (" << join(found, ", ")
                    << "); put them in one");
    if (whole.size() == bases.size()) found = whole;
  }
  // Name each missing file once and each directory searched once: a list of every
  // (file, dir, extension) combination is one line but no one can read it.
  if (!missing.empty()) {
    bool layout = false;
    const std::string hint = missing_hint(opts.data_dir, dirs, missing, cifar, &layout);
    const char* advice = layout  ? ""
                         : cifar ? "CIFAR-10 (binary version) must be supplied: --data-dir at the "
                                   "unpacked cifar-10-binary.tar.gz (cifar-10-batches-bin/), or "
                                   "scripts/fetch_data.sh --cifar-dir DIR"
                                 : "run scripts/fetch_data.sh to download it";
    KILN_FAIL(name << ": cannot find " << join(missing, ", ") << " (raw or .gz) in "
                   << join(dirs, ", ") << "; " << hint << (hint.empty() || !*advice ? "" : "; ")
                   << advice);
  }
  for (size_t i = 0; i < bases.size(); ++i) {
    // (an earlier directory holding the split's other files but this one: until 2026-12-07 an
    // output there, --save at data_batch_1.bin beside batches 2-5, completed it and was read)
    const auto completes = [&](const std::string& dir) {
      for (size_t j = 0; j < bases.size(); ++j)
        if (j != i && find_file({dir}, bases[j]).empty()) return false;
      return true;
    };
    for (const std::string& p : read_before(dirs, bases[i], found[i], completes))
      out.shadows.emplace_back(p, found[i]);
  }
  out.files = found;
  return out;
}

Dataset dataset_files(const DataOptions& opts, const std::string& split) {
  return locate_split(opts, split == "test" ? "test" : "train", true);
}

void check_dataset_files(const DataOptions& opts) {
  for (const char* split : {"train", "test"}) locate_split(opts, split, false);
}

Dataset load_dataset(const DataOptions& opts, const std::string& split, Device device) {
  return with_memory_context([&] { return "loading " + opts.dataset + " " + split; },
                             [&] { return load_dataset_impl(opts, split, device); });
}

static Dataset load_dataset_impl(const DataOptions& opts, const std::string& split, Device device) {
  std::vector<float> mean, std;
  dataset_stats(opts.dataset, mean, std);
  KILN_USAGE_CHECK(split == "train" || split == "val" || split == "test",
                   "unknown split '" << split << "' (expected train, val or test)");
  if (split == "val") {
    KILN_USAGE_CHECK(opts.val_split > 0, "split val needs a validation split (--val-split > 0)");
    return load_train_val_impl(opts, device).val;
  }
  if (split == "train" && opts.val_split != 0) return load_train_val_impl(opts, device).train;
  const int64_t limit = split == "train" ? opts.train_limit : opts.test_limit;
  KILN_USAGE_CHECK(limit >= 0, split << " limit must be >= 0, got " << limit);
  const Dataset where = locate_split(opts, split, false);
  const std::string& name = where.name;
  const std::vector<std::string>& found = where.files;
  // A limit past the set is all of it, said (a sweep over train_limit [5000, 60000] on a
  // 2,000-image set ran one trial twice under two labels).
  const auto past_limit = [&](const Dataset& ds) -> std::string {
    if (limit <= ds.size()) return "";
    return "--" + split + "-limit " + std::to_string(limit) + " is past the " +
           std::to_string(ds.size()) + " images of " + name + ": all are used";
  };
  if (opts.dataset == "cifar10") {
    Dataset ds = load_cifar_files(found, name, limit, opts.normalize, device);
    ds.files = found;
    ds.shadows = where.shadows;
    ds.note = past_limit(ds);
    return ds;
  }
  Dataset ds = load_idx_pair(found[0], found[1], name, limit, opts.normalize, mean, std,
                             Device::CPU, {1, 28, 28});
  // MNIST and Fashion-MNIST share their file names, so a data directory of one read as the
  // other trains without complaint; their mean pixels (0.131 and 0.286) tell them apart.
  // Every block of 100 images of either set (train and test) averages 0.10-0.20 (MNIST) or
  // 0.25-0.33 (Fashion-MNIST), so the first 100 to 1000 images loaded decide, in each split
  // (a train directory of one set with the test files of the other is caught too); with
  // fewer than 100 nothing is said. A mean outside both ranges (inverted or other images) is
  // named as such: telling that user to switch --dataset would be wrong.
  const int64_t probe = std::min<int64_t>(ds.size(), 1000);
  if (probe >= 100) {
    const int64_t n = probe * (ds.images.numel() / ds.size());
    const float* px = ds.images.data();
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += px[i];
    double m = sum / static_cast<double>(n);
    if (opts.normalize) m = m * std[0] + mean[0];  // back to raw [0, 1] pixels
    const bool mnist_like = m >= 0.09 && m <= 0.21;
    const bool fashion_like = m > 0.21 && m <= 0.36;
    ClassicOStringStream os;
    os << found[0] << ": mean pixel " << std::setprecision(3) << m;
    if (!mnist_like && !fashion_like)
      os << " is neither MNIST's (0.131) nor Fashion-MNIST's (0.286): inverted or other images? "
         << "(they are normalised with " << opts.dataset << "'s mean and std)";
    else if (fashion_like != (opts.dataset == "fashion-mnist"))
      os << " is "
         << (fashion_like ? "Fashion-MNIST's (MNIST's is 0.131)"
                          : "MNIST's (Fashion-MNIST's is 0.286)")
         << ", not " << opts.dataset << "'s: is --dataset "
         << (fashion_like ? "fashion-mnist" : "mnist")
         << " meant? (the two use the same file names)";
    else
      os.str("");
    ds.note = os.str();
  }
  ds.files = found;
  ds.shadows = where.shadows;
  if (const std::string past = past_limit(ds); !past.empty())
    ds.note = ds.note.empty() ? past : ds.note + "; " + past;
  return device == Device::CPU ? ds : ds.to(device);
}

}  // namespace kiln
