// CUDA convolution: one tiled GEMM kernel (shared-memory tiles of BM x BN outputs over 16-deep
// slices of the reduction, 256 threads as 16 x 16, TM x TN register micro-tiles, the next slice
// prefetched into registers while the current one is multiplied) instantiated with "operand
// gatherers" that read the GEMM operands straight out of the NCHW tensors (implicit GEMM, no
// im2col buffer):
//   forward          M = K_out  N = n*P*Q   R = C*kh*kw     A = weights, B = gathered input
//   backward-data    M = C      N = n*H*W   R = K_out*kh*kw A = weights^T, B = gathered dy
//                    (the flipped-filter convolution; for stride > 1 the taps that do not
//                    land on an output position read as 0)
//   backward-filter  M = K_out  N = C*kh*kw R = n*P*Q       A = dy, B = gathered input
// 1x1/stride 1/pad 0 convolutions use dedicated gatherers (a GEMM over channels with the
// spatial positions of all images as the long axis, no window arithmetic). BM = 16*TM is 16,
// 32, 64 or 128 depending on M, since these nets have as few as 8 output channels; BN = 16*TN
// is 64, or 128 when the GEMM has columns enough to keep the GPU busy with wider tiles (not for
// backward-filter, whose column gathers each keep their own window position in registers).
// Every output is one thread's running sum over the reduction in slice order, whatever the
// tile, so the tile choice never changes a bit (conv_set_tiles exists to A/B it).
// Backward-filter's long reduction is split into a fixed number of chunks written to a
// workspace and summed in a fixed order by a second pass; the bias gradient is a fixed-shape
// tree reduction: all results are deterministic.
// Fused ReLU (opt-in): the forward stores apply the ReLU rule (kernels/activation/relu_rule.h)
// after the bias; in the backward every gatherer (and the bias reduction) that reads dy reads it
// through load_dy, which returns 0 where the fused forward's output y is <= 0, so the mask costs
// one extra load of y per dy load and no pass or tensor of its own. (Conv2d's backward masks dy
// once into a buffer instead: per load it made backward-filter 1.3-1.5x slower on an H200.)
#include <algorithm>
#include <atomic>
#include <string>

#include "engine/cuda_check.h"
#include "engine/fast_div.h"
#include "kernels/activation/relu_rule.h"
#include "kernels/conv/conv.h"

