// Randomized differential tests: the CUDA kernels (on a GPU or the CUDA emulator) against the
// CPU references over seeded random shapes and parameters: conv (every tile choice, the 1x1
// path, fused ReLU, split-K, the split bias gradient), max/avg/global pooling (ties, 32- and
// 64-bit indexing), batch norm (train and eval, persistent kernel), group norm, dropout masks
// (bit for bit) and the dense bias ops. Every device output is a view into a NaN-poisoned buffer
// with guard floats before and after it (a write outside the view fails), at a 16-byte aligned
// or a misaligned offset. Each test stops at its first failing configuration and names it.
// KILN_RANDOM_CASES scales the number of cases (default 1 on a GPU, 0.5 under the emulator:
// about 40 s per thread order in CI), KILN_RANDOM_SEED changes the seeds, KILN_CONV_MACS the
// conv size budget (default 4e5 multiply-adds). Written by a session-37 audit, which ran some
// 15,000 configurations on the emulator in both thread orders without a failure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/buffer.h"
#include "kernels/conv/conv.h"
#include "kernels/dense/dense.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"
#include "kernels/norm/norm.h"
#include "kernels/pool/pool.h"
#include "tests/test_util.h"
#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace kiln {
namespace {

using test::random_vec;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

int cases(int base) {
#ifdef KILN_CUDA_EMU
  constexpr double kDefault = 0.5;  // emulated threads: about 40 s per thread order in CI
#else
  constexpr double kDefault = 1.0;  // some 1,000: seconds beside run.sh's 150 s for the GPU tests
#endif
  const char* e = std::getenv("KILN_RANDOM_CASES");
  const double f = e && *e ? std::atof(e) : kDefault;
  return std::max(1, static_cast<int>(base * f));
}
uint32_t seed_base() {
  const char* e = std::getenv("KILN_RANDOM_SEED");
  return e && *e ? static_cast<uint32_t>(std::atoi(e)) : 0u;
}

#ifdef KILN_WITH_CUDA
constexpr int64_t kGuard = 4;
// A device view of n floats at offset `off` (>= 1) into a buffer of off + n + kGuard floats; the
// floats outside the view are NaN and must stay so.
struct View {
  Tensor t;
  int64_t off, n;
  View(const std::vector<float>& v, int64_t offset) : off(offset), n(int64_t(v.size())) {
    std::vector<float> all(size_t(off + n + kGuard), kNaN);
    std::copy(v.begin(), v.end(), all.begin() + off);
    t = Tensor::from_vector(all, {off + n + kGuard}, Device::CUDA);
  }
  View(int64_t count, int64_t offset) : View(std::vector<float>(size_t(count), kNaN), offset) {}
  float* p() const { return t.data() + off; }
  std::vector<float> get() const {
    auto all = t.to_vector();
    return std::vector<float>(all.begin() + off, all.begin() + off + n);
  }
  ::testing::AssertionResult guards_intact() const {
    auto all = t.to_vector();
    for (int64_t i = 0; i < off; ++i)
      if (!std::isnan(all[size_t(i)]))
        return ::testing::AssertionFailure()
               << "write " << (off - i) << " before the view: " << all[size_t(i)];
    for (int64_t i = off + n; i < off + n + kGuard; ++i)
      if (!std::isnan(all[size_t(i)]))
        return ::testing::AssertionFailure()
               << "write " << (i - off - n) << " past the view end: " << all[size_t(i)];
    return ::testing::AssertionSuccess();
  }
};
// 4 (16-byte aligned, as cudaMalloc's + 16 bytes) or a misaligned offset.
int64_t draw_offset(test::SeededInts& d, bool allow_misaligned = true) {
  if (!allow_misaligned || d(0, 2) != 0) return 4;
  static const int64_t mis[] = {1, 2, 3, 5};
  return mis[d(0, 3)];
}

// The offsets of one configuration's views: one for all, or (a third of the configurations,
// "mixed") each view its own; `list` keeps them in construction order for the failure message.
struct Offsets {
  test::SeededInts& d;
  int64_t off;
  bool mixed;
  std::string list;
  explicit Offsets(test::SeededInts& draw)
      : d(draw), off(draw_offset(draw)), mixed(draw(0, 2) == 0) {}
  int64_t operator()() {
    const int64_t o = mixed ? draw_offset(d) : off;
    list += std::to_string(o) + " ";
    return o;
  }
  // After a configuration: true, naming it and the offsets, when it failed (the test stops).
  bool failed(const std::string& config) const {
    if (!::testing::Test::HasFailure()) return false;
    ADD_FAILURE() << "first failing config: " << config << " (view offsets " << list << ")";
    return true;
  }
};

std::vector<float> to_f(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}
std::vector<double> to_d(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// ---- convolution --------------------------------------------------------------------------------
std::string conv_name(const ConvShape& s, bool bias, bool relu, int tiles, int64_t off) {
  std::ostringstream o;
  o << "conv n=" << s.n << " c=" << s.c << " h=" << s.h << " w=" << s.w << " k=" << s.k
    << " kernel " << s.kh << "x" << s.kw << " stride " << s.stride << " pad " << s.pad
    << (bias ? " bias" : " nobias") << (relu ? " relu" : "") << " tiles=" << tiles << " off=" << off
    << (s.is_1x1() ? " (1x1)" : "") << " plan: " << conv_tile_plan(s);
  return o.str();
}

struct ConvOut {
  std::vector<float> y, dx, dw, db;
};

// One configuration: forward (optionally fused ReLU), backward-data and backward-filter (with
// the fused forward's output as the ReLU mask) on the device, under tiles `t`.
ConvOut conv_device(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                    const std::vector<float>& b, const std::vector<float>& g, bool bias, bool relu,
                    int64_t off, ConvTiles t, std::string* guard_err) {
  conv_set_tiles(t);
  View X(x, off), Wt(w, off), B(b, off), G(g, off);
  View Y(s.y_numel(), off), DX(s.x_numel(), off), DW(s.w_numel(), off), DB(s.k, off);
  View WS(std::max<int64_t>(1, int64_t(conv2d_bwd_filter_workspace(s))), 4);
  conv2d_fwd(s, X.p(), Wt.p(), bias ? B.p() : nullptr, Y.p(), nullptr, relu);
  conv2d_bwd_data(s, G.p(), Wt.p(), DX.p(), nullptr, relu ? Y.p() : nullptr);
  conv2d_bwd_filter(s, X.p(), G.p(), DW.p(), bias ? DB.p() : nullptr, WS.p(), nullptr,
                    relu ? Y.p() : nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  conv_set_tiles(ConvTiles::kAuto);
  for (const View* v : {&Y, &DX, &DW, &DB, &WS}) {
    auto r = v->guards_intact();
    if (!r) *guard_err += std::string(r.message()) + "; ";
  }
  return {Y.get(), DX.get(), DW.get(), bias ? DB.get() : std::vector<float>{}};
}

ConvShape draw_conv(test::SeededInts& d) {
  static const int chans[] = {1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 31, 32, 33, 63, 64, 65, 70};
  for (;;) {
    ConvShape s;
    s.n = d(1, 5);
    s.c = d(0, 2) ? d(1, 9) : chans[d(0, 16)];
    s.k = d(0, 2) ? d(1, 9) : chans[d(0, 16)];
    s.h = d(1, 20);
    s.w = d(0, 3) ? d(1, 20) : s.h;
    const int kind = d(0, 7);
    if (kind == 0) {  // the 1x1 path
      s.kh = s.kw = 1, s.stride = 1, s.pad = 0;
    } else {
      s.kh = d(1, 5);
      s.kw = d(0, 2) ? s.kh : d(1, 5);
      s.stride = d(0, 5) ? d(1, 3) : d(4, 7);  // sometimes past the kernel
      s.pad = d(0, 3);
    }
    if (!conv_shape_error(s).empty()) continue;
    static const double budget =
        std::getenv("KILN_CONV_MACS") ? std::atof(std::getenv("KILN_CONV_MACS")) : 4e5;
    if (s.macs() > budget || s.macs() < 1) continue;  // the emulator's budget
    return s;
  }
}

// Returns false on a failure (the caller stops at the first).
bool conv_case(const ConvShape& s, bool bias, bool relu, int tiles, int64_t off, uint64_t seed) {
  const std::string name = conv_name(s, bias, relu, tiles, off);
  SCOPED_TRACE(name);
  const bool before = ::testing::Test::HasFailure();
  auto x = random_vec<float>(s.x_numel(), seed + 1), w = random_vec<float>(s.w_numel(), seed + 2);
  auto b = random_vec<float>(s.k, seed + 3), g = random_vec<float>(s.y_numel(), seed + 4);
  std::string guard;
  const ConvOut got = conv_device(s, x, w, b, g, bias, relu, off, ConvTiles::kAuto, &guard);
  EXPECT_EQ(guard, "");
  // reference in double; the ReLU mask of the backward is the device's forward output, so a
  // value at the kink cannot flip the mask between the two sides
  auto xd = to_d(x), wd = to_d(w), bd = to_d(b), gd = to_d(g), yg = to_d(got.y);
  std::vector<double> y(s.y_numel()), dx(s.x_numel()), dw(s.w_numel()), db(s.k);
  conv2d_fwd_ref<double>(s, xd.data(), wd.data(), bias ? bd.data() : nullptr, y.data(), relu);
  conv2d_bwd_data_ref<double>(s, gd.data(), wd.data(), dx.data(), relu ? yg.data() : nullptr);
  conv2d_bwd_filter_ref<double>(s, xd.data(), gd.data(), dw.data(), bias ? db.data() : nullptr,
                                relu ? yg.data() : nullptr);
  EXPECT_TRUE(test::all_close(got.y, to_f(y), 1e-4, 1e-4)) << "forward";
  EXPECT_TRUE(test::all_close(got.dx, to_f(dx), 1e-4, 1e-4)) << "backward-data";
  EXPECT_TRUE(test::all_close(got.dw, to_f(dw), 1e-4, 1e-3)) << "backward-filter";
  if (bias) EXPECT_TRUE(test::all_close(got.db, to_f(db), 1e-4, 1e-3)) << "bias";
  std::string guard2;
  const ConvOut other =
      conv_device(s, x, w, b, g, bias, relu, off, static_cast<ConvTiles>(tiles), &guard2);
  EXPECT_EQ(guard2, "");
  EXPECT_TRUE(test::bitwise_equal(other.y, got.y)) << "forward, tiles " << tiles;
  EXPECT_TRUE(test::bitwise_equal(other.dx, got.dx)) << "backward-data, tiles " << tiles;
  EXPECT_TRUE(test::bitwise_equal(other.dw, got.dw)) << "backward-filter, tiles " << tiles;
  EXPECT_TRUE(test::bitwise_equal(other.db, got.db)) << "bias, tiles " << tiles;
  if (!before && ::testing::Test::HasFailure()) {
    ADD_FAILURE() << "first failing config: " << name;
    return false;
  }
  return true;
}

TEST(RandomShapesGpu, ConvMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  test::SeededInts d(1000 + seed_base());
  const int total = cases(160);
  int run = 0, one = 0, split = 0, bias_split = 0;
  for (int i = 0; i < total; ++i) {
    const ConvShape s = draw_conv(d);
    split += conv_tile_plan(s).find(" x 1 splits") == std::string::npos;
    bias_split += s.n * s.p() * s.q() >= 16384;
    const bool bias = d(0, 3) != 0, relu = d(0, 2) == 0;
    const int tiles = d(1, 3);  // compared bitwise with kAuto
    const int64_t off = draw_offset(d);
    ++run;
    one += s.is_1x1();
    if (!conv_case(s, bias, relu, tiles, off, 10 * uint64_t(i))) break;
  }
  std::printf("conv: %d configs (%d 1x1, %d split-K filter, %d split bias)\n", run, one, split,
              bias_split);
}

// Long GEMM columns: large planes and batches with few channels, so the bias gradient splits
// its images (n*P*Q >= 16384), backward-filter splits its reduction, and kAuto picks 128-wide
// tiles.
TEST(RandomShapesGpu, ConvLongColumnsMatchReference) {
  KILN_SKIP_WITHOUT_GPU();
  test::SeededInts d(1500 + seed_base());
  const int total = cases(24);
  int run = 0, bias_split = 0, split = 0;
  for (int i = 0; i < total; ++i) {
    ConvShape s;
    s.n = d(1, 70), s.c = d(1, 3), s.k = d(1, 5), s.h = d(8, 64), s.w = d(8, 64);
    if (d(0, 3) == 0) {
      s.kh = s.kw = 1, s.stride = 1, s.pad = 0;
    } else {
      s.kh = d(1, 5), s.kw = d(0, 1) ? s.kh : d(1, 5), s.stride = d(1, 2), s.pad = d(0, 2);
    }
    if (!conv_shape_error(s).empty() || s.macs() > 3e6 || s.n * s.p() * s.q() < 8192) {
      --i;
      continue;
    }
    split += conv_tile_plan(s).find(" x 1 splits") == std::string::npos;
    bias_split += s.n * s.p() * s.q() >= 16384;
    ++run;
    if (!conv_case(s, d(0, 3) != 0, d(0, 2) == 0, d(1, 3), draw_offset(d),
                   20000 + 10 * uint64_t(i)))
      break;
  }
  std::printf("conv long columns: %d configs (%d split-K filter, %d split bias)\n", run, split,
              bias_split);
}

// Many channels on small planes: several 128-row tiles, the step-down of kAuto.
TEST(RandomShapesGpu, ConvManyChannelsMatchReference) {
  KILN_SKIP_WITHOUT_GPU();
  test::SeededInts d(1700 + seed_base());
  const int total = cases(20);
  int run = 0;
  for (int i = 0; i < total; ++i) {
    ConvShape s;
    s.n = d(1, 3), s.c = d(60, 300), s.k = d(60, 300), s.h = d(1, 6), s.w = d(1, 6);
    s.kh = d(1, 3), s.kw = d(1, 3), s.stride = d(1, 2), s.pad = d(0, 1);
    if (d(0, 3) == 0) s.kh = s.kw = 1, s.stride = 1, s.pad = 0;
    if (!conv_shape_error(s).empty() || s.macs() > 4e6) {
      --i;
      continue;
    }
    ++run;
    if (!conv_case(s, d(0, 3) != 0, d(0, 2) == 0, d(1, 3), draw_offset(d),
                   30000 + 10 * uint64_t(i)))
      break;
  }
  std::printf("conv many channels: %d configs\n", run);
}

// ---- pooling ------------------------------------------------------------------------------------
TEST(RandomShapesGpu, PoolMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  test::SeededInts d(2000 + seed_base());
  const int total = cases(250);
  int run = 0;
  for (int i = 0; i < total; ++i) {
    PoolShape s;
    s.n = d(1, 3), s.c = d(1, 5), s.h = d(1, 20), s.w = d(0, 3) ? d(1, 20) : s.h;
    s.kh = d(1, 5), s.kw = d(0, 2) ? s.kh : d(1, 5), s.stride = d(0, 5) ? d(1, 3) : d(4, 7);
    const int64_t maxpad = std::min(s.kh, s.kw) / 2;
    s.pad = d(0, 1) ? maxpad : d(0, int(maxpad));
    if (!pool_shape_error(s).empty()) {
      --i;
      continue;
    }
    const bool idx64 = d(0, 3) == 0;
    Offsets O(d);
    std::ostringstream nm;
    nm << "pool n=" << s.n << " c=" << s.c << " h=" << s.h << " w=" << s.w << " kernel " << s.kh
       << "x" << s.kw << " stride " << s.stride << " pad " << s.pad << (idx64 ? " index64" : "")
       << " off=" << O.off << (O.mixed ? " mixed" : "");
    SCOPED_TRACE(nm.str());
    // integers in [-3, 3): many ties; sometimes all-equal planes, sometimes all negative
    const int mode = d(0, 5);
    auto x = random_vec<float>(s.x_numel(), 7 * i + 1, -3, 3);
    for (auto& v : x) v = mode == 0 ? -1.f : std::floor(v) - (mode == 1 ? 10.f : 0.f);
    auto g = random_vec<float>(s.y_numel(), 7 * i + 2);
    std::vector<float> y(s.y_numel()), dx(s.x_numel()), ya(s.y_numel()), dxa(s.x_numel());
    std::vector<int32_t> arg(s.y_numel());
    maxpool2d_fwd_ref<float>(s, x.data(), y.data(), arg.data());
    maxpool2d_bwd_ref<float>(s, g.data(), arg.data(), dx.data());
    avgpool2d_fwd_ref<float>(s, x.data(), ya.data());
    avgpool2d_bwd_ref<float>(s, g.data(), dxa.data());
    pool_set_index64(idx64);
    View X(x, O()), G(g, O()), Y(s.y_numel(), O()), A(s.y_numel(), O()), DX(s.x_numel(), O());
    View YA(s.y_numel(), O()), DXA(s.x_numel(), O());
    maxpool2d_fwd(s, X.p(), Y.p(), reinterpret_cast<int32_t*>(A.p()), nullptr);
    maxpool2d_bwd(s, G.p(), reinterpret_cast<const int32_t*>(A.p()), DX.p(), nullptr);
    avgpool2d_fwd(s, X.p(), YA.p(), nullptr);
    avgpool2d_bwd(s, G.p(), DXA.p(), nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    pool_set_index64(false);
    EXPECT_TRUE(test::bitwise_equal(Y.get(), y)) << "maxpool forward";
    auto av = A.get();
    std::vector<int32_t> ag(av.size());
    std::memcpy(ag.data(), av.data(), av.size() * sizeof(float));
    EXPECT_EQ(ag, arg) << "argmax";
    EXPECT_TRUE(test::all_close(DX.get(), dx, 1e-6, 1e-6)) << "maxpool backward";
    EXPECT_TRUE(test::all_close(YA.get(), ya, 1e-6, 1e-6)) << "avgpool forward";
    EXPECT_TRUE(test::all_close(DXA.get(), dxa, 1e-6, 1e-6)) << "avgpool backward";
    for (const View* v : {&Y, &A, &DX, &YA, &DXA}) EXPECT_TRUE(v->guards_intact());
    ++run;
    if (O.failed(nm.str())) break;
  }
  std::printf("pool: %d configs\n", run);
}

TEST(RandomShapesGpu, GlobalAvgPoolMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  test::SeededInts d(3000 + seed_base());
  const int total = cases(60);
  static const int64_t hws[] = {1,  2,  3,   4,   5,   31,   32,   33,   63,
                                64, 65, 255, 256, 257, 1000, 4097, 20000};
  for (int i = 0; i < total; ++i) {
    const int64_t planes = d(1, 9), hw = d(0, 1) ? hws[d(0, 16)] : d(1, 3000);
    const bool idx64 = d(0, 3) == 0;
    Offsets O(d);
    SCOPED_TRACE("gap planes=" + std::to_string(planes) + " hw=" + std::to_string(hw) +
                 (idx64 ? " index64" : "") + " off=" + std::to_string(O.off) +
                 (O.mixed ? " mixed" : ""));
    const double shift = d(0, 1) ? 100.0 : 0.0;  // a large mean: the sum's rounding
    auto x = random_vec<float>(planes * hw, 5 * i + 1, -1 + shift, 1 + shift);
    auto g = random_vec<float>(planes, 5 * i + 2);
    std::vector<float> y(planes), dx(planes * hw);
    global_avgpool_fwd_ref<float>(planes, hw, x.data(), y.data());
    global_avgpool_bwd_ref<float>(planes, hw, g.data(), dx.data());
    pool_set_index64(idx64);
    View X(x, O()), G(g, O()), Y(planes, O()), DX(planes * hw, O());
    global_avgpool_fwd(planes, hw, X.p(), Y.p(), nullptr);
    global_avgpool_bwd(planes, hw, G.p(), DX.p(), nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    pool_set_index64(false);
    EXPECT_TRUE(test::all_close(Y.get(), y, 1e-5, 1e-5)) << "forward";
    EXPECT_TRUE(test::all_close(DX.get(), dx, 1e-6, 1e-6)) << "backward";
    EXPECT_TRUE(Y.guards_intact());
    EXPECT_TRUE(DX.guards_intact());
    if (::testing::Test::HasFailure()) break;
  }
}

// ---- batch norm
// ----------------------------------------------------------------------------------
void* dev_ws(size_t bytes) {
  void* w = nullptr;
  EXPECT_EQ(cudaMalloc(&w, std::max<size_t>(bytes, 16)), cudaSuccess);
  return w;
}

void bn_random(uint32_t seed, int total, bool long_channels, bool wide = false) {
  test::SeededInts d(seed);
  struct Restore {
    ~Restore() {
      batchnorm_set_persistent(false);
      batchnorm_persistent_limits(0, SIZE_MAX);
    }
  } restore;
  int run = 0, persistent_runs = 0;
  for (int i = 0; i < total; ++i) {
    NormShape s;
    s.n = d(1, 6), s.c = d(0, 1) ? d(1, 9) : d(1, 70);
    s.hw = d(0, 2) == 0 ? 1 : d(0, 1) ? 4 * d(1, 40) : d(1, 150);
    if (long_channels) {  // several splits per channel (m > 8192)
      s.c = d(1, 3);
      s.n = d(1, 48);
      s.hw = d(0, 3) == 0 ? 1 : d(0, 1) ? 4 * d(1, 500) : d(1, 2000);
      if (s.hw == 1) s.n = d(8000, 40000);
    }
    if (wide) {  // many channels, few values each (BatchNorm1d over wide features)
      s.c = d(100, 3000);
      s.n = d(1, 8);
      s.hw = d(0, 1) ? 1 : d(0, 1) ? 4 : d(1, 9);
    }
    if (s.n * s.hw < 2) s.n = 2;
    const bool relu = d(0, 1), running = d(0, 3) != 0, persistent = d(0, 1);
    const int max_blocks = d(0, 1) ? 0 : d(1, 5);
    const size_t cache = d(0, 1) ? SIZE_MAX : size_t(d(0, 3)) * 1024;
    Offsets O(d);
    const double offset = d(0, 2) == 0 ? 20.0 : 0.0;
    std::ostringstream nm;
    nm << "bn n=" << s.n << " c=" << s.c << " hw=" << s.hw << (relu ? " relu" : "")
       << (running ? "" : " norunning")
       << (persistent ? " persistent blocks<=" + std::to_string(max_blocks) +
                            " cache=" + std::to_string(cache)
                      : "")
       << " off=" << O.off << (O.mixed ? " mixed" : "") << " xoffset=" << offset << " case " << i;
    SCOPED_TRACE(nm.str());
    batchnorm_set_persistent(persistent);
    batchnorm_persistent_limits(max_blocks, cache);
    const size_t n = s.numel(), c = s.c;
    auto x = random_vec(n, 9 * i + 1, -3 + offset, 3 + offset);
    auto w = random_vec(c, 9 * i + 2, 0.5, 1.5), b = random_vec(c, 9 * i + 3);
    auto dy = random_vec(n, 9 * i + 4);
    auto rm = random_vec(c, 9 * i + 5), rv = random_vec(c, 9 * i + 6, 0.5, 2);
    std::vector<float> y(n), mean(c), is(c), dx(n), dw(c), db(c), rm_ref = rm, rv_ref = rv,
                                                                  nbt = {5, 0};
    batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                   running ? rm_ref.data() : nullptr,
                                   running ? rv_ref.data() : nullptr,
                                   running ? nbt.data() : nullptr, 0.1, 1e-5, s, nullptr, relu);
    View X(x, O()), W(w, O()), B(b, O()), DY(dy, O()), RM(rm, O()), RV(rv, O()),
        NBT(std::vector<float>{5, 0}, 4);
    View Y(n, O()), M(c, O()), IS(c, O()), DX(n, O()), DW(c, O()), DB(c, O());
    void* ws = dev_ws(batchnorm_workspace_bytes(s));
    batchnorm_fwd_train(X.p(), W.p(), B.p(), Y.p(), M.p(), IS.p(), running ? RM.p() : nullptr,
                        running ? RV.p() : nullptr, running ? NBT.p() : nullptr, 0.1, 1e-5, s, ws,
                        nullptr, relu);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto gy = Y.get();
    batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                             dw.data(), db.data(), true, s, nullptr, relu ? gy.data() : nullptr);
    batchnorm_bwd(X.p(), DY.p(), W.p(), M.p(), IS.p(), DX.p(), DW.p(), DB.p(), true, s, ws, nullptr,
                  relu ? Y.p() : nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const double m = static_cast<double>(s.n * s.hw);
    // (x - mean) * (w * invstd) + b with the mean stored as a float: where invstd is large
    // (a variance near eps) the mean's rounding alone moves y by |mean| * |w| * invstd * 2^-24
    // (PyTorch's float kernels round the same way); allow that much on top
    double cond = 0;
    for (size_t k = 0; k < c; ++k)
      cond = std::max(cond, double(std::fabs(mean[k]) * std::fabs(w[k]) * is[k]));
    const double ytol = std::max(1e-5, cond * std::ldexp(1.0, -23));
    EXPECT_TRUE(test::all_close(gy, y, ytol, 1e-4)) << "y";
    EXPECT_TRUE(test::all_close(M.get(), mean, 1e-5, 1e-5)) << "mean";
    EXPECT_TRUE(test::all_close(IS.get(), is, 1e-5, 1e-4)) << "invstd";
    if (running) {
      EXPECT_TRUE(test::all_close(RM.get(), rm_ref, 1e-5, 1e-5)) << "running mean";
      EXPECT_TRUE(test::all_close(RV.get(), rv_ref, 1e-5, 1e-4)) << "running var";
      EXPECT_EQ(NBT.get(), (std::vector<float>{6, 0}));
    }
    EXPECT_TRUE(test::all_close(DX.get(), dx, 1e-4, 1e-3)) << "dx";
    EXPECT_TRUE(test::all_close(DW.get(), dw, std::max(1e-5, 1e-6 * m), 1e-4)) << "dweight";
    EXPECT_TRUE(test::all_close(DB.get(), db, std::max(1e-5, 1e-6 * m), 1e-4)) << "dbias";
    // eval: forward with running statistics (fused ReLU), affine-only backward, and dx == null
    std::vector<float> ye(n), ise(c), dxe(n), dwe(c), dbe(c);
    batchnorm_fwd_eval_ref<float>(x.data(), w.data(), b.data(), rm.data(), rv.data(), ye.data(),
                                  1e-5, s, relu);
    batchnorm_invstd_ref<float>(rv.data(), ise.data(), 1e-5, s.c);
    View RM0(rm, O()), RV0(rv, O()), YE(n, O()), ISE(c, O()), DXE(n, O()), DWE(c, O()), DBE(c, O());
    batchnorm_fwd_eval(X.p(), W.p(), B.p(), RM0.p(), RV0.p(), YE.p(), 1e-5, s, nullptr, relu);
    batchnorm_invstd(RV0.p(), ISE.p(), 1e-5, s.c, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto gye = YE.get();
    batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), rm.data(), ise.data(), dxe.data(),
                             dwe.data(), dbe.data(), false, s, nullptr,
                             relu ? gye.data() : nullptr);
    const bool with_dx = d(0, 3) != 0;
    batchnorm_bwd(X.p(), DY.p(), W.p(), RM0.p(), ISE.p(), with_dx ? DXE.p() : nullptr, DWE.p(),
                  DBE.p(), false, s, ws, nullptr, relu ? YE.p() : nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_TRUE(test::all_close(gye, ye, 1e-5, 1e-5)) << "eval y";
    EXPECT_TRUE(test::all_close(ISE.get(), ise, 1e-6, 1e-6)) << "eval invstd";
    if (with_dx) EXPECT_TRUE(test::all_close(DXE.get(), dxe, 1e-5, 1e-5)) << "eval dx";
    EXPECT_TRUE(test::all_close(DWE.get(), dwe, std::max(1e-5, 1e-6 * m), 1e-4)) << "eval dweight";
    EXPECT_TRUE(test::all_close(DBE.get(), dbe, std::max(1e-5, 1e-6 * m), 1e-4)) << "eval dbias";
    for (const View* v : {&Y, &M, &IS, &DX, &DW, &DB, &RM, &RV, &NBT, &YE, &ISE, &DXE, &DWE, &DBE})
      EXPECT_TRUE(v->guards_intact());
    cudaFree(ws);
    ++run;
    persistent_runs += persistent && batchnorm_persistent_grid(s, false) > 0;
    if (O.failed(nm.str())) break;
  }
  std::printf("batch norm%s: %d configs (%d could take the persistent kernel)\n",
              long_channels ? " (long channels)" : "", run, persistent_runs);
}

TEST(RandomShapesGpu, BatchNormMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  bn_random(4000 + seed_base(), cases(120), false);
}

TEST(RandomShapesGpu, BatchNormWideMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  bn_random(4700 + seed_base(), cases(20), false, true);
}

TEST(RandomShapesGpu, BatchNormLongChannelsMatchReference) {
  KILN_SKIP_WITHOUT_GPU();
  bn_random(4500 + seed_base(), cases(30), true);
}

// ---- group norm
// ----------------------------------------------------------------------------------
TEST(RandomShapesGpu, GroupNormMatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
  test::SeededInts d(5000 + seed_base());
  const int total = cases(120);
  struct Restore {
    ~Restore() { groupnorm_set_cached(true); }
  } restore;
  int run = 0, planes = 0;
  for (int i = 0; i < total; ++i) {
    NormShape s;
    s.n = d(1, 6), s.c = d(0, 1) ? d(1, 12) : d(1, 64);
    s.hw = d(0, 2) == 0 ? 1 : d(0, 1) ? 4 * d(1, 40) : d(1, 150);
    std::vector<int> divisors;
    for (int g = 1; g <= s.c; ++g)
      if (s.c % g == 0) divisors.push_back(g);
    s.groups = divisors[size_t(d(0, int(divisors.size()) - 1))];
    if ((s.c / s.groups) * s.hw < 2) {  // one value per group: the layer refuses it
      --i;
      continue;
    }
    const bool cached = d(0, 1);
    Offsets O(d);
    std::ostringstream nm;
    nm << "gn n=" << s.n << " c=" << s.c << " hw=" << s.hw << " groups=" << s.groups
       << (cached ? " cached" : "") << " off=" << O.off << (O.mixed ? " mixed" : "")
       << (groupnorm_splits_planes(s) ? " (planes path)" : "");
    SCOPED_TRACE(nm.str());
    groupnorm_set_cached(cached);
    const size_t n = s.numel(), c = s.c, st = s.n * s.groups;
    auto x = random_vec(n, 9 * i + 1, -2, 4), w = random_vec(c, 9 * i + 2, 0.5, 1.5);
    auto b = random_vec(c, 9 * i + 3), dy = random_vec(n, 9 * i + 4);
    std::vector<float> y(n), mean(st), is(st), dx(n), dw(c), db(c);
    groupnorm_fwd_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(), 1e-5,
                             s);
    groupnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                             dw.data(), db.data(), s, nullptr);
    View X(x, O()), W(w, O()), B(b, O()), DY(dy, O()), Y(n, O()), M(st, O()), IS(st, O()),
        DX(n, O()), DW(c, O()), DB(c, O());
    void* ws = dev_ws(groupnorm_workspace_bytes(s));
    groupnorm_fwd(X.p(), W.p(), B.p(), Y.p(), M.p(), IS.p(), 1e-5, s, ws, nullptr);
    const bool with_dx = d(0, 3) != 0;
    groupnorm_bwd(X.p(), DY.p(), W.p(), M.p(), IS.p(), with_dx ? DX.p() : nullptr, DW.p(), DB.p(),
                  s, ws, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const double m = static_cast<double>(s.n * s.hw);
    EXPECT_TRUE(test::all_close(Y.get(), y, 1e-5, 1e-4)) << "y";
    EXPECT_TRUE(test::all_close(M.get(), mean, 1e-5, 1e-5)) << "mean";
    EXPECT_TRUE(test::all_close(IS.get(), is, 1e-5, 1e-4)) << "invstd";
    if (with_dx) EXPECT_TRUE(test::all_close(DX.get(), dx, 1e-4, 1e-3)) << "dx";
    EXPECT_TRUE(test::all_close(DW.get(), dw, std::max(1e-5, 1e-6 * m), 1e-4)) << "dweight";
    EXPECT_TRUE(test::all_close(DB.get(), db, std::max(1e-5, 1e-6 * m), 1e-4)) << "dbias";
    for (const View* v : {&Y, &M, &IS, &DX, &DW, &DB}) EXPECT_TRUE(v->guards_intact());
    cudaFree(ws);
    ++run;
    planes += groupnorm_splits_planes(s);
    if (O.failed(nm.str())) break;
  }
  std::printf("group norm: %d configs (%d on the planes path)\n", run, planes);
}

// ---- dropout
// -------------------------------------------------------------------------------------
TEST(RandomShapesGpu, DropoutMasksBitIdenticalToCpu) {
  KILN_SKIP_WITHOUT_GPU();
  test::SeededInts d(6000 + seed_base());
  const int total = cases(200);
  for (int i = 0; i < total; ++i) {
    const DropoutShape s{d(1, 5), d(1, 20), d(0, 3) ? d(1, 300) : d(1, 4)};
    static const double ps[] = {0.0, 1e-6, 0.1, 0.25, 0.5, 0.9, 0.999999};
    const double p = d(0, 1) ? ps[d(0, 6)] : d(0, 1000) / 1001.0;
    const bool channel = d(0, 1), by_step = d(0, 2) == 0;
    const uint64_t seed = uint64_t(d(0, 1 << 30)), step = uint64_t(d(0, 1000)),
                   salt = uint64_t(d(0, 50));
    Offsets O(d);
    std::ostringstream nm;
    nm << "dropout n=" << s.n << " c=" << s.c << " hw=" << s.hw << " p=" << p
       << (channel ? " channel" : "") << (by_step ? " step_ptr" : "") << " off=" << O.off
       << (O.mixed ? " mixed" : "");
    SCOPED_TRACE(nm.str());
    DropoutParams prm{dropout_key(seed, step, salt), dropout_threshold(p),
                      static_cast<float>(1.0 / (1.0 - p)), channel};
    auto x = random_vec(s.numel(), 3 * i + 1, -2, 2);
    std::vector<float> y(x.size()), dx(x.size());
    DropoutParams host = prm, dev = prm;
    uint64_t host_step = step;
    Tensor step_dev;
    if (by_step) {
      host.key = dev.key = 12345;  // must be ignored
      host.seed = dev.seed = seed, host.salt = dev.salt = salt;
      host.step_ptr = &host_step;
      step_dev = Tensor::zeros({2}, Device::CUDA);
      copy_bytes(step_dev.data(), Device::CUDA, &step, Device::CPU, sizeof step);
      dev.step_ptr = reinterpret_cast<const uint64_t*>(step_dev.data());
    }
    dropout_fwd_ref<float>(x.data(), y.data(), host, s);
    dropout_bwd_ref<float>(x.data(), dx.data(), host, s);
    View X(x, O()), Y(s.numel(), O()), DX(s.numel(), O());
    dropout_fwd(X.p(), Y.p(), dev, s, nullptr);
    dropout_bwd(X.p(), DX.p(), dev, s, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_TRUE(test::bitwise_equal(Y.get(), y)) << "forward";
    EXPECT_TRUE(test::bitwise_equal(DX.get(), dx)) << "backward";
    EXPECT_TRUE(Y.guards_intact());
    EXPECT_TRUE(DX.guards_intact());
    if (by_step) {  // the reference with the derived key directly gives the same mask
      std::vector<float> y2(x.size());
      dropout_fwd_ref<float>(x.data(), y2.data(), prm, s);
      EXPECT_TRUE(test::bitwise_equal(y2, y)) << "step_ptr reference vs key";
    }
    if (O.failed(nm.str())) break;
  }
}

// ---- dense bias ops
// --------------------------------------------------------------------------------
TEST(RandomShapesGpu, DenseBiasOpsMatchReference) {
  KILN_SKIP_WITHOUT_GPU();
  test::SeededInts d(7000 + seed_base());
  const int total = cases(80);
  for (int i = 0; i < total; ++i) {
    const int64_t rows = d(0, 3) ? d(1, 70) : d(1, 3000), cols = d(0, 1) ? d(1, 9) : d(1, 300);
    Offsets O(d);
    SCOPED_TRACE("dense rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
                 " off=" + std::to_string(O.off) + (O.mixed ? " mixed" : ""));
    auto y0 = random_vec(rows * cols, 4 * i + 1), b = random_vec(cols, 4 * i + 2);
    auto a2 = random_vec(rows * cols, 4 * i + 3);
    auto y = y0;
    bias_add_ref<float>(y.data(), b.data(), rows, cols);
    std::vector<double> dbd(cols), s2d(cols), y0d = to_d(y0), a2d = to_d(a2);
    bias_grad_ref<double>(y0d.data(), dbd.data(), rows, cols);
    bias_grad_ref<double>(a2d.data(), s2d.data(), rows, cols);
    const std::vector<float> db = to_f(dbd), s2 = to_f(s2d);
    View Y(y0, O()), B(b, O()), A2(a2, O()), DB(cols, O()), SA(cols, O()), SB(cols, O());
    bias_grad(Y.p(), DB.p(), rows, cols, nullptr);
    column_sums(Y.p(), SA.p(), A2.p(), SB.p(), rows, cols, nullptr);
    bias_add(Y.p(), B.p(), rows, cols, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_TRUE(test::all_close(Y.get(), y, 1e-6, 1e-6)) << "bias_add";
    EXPECT_TRUE(test::all_close(DB.get(), db, 1e-4, 1e-5)) << "bias_grad";
    EXPECT_TRUE(test::all_close(SA.get(), db, 1e-4, 1e-5)) << "column_sums a";
    EXPECT_TRUE(test::all_close(SB.get(), s2, 1e-4, 1e-5)) << "column_sums b";
    for (const View* v : {&Y, &DB, &SA, &SB}) EXPECT_TRUE(v->guards_intact());
    if (::testing::Test::HasFailure()) break;
  }
}
#endif

}  // namespace
}  // namespace kiln
