// CPU reference of the optimizer step (the CPU path of every optimizer and the oracle of the
// CUDA step), the chunk table and workspace layout the CUDA step uses, and the launch counter.
#include <atomic>
#include <cmath>

#include "engine/error.h"
#include "kernels/optim/optim.h"
#include "kernels/optim/optim_math.h"

namespace kiln {

template <typename T>
void optim_step_ref(T* w, const T* g, T* s1, T* s2, const OptimTensor* tensors, int ntensors,
                    const OptimHyper& h, OptimStepStats* stats) {
  // Pass 1: statistics of g_eff and w per tensor; sums in double, in element order.
  std::vector<double> g2(ntensors), w2(ntensors), aw(ntensors);
  bool nonfinite = false;
  double total = 0, l1_sum = 0, l2_sum = 0;
  for (int t = 0; t < ntensors; ++t) {
    const OptimTensor& ts = tensors[t];
    double sg = 0, sw = 0, sa = 0;
    for (int64_t i = ts.offset; i < ts.offset + ts.numel; ++i) {
      T ge = optim_penalised_grad(g[i], w[i], ts.penalize, h.l1, h.l2);
      if (!std::isfinite(static_cast<double>(ge))) nonfinite = true;
      sg += static_cast<double>(ge) * ge;
      sw += static_cast<double>(w[i]) * w[i];
      sa += std::fabs(static_cast<double>(w[i]));
    }
    g2[t] = sg;
    w2[t] = sw;
    aw[t] = sa;
    total += sg;
    if (ts.penalize) {
      l1_sum += sa;
      l2_sum += sw;
    }
  }
  double G = std::sqrt(total);
  if (stats) {
    stats->grad_norm = static_cast<float>(G);
    stats->l1_penalty = static_cast<float>(h.l1 * l1_sum);
    stats->l2_penalty = static_cast<float>(h.l2 * l2_sum);
    stats->skipped = nonfinite ? 1 : 0;
    for (int t = 0; t < ntensors; ++t) {
      if (stats->tensor_grad_norm) stats->tensor_grad_norm[t] = static_cast<float>(std::sqrt(g2[t]));
      if (stats->tensor_weight_norm) stats->tensor_weight_norm[t] = static_cast<float>(std::sqrt(w2[t]));
    }
  }
  if (nonfinite) return;

  // Pass 2: clip, decay, update.
  const OptimScalars sc = optim_scalars(h);
  T dummy1 = 0, dummy2 = 0;
  for (int t = 0; t < ntensors; ++t) {
    const OptimTensor& ts = tensors[t];
    float factor = static_cast<float>(optim_clip_factor(h.clip, h.clip_value, g2[t], G));
    for (int64_t i = ts.offset; i < ts.offset + ts.numel; ++i) {
      T ge = optim_penalised_grad(g[i], w[i], ts.penalize, h.l1, h.l2);
      ge = optim_clip(ge, h.clip, h.clip_value, factor);
      optim_update(w[i], ge, s1 ? s1 + i : &dummy1, s2 ? s2 + i : &dummy2, ts.decay, h, sc);
    }
  }
}

template <typename T>
double optim_penalty_ref(const T* w, T* g, int64_t n, float l1, float l2) {
  double value = 0;
  for (int64_t i = 0; i < n; ++i) {
    g[i] = optim_penalised_grad(g[i], w[i], 1, l1, l2);
    value += double(l1) * std::fabs(static_cast<double>(w[i])) + double(l2) * w[i] * w[i];
  }
  return value;
}

template void optim_step_ref<float>(float*, const float*, float*, float*, const OptimTensor*, int,
                                    const OptimHyper&, OptimStepStats*);
template void optim_step_ref<double>(double*, const double*, double*, double*, const OptimTensor*,
                                     int, const OptimHyper&, OptimStepStats*);
template double optim_penalty_ref<float>(const float*, float*, int64_t, float, float);
template double optim_penalty_ref<double>(const double*, double*, int64_t, float, float);

std::vector<OptimChunk> optim_build_chunks(std::vector<OptimTensor>& tensors) {
  std::vector<OptimChunk> chunks;
  for (size_t t = 0; t < tensors.size(); ++t) {
    tensors[t].chunk_begin = static_cast<int32_t>(chunks.size());
    KILN_CHECK(tensors[t].offset % 16 == 0,
               "optimizer tensor " << t << " offset " << tensors[t].offset << " not 64-byte aligned");
    for (int64_t b = 0; b < tensors[t].numel; b += kOptimChunk) {
      int64_t len = std::min<int64_t>(kOptimChunk, tensors[t].numel - b);
      chunks.push_back({tensors[t].offset + b, static_cast<int32_t>(len), static_cast<int32_t>(t)});
    }
    KILN_CHECK(chunks.size() < (size_t(1) << 31), "optimizer: too many chunks (" << chunks.size() << ")");
    tensors[t].chunk_end = static_cast<int32_t>(chunks.size());
  }
  return chunks;
}

OptimWorkspaceLayout optim_workspace_layout(int nchunks, int ntensors) {
  auto align = [](size_t x) { return (x + 255) / 256 * 256; };
  OptimWorkspaceLayout l;
  size_t off = 0;
  l.partials = off;
  off = align(off + sizeof(double) * 4 * static_cast<size_t>(nchunks));
  l.stats = off;
  off = align(off + sizeof(float) * (3 + 2 * static_cast<size_t>(ntensors)));
  l.skip = off;
  l.sticky = off + sizeof(int);
  l.ticket = off + 2 * sizeof(int);
  off = align(off + 3 * sizeof(int));
  l.factors = off;
  off = align(off + sizeof(float) * static_cast<size_t>(ntensors));
  l.bytes = off;
  return l;
}

static std::atomic<int64_t> g_optim_launches{0};
int64_t optim_launch_count() { return g_optim_launches.load(); }
void optim_count_launch() { g_optim_launches.fetch_add(1); }

}  // namespace kiln
