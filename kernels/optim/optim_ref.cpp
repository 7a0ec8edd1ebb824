// CPU reference of the optimizer step (the CPU path of every optimizer and the oracle of the
// CUDA step), the chunk table and workspace layout the CUDA step uses, and the launch counter.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <type_traits>
#include <vector>

#include "engine/error.h"
#include "engine/parallel.h"
#include "kernels/optim/optim.h"
#include "kernels/optim/optim_math.h"

namespace kiln {

namespace {

// One tensor's pass-1 sums over [b, e): sum g_eff^2, sum w^2 and (only when penalised: the L1
// report needs it) sum |w|, each in double and split over four interleaved lanes summed at the
// end ((l0 + l1) + (l2 + l3)) + tail, so the three sums are not one long chain of dependent adds.
template <typename T, bool kPenalize>
void tensor_sums(const T* w, const T* g, int64_t b, int64_t e, float l1, float l2, double* sg,
                 double* sw, double* sa) {
  // Adds element i's terms to one lane (or to the tail's sums).
  auto add = [&](int64_t i, double& sg_, double& sw_, double& sa_) {
    const double wk = static_cast<double>(w[i]);
    const double gk = static_cast<double>(optim_penalised_grad(g[i], w[i], kPenalize, l1, l2));
    sg_ += gk * gk;
    sw_ += wk * wk;
    if (kPenalize) sa_ += std::fabs(wk);
  };
  double g4[4] = {0, 0, 0, 0}, w4[4] = {0, 0, 0, 0}, a4[4] = {0, 0, 0, 0};
  int64_t i = b;
  for (; i + 4 <= e; i += 4)
    for (int k = 0; k < 4; ++k) add(i + k, g4[k], w4[k], a4[k]);
  double tg = 0, tw = 0, ta = 0;
  for (; i < e; ++i) add(i, tg, tw, ta);
  *sg = ((g4[0] + g4[1]) + (g4[2] + g4[3])) + tg;
  *sw = ((w4[0] + w4[1]) + (w4[2] + w4[3])) + tw;
  *sa = ((a4[0] + a4[1]) + (a4[2] + a4[3])) + ta;
}

// Pass 2 over one tensor, specialised so the loop has no control flow left and vectorises
// (the divides and square roots of Adam and RMSprop dominate a scalar step): the optimizer kind
// and the per-tensor flags are constants, and clipping other than by value is a multiply by
// the tensor's factor, 1 when nothing clips (g * 1 is g exactly, as optim_clip returns it).
template <OptimKind K, bool kPenalize, bool kClipValue, typename T>
void update_tensor(T* w, const T* g, T* s1, T* s2, int64_t b, int64_t e, int decay, float factor,
                   const OptimHyper& hyper, const OptimScalars& scalars) {
  // Local copies: the stores through w, s1 and s2 cannot alias them, so the loop keeps them in
  // registers (read through the references, a store could change them: no vectorisation).
  OptimHyper h = hyper;
  h.kind = K;
  const OptimScalars sc = scalars;
  for (int64_t i = b; i < e; ++i) {
    T ge = optim_penalised_grad(g[i], w[i], kPenalize, h.l1, h.l2);
    if (kClipValue)
      ge = optim_clip(ge, ClipMode::Value, h.clip_value, factor);
    else
      ge *= T(factor);
    optim_update(w[i], ge, s1 + i, s2 + i, decay, h, sc);
  }
}

template <OptimKind K, typename T>
void update_tensor(T* w, const T* g, T* s1, T* s2, int64_t b, int64_t e, int penalize, int decay,
                   float factor, const OptimHyper& h, const OptimScalars& sc) {
  const bool value = h.clip == ClipMode::Value;
  if (penalize && value)
    update_tensor<K, true, true>(w, g, s1, s2, b, e, decay, factor, h, sc);
  else if (penalize)
    update_tensor<K, true, false>(w, g, s1, s2, b, e, decay, factor, h, sc);
  else if (value)
    update_tensor<K, false, true>(w, g, s1, s2, b, e, decay, factor, h, sc);
  else
    update_tensor<K, false, false>(w, g, s1, s2, b, e, decay, factor, h, sc);
}

template <OptimKind K>
using Kind = std::integral_constant<OptimKind, K>;

// Calls f(begin, end) on each piece of a tensor in order: kOptimChunk elements of the flat
// buffers, the last one shorter. The CPU step's pieces and the CUDA step's chunk table
// (optim_build_chunks) are this one cut.
template <typename F>
void for_each_chunk(const OptimTensor& t, const F& f) {
  for (int64_t b = 0; b < t.numel; b += kOptimChunk)
    f(t.offset + b, t.offset + std::min(t.numel, b + kOptimChunk));
}

struct Piece {
  int64_t begin, end;
  int tensor;
};

std::vector<Piece> pieces_of(const OptimTensor* tensors, int ntensors) {
  std::vector<Piece> p;
  for (int t = 0; t < ntensors; ++t)
    for_each_chunk(tensors[t], [&](int64_t b, int64_t e) { p.push_back({b, e, t}); });
  return p;
}

}  // namespace

// Both passes run over fixed pieces of at most kOptimChunk elements (threads, engine/parallel.h,
// take runs of them): pass 1 forms each piece's sums, then adds a tensor's pieces in order, so
// the norms and every updated value are the same bits on any thread count.
template <typename T>
void optim_step_ref(T* w, const T* g, T* s1, T* s2, const OptimTensor* tensors, int ntensors,
                    const OptimHyper& hyper, OptimStepStats* stats) {
  // A local copy: the stores through w, s1 and s2 below cannot alias it, so the compiler
  // keeps the hyper-parameters in registers instead of reloading them for every element.
  const OptimHyper h = hyper;
  const std::vector<Piece> pieces = pieces_of(tensors, ntensors);
  const int64_t np = static_cast<int64_t>(pieces.size());
  const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / kOptimChunk);
  // Pass 1: statistics of g_eff and w per piece (double sums; tensor_sums fixes the order),
  // then per tensor in piece order.
  std::vector<double> sums(static_cast<size_t>(3 * np));
  parallel_for(
      np,
      [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          const Piece& pc = pieces[p];
          double* out = &sums[3 * p];
          if (tensors[pc.tensor].penalize)
            tensor_sums<T, true>(w, g, pc.begin, pc.end, h.l1, h.l2, out, out + 1, out + 2);
          else
            tensor_sums<T, false>(w, g, pc.begin, pc.end, h.l1, h.l2, out, out + 1, out + 2);
        }
      },
      grain);
  std::vector<double> g2(ntensors), w2(ntensors), aw(ntensors);
  for (int64_t p = 0; p < np; ++p) {
    const int t = pieces[p].tensor;
    g2[t] += sums[3 * p];
    w2[t] += sums[3 * p + 1];
    aw[t] += sums[3 * p + 2];
  }
  double total = 0, l1_sum = 0, l2_sum = 0;
  for (int t = 0; t < ntensors; ++t) {
    total += g2[t];
    if (tensors[t].penalize) {
      l1_sum += aw[t];
      l2_sum += w2[t];
    }
  }
  // A sum of squares of floats cannot overflow a double: it is finite exactly when every g_eff
  // is. (Only float is instantiated: a double step's sums could overflow on finite values.)
  static_assert(std::is_same<T, float>::value, "optim_step_ref: float only");
  const bool nonfinite = !std::isfinite(total);
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

  // Pass 2: clip, decay, update, element by element. A state buffer the kind does not use may
  // be null; then a dummy takes its (unread) writes, in a loop of its own so the usual one stays
  // vectorisable. SGD never touches s2 (FlatOptimizer keeps none for it): its specialised loop
  // gets s1 in its place, or every SGD step of a real run took the slow loop.
  const OptimScalars sc = optim_scalars(h);
  if (!s2 && h.kind == OptimKind::SGD) s2 = s1;
  std::vector<float> factors(ntensors);
  for (int t = 0; t < ntensors; ++t)
    factors[t] = static_cast<float>(optim_clip_factor(h.clip, h.clip_value, g2[t], G));
  auto update_piece = [&](const Piece& pc) {
    const OptimTensor& ts = tensors[pc.tensor];
    const float factor = factors[pc.tensor];
    const int penalize = ts.penalize, decay = ts.decay;
    const int64_t b = pc.begin, e = pc.end;
    if (s1 && s2) {
      // One instantiation per kind, so each loop is specialised (a function-pointer table
      // measured 3x slower for SGD: the calls no longer inline).
      auto update = [&](auto kind) {
        update_tensor<decltype(kind)::value>(w, g, s1, s2, b, e, penalize, decay, factor, h, sc);
      };
      switch (h.kind) {
        case OptimKind::SGD:
          update(Kind<OptimKind::SGD>{});
          break;
        case OptimKind::Adam:
          update(Kind<OptimKind::Adam>{});
          break;
        case OptimKind::AdamW:
          update(Kind<OptimKind::AdamW>{});
          break;
        case OptimKind::RMSprop:
          update(Kind<OptimKind::RMSprop>{});
          break;
      }
    } else {
      T dummy1 = 0, dummy2 = 0;
      for (int64_t i = b; i < e; ++i) {
        const T ge = optim_clip(optim_penalised_grad(g[i], w[i], penalize, h.l1, h.l2), h.clip,
                                h.clip_value, factor);
        optim_update(w[i], ge, s1 ? s1 + i : &dummy1, s2 ? s2 + i : &dummy2, decay, h, sc);
      }
    }
  };
  parallel_for(
      np,
      [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) update_piece(pieces[p]);
      },
      grain);
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
template double optim_penalty_ref<float>(const float*, float*, int64_t, float, float);
template double optim_penalty_ref<double>(const double*, double*, int64_t, float, float);

std::vector<OptimChunk> optim_build_chunks(std::vector<OptimTensor>& tensors) {
  std::vector<OptimChunk> chunks;
  for (size_t t = 0; t < tensors.size(); ++t) {
    tensors[t].chunk_begin = static_cast<int32_t>(chunks.size());
    KILN_CHECK(tensors[t].offset % 16 == 0,
               "optimizer tensor " << t << " offset " << tensors[t].offset << " not 64-byte aligned");
    for_each_chunk(tensors[t], [&](int64_t b, int64_t e) {
      chunks.push_back({b, static_cast<int32_t>(e - b), static_cast<int32_t>(t)});
    });
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