namespace kiln {
namespace {

constexpr int BK = 16, NT = 256;

// Thread (tx, ty) = (tid % 16, tid / 16) owns rows ty*TM + i and columns q*64 + tx*4 + j
// (q < TN/4, j < 4) of the BM x BN tile: each 64-column half is read as one float4 per thread.
template <int TM, int TN, class Op>
__global__ void __launch_bounds__(NT)
    conv_igemm_kernel(const Op op, int M, int N, int R, int r_chunk) {
  constexpr int BM = 16 * TM, BN = 16 * TN;
  static_assert(TN == 4 || TN == 8, "64 or 128 columns");
  __shared__ __align__(16) float As[BK][BM + 4];
  __shared__ __align__(16) float Bs[BK][BN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  // rbeg + r_chunk may pass R by up to 16 per split: take the min in 64 bits. Past that every
  // index stays below R + BK or N + BN, which conv_index_range_error (and for 128-column tiles
  // pick_tiles) keeps below 2^31.
  const int rbeg = blockIdx.z * r_chunk;
  const int rend = static_cast<int>(min(static_cast<long long>(R), static_cast<long long>(rbeg) + r_chunk));

  // Load mapping: A is read along the reduction (contiguous in every gatherer), TM values per
  // thread; B (TN values per thread) along N, or along the reduction where that is the
  // contiguous direction (backward-filter). Along N every value of a thread is one column.
  const int a_r = tid % BK, a_m = tid / BK;
  int b_r[TN], b_n[TN];
  typename Op::Col col[Op::kBAlongR ? TN : 1];
#pragma unroll
  for (int i = 0; i < TN; ++i) {
    if (Op::kBAlongR) {
      b_r[i] = tid % BK;
      b_n[i] = tid / BK + 16 * i;
    } else {
      b_n[i] = tid % BN;
      b_r[i] = tid / BN + (NT / BN) * i;
    }
  }
#pragma unroll
  for (int i = 0; i < (Op::kBAlongR ? TN : 1); ++i)
    col[i] = op.col(n0 + b_n[i]);  // .ok: false past N

  float ra[TM], rb[TN], acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  auto load = [&](int r0) {
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + a_m + 16 * i, r = r0 + a_r;
      ra[i] = (m < M && r < rend) ? op.a(m, r) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < TN; ++i) {
      const int r = r0 + b_r[i];
      rb[i] = (r < rend) ? op.b(col[Op::kBAlongR ? i : 0], r) : 0.f;
    }
  };

  load(rbeg);
  for (int r0 = rbeg; r0 < rend; r0 += BK) {
#pragma unroll
    for (int i = 0; i < TM; ++i) As[a_r][a_m + 16 * i] = ra[i];
#pragma unroll
    for (int i = 0; i < TN; ++i) Bs[b_r[i]][b_n[i]] = rb[i];
    __syncthreads();
    if (r0 + BK < rend) load(r0 + BK);  // in flight while this slice is multiplied
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = As[kk][ty * TM + i];
#pragma unroll
      for (int q = 0; q < TN / 4; ++q) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[kk][q * 64 + tx * 4]);
        bv[4 * q] = v.x;
        bv[4 * q + 1] = v.y;
        bv[4 * q + 2] = v.z;
        bv[4 * q + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + ty * TM + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + (j / 4) * 64 + tx * 4 + j % 4;
      if (n < N) op.store(m, n, acc[i][j], blockIdx.z);
    }
  }
}

// ---- operand gatherers -------------------------------------------------------------------------

// The shape in ints, and its divisors as FastDiv (every gather divides by them per load).
struct Dims {
  int n, C, H, W, K, P, Q, kh, kw, stride, pad, HW, PQ, RS;
  FastDiv by_W, by_Q, by_kw, by_stride, by_HW, by_PQ, by_RS;
  explicit Dims(const ConvShape& s)
      : n(int(s.n)),
        C(int(s.c)),
        H(int(s.h)),
        W(int(s.w)),
        K(int(s.k)),
        P(int(s.p())),
        Q(int(s.q())),
        kh(int(s.kh)),
        kw(int(s.kw)),
        // A layer takes any positive stride; one past the padded image gives a single output
        // position (P = Q = 1) whose window starts at -pad whatever the stride. Narrowed to int,
        // 2^32 became 0 (FastDiv divided by it: SIGFPE) and 2^31 negative. Capped at the padded
        // extent (< 2^31, conv_index_range_error), P and Q and every window stay as they were.
        stride(int(std::min<int64_t>(s.stride, std::max(s.h, s.w) + 2 * s.pad))),
        pad(int(s.pad)),
        HW(H * W),
        PQ(P * Q),
        RS(kh * kw),
        by_W(W),
        by_Q(Q),
        by_kw(kw),
        by_stride(stride),
        by_HW(HW),
        by_PQ(PQ),
        by_RS(RS) {}
};

__device__ __forceinline__ bool inside(int i, int n) { return static_cast<unsigned>(i) < static_cast<unsigned>(n); }

// dy[i], or 0 where the fused ReLU's output y[i] is <= 0 (y null: no fused ReLU).
// The ReLU kernel's rule (kernels/activation/relu_rule.h), so fused and unfused agree exactly;
// dy is not read where the mask stops it.
__device__ __forceinline__ float load_dy(const float* __restrict__ dy, const float* __restrict__ y,
                                         int64_t i) {
  if (y && relu_stops(y[i])) return 0.f;
  return dy[i];
}
__device__ __forceinline__ float relu_if(bool relu, float v) {
  return relu ? relu_fwd(v) : v;
}

// Forward: A[m][r] = w[m][r]; B[r=(c,u,v)][col=(img,p,q)] = x[img][c][p*s-pad+u][q*s-pad+v].
struct FwdOp {
  static constexpr bool kBAlongR = false;
  Dims d;
  const float* __restrict__ x;
  const float* __restrict__ w;
  const float* __restrict__ bias;
  float* __restrict__ y;
  bool relu;
  struct Col { int base, h0, w0; bool ok; };
  __device__ Col col(int n) const {
    Col c;
    c.ok = n < d.n * d.PQ;
    const int img = c.ok ? d.by_PQ.div(n) : 0, pq = c.ok ? n - img * d.PQ : 0, p = d.by_Q.div(pq);
    c.base = img * d.C * d.HW;
    c.h0 = p * d.stride - d.pad;
    c.w0 = (pq - p * d.Q) * d.stride - d.pad;
    return c;
  }
  __device__ float a(int m, int r) const { return w[m * d.C * d.RS + r]; }
  __device__ float b(const Col& c, int r) const {
    if (!c.ok) return 0.f;
    const int ch = d.by_RS.div(r), rs = r - ch * d.RS, u = d.by_kw.div(rs), v = rs - u * d.kw;
    const int h = c.h0 + u, ww = c.w0 + v;
    return (inside(h, d.H) && inside(ww, d.W)) ? x[c.base + (ch * d.H + h) * d.W + ww] : 0.f;
  }
  __device__ void store(int m, int n, float v, int) const {
    const int img = d.by_PQ.div(n);
    y[(img * d.K + m) * d.PQ + (n - img * d.PQ)] = relu_if(relu, v + (bias ? bias[m] : 0.f));
  }
};

// Backward-data: A[c][r=(k,u,v)] = w[k][c][u][v];
// B[r][col=(img,h,w)] = dy[img][k][(h+pad-u)/s][(w+pad-v)/s] where that divides and lands inside.
struct BwdDataOp {
  static constexpr bool kBAlongR = false;
  Dims d;
  const float* __restrict__ dy;
  const float* __restrict__ w;
  float* __restrict__ dx;
  const float* __restrict__ ymask;  // fused ReLU output or null
  struct Col { int base, hp, wp; bool ok; };
  __device__ Col col(int n) const {
    Col c;
    c.ok = n < d.n * d.HW;
    const int img = c.ok ? d.by_HW.div(n) : 0, hw = c.ok ? n - img * d.HW : 0, h = d.by_W.div(hw);
    c.base = img * d.K * d.PQ;
    c.hp = h + d.pad;
    c.wp = hw - h * d.W + d.pad;
    return c;
  }
  __device__ float a(int m, int r) const {
    const int k = d.by_RS.div(r);
    return w[(k * d.C + m) * d.RS + (r - k * d.RS)];
  }
  __device__ float b(const Col& c, int r) const {
    if (!c.ok) return 0.f;
    const int k = d.by_RS.div(r), rs = r - k * d.RS, u = d.by_kw.div(rs), v = rs - u * d.kw;
    int ph = c.hp - u, pw = c.wp - v;
    if (ph < 0 || pw < 0) return 0.f;
    if (d.stride > 1) {  // taps between strided outputs read as 0
      const int qh = d.by_stride.div(ph), qw = d.by_stride.div(pw);
      if (qh * d.stride != ph || qw * d.stride != pw) return 0.f;
      ph = qh;
      pw = qw;
    }
    return (ph < d.P && pw < d.Q) ? load_dy(dy, ymask, c.base + (k * d.P + ph) * d.Q + pw) : 0.f;
  }
  __device__ void store(int m, int n, float v, int) const {
    const int img = d.by_HW.div(n);
    dx[(img * d.C + m) * d.HW + (n - img * d.HW)] = v;
  }
};

// Backward-filter: A[m][r=(img,p,q)] = dy[img][m][p][q];
// B[r][col=(c,u,v)] = x[img][c][p*s-pad+u][q*s-pad+v]. Partial sums go to out + z*M*N.
struct BwdFilterOp {
  static constexpr bool kBAlongR = true;
  Dims d;
  const float* __restrict__ x;
  const float* __restrict__ dy;
  float* __restrict__ out;
  const float* __restrict__ ymask;  // fused ReLU output or null
  struct Col { int coff, u, v; bool ok; };
  __device__ Col col(int n) const {
    Col c;
    c.ok = n < d.C * d.RS;
    const int ch = c.ok ? d.by_RS.div(n) : 0, rs = c.ok ? n - ch * d.RS : 0;
    c.coff = ch * d.HW;
    c.u = d.by_kw.div(rs);
    c.v = rs - c.u * d.kw;
    return c;
  }
  __device__ float a(int m, int r) const {
    const int img = d.by_PQ.div(r);
    return load_dy(dy, ymask, (img * d.K + m) * d.PQ + (r - img * d.PQ));
  }
  __device__ float b(const Col& c, int r) const {
    if (!c.ok) return 0.f;
    const int img = d.by_PQ.div(r), pq = r - img * d.PQ, p = d.by_Q.div(pq), q = pq - p * d.Q;
    const int h = p * d.stride - d.pad + c.u, ww = q * d.stride - d.pad + c.v;
    return (inside(h, d.H) && inside(ww, d.W)) ? x[(img * d.C) * d.HW + c.coff + h * d.W + ww] : 0.f;
  }
  __device__ void store(int m, int n, float v, int z) const {
    out[(size_t(z) * d.K + m) * (d.C * d.RS) + n] = v;
  }
};

// 1x1: out[img][m][j] = sum_k A[m][k] in[img][k][j] (+ bias[m]); A[m][k] = a_[m*sm + k*sk].
// Forward: A = w [K, C] (relu: fused ReLU on the output); backward-data: A = w^T (sm = 1,
// sk = C), in = dy (ymask: the fused ReLU's output, indexed like in).
struct ChanGemmOp {
  static constexpr bool kBAlongR = false;
  int n, HW, Kin, Mout, sm, sk;
  const float* __restrict__ amat;
  const float* __restrict__ in;
  const float* __restrict__ bias;
  float* __restrict__ out;
  bool relu;
  const float* __restrict__ ymask;
  FastDiv by_HW;
  struct Col { int base; bool ok; };
  __device__ Col col(int j) const {
    Col c;
    c.ok = j < n * HW;
    const int img = c.ok ? by_HW.div(j) : 0;
    c.base = img * Kin * HW + (c.ok ? j - img * HW : 0);
    return c;
  }
  __device__ float a(int m, int k) const { return amat[m * sm + k * sk]; }
  __device__ float b(const Col& c, int k) const { return c.ok ? load_dy(in, ymask, c.base + k * HW) : 0.f; }
  __device__ void store(int m, int j, float v, int) const {
    const int img = by_HW.div(j);
    out[(img * Mout + m) * HW + (j - img * HW)] = relu_if(relu, v + (bias ? bias[m] : 0.f));
  }
};

// 1x1 backward-filter: dw[m][c] = sum_{img,j} dy[img][m][j] x[img][c][j].
struct ChanFilterOp {
  static constexpr bool kBAlongR = true;
  int n, HW, C, K;
  const float* __restrict__ x;
  const float* __restrict__ dy;
  float* __restrict__ out;
  const float* __restrict__ ymask;  // fused ReLU output or null
  FastDiv by_HW;
  struct Col { int c; bool ok; };
  __device__ Col col(int j) const { return Col{j, j < C}; }
  __device__ float a(int m, int r) const {
    const int img = by_HW.div(r);
    return load_dy(dy, ymask, (img * K + m) * HW + (r - img * HW));
  }
  __device__ float b(const Col& c, int r) const {
    if (!c.ok) return 0.f;
    const int img = by_HW.div(r);
    return x[(img * C + c.c) * HW + (r - img * HW)];
  }
  __device__ void store(int m, int j, float v, int z) const { out[(size_t(z) * K + m) * C + j] = v; }
};

// ---- launch helpers, tile choice, split-K plan, reductions ----------------------------------

std::atomic<int> g_tiles{static_cast<int>(ConvTiles::kAuto)};

// Wider tiles do more work per block; below this many blocks in the grid the GPU would idle,
// so kAuto steps down (columns first, then rows) until the grid has them or the tile is 64 wide.
constexpr int64_t kMinBlocks = 256;

struct TileChoice {
  int tm, tn;
};
TileChoice pick_tiles(int64_t M, int64_t N, bool b_along_r, int64_t splits) {
  const auto policy = static_cast<ConvTiles>(g_tiles.load(std::memory_order_relaxed));
  TileChoice t{M <= 16 ? 1 : M <= 32 ? 2 : M <= 64 ? 4 : 8, 8};
  // A 128-column tile steps up to 127 past N; the index limit leaves 64.
  if (b_along_r || N >= kConvIndexLimit - 64) t.tn = 4;
  if (policy == ConvTiles::kSmall) return TileChoice{std::min(t.tm, 4), 4};
  if (policy == ConvTiles::kTall) return TileChoice{t.tm, 4};
  if (policy == ConvTiles::kWide) return t;
  auto blocks = [&] { return int64_t(ceil_div(N, 16 * t.tn)) * ceil_div(M, 16 * t.tm) * splits; };
  if (t.tn == 8 && blocks() < kMinBlocks) t.tn = 4;
  if (t.tm == 8 && blocks() < kMinBlocks) t.tm = 4;
  return t;
}

template <int TM, class Op>
void launch_tm(const Op& op, TileChoice t, dim3 grid, int m, int n, int r, int r_chunk,
               cudaStream_t stream) {
  if constexpr (!Op::kBAlongR) {
    if (t.tn == 8) {
      conv_igemm_kernel<TM, 8><<<grid, NT, 0, stream>>>(op, m, n, r, r_chunk);
      return;
    }
  }
  conv_igemm_kernel<TM, 4><<<grid, NT, 0, stream>>>(op, m, n, r, r_chunk);
}

template <class Op>
void launch_igemm(const Op& op, int64_t M, int64_t N, int64_t R, int splits, int r_chunk,
                  cudaStream_t stream) {
  const TileChoice t = pick_tiles(M, N, Op::kBAlongR, splits);
  const dim3 grid(ceil_div(N, 16 * t.tn), ceil_div(M, 16 * t.tm), splits);
  const int m = int(M), n = int(N), r = int(R);
  switch (t.tm) {
    case 1:
      launch_tm<1>(op, t, grid, m, n, r, r_chunk, stream);
      break;
    case 2:
      launch_tm<2>(op, t, grid, m, n, r, r_chunk, stream);
      break;
    case 4:
      launch_tm<4>(op, t, grid, m, n, r, r_chunk, stream);
      break;
    default:
      launch_tm<8>(op, t, grid, m, n, r, r_chunk, stream);
      break;
  }
  KILN_LAUNCH_CHECK();
}

// Backward-filter's reduction (n*P*Q) is long and its output (K x C*kh*kw) small: split it so
// ~512 blocks of 64 x 64 (or smaller) outputs run, each chunk at least 512 deep. Depends only on
// the shape, not on the tiles (reproducible, and the same bits under every conv_set_tiles).
struct SplitPlan {
  int splits = 1, chunk = 0;
};
SplitPlan plan_filter_split(const ConvShape& s) {
  const int64_t M = s.k, N = s.c * s.kh * s.kw, R = s.n * s.p() * s.q();
  const int64_t bm = M <= 16 ? 16 : M <= 32 ? 32 : 64;
  const int64_t tiles = ((M + bm - 1) / bm) * ((N + 63) / 64);
  if (R <= 0 || tiles <= 0) return SplitPlan{};  // nothing to sum (the launchers return first)
  const int64_t want = std::max<int64_t>(1, (512 + tiles - 1) / tiles);
  const int64_t most = std::max<int64_t>(1, R / 512);
  int64_t splits = std::min(want, most);
  int64_t chunk = (R + splits - 1) / splits;
  chunk = (chunk + BK - 1) / BK * BK;
  SplitPlan p;
  p.chunk = int(chunk);
  p.splits = int((R + chunk - 1) / chunk);
  return p;
}

__global__ void splitk_sum_kernel(const float* __restrict__ ws, int splits, int mn,
                                  float* __restrict__ out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // the last block passes mn
  if (i >= mn) return;
  float s = 0.f;
  for (int z = 0; z < splits; ++z) s += ws[size_t(z) * mn + i];  // fixed order
  out[i] = s;
}

// The bias gradient db[m] = sum over images and positions of dy[img][m][:]. One block per
// channel alone left the GPU idle (the cnn has 8 to 24 channels: on an H200, ncu timed it at
// 130-160 us per call, a third of the cnn's training step), so the images are split too: block
// (m, z) sums images [z*per, (z+1)*per) of channel m with a fixed tree, and bias_combine adds the
// splits in order. Depends only on the shape (reproducible); one split writes db directly.
struct BiasPlan {
  int splits = 1, per = 1;  // images per split
};
BiasPlan plan_bias_split(const ConvShape& s) {
  const int64_t n = s.n, len = s.n * s.p() * s.q();
  BiasPlan b;
  if (n <= 0) return b;
  const int64_t want = std::clamp<int64_t>(len / 8192, 1, std::min<int64_t>(n, 64));
  b.per = int((n + want - 1) / want);
  b.splits = int((n + b.per - 1) / b.per);
  return b;
}

__global__ void bias_grad_kernel(const float* __restrict__ dy, const float* __restrict__ ymask,
                                 int n, int K, int PQ, int per, float* __restrict__ out) {
  // Double sums, as the reference: a thread's float sum drifted with the plane (6e-4 relative
  // on a 4096 x 4096 plane of one value).
  __shared__ double part[NT];
  const int m = blockIdx.x, z = blockIdx.y;
  const int img_end = min(n, (z + 1) * per);  // (z + 1) * per <= 64 * ceil(n / 64) < 2^31
  double s = 0;
  for (int img = z * per; img < img_end; ++img) {
    const int64_t base = (int64_t(img) * K + m) * PQ;
    // 64-bit: i steps up to NT - 1 past PQ, which may lie within NT of 2^31
    for (int64_t i = threadIdx.x; i < PQ; i += NT) s += load_dy(dy, ymask, base + i);
  }
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = NT / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[int64_t(m) * gridDim.y + z] = float(part[0]);
}

__global__ void bias_combine_kernel(const float* __restrict__ partial, int splits, int K,
                                    float* __restrict__ db) {
  const int m = blockIdx.x * blockDim.x + threadIdx.x;
  if (m >= K) return;
  double s = 0;
  for (int z = 0; z < splits; ++z) s += partial[int64_t(m) * splits + z];  // fixed order
  db[m] = float(s);
}

// Layers reject these shapes with a usage error first; this guards direct callers.
void check_int_range(const ConvShape& s, const char* op) {
  check_conv_shape(s, op);
  const std::string err = conv_index_range_error(s);
  KILN_CHECK(err.empty(), "conv2d CUDA kernels: " << err);
}

}  // namespace

