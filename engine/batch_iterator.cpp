// BatchIterator: a seeded Fisher-Yates permutation per epoch (depending only on seed and epoch,
// so a resumed run sees the same order), uploaded once per epoch to the dataset's device; each
// batch is then one gather launch (plus crop/flip when augmenting) into reused tensors.
#include <algorithm>
#include <climits>
#include <random>

#include "engine/dataset.h"
#include "engine/error.h"
#include "kernels/data/data.h"

namespace kiln {

static constexpr int kAugmentPad = 4;

BatchIterator::BatchIterator(const Dataset& ds, int64_t batch_size, bool shuffle, uint64_t seed,
                             bool augment)
    : ds_(ds), batch_size_(batch_size), shuffle_(shuffle), augment_(augment), seed_(seed) {
  KILN_USAGE_CHECK(batch_size > 0, ds.name << ": batch size must be > 0, got " << batch_size);
  KILN_CHECK(ds.size() > 0 && ds.labels, ds.name << ": cannot iterate over an empty dataset");
  KILN_CHECK(ds.size() <= INT32_MAX, ds.name << ": too many samples for int32 indices");
  if (augment) check_augmentable(ds);
}

void check_augmentable(const Dataset& ds) {
  KILN_USAGE_CHECK(ds.sample_shape() == Shape({3, 32, 32}),
                   ds.name << ": --augment (random crop + flip; on by default in train_cifar, off "
                              "with --no-augment) needs 3x32x32 images (CIFAR-10), got "
                           << shape_str(ds.sample_shape()));
}

int64_t BatchIterator::batches_per_epoch() const {
  KILN_USAGE_CHECK(batch_size_ > 0, ds_.name << ": batch size must be > 0, got " << batch_size_);
  // Not (n + b - 1) / b: that overflows for a batch near 2^63 (a batch larger than the dataset
  // is one batch, as PyTorch's DataLoader makes it).
  return ds_.size() / batch_size_ + (ds_.size() % batch_size_ != 0);
}

void BatchIterator::start_epoch(int epoch, cudaStream_t stream) {
  const int64_t n = ds_.size();
  epoch_ = epoch;
  if (!perm_ || perm_->device() != ds_.device()) {
    perm_ = std::make_shared<Buffer>(static_cast<size_t>(n) * sizeof(int32_t), ds_.device());
  } else {
    // The previous epoch's gathers may still be queued on the stream reading perm_ (and the
    // async copy below reads host_perm_): wait before overwriting either.
    stream_sync(stream);
  }
  host_perm_.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) host_perm_[i] = static_cast<int32_t>(i);
  if (shuffle_) {
    // Not std::uniform_int_distribution / std::shuffle: their output differs between standard
    // libraries, and the order must be reproducible anywhere. g() % (i+1) has a bias below
    // n / 2^64, negligible.
    std::mt19937_64 g(mix64(mix64(seed_ + 0x9E3779B97F4A7C15ull) + static_cast<uint64_t>(epoch)));
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(host_perm_[i],
                host_perm_[static_cast<int64_t>(g() % static_cast<uint64_t>(i + 1))]);
  }
  copy_bytes(perm_->data(), ds_.device(), host_perm_.data(), Device::CPU,
             host_perm_.size() * sizeof(int32_t), stream);
}

bool BatchIterator::batch(int64_t b, Tensor& images, Buffer& labels, int64_t& count,
                          cudaStream_t stream) {
  if (!perm_) start_epoch(epoch_, stream);
  if (b < 0 || b >= batches_per_epoch()) {
    count = 0;
    return false;
  }
  const Device dev = ds_.device();
  const int64_t begin = b * batch_size_;
  count = std::min(batch_size_, ds_.size() - begin);
  Shape shape = ds_.images.shape();
  shape[0] = count;
  ensure(images, shape, dev);
  // Sized for the largest batch this dataset yields, not --batch-size (2^62 wrapped to 0 bytes).
  const size_t label_bytes =
      static_cast<size_t>(std::min(batch_size_, ds_.size())) * sizeof(int32_t);
  if (labels.bytes() < label_bytes || labels.device() != dev) labels = Buffer(label_bytes, dev);

  const float* src = ds_.images.data();
  const int32_t* src_labels = ds_.label_data();
  const int32_t* idx = static_cast<const int32_t*>(perm_->data()) + begin;
  auto* dst_labels = static_cast<int32_t*>(labels.data());
  CropFlipShape cs;
  if (augment_) {
    cs.n_src = ds_.size();
    cs.count = count;
    cs.c = static_cast<int>(shape[1]);
    cs.h = static_cast<int>(shape[2]);
    cs.w = static_cast<int>(shape[3]);
    cs.pad = kAugmentPad;
    cs.seed = seed_;
    cs.epoch = static_cast<uint64_t>(epoch_);
    for (size_t c = 0; c < 3 && c < ds_.black.size(); ++c) cs.fill[c] = ds_.black[c];
  }
  GatherShape gs;
  gs.n_src = ds_.size();
  gs.count = count;
  gs.row = ds_.images.numel() / ds_.size();
  if (dev == Device::CUDA) {
#ifdef KILN_WITH_CUDA
    if (augment_)
      crop_flip_gather_fwd(src, src_labels, idx, cs, images.data(), dst_labels, stream);
    else
      gather_rows_fwd(src, src_labels, idx, gs, images.data(), dst_labels, stream);
#else
    KILN_FAIL("BatchIterator: CUDA dataset in a build without CUDA");
#endif
  } else if (augment_) {
    crop_flip_gather_fwd_ref(src, src_labels, idx, cs, images.data(), dst_labels);
  } else {
    gather_rows_fwd_ref(src, src_labels, idx, gs, images.data(), dst_labels);
  }
  return true;
}

}  // namespace kiln
