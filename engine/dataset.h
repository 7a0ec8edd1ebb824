// Datasets: MNIST / Fashion-MNIST (IDX, raw or .gz) and CIFAR-10 (binary batches). A dataset
// is loaded once, normalised, and held whole on its device; batches are gathered on that
// device through a permutation (no per-batch host copies).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/buffer.h"
#include "engine/error.h"
#include "engine/tensor.h"

namespace kiln {

// One IDX file: dims and the raw uint8 payload. Validates the magic (0x00000800 | ndim for
// unsigned bytes), dims, and that the file holds exactly the declared payload; errors name the
// file and the byte offset.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};
// With max_records >= 0, `data` holds at most that many of the first dimension's records (the
// rest is still read, to check its length and the gzip CRC, but not kept): --train-limit 1000 of
// a large file needs the memory of 1000 records.
// check, when given, sees the dims once the header has passed its own checks, before any data
// is read or allocated: a caller that knows what it wants refuses a file by its header (a gzip
// of a few megabytes can inflate to gigabytes).
using IdxHeaderCheck = std::function<void(const std::vector<int64_t>& dims)>;
IdxArray read_idx(const std::string& path, int64_t max_records = -1,
                  const IdxHeaderCheck& check = {});
// The dims alone, from the header (checked as read_idx checks it); no data is read.
std::vector<int64_t> read_idx_dims(const std::string& path);
// Reads a whole file, inflating it when it is gzip (by magic, not by name).
std::vector<uint8_t> read_file_maybe_gz(const std::string& path);

struct Dataset {
  std::string name;        // "mnist/train"
  Tensor images;           // [N, C, H, W], float32, normalised when asked
  std::shared_ptr<Buffer> labels;    // int32 [N], same device as images: what training reads
  std::vector<int32_t> host_labels;  // an optional host mirror of labels (loaders fill it)
  int num_classes = 10;
  // Per channel, the stored value of a black (raw 0) pixel: -mean/std when normalised, else 0.
  // Augmentation pads with it, as torchvision pads the raw image before Normalize.
  std::vector<float> black;
  // A loader's remark for the user, or "": test-split MNIST files whose pixels look like
  // Fashion-MNIST's (the two use the same file names) or the reverse.
  std::string note;
  // The files it was read from (load_dataset fills it): a run's outputs must not name one.
  std::vector<std::string> files;
  // Paths the loader would read before one of `files`, had they existed (raw beside .gz, the
  // "-idx" spelling before ".idx"; for a split of one file, earlier directories too), each with
  // the file it would replace: an output written there becomes the data of every later run.
  std::vector<std::pair<std::string, std::string>> shadows;
  int64_t size() const { return images.ndim() ? images.dim(0) : 0; }
  Shape sample_shape() const {
    return images.ndim() ? Shape(images.shape().begin() + 1, images.shape().end()) : Shape{};
  }
  const int32_t* label_data() const {
    KILN_CHECK(labels, "dataset of " << size() << " images has no labels buffer");
    return static_cast<const int32_t*>(labels->data());
  }
  // Errors unless the labels buffer holds size() labels on the images' device (what the loss,
  // to() and slice_rows() read; host_labels is only a mirror).
  void check_labels() const;
  Device device() const { return images.device(); }
  Dataset to(Device d) const;
};

// The apps' data options (val_split is --val-split; errors name them by that flag).
struct DataOptions {
  std::string dataset = "mnist";  // mnist | fashion-mnist | cifar10
  std::string data_dir = "data";  // holds mnist/, fashion-mnist/, cifar10/ (or the files)
  bool normalize = true;          // per-dataset mean/std (per channel for CIFAR-10)
  int64_t train_limit = 0;        // 0: all
  int64_t test_limit = 0;
  // Keras validation_split: the last fraction of the (limited) training samples, taken before
  // any shuffling, becomes split "val"; "train" keeps the first int(n * (1 - val_split)).
  double val_split = 0;
};

// Per-channel mean/std used by normalize for a dataset name.
void dataset_stats(const std::string& dataset, std::vector<float>& mean, std::vector<float>& std);

// Loads split "train", "val" (needs opts.val_split > 0) or "test" of opts.dataset, looking for
// the files in opts.data_dir/<dataset>/ then opts.data_dir itself; errors name the file and
// what is wrong.
Dataset load_dataset(const DataOptions& opts, const std::string& split, Device device);
// Where load_dataset finds a split ("val" is the training files), nothing read: name, files
// and shadows only; no files when they are not all there, and those found when they are split
// across directories (what an output must spare; no error either way).
Dataset dataset_files(const DataOptions& opts, const std::string& split);
// Finds the training and test files as load_dataset does, nothing read, with its error for
// files missing or split across directories: the data refused before a sweep starts.
void check_dataset_files(const DataOptions& opts);
// The training file read once: the "train" and "val" splits (val empty when val_split is 0).
struct TrainValSplit {
  Dataset train, val;
};
TrainValSplit load_train_val(const DataOptions& opts, Device device);
// Rows [begin, end) as a dataset of their own (images shared with ds, labels copied).
Dataset slice_rows(const Dataset& ds, int64_t begin, int64_t end, const std::string& name);

// MNIST-style pair of IDX files -> Dataset (N,1,H,W). A non-empty sample_shape ({C, H, W}) is
// the image shape required; the counts and shapes are checked from the two headers before any
// pixel is read.
Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path,
                      const std::string& name, int64_t limit, bool normalize,
                      const std::vector<float>& mean, const std::vector<float>& std, Device device,
                      const std::vector<int64_t>& sample_shape = {});
// CIFAR-10 binary batch files (each record: 1 label byte + 3072 pixel bytes) -> (N,3,32,32).
Dataset load_cifar_files(const std::vector<std::string>& paths, const std::string& name,
                         int64_t limit, bool normalize, Device device);

// --augment's random crop + flip takes 3x32x32 samples (CIFAR-10): a usage error naming ds and
// its shape otherwise. BatchIterator checks it, and Trainer::fit before it opens its log.
void check_augmentable(const Dataset& ds);

// Batches in a seeded random (or sequential) order. The permutation lives on the dataset's
// device; next() gathers one batch of images and labels into reusable tensors on the device.
class BatchIterator {
 public:
  BatchIterator(const Dataset& ds, int64_t batch_size, bool shuffle, uint64_t seed,
                bool augment = false);
  // It keeps a reference to the dataset: a temporary one would be gone by the first batch.
  BatchIterator(Dataset&&, int64_t, bool, uint64_t, bool = false) = delete;
  // Starts epoch `epoch` (the order depends only on seed and epoch, so runs resume exactly).
  void start_epoch(int epoch, cudaStream_t stream = nullptr);
  // Gathers batch b (0-based) of the current epoch. Returns false past the end.
  bool batch(int64_t b, Tensor& images, Buffer& labels, int64_t& count,
             cudaStream_t stream = nullptr);
  int64_t batches_per_epoch() const;
  void set_batch_size(int64_t bs) { batch_size_ = bs; }
  int64_t batch_size() const { return batch_size_; }

 private:
  const Dataset& ds_;
  int64_t batch_size_;
  bool shuffle_, augment_;
  uint64_t seed_;
  int epoch_ = 0;
  std::vector<int32_t> host_perm_;
  std::shared_ptr<Buffer> perm_;  // int32 [N] on the dataset's device
};

}  // namespace kiln