void conv2d_fwd(const ConvShape& s, const float* x, const float* w, const float* b, float* y,
                cudaStream_t stream, bool relu) {
  check_int_range(s, "conv2d_fwd");
  if (s.y_numel() == 0) return;  // an empty batch: a grid of 0 blocks is a launch error
  if (s.is_1x1()) {
    const int hw = int(s.h * s.w);
    ChanGemmOp op{int(s.n), hw, int(s.c), int(s.k), int(s.c), 1,          w,
                  x,        b,  y,        relu,     nullptr,  FastDiv(hw)};
    launch_igemm(op, s.k, s.n * s.h * s.w, s.c, 1, int(s.c), stream);
    return;
  }
  FwdOp op{Dims(s), x, w, b, y, relu};
  const int64_t R = s.c * s.kh * s.kw;
  launch_igemm(op, s.k, s.n * s.p() * s.q(), R, 1, int(R), stream);
}

void conv2d_bwd_data(const ConvShape& s, const float* dy, const float* w, float* dx,
                     cudaStream_t stream, const float* relu_y) {
  check_int_range(s, "conv2d_bwd_data");
  if (s.x_numel() == 0) return;
  if (s.is_1x1()) {
    const int hw = int(s.h * s.w);
    ChanGemmOp op{int(s.n), hw,      int(s.k), int(s.c), 1,      int(s.c),   w,
                  dy,       nullptr, dx,       false,    relu_y, FastDiv(hw)};
    launch_igemm(op, s.c, s.n * s.h * s.w, s.k, 1, int(s.k), stream);
    return;
  }
  BwdDataOp op{Dims(s), dy, w, dx, relu_y};
  const int64_t R = s.k * s.kh * s.kw;
  launch_igemm(op, s.c, s.n * s.h * s.w, R, 1, int(R), stream);
}

