#!/usr/bin/env python3
"""Mutation testing of kiln's CUDA kernels: do the tests notice a plausible kernel bug?

Each mutant below is one small edit (or a few) to a kernel source that models a bug somebody
could really write: a missing barrier, an off-by-one bound, a dropped term, a wrong tie rule, a
split-K chunk summed twice. For each mutant the script applies the edit, rebuilds the test binary
of BUILD (an `emu` build runs the GPU tests on the CPU; a CUDA build runs them on the GPU), runs
the whole gtest suite with --gtest_fail_fast, restores the file, and records whether some test
failed (the mutant is "killed") or everything still passed ("SURVIVED": a hole in the tests, or a
mutant that does not change behaviour, which the table's note must then say). On an emulator
build a survivor runs once more with KILN_EMU_ORDER=reverse, since a missing barrier may only
show when the threads between two barriers run in another order.

    scripts/mutation_test.py [--build build-emu-apps] [--only NAME,...] [--list] [--timeout S]
                             [--set kernels|host|all] [--cli] [--parity] [--check]

--parity runs scripts/check_pytorch_training.py (kiln against PyTorch, step by step) instead of
the unit tests, on a CPU build: how many of the formula bugs PyTorch alone would catch.

The build must have KILN_BUILD_TESTS=ON. Sources are restored from memory after every mutant,
also on Ctrl-C or SIGTERM; the script refuses to touch a file with uncommitted changes, so
`git checkout FILE` is always a safe repair after a hard kill. Exit status: 0 when every mutant
was killed, 1 when one survived or no longer applies (its text is not in the source any more).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

# name, file, [(old, new), ...], the bug it models. `old` must occur exactly once in the file.
MUTANTS = [
    # ---- convolution (kernels/conv/conv.cu)
    ("conv-war-barrier", "kernels/conv/conv.cu",
     [("        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];\n    }\n    __syncthreads();\n",
       "        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];\n    }\n")],
     "no barrier after the tile multiply: the next slice overwrites tiles still being read"),
    ("conv-raw-barrier", "kernels/conv/conv.cu",
     [("Bs[b_r[i]][b_n[i]] = rb[i];\n    __syncthreads();\n", "Bs[b_r[i]][b_n[i]] = rb[i];\n")],
     "no barrier between storing a tile and reading it"),
    ("conv-prefetch", "kernels/conv/conv.cu",
     [("if (r0 + BK < rend) load(r0 + BK);", "if (r0 + 2 * BK < rend) load(r0 + BK);")],
     "the prefetch skips the last slice: it multiplies stale registers"),
    ("conv-splitk-chunk", "kernels/conv/conv.cu",
     [("const int rend = static_cast<int>(min(static_cast<long long>(R), static_cast<long long>(rbeg) + r_chunk));",
       "const int rend = R;")],
     "every split-K chunk runs to the end of the reduction (terms counted several times)"),
    ("conv-splitk-sum", "kernels/conv/conv.cu",
     [("for (int z = 0; z < splits; ++z) s += ws", "for (int z = 1; z < splits; ++z) s += ws")],
     "the split-K combine drops the first chunk"),
    ("conv-grid-cols", "kernels/conv/conv.cu",
     [("const dim3 grid(ceil_div(N, 16 * t.tn), ceil_div(M, 16 * t.tm), splits);",
       "const dim3 grid(unsigned(N / (16 * t.tn)), ceil_div(M, 16 * t.tm), splits);")],
     "the grid rounds N down: the last partial tile of output columns is never computed"),
    ("conv-fastdiv-round", "engine/fast_div.h",
     [("    mul = static_cast<unsigned>((uint64_t(1) << 32) * ((uint64_t(1) << shr) - d) / d + 1);",
       "    mul = static_cast<unsigned>((uint64_t(1) << 32) * ((uint64_t(1) << shr) - d) / d);")],
     "the launch-time division's multiplier rounds down: some quotients come out one short"),
    ("conv-bwd-data-stride", "kernels/conv/conv.cu",
     [("      if (qh * d.stride != ph || qw * d.stride != pw) return 0.f;", "      if (qh * d.stride != ph) return 0.f;")],
     "backward-data keeps taps that fall between strided output columns"),
    ("conv-wide-cols", "kernels/conv/conv.cu",
     [("*reinterpret_cast<const float4*>(&Bs[kk][q * 64 + tx * 4]);", "*reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);")],
     "a 128-column tile multiplies its first 64 columns twice (the second half never read)"),
    ("conv-tiles-step-down", "kernels/conv/conv.cu",
     [("  if (t.tm == 8 && blocks() < kMinBlocks) t.tm = 4;\n", "")],
     "the default tiles keep 128 rows where the grid would leave the GPU half idle"),
    ("conv-tiles-tall", "kernels/conv/conv.cu",
     [("if (policy == ConvTiles::kTall) return TileChoice{t.tm, 4};",
       "if (policy == ConvTiles::kTall) return TileChoice{std::min(t.tm, 4), 4};")],
     "ConvTiles::kTall runs 64-row tiles (the 128 x 64 kernels kAuto picks are never tested)"),
    ("conv-tiles-small", "kernels/conv/conv.cu",
     [("if (policy == ConvTiles::kSmall) return TileChoice{std::min(t.tm, 4), 4};",
       "if (policy == ConvTiles::kSmall) return TileChoice{t.tm, 4};")],
     "ConvTiles::kSmall still runs 128-row tiles (the A/B compares the new tiles with themselves)"),
    ("conv-fwd-pad-cols", "kernels/conv/conv.cu",
     [("return (inside(h, d.H) && inside(ww, d.W)) ? x[c.base", "return (inside(h, d.H)) ? x[c.base")],
     "forward reads across the left/right border instead of zero padding"),
    ("conv-bwd-data-edge", "kernels/conv/conv.cu",
     [("return (ph < d.P && pw < d.Q) ?", "return (ph < d.P) ?")],
     "backward-data reads dy past the last output column"),
    ("conv-bwd-filter-pad", "kernels/conv/conv.cu",
     [("return (inside(h, d.H) && inside(ww, d.W)) ? x[(img * d.C)", "return (inside(ww, d.W)) ? x[(img * d.C)")],
     "backward-filter reads rows above/below the image instead of zero padding"),
    ("conv-bias-tree", "kernels/conv/conv.cu",
     [("for (int w = NT / 2; w > 0; w /= 2) {", "for (int w = NT / 4; w > 0; w /= 2) {")],
     "the bias-gradient tree reduction starts at half width and drops half the partial sums"),
    ("conv-bias-split-combine", "kernels/conv/conv.cu",
     [("for (int z = 0; z < splits; ++z) s += partial[int64_t(m) * splits + z];",
       "for (int z = 1; z < splits; ++z) s += partial[int64_t(m) * splits + z];")],
     "the bias gradient's combine drops the first image split"),
    ("conv-bias-split-last", "kernels/conv/conv.cu",
     [("const int img_end = min(n, (z + 1) * per);", "const int img_end = min(n - 1, (z + 1) * per);")],
     "the bias gradient's last image split stops one image short"),
    ("conv-fused-relu-zero", "kernels/conv/conv.cu",
     [("if (y && y[i] <= 0.f) return 0.f;", "if (y && y[i] < 0.f) return 0.f;")],
     "fused ReLU backward passes the gradient where the output is exactly 0"),
    ("sweep-worker-all-failed", "apps/sweep.cpp",
     [("    if (!all_done && !out.results.empty() && ok == 0) {", "    if (!out.results.empty() && ok == 0) {")],
     "a sweep whose every trial failed exits 0 (the last worker only notes it)"),
    ("conv-layer-fused-unmasked", "layers/conv.cpp",
     [("    if (relu_) {  // the ReLU backward once", "    if (false) {  // the ReLU backward once")],
     "the fused Conv2d's CUDA backward passes dy through unmasked (an emu or CUDA build kills it)"),
    ("conv-1x1-bias", "kernels/conv/conv.cu",
     [("out[(img * Mout + m) * HW + (j - img * HW)] = relu_if(relu, v + (bias ? bias[m] : 0.f));",
       "out[(img * Mout + m) * HW + (j - img * HW)] = relu_if(relu, v);")],
     "the 1x1 path forgets the bias"),
    # ---- pooling (kernels/pool)
    ("pool-max-bwd-overlap", "kernels/pool/pool.cu",
     [("if (argmax[o] == me) acc += dy[o];", "if (argmax[o] == me) acc = dy[o];")],
     "max-pool backward keeps one window's gradient where overlapping windows share a maximum"),
    ("pool-avg-bwd-kernel", "kernels/pool/pool.cu",
     [("for (I q = q0; q < q1; ++q) acc += dy[(plane * s.P + p) * s.Q + q];\n  dx[i] = acc * (1.f / float(s.kh * s.kw));",
       "for (I q = q0; q < q1; ++q) acc += dy[(plane * s.P + p) * s.Q + q];\n  dx[i] = acc * (1.f / float(s.kh * s.kh));")],
     "avg-pool backward divides by kh*kh (right only for square windows)"),
    ("pool-index-32-limit", "kernels/pool/pool.cu",
     [("  return !g_index64.load(std::memory_order_relaxed) && s.x_numel() < kLimit",
       "  return g_index64.load(std::memory_order_relaxed) && s.x_numel() < kLimit")],
     "the 64-bit switch inverted: the kernels index in 64 bits, or in 32 past 2^31 elements"),
    ("pool-avg-fwd-pad", "kernels/pool/pool.cu",
     [("if (wi >= 0 && wi < s.w) acc += xp[hi * s.w + wi];", "if (wi < s.w) acc += xp[hi * s.w + wi];")],
     "avg-pool forward reads left of the row instead of zero padding"),
    ("pool-gap-shuffle", "kernels/pool/pool.cu",
     [("for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync", "for (int off = 8; off > 0; off /= 2) s += __shfl_down_sync")],
     "global average pooling's warp reduction drops lanes 16-31"),
    ("pool-tie-rule", "kernels/pool/pool_window.h",
     [("besti < 0 || v > best || !(v == v)", "besti < 0 || v >= best || !(v == v)")],
     "max-pool ties go to the last maximum (CPU and GPU alike: only a hand-computed test sees it)"),
    ("pool-nan-first", "kernels/pool/pool_window.h",
     [("besti < 0 || v > best || !(v == v)", "besti < 0 || (best == best && (v > best || !(v == v)))")],
     "the first NaN of a max-pool window keeps the argmax (torch's last NaN does; kiln until 2026-12-03)"),
    ("pool-covering", "kernels/pool/pool_window.h",
     [("*lo = ip < k ? 0 : (ip - k) / stride + 1;", "*lo = ip < k ? 0 : (ip - k) / stride;")],
     "backward window range includes one window that does not cover the input (CPU and GPU alike)"),
    # ---- normalization (kernels/norm/norm.cu)
    ("bn-running-var-biased", "kernels/norm/norm.cu",
     [("const double unbiased = m > 1 ? var * m / (m - 1) : var;", "const double unbiased = var;")],
     "running variance without Bessel's correction (PyTorch uses the unbiased estimate)"),
    ("bn-bwd-xhat-term", "kernels/norm/norm.cu",
     [("k2f = train ? static_cast<float>(-k1 * is * dw / m) : 0.0f;", "k2f = 0.0f;")],
     "batch-norm backward drops the term through the variance"),
    ("bn-eval-eps", "kernels/norm/norm.cu",
     [("s = p2[c] / sqrtf(p1[c] + eps)", "s = p2[c] / sqrtf(p1[c])")],
     "eval-mode batch norm forgets eps"),
    ("bn-split-partials", "kernels/norm/norm.cu",
     [("  for (int sp = 0; sp < splits; ++sp) {\n    a += pa", "  for (int sp = 1; sp < splits; ++sp) {\n    a += pa")],
     "the forward statistics drop the first split's partial sums"),
    ("bn-vec-partial", "kernels/norm/norm.cu",
     [("b += fma(double(g.x), e0, g.y * e1) + fma(double(g.z), e2, g.w * e3);",
       "b += fma(double(g.x), e0, g.y * e1) + fma(double(g.z), e2, g.w * e2);")],
     "the vectorised backward pass pairs the fourth gradient with the third input"),
    ("norm-block-sum-barrier", "kernels/norm/norm.cu",
     [("      sb[kWarps] = b;\n    }\n  }\n  __syncthreads();\n", "      sb[kWarps] = b;\n    }\n  }\n")],
     "no barrier between warp 0 writing the block total and every thread reading it"),
    ("gn-plane-shift", "kernels/norm/norm.cu",
     [("const float ctr = BWD ? mean[ng] : x[static_cast<int64_t>(ng) * cpg * hw];",
       "const float ctr = BWD ? mean[ng] : x[base];")],
     "group norm's per-plane sums shift by each plane's first element, but the mean adds back the group's"),
    ("gn-plane-first", "kernels/norm/norm.cu",
     [("  for (unsigned ci = 0; ci < cpg; ++ci) {\n    a += pa[p0 + ci];",
       "  for (unsigned ci = 1; ci < cpg; ++ci) {\n    a += pa[p0 + ci];")],
     "group norm's per-plane statistics leave out each group's first channel"),
    ("gn-plane-apply-group", "kernels/norm/norm.cu",
     [("const unsigned p = hw.div(i), pc = C.div(p), c = p - pc * C, ng = pc * groups + cpg.div(c);",
       "const unsigned p = hw.div(i), pc = C.div(p), c = p - pc * C, ng = pc * groups;")],
     "group norm's per-plane output pass normalises every group with the first group's statistics"),
    ("bn-apply-channel", "kernels/norm/norm.cu",
     [("      const unsigned p = hw.div(i);\n      const int c = static_cast<int>(p - C.div(p) * C);",
       "      const unsigned p = hw.div(i);\n      const int c = static_cast<int>(p - C.div(p + 1) * C);")],
     "batch norm's float4 output pass takes a wrong channel where the next plane starts a new image"),
    ("gn-variance", "kernels/norm/norm.cu",
     [("const double invstd = 1.0 / sqrt(clamp_var(r.b / len - dm * dm) + eps);",
       "const double invstd = 1.0 / sqrt(clamp_var(r.b / len) + eps);")],
     "group norm's variance from shifted sums forgets to subtract the shifted mean's square"),
    ("gn-bwd-small-hw", "kernels/norm/norm.cu",
     [("  sg += w[c] * ra;\n", "  sg += ra;\n")],
     "group-norm backward forgets the weight in the mean-gradient term"),
    ("gn-bwd-dx-xhat", "kernels/norm/norm.cu",
     [("  return is * (wc * gv - fsg - xh * fsgx);", "  return is * (wc * gv - fsg);")],
     "group-norm backward drops the term through the variance"),
    ("gn-cached-fwd-tail", "kernels/norm/norm.cu",
     [("    if (4 * (threadIdx.x + i * kThreads) < len) gn_sum4(v[i], shift, a, b);",
       "    if (4 * (threadIdx.x + i * kThreads) + 4 < len) gn_sum4(v[i], shift, a, b);")],
     "the register-cached group norm leaves the group's last float4 out of the statistics"),
    ("gn-cached-bwd-channel", "kernels/norm/norm.cu",
     [("      if (j >= lo && j < hi) {", "      if (j >= lo && j <= hi) {")],
     "the register-cached group norm backward counts the next channel's first float4 in a channel's sums"),
    ("gn-cached-size", "kernels/norm/norm.cu",
     [("  return len <= 4 * kThreads * 4 ? 4 : len <= 4 * kThreads * 8 ? 8 : 0;",
       "  return len <= 4 * kThreads * 4 ? 4 : len <= 4 * kThreads * 9 ? 8 : 0;")],
     "groups past 8 float4s a thread take the register-cached kernels (their tails never read)"),
    ("gn-param-grad", "kernels/norm/norm.cu",
     [("  for (int n = 0; n < N; ++n) {\n    a += ws_dw", "  for (int n = 1; n < N; ++n) {\n    a += ws_dw")],
     "group-norm weight/bias gradients leave out the first sample"),
    ("relu-nan-to-zero", "kernels/activation/activation.cu",
     [("if (A == Act::ReLU) y[i] = v <= 0.f ? 0.f : v;", "if (A == Act::ReLU) y[i] = v > 0.f ? v : 0.f;")],
     "ReLU turns NaN into 0 (torch.relu keeps it), so a NaN weight trains on silently (until 2026-12-02)"),
    ("bn-square-in-float", "kernels/norm/norm.cu",
     [("  const double e0 = d0, e1 = d1, e2 = d2, e3 = d3;", "  const float e0 = d0, e1 = d1, e2 = d2, e3 = d3;")],
     "batch norm squares x - shift in float: past 1.8e19 the variance is inf and the layer outputs its bias alone"),
    ("bn-persist-grid-sync", "kernels/norm/norm.cu",
     [("  grid_sync();\n  for (unsigned k = nk; k-- > 0;) {", "  for (unsigned k = nk; k-- > 0;) {")],
     "the persistent batch norm has no grid barrier: blocks read partial sums other blocks have not written"),
    ("bn-persist-cache-bound", "kernels/norm/norm.cu",
     [("        if (slot < a.cache4) {\n          xv[u] =", "        if (slot <= a.cache4) {\n          xv[u] =")],
     "the persistent batch norm's output pass reads one float4 past what its statistics pass cached"),
    ("bn-persist-owner", "kernels/norm/norm.cu",
     [("a.eps, it.split == 0, u, s, t);", "a.eps, true, u, s, t);")],
     "every split's block of a channel updates the running statistics (momentum applied several times)"),
    ("bn-persist-coef-barrier", "kernels/norm/norm.cu",
     [("    __syncthreads();  // the next item's thread 0 overwrites coef_s\n", "")],
     "the persistent batch norm's thread 0 overwrites the shared coefficients while others still read them"),
    ("bn-persist-bwd-cached-g", "kernels/norm/norm.cu",
     [("          if (BWD) g[u] = cache[2 * slot + 1];", "          if (BWD) g[u] = cache[2 * slot];")],
     "the persistent batch norm backward reads the cached x where it wants the cached dy"),
    ("pool-shape-unchecked", "kernels/pool/pool.cu",
     [('  check_pool_shape(s, "maxpool2d_fwd");\n', "")],
     "the max-pool launcher takes a stride of 0 or windows wholly in the padding from a direct caller"),
    ("norm-var-nan-clamp", "kernels/norm/norm.cu",
     [("  return v < 0.0 ? 0.0 : v;\n", "  return fmax(v, 0.0);\n")],
     "the variance clamp turns a NaN variance (an inf in the channel or group) into 0"),
    ("bn-sums-unroll-tail", "kernels/norm/norm.cu",
     [("      if (j0 + u * 4 * kThreads >= end) break;\n      seen(",
       "      if (j0 + u * 4 * kThreads > end) break;\n      seen(")],
     "batch norm's unrolled statistics loop sums a float4 it never loaded at a split's end"),
    ("bn-persist-plan-balance", "kernels/norm/norm.cu",
     [("  p.grid = static_cast<unsigned>((items + nk - 1) / nk);", "  p.grid = static_cast<unsigned>(std::min(max_grid, items));")],
     "the persistent batch norm launches every block that fits, leaving some a whole item more than others"),
    ("bn-persist-retry", "kernels/norm/norm.cu",
     [("    g_bn_too_large = true;\n", "")],
     "after a cooperative launch that did not fit, every later call tries (and fails) again"),
    ("bn-fused-relu-mask", "kernels/norm/norm.cu",
     [("  return yv <= 0.f ? 0.f : g;\n}", "  return yv < 0.f ? 0.f : g;\n}")],
     "batch norm's fused ReLU backward passes the gradient where the output is exactly 0"),
    # ---- dropout (kernels/dropout/dropout.cu)
    ("dropout-tail", "kernels/dropout/dropout.cu",
     [("if (t < n) out[t] = drop_one<CHANNEL>(in[t], t, hw, key, thr, scale);",
       "if (t + 1 < n) out[t] = drop_one<CHANNEL>(in[t], t, hw, key, thr, scale);")],
     "the vector kernel leaves the last element of an n % 4 tail unwritten"),
    ("dropout-channel-vec", "kernels/dropout/dropout.cu",
     [("const float f = dropout_keep(key, i / hw, thr) ? scale : 0.f;", "const float f = dropout_keep(key, i, thr) ? scale : 0.f;")],
     "channel dropout's vector path draws per element group instead of per plane"),
    ("dropout-device-step", "kernels/dropout/dropout.cu",
     [("return ks.step ? dropout_key(ks.seed, *ks.step, ks.salt) : key;", "return key;")],
     "under a CUDA graph the mask ignores the step read from device memory (same mask every step)"),
    # ---- loss (kernels/loss/loss.cu)
    ("loss-argmax-lanes", "kernels/loss/loss.cu",
     [("if (argmax_better<float>(om, oa, m, arg)) { m = om; arg = oa; }", "if (om > m) { m = om; arg = oa; }")],
     "the warp arg-max merge ignores the first-maximum tie rule"),
    ("loss-no-max-shift", "kernels/loss/loss.cu",
     [("if (k != arg) s1 += expf(z[k] - m);", "if (k != arg) s1 += expf(z[k]);"),
      ("loss[row] = log1pf(s1) - (z[y] - m);", "loss[row] = log1pf(s1) - z[y];"),
      ("float d = k != y     ? expf(z[k] - m) / denom", "float d = k != y     ? expf(z[k]) / denom"),
      (": expf(z[k] - m) / denom - 1.f;", ": expf(z[k]) / denom - 1.f;")],
     "log-sum-exp without subtracting the maximum: overflows on large logits"),
    ("loss-log1p", "kernels/loss/loss.cu",
     [("loss[row] = log1pf(s1) - (z[y] - m);", "loss[row] = logf(1.f + s1) - (z[y] - m);")],
     "the loss rounds 1 + s1 before the log: a confident row's small loss loses its precision"),
    ("loss-sums-tree", "kernels/loss/loss.cu",
     [("for (int w = 128; w > 0; w >>= 1) {", "for (int w = 64; w > 0; w >>= 1) {")],
     "the epoch loss/accuracy sum drops half the partial sums"),
    # ---- optimizer (kernels/optim)
    ("optim-skip-ignored", "kernels/optim/optim.cu",
     [("    return;\n  }\n  const OptimChunk c = chunks[blockIdx.x];", "  }\n  const OptimChunk c = chunks[blockIdx.x];")],
     "a non-finite gradient does not skip the step on the device"),
    ("optim-sticky-first-step", "kernels/optim/optim.cu",
     [("*sticky == 0) *sticky = optim_sticky_step(h.step);", "*sticky == 0) *sticky = 1;")],
     "the device's non-finite flag is a bare 1, so CUDA runs name the step the flag was read at"),
    ("optim-ticket-reset", "kernels/optim/optim.cu",
     [("    *ws.ticket = 0u;  // ready for the next step\n", "")],
     "the last-block ticket is not reset: the next step never finalizes its statistics"),
    ("optim-global-clip", "kernels/optim/optim.cu",
     [("  if (clip == ClipMode::GlobalNorm)\n    for (int t = tid;", "  if (clip == ClipMode::Norm)\n    for (int t = tid;")],
     "global-norm clipping never writes its factors"),
    ("optim-penalty-all", "kernels/optim/optim.cu",
     [("      if (ts.penalize) {\n        tot_l1 += s;", "      if (true) {\n        tot_l1 += s;")],
     "the reported L1/L2 penalty includes biases and norm parameters"),
    ("optim-graph-hyper", "kernels/optim/optim.cu",
     [("    h = dev->h;\n    sc = dev->sc;", "    sc = dev->sc;")],
     "the CUDA-graph step keeps the captured lr/momentum instead of reading this step's"),
    ("optim-update-tail", "kernels/optim/optim.cu",
     [("for (int i = nvec * 4 + threadIdx.x; i < c.len; i += kThreads) {\n    const int64_t k = c.begin + i;",
       "for (int i = nvec * 4 + threadIdx.x; i + 1 < c.len; i += kThreads) {\n    const int64_t k = c.begin + i;")],
     "the update skips the last element of a chunk whose length is not a multiple of 4"),
    ("adamw-decay-all", "kernels/optim/optim_math.h",
     [("else if (decay) w *= T(s.decay_mul);", "else w *= T(s.decay_mul);")],
     "AdamW's decoupled decay also shrinks biases and norm parameters"),
    ("sgd-first-step", "kernels/optim/optim_math.h",
     [("T b = s.first ? g : mu * *s1 + (T(1) - T(h.dampening)) * g;", "T b = mu * *s1 + (T(1) - T(h.dampening)) * g;")],
     "the momentum buffer's first step is (1 - dampening) g instead of g (PyTorch: g)"),
    ("adam-eps-placement", "kernels/optim/optim_math.h",
     [("T denom = optim_sqrt(v) / T(s.bc2_sqrt) + T(h.eps);", "T denom = (optim_sqrt(v) + T(h.eps)) / T(s.bc2_sqrt);")],
     "Adam's eps added before the bias correction (TF1 style, not PyTorch)"),
    ("nesterov", "kernels/optim/optim_math.h",
     [("g = h.nesterov ? g + mu * b : b;", "g = h.nesterov ? b + mu * b : b;")],
     "Nesterov's look-ahead uses the buffer twice"),
    ("rmsprop-eps-inside", "kernels/optim/optim_math.h",
     [("T avg = optim_sqrt(v) + T(h.eps);", "T avg = optim_sqrt(v + T(h.eps));")],
     "RMSprop's eps under the square root (TF style, not PyTorch's sqrt(v) + eps)"),
    ("l2-penalty-factor", "kernels/optim/optim_math.h",
     [("return g + T(l1) * sgn + T(2) * T(l2) * w;", "return g + T(l1) * sgn + T(l2) * w;")],
     "the L2 penalty l2 * sum w^2 contributes l2 * w to the gradient instead of 2 * l2 * w"),
    ("clipnorm-always", "kernels/optim/optim_math.h",
     [("return n > c ? c / n : 1.0;  // Keras", "return c / (n + 1e-6);  // Keras")],
     "per-tensor clipnorm also scales up gradients whose norm is below the limit"),
    ("adam-bias-correction-step", "kernels/optim/optim_math.h",
     [("s.step_size = static_cast<float>(h.lr / (1.0 - std::pow(static_cast<double>(h.beta1), t)));",
       "s.step_size = static_cast<float>(h.lr / (1.0 - std::pow(static_cast<double>(h.beta1), t + 1)));")],
     "Adam's first-moment bias correction counts the step from 2"),
    ("l1-sign-zero", "kernels/optim/optim_math.h",
     [("const T sgn = T(w > T(0)) - T(w < T(0));", "const T sgn = T(w >= T(0)) - T(w < T(0));")],
     "the L1 subgradient at w = 0 is 1 (torch.sign(0) = 0)"),
    ("bn-ref-running-var-biased", "kernels/norm/norm_ref.cpp",
     [("const double unbiased = m > 1 ? sq / (m - 1) : var;", "const double unbiased = var;")],
     "the CPU batch norm's running variance without Bessel's correction"),
    ("gn-ref-affine-group", "kernels/norm/norm_ref.cpp",
     [("y[base + i] = static_cast<T>((x[base + i] - mean) * invstd * weight[c] + bias[c]);",
       "y[base + i] = static_cast<T>((x[base + i] - mean) * invstd * weight[g] + bias[g]);")],
     "the CPU group norm's forward takes the affine weight and bias per group, not per channel"),
    ("penalize-biases", "optim/optimizer.cpp",
     [("t.penalize = penalties && (o.penalize_all || p.decay) ? 1 : 0;", "t.penalize = penalties ? 1 : 0;")],
     "the L1/L2 penalties also reach biases and norm parameters by default"),
    # ---- activations, dense, data
    ("relu-bwd-zero", "kernels/activation/activation.cu",
     [("if (A == Act::ReLU) dx[i] = v <= 0.f ? 0.f : g;", "if (A == Act::ReLU) dx[i] = v < 0.f ? 0.f : g;")],
     "ReLU backward passes the gradient where the output is exactly 0"),
    ("act-grid-stride", "kernels/activation/activation.cu",
     [("    float v = x[i];\n", "    float v = x[i];\n    if (i >= int64_t(gridDim.x) * blockDim.x) break;\n")],
     "the activation forward stops after one grid's worth of elements (no grid-stride loop)"),
    ("dense-bias-grad", "kernels/dense/dense.cu",
     [("for (int64_t r = threadIdx.y; r < rows; r += 8) s += dy[r * cols + c];",
       "for (int64_t r = threadIdx.y; r < rows; r += 16) s += dy[r * cols + c];")],
     "the dense bias gradient skips every other group of rows"),
    ("data-gather-order", "kernels/data/data.cu",
     [("dst[e] = src[static_cast<int64_t>(idx[j]) * row_v + k];", "dst[e] = src[static_cast<int64_t>(j) * row_v + k];")],
     "the batch gather ignores the shuffled index (images and labels no longer match)"),
    ("data-crop-pad", "kernels/data/data.cu",
     [("bool inside = sy >= 0 && sy < s.h && sx >= 0 && sx < s.w;", "bool inside = sy < s.h && sx < s.w;")],
     "the random crop reads before the image instead of zero padding"),
    ("data-crop-labels", "kernels/data/data.cu",
     [("for (int64_t j = tid; j < s.count; j += stride) dst_labels[j] = labels[idx[j]];\n}\n\nvoid gather_rows_fwd",
       "for (int64_t j = tid; j < s.count; j += stride) dst_labels[j] = labels[j];\n}\n\nvoid gather_rows_fwd")],
     "the augmenting gather takes labels in dataset order while the images are shuffled"),
    ("data-crop-flip", "kernels/data/data.cu",
     [("int sx = (p.flip ? s.w - 1 - x : x) + p.ox - s.pad;", "int sx = x + p.ox - s.pad;")],
     "the augmentation never flips"),
    # ---- host code the kernels do not cover (--set host; build-cpu is enough for these)
    ("sched-step-floor", "optim/schedule.cpp",
     [("return static_cast<float>(lr0_ * std::pow(double(gamma_), epoch / step_size_));",
       "return static_cast<float>(lr0_ * std::pow(double(gamma_), double(epoch) / step_size_));")],
     "StepLR decays smoothly instead of every step_size epochs"),
    ("sched-one-cycle-phase", "optim/schedule.cpp",
     [("end1_ = double(o.pct_start) * double(total) - 1.0;", "end1_ = double(o.pct_start) * double(total);")],
     "one-cycle's warm-up phase ends one step late (PyTorch: pct_start * total - 1)"),
    ("sched-triangular2", "optim/schedule.cpp",
     [("f = 1.0 / std::pow(2.0, c - 1);", "f = 1.0 / std::pow(2.0, c);")],
     "triangular2 halves the amplitude already in the first cycle"),
    ("sched-warmup-zero", "optim/schedule.cpp",
     [("if (t < w_) v = static_cast<float>(double(v) * double(t + 1) / double(w_));",
       "if (t < w_) v = static_cast<float>(double(v) * double(t) / double(w_));")],
     "linear warm-up starts at lr 0 (t / W instead of (t + 1) / W): the first step does nothing"),
    ("sched-plateau-patience", "optim/schedule.cpp",
     [("if (bad_ > o_.patience) {", "if (bad_ >= o_.patience) {")],
     "reduce-on-plateau lowers the lr after `patience` bad epochs instead of more than that"),
    ("sched-plateau-cooldown", "optim/schedule.cpp",
     [("      --cooldown_left_;\n      bad_ = 0;\n", "      --cooldown_left_;\n")],
     "bad epochs during the cooldown count towards the next reduction"),
    ("sched-manual-ties", "optim/schedule.cpp",
     [("if (e <= epoch && e >= best) {", "if (e <= epoch && e > best) {")],
     "a schedule file naming an epoch twice uses the first line, not the later one"),
    ("sched-inverse-sqrt", "optim/schedule.cpp",
     [("return static_cast<float>(k_ / std::sqrt(t + 1.0) * lr0_);", "return static_cast<float>(k_ / std::sqrt(t + 2.0) * lr0_);")],
     "k/sqrt(t) counts t from 2: the first epoch or step already decays"),
    ("shuffle-every-epoch", "engine/batch_iterator.cpp",
     [("mix64(mix64(seed_ + 0x9E3779B97F4A7C15ull) + static_cast<uint64_t>(epoch))",
       "mix64(mix64(seed_ + 0x9E3779B97F4A7C15ull))")],
     "the same shuffled order every epoch"),
    ("idx-trailing-bytes", "engine/idx.cpp",
     [("KILN_CHECK(extra == 0, path", "KILN_CHECK(true || extra == 0, path")],
     "an IDX file longer than its header says is accepted"),
    ("ckpt-data-crc", "engine/checkpoint.cpp",
     [("KILN_CHECK(stored == hex32(dcrc), what", "KILN_CHECK(true || stored == hex32(dcrc), what")],
     "a checkpoint whose tensor bytes were corrupted loads without complaint"),
    ("sweep-median-prune", "tuning/sweep.cpp",
     [("if (!better(med, best, spec.maximize)) return true;", "if (better(med, best, spec.maximize)) return true;")],
     "median pruning stops the trials that are better than the median"),
    ("sweep-resume-reruns", "tuning/sweep.cpp",
     [("return std::any_of(rs.begin(), rs.end(), [&](const TrialRecord& r) { return r.trial == i; });",
       "return false;")],
     "--resume (and a second worker) runs finished trials again"),
    ("anomaly-forward-order", "engine/trainer.cpp",
     [("for (size_t i = refs.size(); i-- > 0;) {\n    if (i < st.tensor_grad_norms.size() && !std::isfinite",
       "for (size_t i = 0; i < refs.size(); ++i) {\n    if (i < st.tensor_grad_norms.size() && !std::isfinite")],
     "a divergence names the first non-finite layer in forward order, not backward order"),
    ("rf-jump", "layers/conv.cpp",
     [("  in.size += (std::max(kh_, kw_) - 1) * in.jump;\n  in.jump *= stride_;",
       "  in.size += std::max(kh_, kw_) - 1;\n  in.jump *= stride_;")],
     "the receptive field of a conv after a stride grows by k-1 instead of (k-1)*jump"),
    ("dropout-scale", "layers/dropout.cpp",
     [("p.scale = static_cast<float>(1.0 / (1.0 - p_));", "p.scale = static_cast<float>(1.0 - p_);")],
     "dropout scales the kept units by 1-p instead of 1/(1-p) (not inverted dropout)"),
    ("mnist-std", "engine/dataset.cpp",
     [("    std = {0.3081f};", "    std = {0.3801f};")],
     "a typo in MNIST's normalisation std (0.3801 for 0.3081)"),
    ("batch-schedule-lookup", "optim/batch_schedule.cpp",
     [("    if (e <= epoch) b = size;\n  return b;", "    if (e < epoch) b = size;\n  return b;")],
     "the batch schedule switches one epoch late"),
    ("lr-scale-linear", "optim/batch_schedule.cpp",
     [("return static_cast<float>(double(lr) * batch / base_batch);", "return static_cast<float>(double(lr) * base_batch / batch);")],
     "linear lr scaling divides where it should multiply"),
    ("sweep-log-uniform", "tuning/sweep_spec.cpp",
     [(": std::exp(std::log(p.min) + u * (std::log(p.max) - std::log(p.min)));",
       ": p.min + u * (p.max - p.min);")],
     "log_uniform parameters are sampled uniformly"),
    ("sweep-int-uniform-top", "tuning/sweep_spec.cpp",
     [("std::min(hi, lo + std::floor(u * (hi - lo + 1)))", "std::min(hi, lo + std::floor(u * (hi - lo)))")],
     "int_uniform never draws its maximum"),
    ("sweep-worker-shard", "tuning/sweep.cpp",
     [("if (i % o.num_workers != o.worker) continue;", "if (i % o.num_workers == o.worker + 1) continue;")],
     "--worker i/N takes trials that belong to other workers"),
    ("importance-weights", "tuning/importance.cpp",
     [("between += kv.second.second * (m - mean) * (m - mean);", "between += (m - mean) * (m - mean);")],
     "between-bin variance without weighting each bin by its size"),
    ("safetensors-overlap", "engine/safetensors.cpp",
     [("KILN_CHECK(b == at, what", "KILN_CHECK(b >= at, what")],
     "a safetensors file whose tensors overlap is accepted"),
    ("plateau-watches-loss", "engine/trainer.cpp",
     [("const double watched = sched_.watches_accuracy() ? watched_acc : watched_loss;",
       "const double watched = watched_loss;")],
     "reduce-on-plateau in mode max is handed the loss, so improving epochs count as worse"),
    ("val-split-rounds", "engine/dataset.cpp",
     [("const auto at = static_cast<int64_t>(static_cast<double>(n) * (1.0 - f));",
       "const auto at = static_cast<int64_t>(std::llround(static_cast<double>(n) * (1.0 - f)));")],
     "the validation split rounds where Keras truncates (90 samples at 0.3: 63/27, not 62/28)"),
    ("target-acc-watches-test", "engine/trainer.cpp",
     [("  if (!std::isnan(val_acc)) return acc ? val_acc : val_loss;",
       "  if (!std::isnan(val_acc) && !acc) return val_loss;")],
     "--target-acc and plateau mode max watch the test set even with a validation split"),
    ("sweep-val-metric", "tuning/sweep.cpp",
     [('if (m == "val_acc") return r.val_acc;', 'if (m == "val_acc") return r.test_acc;')],
     "a sweep with metric val_acc ranks by the test accuracy"),
    ("sched-batch-schedule-steps", "tuning/run.cpp",
     [("t.batch_size, t.batch_schedule, t.epochs);", "t.batch_size, \"\", t.epochs);")],
     "per-step schedules count steps with --batch-size, not the batch-size schedule's batches"),
    ("sched-warmup-epochs-steps", "optim/schedule.cpp",
     [("long long w = o.warmup_steps > 0 ? o.warmup_steps : steps_in(o.warmup_epochs);",
       "long long w = o.warmup_steps > 0 ? o.warmup_steps : o.warmup_epochs * spe;")],
     "warm-up epochs are counted as the first epoch's step count times the epochs"),
    ("ckpt-early-stop-lost", "engine/checkpoint.cpp",
     [("    p.early_stop = parse_early_stop(*es, what);", "    (void)parse_early_stop(*es, what);")],
     "a resumed run forgets its early-stopping counter and trains past the epoch the whole run stopped at"),
    ("early-stop-delta-sign", "engine/checkpoint.h",
     [(": metric < ref - min_delta;", ": metric < ref + min_delta;")],
     "early stopping (mode min) counts a loss that got worse by less than min_delta as an improvement"),
    ("adamw-default-decay", "optim/optimizer.cpp",
     [('if (std::isnan(o.weight_decay)) o.weight_decay = o.name == "adamw" ? 0.01f : 0.0f;',
       "if (std::isnan(o.weight_decay)) o.weight_decay = 0.0f;")],
     "AdamW without --weight-decay does not decay (PyTorch's AdamW default is 0.01)"),
    ("cyclic-default-gamma", "optim/schedule.cpp",
     [("if (std::isnan(r.gamma)) r.gamma = cyclic ? 1.0f : 0.1f;", "if (std::isnan(r.gamma)) r.gamma = 0.1f;")],
     "exp_range without --gamma decays the cycle by 0.1 per step (CyclicLR's default gamma is 1.0)"),
    ("cyclic-default-momentum", "optim/schedule.cpp",
     [("if (std::isnan(r.base_momentum)) r.base_momentum = cyclic ? 0.8f : 0.85f;",
       "if (std::isnan(r.base_momentum)) r.base_momentum = 0.85f;")],
     "cyclic momentum cycles down to one-cycle's 0.85, not CyclicLR's default 0.8"),
    ("ckpt-best-snapshot-lost", "tuning/run_checkpoint.cpp",
     [("    info.early_stop_best = s.trainer->best_snapshot();\n", "")],
     "checkpoints leave out the --restore-best snapshot, so a resumed run cannot restore the best epoch"),
    ("early-stop-baseline-ignored", "engine/checkpoint.cpp",
     [("  if (std::isnan(rule.baseline) || rule.beats(metric, rule.baseline)) wait = 0;", "  wait = 0;")],
     "early stopping's patience starts over at every improvement, whatever --early-stop-baseline says"),
    ("early-stop-start-off-by-one", "engine/checkpoint.cpp",
     [("  if (epoch <= rule.start_from_epoch) return false;", "  if (epoch < rule.start_from_epoch) return false;")],
     "--early-stop-start N watches epoch N, one epoch of the warm-up Keras leaves alone"),
    ("sweep-prune-latest", "tuning/sweep.cpp",
     [("      if (!better(med, best, spec.maximize)) return true;", "      if (!better(med, m, spec.maximize)) return true;")],
     "median pruning judges a trial by its latest epoch, not its best so far as Optuna's MedianPruner does"),
    ("sweep-int-uniform-fraction", "tuning/sweep_spec.cpp",
     [("      p.distribution != \"int_uniform\" || (p.min == std::floor(p.min)", "      true || (p.min == std::floor(p.min)")],
     "int_uniform accepts fractional bounds, and 0.2..0.8 then samples 0, outside its range"),
    ("augment-not-wired", "engine/trainer.cpp",
     [("  BatchIterator it(train, opts_.batch_size, opts_.shuffle, ctx_.seed, opts_.augment);",
       "  BatchIterator it(train, opts_.batch_size, opts_.shuffle, ctx_.seed);")],
     "--augment never reaches the training batches (kiln's state until 2026-12-02)"),
    ("augment-pad-mean-colour", "kernels/data/data_ref.cpp",
     [("inside ? in[c * plane + sy * s.w + sx] : T(crop_fill(s, c));", "inside ? in[c * plane + sy * s.w + sx] : T(0);")],
     "the crop pads with 0 in normalised space (the mean colour), not black as torchvision does"),
    ("sweep-restore-best-last", "tuning/sweep.cpp",
     [("if (run.restored_epoch > 0 && e.epoch == run.restored_epoch) return e;",
       "if (false && run.restored_epoch > 0 && e.epoch == run.restored_epoch) return e;")],
     "a --restore-best trial is scored on its last epoch, not the best one whose weights it ends with"),
    ("sweep-runner-drops-restored", "tuning/sweep.cpp",
     [("return TrialRun(std::move(r.epochs), r.restored_epoch);", "return TrialRun(std::move(r.epochs));")],
     "the default trial runner drops the epoch the trainer restored: the trial is scored on its last"),
    ("run-restored-epoch", "tuning/run.cpp",
     [("  r.restored_epoch = tr.restored_epoch();\n", "")],
     "run_training does not say which epoch --restore-best loaded back"),
    ("plateau-threshold-mode", "optim/schedule.cpp",
     [('const bool rel = o_.threshold_mode == "rel";', "const bool rel = true;")],
     "reduce-on-plateau ignores --threshold-mode abs"),
    ("lr-find-ramp-reaches-end", "tuning/lr_finder.cpp",
     [("static_cast<double>(step) / span_", "static_cast<double>(step) / (span_ - 1)")],
     "the LR range test's ramp reaches end_lr at its last step (fastai's and keras_lr_finder's stop one step short)"),
    ("lr-find-skip-recorded", "tuning/lr_finder.cpp",
     [("std::floor(o.skip_start_frac * static_cast<double>(planned))", "std::floor(o.skip_start_frac * static_cast<double>(n))")],
     "the suggestions skip 10% of the points recorded, not of the steps planned, when the test stops early"),
    ("lr-find-nan-window", "tuning/lr_finder.cpp",
     [("  if (n > 0 && std::isnan(pts.back().smoothed))", "  if (false)")],
     "after a NaN the suggestions also drop the 5 points before it, which fastai keeps"),
    ("lr-find-debias", "tuning/lr_finder.cpp",
     [("return avg / (1 - std::pow(beta, static_cast<double>(n)));", "return avg;")],
     "the LR finder's EMA is not debiased (its first points read far too low)"),
    ("gn-one-value-per-group", "layers/norm.cpp",
     [("KILN_USAGE_CHECK(channels_ / groups_ * hw_ > 1,", "KILN_USAGE_CHECK(channels_ / groups_ * hw_ > 0,")],
     "a group norm whose groups hold one value each builds (it outputs its bias and passes no gradient)"),
    ("trainer-label-range", "engine/trainer.cpp",
     [("KILN_CHECK(y[i] >= 0 && y[i] < classes,", "KILN_CHECK(y[i] >= 0,")],
     "labels past the model's classes are trained on (the loss reads the next sample's logits)"),
    ("ckpt-crc-order", "engine/checkpoint.cpp",
     [("  if (version == 1) {\n", "  if (version >= 1) {\n")],
     "the data checksum is over the bytes in file order (version 1's rule): a file re-saved in another tensor order is called corrupt, swapped names pass"),
    ("safetensors-utf8", "engine/safetensors.cpp",
     [("  KILN_CHECK(bad == std::string::npos,", "  KILN_CHECK(true || bad == std::string::npos,")],
     "a safetensors header that is not valid UTF-8 is accepted (the reference reader refuses it)"),
    ("safetensors-layout", "engine/safetensors.cpp",
     [("    return st_dtype_size(a->dtype) > st_dtype_size(b->dtype);", "    return false;")],
     "tensors are stored in state_dict order: an I64 after an odd number of floats is not 8-byte aligned"),
    ("int-option-wraps", "tuning/options.cpp",
     [("                fits, \": '\" << v", "                true || fits, \": '\" << v")],
     "integer options wrap at their type's width (2^32 + 1 epochs runs 1 epoch; kiln's state until 2026-12-02)"),
    ("heldout-nan-passes", "engine/trainer.cpp",
     [('    if (test && test->size() > 0 && !std::isfinite(r.test_loss))\n      check_loss_bound(r.test_loss, epoch, "test loss");\n', "")],
     "a NaN test loss after the last step's update exits 0 (no later gradient sees the weights; until 2026-12-02)"),
    ("max-loss-off-hides-nan", "engine/trainer.cpp",
     [("  if (std::isfinite(loss) && (opts_.max_loss < 0 || loss <= bound)) return;",
       "  if (opts_.max_loss < 0 || (std::isfinite(loss) && loss <= bound)) return;")],
     "--max-loss -1 also turns off the non-finite loss check (until 2026-12-02)"),
    ("sticky-flag-not-first-step", "optim/optimizer.cpp",
     [("      if (st.skipped && sticky_ == 0) sticky_ = optim_sticky_step(h.step);",
       "      if (st.skipped) sticky_ = 1;")],
     "the non-finite flag is a bare 1: a late read names the step it was read at, not the bad one"),
    ("checkpoint-after-bad-step", "engine/trainer.cpp",
     [("        check_nonfinite(true, epoch);  // a diverged run is not checkpointed as if it were fine\n", "")],
     "steps skipped after a non-finite gradient are checkpointed as if the run were fine (until 2026-12-02)"),
    ("sweep-ties-by-finish", "tuning/sweep.cpp",
     [("    return a.trial < b.trial;\n  });", "    return false;\n  });")],
     "tied trials rank in the order they finished, so two workers crown another trial (until 2026-12-02)"),
    ("lr-find-early-stop", "tuning/lr_finder.cpp",
     [("  topts.early_stop = plain.early_stop;\n", ""),
      ("  topts.early_stop_baseline = plain.early_stop_baseline;\n", "")],
     "early stopping watches the range test's rising loss and ends it after an epoch (until 2026-12-02)"),
    ("sweep-resume-other-options", "tuning/sweep.cpp",
     [("  if (old == now) return;", "  if (true) return;")],
     "--resume with other run options ranks two recipes in one leaderboard (until 2026-12-02)"),
    ("target-acc-resume-trains-on", "engine/trainer.cpp",
     [("        from.watched_acc >= opts_.target_acc) {", "        false) {")],
     "a run resumed from the epoch that reached --target-acc trains another epoch (until 2026-12-02)"),
    ("step-checkpoint-on-last-batch", "engine/trainer.cpp",
     [("      const bool last = b + 1 == nb;", "      const bool last = false;")],
     "a step checkpoint after an epoch's last batch resumes into an epoch of no batches, whose record loses the last step's statistics"),
    ("mid-epoch-resume-other-batches", "tuning/run_checkpoint.cpp",
     [("    KILN_USAGE_CHECK(cut.empty(),", "    KILN_USAGE_CHECK(true || cut.empty(),")],
     "a mid-epoch checkpoint resumes with another batch size and skips other samples than it trained on"),
    ("stop-signals-not-nested", "tuning/run_checkpoint.cpp",
     [("  if (g_stop_depth++ > 0) return;", "  g_stop_depth++;")],
     "each trial's StopSignals clears a signal that came while the sweep was between trials"),
    ("atomic-write-replaces-device", "engine/safetensors.cpp",
     [("  KILN_CHECK(::stat(path.c_str(), &existing) != 0 || S_ISREG(existing.st_mode),",
       "  KILN_CHECK(true || ::stat(path.c_str(), &existing) != 0 || S_ISREG(existing.st_mode),")],
     "an atomic write renames over a device or FIFO (--save /dev/full replaced the device; until 2026-12-02)"),
    ("batch-labels-unclamped", "engine/batch_iterator.cpp",
     [("      static_cast<size_t>(std::min(batch_size_, ds_.size())) * sizeof(int32_t);",
       "      static_cast<size_t>(batch_size_) * sizeof(int32_t);")],
     "the label buffer is sized by --batch-size: 2^62 wraps to 0 bytes and the copy crashes (until 2026-12-02)"),
    ("output-over-input", "tuning/run_checkpoint.cpp",
     [("                           !same_file(path, in_path),", "                           true,")],
     "--log or --lr-find-csv naming the --resume/--config file overwrites the run's own input (until 2026-12-02)"),
    ("prune-other-runs", "tuning/run_checkpoint.cpp",
     [("    if (kind == 0 || number > (kind == 'e' ? upto.epoch : upto.step)) continue;", "    if (kind == 0) continue;")],
     "--keep-last deletes another run's checkpoints in a shared directory (until 2026-12-02)"),
    ("sweep-oom-streak-ignored", "tuning/sweep.cpp",
     [("      if (out_of_memory && ++oom_streak >= kOomStreak)", "      if (out_of_memory && ++oom_streak >= 1000)")],
     "a device short of memory fails every trial left in seconds instead of stopping the sweep"),
    ("sweep-company-skips-single", "tuning/sweep.cpp",
     [("spec.params[j].values.empty()) continue;", "spec.params[j].values.size() < 2) continue;")],
     "the up-front check tries a value without the partner every trial has (listed alone) and refuses it"),
    ("resume-old-ckpt-unrecorded", "tuning/run.cpp",
     [("        from.epoch_steps.assign(sized.begin(), sized.begin() + from.epoch);\n", "        {}\n")],
     "a run continued from an older checkpoint records no steps per epoch: its own checkpoints resume it inexactly"),
    ("prune-other-run-ids", "tuning/run_checkpoint.cpp",
     [("    if (!run_id.empty() && checkpoint_run_id(dir + \"/\" + n) != run_id) continue;\n", "")],
     "--keep-last deletes checkpoints another run wrote before it (until 2026-12-05)"),
    ("signal-ckpt-overwrite", "tuning/run_checkpoint.cpp",
     [("      ::access(path.c_str(), F_OK) == 0 && checkpoint_run_id(path) != s.run_id)",
       "      false)")],
     "a signalled run without checkpoint options replaces another run's checkpoint of its name (until 2026-12-05)"),
    ("float-option-overflow", "tuning/options.cpp",
     [("              field(c) = to_float(d, v);", "              field(c) = static_cast<float>(d);")],
     "a float option past 3.4e38 becomes inf, below 1.2e-38 0, silently (until 2026-12-02)"),
    ("bn-count-no-carry-ref", "kernels/norm/norm_ref.cpp",
     [("    num_batches_tracked[0] = lo < T(16777216) ? lo : T(0);", "    num_batches_tracked[0] = lo;")],
     "the CPU batch norm's batch count stops at 2^24 (a float's last exact integer; until 2026-12-02)"),
    ("bn-count-no-carry", "kernels/norm/norm.cu",
     [("    nbt[0] = lo < 16777216.0f ? lo : 0.0f;", "    nbt[0] = lo;")],
     "the CUDA batch norm's batch count stops at 2^24 (until 2026-12-02)"),
    ("exponential-step-by-epoch", "optim/schedule.cpp",
     [("    s = std::make_unique<ExponentialLR>(base_lr, o.gamma, true);", "    s = std::make_unique<ExponentialLR>(base_lr, o.gamma, false);")],
     "--schedule exponential-step decays once an epoch"),
    ("sweep-trials-silent", "tuning/sweep.cpp",
     [("    if (defaults && hooks.log)", "    if (false)")],
     "a sweep trial's log has no notes for options it never reads (until 2026-12-02)"),
    ("sgd-cycle-unsaid", "tuning/run.cpp",
     [("  if (cycles && !asked && (cfg.optim.name", "  if (false && (cfg.optim.name")],
     "--optimizer sgd under the default one-cycle trains with a cycling momentum, unsaid (until 2026-12-02)"),
    ("mnist-fashion-unsaid", "engine/dataset.cpp",
     [("    else if (fashion_like != (opts.dataset == \"fashion-mnist\"))", "    else if (false)")],
     "MNIST files read as Fashion-MNIST (or the reverse) train without a word (until 2026-12-02)"),
    ("model-past-memory", "layers/model.cpp",
     [("  if (pages > 0 && page > 0 && need > have) {", "  if (false) {")],
     "a model past the machine's memory is built (and OOM-killed later) instead of refused (until 2026-12-02)"),
    # ---- session 12 (2026-12-02)
    ("config-origin-flag-override", "tuning/options.cpp",
     [("    out.flag_keys.push_back(s->name);\n", "")],
     "an error about a flag that overrode the --config file's value blames the file"),
    ("config-origin-negated", "tuning/options.cpp",
     [("      out.flag_keys.push_back(b->name);\n", "")],
     "--no-NAME over the file's NAME: the error blames the file"),
    ("config-origin-in-path", "tuning/options.cpp",
     [("    if (at > 0 && m[at - 1] != ' ' && m[at - 1] != '/' && m[at - 1] != '(') continue;  // a path\n", "")],
     "'--lr' inside a path in an error message blames the file's lr"),
    ("stale-temp-live-writer", "engine/process.cpp",
     [("  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;", "  return pid > 0;")],
     "every live process is taken for gone: a live writer's temp file is removed as stale (its rename then fails)"),
    ("temp-name-taken-fails", "engine/safetensors.cpp",
     [("    if (fd < 0 && errno != EEXIST) break;", "    break;")],
     "a temp name left by an earlier process of the same pid fails the save (until 2026-12-02)"),
    ("temp-name-uncut", "engine/safetensors.cpp",
     [("path.substr(base, 200)", "path.substr(base)")],
     "a file name near 255 characters has no room for its temp name's suffix (until 2026-12-02)"),
    ("lock-zombie-live", "tuning/sweep.cpp",
     [("        return state == 'Z' || state == 'X' || now != o.start;", "        return now != o.start;")],
     "a zombie worker's trial lock is taken for a live one: the trial is skipped for good (until 2026-12-02)"),
    ("lock-reused-pid-live", "tuning/sweep.cpp",
     [("        return state == 'Z' || state == 'X' || now != o.start;", "        return state == 'Z' || state == 'X';")],
     "a lock whose pid now names another process is taken for live (until 2026-12-02)"),
    ("lock-other-namespace", "tuning/sweep.cpp",
     [("      if (o.other_namespace()) return false;  // another container's pid: not ours to judge\n", "")],
     "another container's live lock is reclaimed when its pid is not a process here"),
    ("lock-earlier-boot", "tuning/sweep.cpp",
     [("      if (o.boot != boot_id()) return true;   // every process of that boot is gone\n", "")],
     "a lock from before a reboot whose pid runs again is taken for live"),
    ("resume-takes-outputs", "tuning/run_checkpoint.cpp",
     [("!(o.traits & (kSideEffect | skip_traits))", "!(o.traits & skip_traits)")],
     "a resume writes into the run's --save and checkpoint directory: a branch off an earlier checkpoint overwrites the run (until 2026-12-03)"),
    ("resume-unreadable-record-fatal", "tuning/run_checkpoint.cpp",
     [("    try {\n      table.set(rec, o->name, v, origin(*o));\n    } catch (const Error&) {\n    }",
       "    table.set(rec, o->name, v, origin(*o));")],
     "a recorded value this kiln cannot read fails the resume even when a flag replaces it (until 2026-12-03)"),
    ("lock-own-pid-live", "tuning/sweep.cpp",
     [("      // writer is gone and the pid is ours now (a restarted container's pid 1).\n      return true;",
       "      // writer is gone and the pid is ours now (a restarted container's pid 1).\n      return false;")],
     "an older kiln's lock naming this worker's own (reused) pid blocks its trial for good (until 2026-12-03)"),
    ("trial-lock-unflocked", "tuning/sweep.cpp",
     [("    const bool flocked = flock_retry(fd, LOCK_EX | LOCK_NB) == 0;", "    const bool flocked = false;")],
     "a worker claims a trial without an flock: a killed worker's lock in another container stays until a person deletes it (until 2026-12-03)"),
    ("trial-lock-flock-ignored", "tuning/sweep.cpp",
     [("    if (o.flocked) {\n      const int free = flock_free();", "    if (false) {\n      const int free = flock_free();")],
     "a lock's free flock is not asked: killed workers' locks of other containers and machines stay (until 2026-12-03)"),
    ("trial-lock-held-is-free", "tuning/sweep.cpp",
     [("    return err == EWOULDBLOCK ? 0 : -1;", "    return err == EWOULDBLOCK ? 1 : -1;")],
     "a lock whose flock a live worker holds is reclaimed: two workers run one trial"),
    ("resume-takes-nothing", "tuning/run_checkpoint.cpp",
     [("  if (cfg.resume.empty()) return changed;", "  if (true) return changed;")],
     "--resume alone starts the app's default recipe: the checkpoint does not fit it (until 2026-12-03)"),
    ("resume-overrides-flags", "tuning/run_checkpoint.cpp",
     [("           std::find(args.flag_keys.begin(), args.flag_keys.end(), o.name) != args.flag_keys.end();",
       "           false;")],
     "a flag given with --resume is overwritten by the checkpoint's recorded value"),
    ("resume-pins-auto", "tuning/run_checkpoint.cpp",
     [("    if (is_auto(*o, cfg) && o->get(effective(rec)) == v) continue;\n", "")],
     "a resume with another --schedule keeps the old schedule's default gamma and momenta"),
    ("resume-takes-where", "tuning/run_checkpoint.cpp",
     [("    return !kNotTaken.count(o.name) && !(o.traits", "    return !(o.traits")],
     "a resume takes the checkpoint's --precision (tf32 of a GPU run fails on the CPU) and --log"),
    ("sweep-records-replaced", "tuning/sweep.cpp",
     [("  if (owner) check_still_ours(*owner, trial);", "")],
     "a worker whose sweep.yaml/run_options.json another worker replaced records its trials anyway (until 2026-12-02)"),
    ("importance-equal-scores", "tuning/importance.cpp",
     [("  if (*lo == *hi) return NAN;", "")],
     "equal scores give a rounding residue's share (explained 4.000; until 2026-12-02)"),
    ("sweep-zero-epoch-ok", "tuning/sweep.cpp",
     [("      if (rec.status.empty() && run.epochs.empty()) {", "      if (false) {")],
     "a trial that ran no epoch is ok with a null metric (until 2026-12-02)"),
    ("csv-bundle-name-unquoted", "tuning/sweep.cpp",
     [("csv_field(p.name)", "p.name")],
     "a bundle named with a comma shifts every CSV column (until 2026-12-02)"),
    ("bundle-reserved-name", "tuning/sweep.cpp",
     [("      KILN_USAGE_CHECK(p.name != fixed,", "      KILN_USAGE_CHECK(true,")],
     "a bundle named like a results column gives a CSV header naming it twice (until 2026-12-02)"),
    ("results-flock-eintr", "engine/file_io.cpp",
     [("  while ((rc = ::flock(fd, op)) != 0 && errno == EINTR) {", "  while ((rc = ::flock(fd, op)) != 0 && false) {")],
     "a signal while a finished trial waits for the results lock loses the trial (until 2026-12-02)"),
    ("idx-gzip-straddle", "engine/idx.cpp",
     [("d.ensure(2)", "d.in_len - d.in_pos >= 2")],
     "a gzip member's magic split across two reads is called corruption (until 2026-12-02)"),
    ("resume-idle-sums", "engine/trainer.cpp",
     [("  if (p.batch > 0 && acc_epoch_ == p.epoch) {", "  if (p.batch > 0) {")],
     "a resume that trains no epoch saves the never-loaded accumulator as the epoch's sums (until 2026-12-02)"),
    ("prune-just-written", "tuning/run_checkpoint.cpp",
     [("    if (n == just_written) continue;  // the newest whatever the clock says: always kept\n", "")],
     "--keep-last may delete the checkpoint it just wrote when clocks tie (until 2026-12-02)"),
    ("prune-name-order", "tuning/run_checkpoint.cpp",
     [("st.st_mtim.tv_nsec, kind, number, n);", "st.st_mtim.tv_nsec, kind, 0, n);")],
     "checkpoints of equal modification time are ordered by name text (step-100 before step-99; until 2026-12-02)"),
    ("prune-untagged-temps", "tuning/run_checkpoint.cpp",
     [("is_stale_temp_file(n) || stale_untagged_temp(n)", "is_stale_temp_file(n)")],
     "an older kiln's untagged temp files are never removed"),
    ("name-too-long-late", "tuning/run_checkpoint.cpp",
     [("  KILN_USAGE_CHECK(stat_errno != ENAMETOOLONG,", "  KILN_USAGE_CHECK(true,")],
     "a --save name too long for the file system fails after the run (until 2026-12-02)"),
    ("stdout-full-exit-0", "apps/app_common.h",
     [("    if (flush_failed || std::ferror(stdout)) {", "    if (false) {")],
     "a run whose epoch and result lines could not be written exits 0 (until 2026-12-02)"),
    ("resume-steps-resized", "tuning/run.cpp",
     [("  if (past == 0 || taken == total || total < 0) return steps;", "  return steps;")],
     "a resume with another batch size sizes one-cycle as if every epoch had it: the rest runs at the final lr (until 2026-12-02)"),
    ("resume-epoch-steps-ignored", "tuning/run.cpp",
     [("    for (size_t e = 0; e < past; ++e) steps[e] = resume_at->epoch_steps[e];\n", "")],
     "a resume sizes the schedule from the step count, not the checkpoint's steps per epoch (until 2026-12-05)"),
    ("dropout-ref-nan-zero", "kernels/dropout/dropout_ref.cpp",
     [("    out[i] = in[i] * (dropout_keep(key, static_cast<uint64_t>(i), threshold) ? scale : T(0));",
       "    out[i] = dropout_keep(key, static_cast<uint64_t>(i), threshold) ? in[i] * scale : T(0);"),
      ("for (; i < end; ++i) out[i] = in[i] * f;", "for (; i < end; ++i) out[i] = f == T(0) ? T(0) : in[i] * f;")],
     "the CPU dropout writes 0 for a dropped NaN (hides it; until 2026-12-02)"),
    ("dropout-cuda-nan-zero", "kernels/dropout/dropout.cu",
     [("  return v * (dropout_keep(key, ctr, thr) ? scale : 0.0f);", "  return dropout_keep(key, ctr, thr) ? v * scale : 0.0f;")],
     "the CUDA dropout writes 0 for a dropped NaN (until 2026-12-02)"),
    ("xent-ref-inf-max", "kernels/loss/loss_ref.cpp",
     [("    T m = std::isinf(z[arg]) ? T(NAN) : z[arg];", "    T m = z[arg];")],
     "a +inf logit gives the CPU loss a finite gradient beside a NaN loss (until 2026-12-02)"),
    ("xent-cuda-inf-max", "kernels/loss/loss.cu",
     [("  if (isinf(m)) m = NAN;", "")],
     "a +inf logit gives the CUDA loss a finite gradient beside a NaN loss (until 2026-12-02)"),
    ("conv-empty-split-plan", "kernels/conv/conv.cu",
     [("  if (R <= 0 || tiles <= 0) return SplitPlan{};  // nothing to sum (the launchers return first)\n", "")],
     "an empty batch's split plan divides by zero (SIGFPE; until 2026-12-02)"),
    ("conv-empty-fwd", "kernels/conv/conv.cu",
     [("  if (s.y_numel() == 0) return;  // an empty batch: a grid of 0 blocks is a launch error\n", "")],
     "an empty batch's forward launches a grid of zero blocks (a launch error on a device; until 2026-12-02)"),
    ("split-files-mixed", "engine/dataset.cpp",
     [("    KILN_CHECK(whole.size() == bases.size(),", "    KILN_CHECK(true,"), ("    found = whole;\n", "")],
     "images of one directory load with another directory's labels (until 2026-12-02)"),
    ("diverged-unlogged", "engine/trainer.cpp",
     [("    if (e.kind() == ErrorKind::Diverged && jsonl.open()) {", "    if (false) {")],
     "a diverged run's --log ends without saying so (until 2026-12-02)"),
    ("importance-chance", "tuning/importance.cpp",
     [("double(p.bins - 1) / double(p.trials - 1)", "double(p.bins) / double(p.trials)")],
     "the chance level k/n instead of (k-1)/(n-1)"),
    ("plateau-early-stop-note", "tuning/run.cpp",
     [("cfg.train.early_stop <= sc.patience + 1)", "cfg.train.early_stop <= sc.patience)")],
     "an early stop on the epoch plateau cuts is not noted (the cut never trains; until 2026-12-02)"),
    ("locale-strtod", "engine/numtext.cpp",
     [("  CLocaleScope c;\n  errno = 0;  // the switch", "  errno = 0;  // the switch")],
     "strtod_c parses in the host's locale (a JSON 0.0123 read as 0 under de_DE; until 2026-12-03)"),
    ("stop-signals-restore", "tuning/run_checkpoint.cpp",
     [("  if (--g_stop_depth > 0) return;\n", "  if (--g_stop_depth > 0 && false) return;\n")],
     "the first StopSignals scope out restores the host's handlers while another is alive"),
    ("output-probe-skipped", "tuning/run_checkpoint.cpp",
     [("  int fd = ::open(d.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);\n",
       "  return \"\";\n  int fd = ::open(d.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);\n")],
     "an output directory that takes no files (/proc) fails after training, not before (until 2026-12-03)"),
    ("lr-find-csv-checked-unused", "tuning/run_checkpoint.cpp",
     [("  const std::string csv = !cfg.lr_find              ? \"\"", "  const std::string csv = !cfg.lr_find ? cfg.lr_find_csv")],
     "an --lr-find-csv that a run ignores (no --lr-find) still fails it (until 2026-12-03)"),
    ("sweep-config-swept", "apps/sweep.cpp",
     [("    for (const auto& [name, key] : args.config_keys)\n", "    for (const auto& [name, key] : decltype(args.config_keys){})\n")],
     "a --config key that sets a swept option is silently overridden by the trials (until 2026-12-03)"),
    ("float-option-6-digits", "tuning/options.cpp",
     [("  for (int p = 6; p <= 9; ++p) {", "  for (int p = 6; p <= 6; ++p) {")],
     "a float option is recorded to 6 digits: --lr 0.0012345678 as 0.00123457, another float (until 2026-12-03)"),
    ("sweep-bundles-collide", "tuning/sweep_spec.cpp",
     [("        KILN_USAGE_CHECK(fresh || it->second == p.name,", "        KILN_USAGE_CHECK(true || fresh || it->second == p.name,")],
     "two grouped parameters set one option: the later wins, the results credit the other (until 2026-12-03)"),
    ("data-note-test-only", "engine/dataset.cpp",
     [("  if (probe >= 100) {", "  if (probe >= 100 && split == \"test\") {")],
     "Fashion-MNIST's training files read as MNIST train without a word (only the test split was checked, until 2026-12-03)"),
    ("data-neither-is-fashion", "engine/dataset.cpp",
     [("    const bool fashion_like = m > 0.21 && m <= 0.36;", "    const bool fashion_like = m > 0.21;")],
     "inverted or other images are called Fashion-MNIST's: the note tells the user to switch --dataset (until 2026-12-03)"),
    ("jsonl-torn-record", "engine/json.cpp",
     [("    if (start >= 0) (void)ftruncate(fd, start);", "    if (false) (void)ftruncate(fd, start);")],
     "a --log write cut short (a full disk, ulimit -f) leaves half a record that a --resume then appends to (until 2026-12-03)"),
    ("results-unreadable-empty", "tuning/sweep.cpp",
     [("  if (err == ENOENT) return \"\";", "  if (err != 0) return \"\";")],
     "an unreadable results.jsonl reads as no results: results.csv rewritten without its rows, pruning skipped, exit 0 (until 2026-12-03)"),
    ("fsync-eintr-fails", "engine/file_io.cpp",
     [("  while ((rc = ::fsync(fd)) != 0 && errno == EINTR) {", "  while ((rc = ::fsync(fd)) != 0 && false) {")],
     "a SIGINT/SIGTERM during a checkpoint's fsync fails the save (handlers have no SA_RESTART; until 2026-12-03)"),
    ("write-all-eintr", "engine/file_io.cpp",
     [("    if (w < 0 && errno == EINTR) continue;\n    if (w <= 0)", "    if (w <= 0)")],
     "a signal during a write (checkpoint, --log, sweep record) fails it instead of writing on"),
    ("write-all-rewrites", "engine/file_io.cpp",
     [("    p += w;\n", "")],
     "after a short write the rest starts from the beginning of the buffer again"),
    ("graph-capture-keeps-step", "engine/step_graph.cpp",
     [("      opt_.set_steps_taken(steps_before);\n", "")],
     "a failed CUDA-graph capture keeps the optimizer step it never ran: Adam's bias correction is a step ahead (until 2026-12-03; GPU test, emu build)"),
    ("config-diffs-missing-key", "tuning/run_checkpoint.cpp",
     [("      if (!d || !d->is_string() || d->text == v.text) continue;", "      continue;")],
     "an option an older checkpoint lacks is never compared: a resume with a non-default value of it is not told the recipe changed (until 2026-12-03)"),
    ("prune-failure-silent", "tuning/run_checkpoint.cpp",
     [("    if (::unlink(f.c_str()) != 0 && errno != ENOENT)", "    if (::unlink(f.c_str()) != 0 && false)")],
     "--keep-last that cannot delete an old checkpoint says nothing while the disk fills (until 2026-12-03)"),
    ("stop-signals-no-restart", "tuning/run_checkpoint.cpp",
     [("  sa.sa_flags = SA_RESTART;", "  sa.sa_flags = 0;")],
     "a SIGINT while stdout's pipe is full fails the write (EINTR): the epoch lines are lost and the run exits 1 (until 2026-12-03)"),
    ("data-dotted-names", "engine/dataset.cpp",
     [("  if (k != std::string::npos) v.push_back(", "  if (false) v.push_back(")],
     "a mirror's train-images.idx3-ubyte is not found (until 2026-12-03)"),
    # ---- session 18 (2026-12-03): threads for the CPU path (engine/parallel.h)
    ("conv-ref-groups-follow-threads", "kernels/conv/conv_ref.cpp",
     [("const int64_t per = std::max<int64_t>(4, (s.n + 15) / 16);",
       "const int64_t per = std::max<int64_t>(1, (s.n + num_threads() - 1) / num_threads());")],
     "the filter gradient's image groups follow the thread count: the bits change with --threads"),
    ("conv-ref-group-sum-skip", "kernels/conv/conv_ref.cpp",
     [("  for (int64_t g = 1; g < groups; ++g) {", "  for (int64_t g = 2; g < groups; ++g) {")],
     "the second group of images is left out of the filter and bias gradients"),
    ("maxpool-ref-bwd-fill-first", "kernels/pool/pool_ref.cpp",
     [("std::fill(dx + pl0 * HW, dx + pl1 * HW, T(0));", "std::fill(dx, dx + (pl1 - pl0) * HW, T(0));")],
     "each thread zeroes the first planes of dx, not its own: the others keep old gradients"),
    ("bn-ref-train-piece-from-zero", "kernels/norm/norm_ref.cpp",
     [("        for (int64_t c = c0; c < c1; ++c) {\n          double sum = 0;",
       "        for (int64_t c = 0; c < c1; ++c) {\n          double sum = 0;")],
     "each thread's batch-norm piece starts at channel 0: lower channels' running statistics move twice"),
    ("gn-ref-bwd-param-group", "kernels/norm/norm_ref.cpp",
     [("          const int64_t g = c / cpg;", "          const int64_t g = c % s.groups;")],
     "the group-norm parameter gradients read another group's statistics"),
    ("dropout-ref-piece-channel", "kernels/dropout/dropout_ref.cpp",
     [("const uint64_t plane = static_cast<uint64_t>(i / s.hw);", "const uint64_t plane = static_cast<uint64_t>((i - b) / s.hw);")],
     "a thread's channel dropout counts channels from its own first element: the masks change with --threads"),
    ("dropout-ref-channel-run-end", "kernels/dropout/dropout_ref.cpp",
     [("const int64_t end = std::min(e, i + s.hw - i % s.hw);", "const int64_t end = std::min(e, i + s.hw);")],
     "a thread's run that starts inside a plane applies that plane's mask into the next plane"),
    ("dropout-ref-isa-counter", "kernels/dropout/dropout_ref.cpp",
     [("uint64_t key, uint32_t thr, T scale) {\n  mask_elements(in, out, b, e, key, thr, scale);\n}\ntemplate",
       "uint64_t key, uint32_t thr, T scale) {\n  mask_elements(in, out, b, e, key + 0x9E3779B97F4A7C15ull, thr, scale);\n}\ntemplate")],
     "the AVX2 mask loop hashes the next element's counter (killed where the CPU has AVX2, as here)"),
    ("parallel-pieces-overlap", "engine/parallel.cpp",
     [("g_pool->run(p, [&](int i) { fn(n * i / p, n * (i + 1) / p); });",
       "g_pool->run(p, [&](int i) { fn(i == 0 ? 0 : n * i / p - 1, n * (i + 1) / p); });")],
     "a piece starts one index early: the index at each seam runs twice"),
    ("parallel-fork-reuse", "engine/parallel.cpp",
     [("  return pthread_atfork(nullptr, nullptr, forget_pool_in_child) == 0;", "  return true;")],
     "a forked child waits for the parent's worker threads, which it does not have: it hangs"),
    ("pool-thread-refused-aborts", "engine/parallel.cpp",
     [("      } catch (const std::system_error&) {", "      } catch (const std::bad_alloc&) {")],
     "a thread the system refuses (a process or memory limit) aborts the run (std::terminate)"),
    ("optim-ref-piece-skipped", "kernels/optim/optim_ref.cpp",
     [("        for (int64_t p = p0; p < p1; ++p) update_piece(pieces[p]);",
       "        for (int64_t p = p0 + 1; p < p1; ++p) update_piece(pieces[p]);")],
     "each thread's first piece of the parameters is left un-updated"),
    ("optim-ref-tensor-sum-last-piece", "kernels/optim/optim_ref.cpp",
     [("    g2[t] += sums[3 * p];", "    g2[t] = sums[3 * p];")],
     "a tensor's squared gradient norm is its last piece's alone: norms and clipping go wrong"),
    ("dense-blocks-follow-threads", "kernels/dense/dense_ref.cpp",
     [("  const int64_t want = std::max<int64_t>(1, std::min({by_work, side / kBlockSide, kMaxBlocks}));",
       "  const int64_t want = std::max<int64_t>(1, std::min<int64_t>({by_work, side / kBlockSide, num_threads()}));")],
     "the GEMM's cut follows the thread count: the Linear layer's bits change with --threads"),
    ("dense-blocks-row-offset", "kernels/dense/dense_ref.cpp",
     [("ta ? A + lo : A + lo * lda", "A + lo * lda")],
     "a cut by rows of a transposed A takes the wrong rows"),
    ("parallel-caller-trusts-spin", "engine/parallel.cpp",
     [("    done_.wait(lk, done);  // returns at once when the spin saw it done\n", "")],
     "a caller whose spin ran out returns before the other threads' pieces are done"),
    ("threads-option-ignored", "tuning/run.cpp",
     [("  set_num_threads(resolve_threads(cfg.threads));\n", "")],
     "--threads changes nothing: the CPU path stays on one thread"),
    ("schedule-reread-fatal", "optim/schedule.cpp",
     [("      why = e.message();", "      throw;")],
     "a typo in a manual schedule file edited mid-run ends the run unsaved (until 2026-12-04)"),
    ("schedule-empty-reread-taken", "optim/schedule.cpp",
     [("if (!entries.empty() || entries_.empty()) {", "if (true) {")],
     "a schedule file caught empty mid-save drops the run back to --lr"),
    ("sweep-bad-value-runs", "tuning/sweep.cpp",
     [("    if (v.ok > 0) continue;", "    if (v.ok >= 0) continue;")],
     "a sweep value no trial can run with (optimizer 'adamm') fills the directory with failed trials (until 2026-12-04)"),
    ("sweep-sampled-value-blamed", "tuning/sweep.cpp",
     [("      if (spec.params[k].is_range()) continue;", "")],
     "a random sweep whose range reaches an invalid value is refused outright"),
    ("sweep-company-blamed", "tuning/sweep.cpp",
     [("    KILN_USAGE_CHECK(alone.empty(),", "    KILN_USAGE_CHECK(false,")],
     "a value drawn only beside its one bad partner refuses the whole random sweep"),
    ("bn-check-past-step-limit", "engine/trainer.cpp",
     [("    if (opts_.step_limit > 0 && last_step > opts_.step_limit) break;\n", "")],
     "lr_find refuses a run whose partial batch of 1 lies past its last step"),
    ("output-over-data-file", "tuning/run.cpp",
     [("  check_outputs_spare_data(cfg, {&s->train, &s->val, &s->test});\n", "")],
     "--save or --log at a data file the run reads overwrites it (until 2026-12-04)"),
    ("validate-skips-model", "tuning/options.cpp",
     [("  check_model();\n", "")],
     "a --groups that divides no layer's channels passes --dry-run and fails every trial (until 2026-12-04)"),
    ("save-foreign-optimizer", "engine/checkpoint.cpp",
     [("  KILN_USAGE_CHECK(!opt || opt->bound_to(model),", "  KILN_USAGE_CHECK(true || opt->bound_to(model),")],
     "a checkpoint pairs one model's weights with another's optimizer state (until 2026-12-04)"),
    ("resume-other-data-mid-epoch", "tuning/run_checkpoint.cpp",
     [("    KILN_USAGE_CHECK(data_diff.empty(),", "    KILN_USAGE_CHECK(true || data_diff.empty(),")],
     "a mid-epoch resume on another --data-dir goes on over other images (until 2026-12-04)"),
    ("resume-epochs-below", "tuning/run.cpp",
     [("        cfg.train.epochs >= done,", "        cfg.train.epochs >= 0,")],
     "--epochs below a checkpoint's trains nothing and says nothing useful (until 2026-12-04)"),
    ("bn-batch-of-one-late", "layers/norm.h",
     [("  int64_t min_training_batch() const override { return hw_ > 1 ? 1 : 2; }", "")],
     "batch norm's batch of 1 is found after the epochs before it trained (until 2026-12-04)"),
    ("gzip-skips-any-trailing", "engine/idx.cpp",
     [("      while (d.refill() && d.in[d.in_pos] == 0) {", "      while (d.refill()) {")],
     "any bytes after a gzip member are skipped as padding: a corrupt tail reads as a good file"),
    ("sweep-checkpoint-dir-shared", "tuning/sweep.cpp",
     [("    c.checkpoint_dir += \"/trial-\" + std::to_string(i);", "    c.checkpoint_dir += \"\";")],
     "a sweep's checkpoint_dir is shared: each trial's ckpt-epoch-<n> replaces the last's (until 2026-12-04)"),
    ("dry-run-val-metric", "apps/sweep.cpp",
     [("      check_val_metric(spec, base);\n", "")],
     "--dry-run passes a val_ metric sweep that holds out no validation split (until 2026-12-04)"),
    ("lr-find-help-no-lr-find", "apps/lr_find.cpp",
     [("run_options().help(&defaults, {\"lr-find\"})", "run_options().help(&defaults)")],
     "lr_find --help offers --[no-]lr-find, which it refuses (until 2026-12-04)"),
    ("target-acc-restores-best", "engine/trainer.cpp",
     [("  if (!reached_target && best_is_earlier()) {", "  if (best_is_earlier()) {")],
     "a run --target-acc stops goes back to an earlier --restore-best epoch that missed the target (until 2026-12-04)"),
    ("exponential-gamma-unnoted", "tuning/run.cpp",
     [("  if ((sc.name == \"exponential\" || sc.name == \"exponential-step\") && std::isnan(sc.gamma)) {",
       "  if ((sc.name == \"exponential\" || sc.name == \"exponential-step\") && std::isnan(sc.gamma) && false) {")],
     "--schedule exponential-step with StepLR's default --gamma 0.1 zeroes the lr in a few steps, silently (until 2026-12-04)"),
    ("keras-truncated-init-plain", "layers/model.cpp",
     [("  if (s == \"kaiming_normal\") return InitScheme::KaimingNormal;",
       "  if (s == \"kaiming_normal\" || s == \"he_normal\") return InitScheme::KaimingNormal;")],
     "--init he_normal (Keras: a truncated normal) quietly gives torch's plain normal (until 2026-12-04)"),
    ("stop-signal-twice-kills", "tuning/run_checkpoint.cpp",
     [("  if (first == 0 || now - first < kSameStopNs) return;\n", "")],
     "a stop signal delivered twice (GNU timeout: process, then group) kills the run before its checkpoint (until 2026-12-04)"),
    ("cyclic-half-cycle-epochs-ignored", "optim/schedule.cpp",
     [("o.step_size_up > 0 ? o.step_size_up : o.step_size_up_epochs * spe;", "o.step_size_up > 0 ? o.step_size_up : 2 * spe;")],
     "--step-size-up-epochs is ignored: the cyclic half cycle stays 2 epochs (the experiments' cycles end at their peak)"),
    # ---- session 27 (2026-12-05)
    ("first-layer-dx-only", "layers/model.cpp",
     [("    if (summary_[i].params > 0) {", "    if (true) {")],
     "only the model's first layer skips its input gradient: the mlp's first Linear computes a dx Flatten throws away (until 2026-12-05)"),
    ("linear-init-ignored", "layers/linear.cpp",
     [("weight_init(init, in, out)", "weight_init(InitScheme::Default, in, out)")],
     "Linear ignores --init (only its default scheme's bound was tested until 2026-12-05; the apps default to kaiming)"),
    ("augment-ox-is-oy", "kernels/data/data.h",
     [("  p.ox = static_cast<int>(((h >> 24) & 0xFFFFFFu) % span);", "  p.ox = p.oy;")],
     "the random crop's two offsets are one: 9 diagonal crops of 81 (every crop test re-derived its offsets from augment_params until 2026-12-05)"),
    ("adam-beta1-cycle-unsaid", "tuning/run.cpp",
     [("  if (cycles && adam && cfg.optim.beta1 != defaults.optim.beta1) {", "  if (false) {")],
     "--beta1 under the default one-cycle changes nothing, unsaid (a sweep over beta1 ran identical trials; until 2026-12-05)"),
    ("lr-beside-max-lr-unsaid", "tuning/run.cpp",
     [("      ((sc.name == \"one-cycle\" && sc.max_lr > 0) || (sc.name == \"cyclic\" && sc.base_lr > 0)))",
       "      false)")],
     "--lr beside one-cycle's --max-lr (or cyclic's --base-lr) changes nothing, unsaid (until 2026-12-05)"),
    ("scale-lr-unapplied", "engine/trainer.cpp",
     [("      lr = sched_.lr(epoch, step_) * lr_scale;", "      lr = sched_.lr(epoch, step_);")],
     "--scale-lr is accepted and never applied (only the torch parity recipe trained with it until 2026-12-05)"),
    ("scale-lr-by-last-batch", "engine/trainer.cpp",
     [("scale_lr_linear(1.0f, bsched.front().second, bs)", "scale_lr_linear(1.0f, bsched.back().second, bs)")],
     "--scale-lr scales by the batch over the last scheduled batch, not the first"),
    ("session-precision-unset", "tuning/run.cpp",
     [("  set_precision(*s->ctx, parse_precision(s->cfg.precision));\n", "  (void)parse_precision(s->cfg.precision);\n")],
     "--precision tf32 never reaches the session's cuBLAS handle (no test ran it on a CUDA context until 2026-12-05)"),
    ("backward-past-cleared-dx", "layers/model.cpp",
     [("      KILN_CHECK(i < first_trained_,", "      KILN_CHECK(true,")],
     "a layer's need_dx cleared after the first with parameters: the layers before it train on the last step's gradients, silently (until 2026-12-05)"),
    ("conv-shape-window-unchecked", "kernels/conv/conv_ref.cpp",
     [("  if (s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw)\n    return \"window larger than the padded input\";\n", "")],
     "a conv window larger than the padded input runs (a 2x2 image under a 3x3 kernel at stride 2 gave one output; until 2026-12-05)"),
    ("conv-1x1-with-padding", "kernels/conv/conv.h",
     [("return kh == 1 && kw == 1 && stride == 1 && pad == 0; }", "return kh == 1 && kw == 1 && stride == 1; }")],
     "a padded 1x1 conv takes the 1x1 path, which reads the image with the padded output's layout (no test had a padded 1x1 until 2026-12-05)"),
    ("early-stop-after-improving", "engine/checkpoint.h",
     [("wait >= patience && best_epoch != finished_epoch && finished_epoch > 1;", "wait >= patience && finished_epoch > 1;")],
     "early stopping ends the run after an epoch that improved but fell short of --early-stop-baseline (Keras never does; until 2026-12-05)"),
    ("signal-in-ending-epoch-stops", "engine/trainer.cpp",
     [("    bool stop = stop_requested() && !ends;", "    bool stop = stop_requested() && epoch + 1 < opts_.epochs;")],
     "a signal in an epoch that reaches --target-acc exits 130 without --save, asking to resume a finished run (until 2026-12-05)"),
    ("eval-drops-partial-batch", "engine/trainer.cpp",
     [("  for (int64_t b = 0; it.batch(b, x, y, n, ctx_.stream()); ++b) {\n    Tensor logits = model_.forward(ctx_, x);",
       "  for (int64_t b = 0; it.batch(b, x, y, n, ctx_.stream()) && n == opts_.eval_batch_size; ++b) {\n    Tensor logits = model_.forward(ctx_, x);")],
     "evaluation leaves out the last, partial eval batch (every test evaluated in one batch until 2026-12-05)"),
    ("flag-value-takes-flag", "tuning/options.cpp",
     [("  KILN_USAGE_CHECK(next.rfind(\"--\", 0) != 0,", "  KILN_USAGE_CHECK(true,")],
     "a forgotten flag value takes the next flag (--save --no-shuffle saves to a file named --no-shuffle; until 2026-12-05)"),
    ("signal-in-pruned-epoch-stops", "engine/trainer.cpp",
     [("target_reached || !go_on ||", "target_reached ||")],
     "a signal in the epoch a sweep prunes stops the trial unrecorded, and --resume runs it again (until 2026-12-05)"),
    ("sweep-list-any-option", "tuning/yaml_config.cpp",
     [("  KILN_USAGE_CHECK(opt && opt->type == \"list\",", "  KILN_USAGE_CHECK(true,")],
     "a sweep file's list for a single-valued option is joined with commas (save: [a, b] ran with save=a,b; until 2026-12-05)"),
    ("sweep-config-origin-lost", "apps/sweep.cpp",
     [("      throw with_config_origin(e, args);  // a --config file's value is named as the file's key",
       "      throw;")],
     "a sweep's --config file with a bad value is blamed on the sweep file and the command line (until 2026-12-05)"),
    ("yaml-marker-line-content", "tuning/yaml_config.cpp",
     [("    const std::string body = marker ? line.substr(3) : line;", "    const std::string body = marker ? std::string() : line;")],
     "a YAML file whose first document starts on its --- line drops a second document without a word (until 2026-12-05)"),
    ("gemm-loops-skip-zero", "kernels/dense/dense_ref.cpp",
     [("      T a = ta ? A[k * lda + i] : A[i * lda + k];\n", "      T a = ta ? A[k * lda + i] : A[i * lda + k];\n      if (a == T(0)) continue;\n")],
     "the no-BLAS GEMM skips zeros in A: 0 * inf gives 0, not NaN, hiding a diverged gradient (until 2026-12-05)"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_restore = {}  # path -> original text, while a mutant is applied


def restore_all(*_):
    for path, text in list(_restore.items()):
        with open(path, "w") as f:
            f.write(text)
        _restore.pop(path)


def on_signal(signum, _frame):
    restore_all()
    sys.exit(128 + signum)


def mutate(text, edits):
    """The source with every edit applied in turn and "", or None and why a mutant no longer applies."""
    for old, new in edits:
        n = text.count(old)
        if n != 1:
            return None, f"text found {n} times: {old.splitlines()[0]!r}"
        text = text.replace(old, new)
    return text, ""


def run(cmd, timeout, env=None):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=env,
                           text=True, errors="replace")
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or "") if isinstance(e.stdout, str) else ""


# Mutants in code that only some CPUs run: the /proc/cpuinfo flag each needs. Without it the
# mutated code never runs, so the mutant is skipped, not counted as a survivor.
CPU_FLAG_NEEDED = {"dropout-ref-isa-counter": "avx2"}
# Host-code mutants in a CUDA-only branch (a CPU build does not compile them) or that only a GPU
# test can see: skipped on a CPU build (run them with --build on an emu or CUDA build).
NEEDS_CUDA_BUILD = {"conv-layer-fused-unmasked", "session-precision-unset"}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-emu-apps", help="build directory with tests (default build-emu-apps)")
    ap.add_argument("--only", default="", help="comma-separated mutant names")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--check", action="store_true",
                    help="only check that every mutant still applies (its text occurs once); no build")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per test run (default 300)")
    ap.add_argument("--set", choices=["kernels", "host", "all"], default="kernels",
                    help="kernel mutants (kernels/, default), host-code mutants (engine/, optim/, tuning/), or all")
    ap.add_argument("--parity", action="store_true",
                    help="instead of the unit tests, run the PyTorch training-parity check "
                         "(scripts/check_pytorch_training.py: needs torch) on every mutant; use a CPU build")
    ap.add_argument("--cli", action="store_true",
                    help="build every target and also run the CLI tests (ctest -R ^cli.) for a mutant the "
                         "unit tests miss; use a CPU build (the emu build's CLI tests pick the emulated GPU)")
    args = ap.parse_args()

    def in_set(path):
        return args.set == "all" or (path.startswith("kernels/") == (args.set == "kernels"))

    chosen = [m for m in MUTANTS if (m[0] in args.only.split(",") if args.only else in_set(m[1]))]
    if args.list:
        for name, path, _, why in chosen:
            print(f"{name:24} {path:32} {why}")
        return 0
    if not chosen:
        sys.exit("mutation_test.py: no mutant matches --only " + args.only)
    if args.check:
        stale = []
        for name, rel, edits, _ in chosen:
            with open(os.path.join(ROOT, rel)) as f:
                why = mutate(f.read(), edits)[1]
            if why:
                stale.append(f"{name}: {rel}: {why}")
        for s in stale:
            print("STALE", s)
        print(f"{len(chosen) - len(stale)}/{len(chosen)} mutants apply")
        return 1 if stale else 0
    build = os.path.join(ROOT, args.build) if not os.path.isabs(args.build) else args.build
    test_bin = os.path.join(build, "tests", "kiln_tests")
    if not os.path.isdir(build):
        sys.exit(f"mutation_test.py: {build}: no such build directory (configure one with KILN_BUILD_TESTS=ON)")
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--"] + sorted({m[1] for m in chosen}),
                           stdout=subprocess.PIPE, text=True).stdout.strip()
    if dirty:
        sys.exit("mutation_test.py: uncommitted changes in kernel sources; commit or stash them first:\n" + dirty)
    try:  # an emulator build can also replay a survivor with its threads in another order
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            cache = f.read()
    except OSError:
        cache = ""
    emulated = "KILN_CUDA_EMU:BOOL=ON" in cache
    cuda_build = emulated or "KILN_CUDA:BOOL=ON" in cache
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def build_tests():
        targets = ([] if args.cli else ["--target", "train_mnist", "kiln_eval"] if args.parity
                   else ["--target", "kiln_tests"])
        return run(["cmake", "--build", build] + targets, timeout=1800)

    rc, out = build_tests()
    if rc != 0:
        sys.exit("mutation_test.py: the unmutated build fails:\n" + out[-3000:])
    # the parity check needs a python3 that imports torch (Debian's python3-torch: /usr/bin/python3)
    torch_py = None
    if args.parity:
        torch_py = next((p for p in (sys.executable, "/usr/bin/python3")
                         if os.path.exists(p) and run([p, "-c", "import torch"], 120)[0] == 0), None)
    if args.parity and not torch_py:
        sys.exit("mutation_test.py: --parity needs a python3 that imports torch (apt-get install python3-torch)")
    parity = [torch_py or sys.executable, os.path.join(ROOT, "scripts", "check_pytorch_training.py"), "--bin", build,
              "--show", "1"]
    rc, out = run(parity if args.parity else [test_bin, "--gtest_brief=1"], args.timeout)
    if rc != 0:
        sys.exit("mutation_test.py: the unmutated tests fail; fix them first:\n" + (out or "")[-3000:])

    rows, bad, flags = [], 0, cpu_flags()
    for name, rel, edits, why in chosen:
        path = os.path.join(ROOT, rel)
        with open(path) as f:
            orig = f.read()
        text, stale = mutate(orig, edits)
        t0 = time.time()
        need = CPU_FLAG_NEEDED.get(name)
        if stale:
            result, detail = "STALE", stale
        elif need and need not in flags:
            result, detail = "skipped", f"this CPU lacks {need}: the mutated code does not run here"
        elif name in NEEDS_CUDA_BUILD and not cuda_build:
            result, detail = "skipped", "a CUDA-only branch: run it on an emu or CUDA build"
        else:
            _restore[path] = orig
            try:
                with open(path, "w") as f:
                    f.write(text)
                rc, out = build_tests()
                if rc != 0:
                    result, detail = "NO BUILD", (re.findall(r"error: .*", out) or ["build failed"])[0][:80]
                else:
                    # Passes in turn until one fails: (command, env, time limit, failed-test
                    # pattern, suffix for a kill, note for a survivor).
                    gtest = [test_bin, "--gtest_brief=1", "--gtest_fail_fast"]
                    gtest_failed = r"^\[  FAILED  \] (\S+)"
                    passes = [(gtest, None, args.timeout, gtest_failed, "", "")]
                    if args.parity:  # recipes that disagree, e.g. "adamw-cosine  8  0.012  0.02  MISMATCH"
                        passes = [(parity, None, args.timeout, r"^(\S+) +\d+ +\S+ +\S+ +MISMATCH", " (PyTorch parity)",
                                   "")]
                    elif emulated:
                        # A race may only show when threads run in another order between barriers
                        # (the emulator resumes them forward by default): run again in reverse.
                        passes.append((gtest, dict(os.environ, KILN_EMU_ORDER="reverse"), args.timeout,
                                       gtest_failed, " (threads in reverse order)", "in reverse thread order"))
                    if args.cli and not args.parity:
                        passes.append((["ctest", "--test-dir", build, "-R", "^cli[.]", "--stop-on-failure"], None,
                                       args.timeout * 4, r"\d+ - (cli\.\S+) \(Failed", " (CLI tests)",
                                       "with the CLI tests"))
                    reruns = []
                    for cmd, env, limit, pattern, order, note in passes:
                        rc, out = run(cmd, limit, env)
                        failed = re.findall(pattern, out or "", re.M)
                        if note:
                            reruns.append(note)
                        if rc != 0:
                            break
                    if rc is None:
                        result, detail = "killed", f"timeout after {args.timeout:.0f} s"
                    elif rc == 0:
                        result, detail = "SURVIVED", "every test passed" + "".join(", also " + r for r in reruns)
                    elif failed:
                        result, detail = "killed", failed[0] + order
                    else:
                        result, detail = "killed", f"test binary exit {rc} (crash or abort)" + order
            finally:
                restore_all()
        if result not in ("killed", "skipped"):
            bad += 1
        rows.append((name, result, detail, time.time() - t0))
        print(f"{name:24} {result:8} {detail}  ({time.time() - t0:.0f} s)", flush=True)

    build_tests()  # leave the build matching the sources
    killed = sum(1 for r in rows if r[1] == "killed")
    skipped = sum(1 for r in rows if r[1] == "skipped")
    print(f"\n{killed}/{len(rows) - skipped} mutants killed" + (f", {skipped} skipped on this CPU" if skipped else ""))
    for name, result, detail, _ in rows:
        if result not in ("killed", "skipped"):
            why = next(m[3] for m in MUTANTS if m[0] == name)
            print(f"  {result}: {name}: {why}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
