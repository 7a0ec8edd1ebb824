// Batch norm and group norm: forward/backward on NCHW (or N,F with hw = 1) float tensors.
// CUDA launchers (norm.cu) and CPU references (norm_ref.cpp, float and double) share one
// signature per op. All reductions are deterministic: the CUDA kernels reduce per channel (or
// per sample and group) in a fixed order, with partial sums kept in double, and never use float
// atomics. The workspace is scratch device memory of *_workspace_bytes(shape) bytes, 8-byte
// aligned (cudaMalloc's is; a launcher that uses it refuses a null or misaligned one, also where
// its path stores floats only); the CPU references ignore it and may be given nullptr.
// Batch norm takes an opt-in fused ReLU (defaulted trailing arguments, so unfused callers are
// unchanged): the forwards with relu = true write y = relu(bn(x)) (the ReLU kernel's rule,
// kernels/activation/relu_rule.h); batchnorm_bwd given relu_y (that fused forward's output) reads
// every dy element as y <= 0 ? 0 : dy inside its reductions and its element-wise dx pass (no mask
// tensor, no pass).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/device.h"

namespace kiln {

// x is [n, c, hw] in memory (hw = H*W; 1 for BatchNorm1d / GroupNorm on features).
struct NormShape {
  int64_t n = 1, c = 1, hw = 1;
  int64_t groups = 1;  // group norm only
  int64_t numel() const { return n * c * hw; }
};

// The CUDA kernels index with 32-bit (unsigned) ints and need n*c*hw and 3*c <= 2^31-1. Returns
// "" when `s` fits, else one line naming the product ("N*C*HW = 2*3*400000000 = 2400000000
// exceeds 2^31-1"). Shape level only: layers call it in setup (per sample) and per CUDA batch.
std::string norm_index_range_error(const NormShape& s);

// The float batch- and group-norm references run loops compiled for the best instruction set
// this CPU has ("avx512", "avx2", then "generic", the build's own; the same bits under each).
// norm_ref_isas() lists the ones this CPU runs, best first; set_norm_ref_isa(name) makes every
// later call use that one ("" restores the best; tests compare their bits, bench_cpu their
// speed). An unknown or unavailable name is an error.
std::vector<std::string> norm_ref_isas();
void set_norm_ref_isa(const std::string& name);
std::string norm_ref_isa();  // the one the float passes run now

// ---- batch norm --------------------------------------------------------------------------------
// Training forward: normalises with the batch statistics (biased variance), writes the per-channel
// mean and 1/sqrt(var + eps) for backward, and, when running_mean is not null, updates the running
// statistics as PyTorch does (running = (1 - momentum) * running + momentum * batch, with the
// unbiased batch variance) and adds 1 to num_batches_tracked (when not null): two floats,
// [count mod 2^24, count / 2^24], exact to 2^48 batches (one float stopped at 2^24). Needs
// n*hw >= 2.
template <typename T>
void batchnorm_fwd_train_ref(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                             T* save_invstd, T* running_mean, T* running_var,
                             T* num_batches_tracked, double momentum, double eps,
                             const NormShape& s, void* workspace, bool relu = false);
void batchnorm_fwd_train(const float* x, const float* weight, const float* bias, float* y,
                         float* save_mean, float* save_invstd, float* running_mean,
                         float* running_var, float* num_batches_tracked, double momentum,
                         double eps, const NormShape& s, void* workspace, cudaStream_t stream,
                         bool relu = false);

// Eval forward: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
template <typename T>
void batchnorm_fwd_eval_ref(const T* x, const T* weight, const T* bias, const T* running_mean,
                            const T* running_var, T* y, double eps, const NormShape& s,
                            bool relu = false);
void batchnorm_fwd_eval(const float* x, const float* weight, const float* bias,
                        const float* running_mean, const float* running_var, float* y, double eps,
                        const NormShape& s, cudaStream_t stream, bool relu = false);

// Backward. Training mode: mean/invstd are the saved batch statistics and dx includes the terms
// through the statistics. Eval mode (train = false): mean/invstd are the running statistics
// (invstd = 1/sqrt(running_var + eps)) and dx = dy * weight * invstd. dweight and dbias are
// overwritten; dx may be null (not needed).
template <typename T>
void batchnorm_bwd_ref(const T* x, const T* dy, const T* weight, const T* mean, const T* invstd,
                       T* dx, T* dweight, T* dbias, bool train, const NormShape& s,
                       void* workspace, const T* relu_y = nullptr);
void batchnorm_bwd(const float* x, const float* dy, const float* weight, const float* mean,
                   const float* invstd, float* dx, float* dweight, float* dbias, bool train,
                   const NormShape& s, void* workspace, cudaStream_t stream,
                   const float* relu_y = nullptr);
// invstd[c] = 1/sqrt(var[c] + eps): turns running_var into what batchnorm_bwd takes in eval mode.
template <typename T>
void batchnorm_invstd_ref(const T* var, T* invstd, double eps, int64_t c);
void batchnorm_invstd(const float* var, float* invstd, double eps, int64_t c, cudaStream_t stream);

// The CUDA statistics kernels split each channel's n*hw elements into this many blocks (a
// function of the shape only, so results do not depend on the GPU model).
int64_t batchnorm_splits(const NormShape& s);
size_t batchnorm_workspace_bytes(const NormShape& s);

// Batch norm's persistent CUDA kernels (training forward, and backward with dx): one
// cooperative launch per call instead of three kernels. The statistics pass keeps what fits of
// x (and dy) in shared memory, a grid barrier replaces the finalize kernel, and the output pass
// reads the rest back from memory newest first (from L2 where it is still there), so the tensor
// crosses DRAM about once instead of twice. Same bits as the three-kernel path; used when switched
// on, the device launches cooperatively, hw % 4 == 0 and the pointers take float4 loads (else,
// and when the grid does not fit at once after all, the three kernels run). Outputs must not
// alias inputs (as everywhere here: y == x is not supported). Off by default. Process-wide, for
// benchmarks and tests. Under stream capture (CUDA graphs) the fallback is not tested: a grid
// that does not fit may fail when the graph is instantiated or launched, not at this launch.
void batchnorm_set_persistent(bool on);
bool batchnorm_persistent();
// Test hooks: at most max_blocks blocks (0: as many as fit; negative: exactly -max_blocks, fit or
// not) and cache_bytes of shared memory per block (SIZE_MAX: a quarter of an SM's), so small
// shapes exercise several items per block and partly cached blocks. Also forgets an earlier
// launch that did not fit (below).
void batchnorm_persistent_limits(int max_blocks, size_t cache_bytes);
// Persistent launches so far, and launches that did not fit at once after all (fewer SMs than
// the device reported, as under MPS) and ran as the three kernels instead; after one such, the
// process plans the three kernels until batchnorm_persistent_limits is called.
struct BnPersistentCounts {
  int64_t launches = 0, fallbacks = 0;
};
BnPersistentCounts batchnorm_persistent_counts();
// The persistent grid batchnorm_fwd_train (backward: batchnorm_bwd) would launch for s with
// aligned pointers, or 0 when it would take the three-kernel path.
int64_t batchnorm_persistent_grid(const NormShape& s, bool backward);

// ---- group norm --------------------------------------------------------------------------------
// Statistics per (sample, group) over c/groups channels x hw; affine per channel. Same in train
// and eval. save_mean/save_invstd hold n*groups values.
template <typename T>
void groupnorm_fwd_ref(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                       T* save_invstd, double eps, const NormShape& s);
// workspace: groupnorm_workspace_bytes(s) (used when groupnorm_splits_planes(s)).
void groupnorm_fwd(const float* x, const float* weight, const float* bias, float* y,
                   float* save_mean, float* save_invstd, double eps, const NormShape& s,
                   void* workspace, cudaStream_t stream);

template <typename T>
void groupnorm_bwd_ref(const T* x, const T* dy, const T* weight, const T* mean, const T* invstd,
                       T* dx, T* dweight, T* dbias, const NormShape& s, void* workspace);
void groupnorm_bwd(const float* x, const float* dy, const float* weight, const float* mean,
                   const float* invstd, float* dx, float* dweight, float* dbias,
                   const NormShape& s, void* workspace, cudaStream_t stream);

// With few (sample, group) pairs (n*groups < 128) one block per group leaves most of a GPU idle
// (8 blocks for 8 samples of one group): the CUDA kernels then sum per (sample, channel) plane
// and combine the planes of each group in order, when that gives more blocks (c/groups >= 2)
// of useful size (hw >= 32). A function of the shape only.
bool groupnorm_splits_planes(const NormShape& s);
size_t groupnorm_workspace_bytes(const NormShape& s);
// The whole-group CUDA kernels hold a group of up to 8,192 values (whole float4s per channel)
// in registers, so x (and dy) are read from memory once (on by default). Off: the two-pass
// kernels. The forward gives the same bits either way, the backward rounds its sums
// differently. Process-wide, for benchmarks and tests to compare; change it between launches.
void groupnorm_set_cached(bool on);

}  // namespace kiln