void conv_set_tiles(ConvTiles t) {
  g_tiles.store(static_cast<int>(t), std::memory_order_relaxed);
}
ConvTiles conv_tiles() {
  return static_cast<ConvTiles>(g_tiles.load(std::memory_order_relaxed));
}

std::string conv_tile_plan(const ConvShape& s) {
  auto tile = [](TileChoice t) {
    return std::to_string(16 * t.tm) + "x" + std::to_string(16 * t.tn);
  };
  const bool one = s.is_1x1();
  const SplitPlan p = plan_filter_split(s);
  return "fwd " + tile(pick_tiles(s.k, s.n * s.p() * s.q(), false, 1)) + ", bwd_data " +
         tile(pick_tiles(s.c, s.n * s.h * s.w, false, 1)) + ", bwd_filter " +
         tile(pick_tiles(s.k, s.c * s.kh * s.kw, true, p.splits)) + " x " +
         std::to_string(p.splits) + " splits" + (one ? " (1x1)" : "");
}

size_t conv2d_bwd_filter_workspace(const ConvShape& s) {
  check_conv_shape(s, "conv2d_bwd_filter_workspace");
  const SplitPlan p = plan_filter_split(s);
  const BiasPlan b = plan_bias_split(s);
  return (p.splits > 1 ? size_t(p.splits) * s.w_numel() : 0) +
         (b.splits > 1 ? size_t(b.splits) * s.k : 0);
}

void conv2d_bwd_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* db,
                       float* workspace, cudaStream_t stream, const float* relu_y) {
  check_int_range(s, "conv2d_bwd_filter");
  if (s.y_numel() == 0) {  // an empty batch: nothing to sum, the gradients are zero
    if (s.w_numel() > 0)
      KILN_CUDA_CHECK(cudaMemsetAsync(dw, 0, size_t(s.w_numel()) * sizeof(float), stream));
    if (db && s.k > 0) KILN_CUDA_CHECK(cudaMemsetAsync(db, 0, size_t(s.k) * sizeof(float), stream));
    return;
  }
  const SplitPlan p = plan_filter_split(s);
  const BiasPlan b = plan_bias_split(s);
  KILN_CHECK(
      (p.splits == 1 && (b.splits == 1 || !db)) || workspace,
      "conv2d_bwd_filter: needs a workspace of " << conv2d_bwd_filter_workspace(s) << " floats");
  float* out = p.splits > 1 ? workspace : dw;
  const int64_t N = s.c * s.kh * s.kw, R = s.n * s.p() * s.q();
  if (s.is_1x1()) {
    const int hw = int(s.h * s.w);
    ChanFilterOp op{int(s.n), hw, int(s.c), int(s.k), x, dy, out, relu_y, FastDiv(hw)};
    launch_igemm(op, s.k, N, R, p.splits, p.chunk, stream);
  } else {
    BwdFilterOp op{Dims(s), x, dy, out, relu_y};
    launch_igemm(op, s.k, N, R, p.splits, p.chunk, stream);
  }
  if (p.splits > 1) {
    const int mn = int(s.w_numel());
    splitk_sum_kernel<<<ceil_div(mn, 256), 256, 0, stream>>>(workspace, p.splits, mn, dw);
    KILN_LAUNCH_CHECK();
  }
  if (db) {
    float* partial = b.splits > 1 ? workspace + (p.splits > 1 ? p.splits * s.w_numel() : 0) : db;
    bias_grad_kernel<<<dim3(unsigned(s.k), unsigned(b.splits)), NT, 0, stream>>>(
        dy, relu_y, int(s.n), int(s.k), int(s.p() * s.q()), b.per, partial);
    KILN_LAUNCH_CHECK();
    if (b.splits > 1) {
      bias_combine_kernel<<<ceil_div(s.k, 256), 256, 0, stream>>>(partial, b.splits, int(s.k), db);
      KILN_LAUNCH_CHECK();
    }
  }
}

}  // namespace kiln
