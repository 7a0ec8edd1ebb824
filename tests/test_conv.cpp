// Convolution: the CPU reference against a naive direct convolution, double-precision gradient
// checks of dx, dw and db, Conv2d layer shape errors / parameters / receptive field, the cnn
// and cifar builders, and (with a GPU) the CUDA kernels against the reference over awkward
// shapes with poisoned outputs, plus cuDNN as a second oracle when it was found; the 32-bit
// index limit (shape-level rejection on CPU, the largest accepted batch on the GPU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/fast_div.h"
#include "engine/parallel.h"
#include "kernels/conv/conv.h"
#include "kernels/conv/conv_direct_cpu.h"
#include "layers/conv.h"
#include "layers/model.h"
#include "layers/models.h"
#include "tests/conv_shapes.h"
#include "tests/model_grads.h"
#include "tests/test_util.h"
#ifdef KILN_WITH_CUDA
#include "engine/cuda_check.h"
#endif
#if defined(KILN_WITH_CUDA) && defined(KILN_HAVE_CUDNN)
#include "kernels/conv/conv_cudnn.h"
#endif

namespace kiln {
namespace {

using test::conv_shape;
using NamedShape = test::NamedConvShape;

// The textbook definition, written independently of im2col.
std::vector<double> direct_conv(const ConvShape& s, const std::vector<double>& x,
                                const std::vector<double>& w, const std::vector<double>* b) {
  const int64_t P = s.p(), Q = s.q();
  std::vector<double> y(static_cast<size_t>(s.y_numel()));
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          double acc = b ? (*b)[k] : 0.0;
          for (int64_t c = 0; c < s.c; ++c)
            for (int64_t r = 0; r < s.kh; ++r)
              for (int64_t t = 0; t < s.kw; ++t) {
                int64_t hi = p * s.stride - s.pad + r, wi = q * s.stride - s.pad + t;
                if (hi < 0 || hi >= s.h || wi < 0 || wi >= s.w) continue;
                acc += x[((n * s.c + c) * s.h + hi) * s.w + wi] * w[((k * s.c + c) * s.kh + r) * s.kw + t];
              }
          y[((n * s.k + k) * P + p) * Q + q] = acc;
        }
  return y;
}

// Awkward shapes shared by the reference and GPU suites.
std::vector<NamedShape> awkward_shapes() {
  return {
      {"K3Pad0N1", conv_shape(1, 1, 7, 9, 3, 3, 3, 1, 0)},
      {"Stride2Pad1N1", conv_shape(1, 3, 9, 8, 5, 3, 3, 2, 1)},
      {"Pad2K5", conv_shape(2, 3, 11, 10, 6, 5, 5, 1, 2)},
      {"StrideGreaterThanKernel", conv_shape(2, 5, 10, 11, 7, 2, 2, 3, 0)},
      {"NonSquareKernel", conv_shape(2, 3, 8, 9, 4, 3, 2, 1, 1)},
      {"OneByOne", conv_shape(3, 7, 5, 6, 9, 1, 1, 1, 0)},
      {"OneByOneStride2", conv_shape(2, 6, 7, 7, 5, 1, 1, 2, 0)},
      {"OneByOnePad1", conv_shape(2, 5, 4, 6, 3, 1, 1, 1, 1)},  // 1x1 but not the 1x1 path
      {"OddChannels", conv_shape(1, 5, 4, 5, 7, 3, 3, 1, 1)},
  };
}

// The reference's im2col/col2im copy each row's valid column range in one go: add shapes whose
// windows lie wholly in the padding for some kernel rows/columns (1-pixel-high and -wide
// images, stride past the kernel with padding).
std::vector<NamedShape> ref_shapes() {
  auto v = awkward_shapes();
  v.push_back({"OneRowImagePad1", conv_shape(2, 2, 1, 7, 3, 3, 3, 1, 1)});
  v.push_back({"OneColumnImageStride2", conv_shape(1, 3, 6, 1, 2, 3, 3, 2, 1)});
  v.push_back({"Stride3Pad1K2", conv_shape(2, 2, 8, 7, 3, 2, 2, 3, 1)});
  // Nine images: the filter gradient sums groups of four, the last a single image.
  v.push_back({"NineImagesInThreeGroups", conv_shape(9, 2, 4, 5, 3, 3, 3, 1, 1)});
  return v;
}

// ---- CPU reference -----------------------------------------------------------------------------

// The kernels' division by launch-time divisors (engine/fast_div.h) against `/`: every
// divisor up to 4,096 and powers of two and their neighbours up to 2^31 - 1, each on its
// multiples' edges, the top of the range and seeded random dividends below 2^31.
TEST(FastDiv, EqualsIntegerDivisionBelowTwoTo31) {
  std::vector<int64_t> divisors;
  for (int64_t d = 1; d <= 4096; ++d) divisors.push_back(d);
  for (int b = 12; b <= 31; ++b)
    for (int64_t d : {(int64_t(1) << b) - 1, int64_t(1) << b, (int64_t(1) << b) + 1})
      if (d < (int64_t(1) << 31)) divisors.push_back(d);
  std::mt19937 rng(7);
  int64_t wrong = 0, checked = 0;
  for (int64_t d64 : divisors) {
    const int d = static_cast<int>(d64);
    const FastDiv f(d);
    std::vector<int64_t> ns = {0,
                               1,
                               d64 - 1,
                               d64,
                               d64 + 1,
                               2 * d64 - 1,
                               2 * d64,
                               (int64_t(1) << 31) - 1,
                               ((int64_t(1) << 31) - 1) / d64 * d64,
                               ((int64_t(1) << 31) - 1) / d64 * d64 - 1};
    for (int i = 0; i < 64; ++i) ns.push_back(int64_t(rng() & 0x7fffffffu));
    for (int64_t n : ns) {
      if (n < 0 || n >= (int64_t(1) << 31)) continue;
      ++checked;
      if (f.div(static_cast<int>(n)) != static_cast<int>(n / d64)) ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0) << "of " << checked;
}

TEST(ConvRef, ForwardMatchesDirectConvolution) {
  uint64_t seed = 1;
  for (const auto& [name, s, with_bias] : ref_shapes()) {
    auto x = test::random_vec<double>(s.x_numel(), seed++);
    auto w = test::random_vec<double>(s.w_numel(), seed++);
    auto b = test::random_vec<double>(s.k, seed++);
    auto want = direct_conv(s, x, w, &b);
    std::vector<double> got(want.size(), -7.0);
    conv2d_fwd_ref<double>(s, x.data(), w.data(), b.data(), got.data());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-12) << name << " [" << i << "]";
    // float instantiation agrees too, and without bias
    auto wantnb = direct_conv(s, x, w, nullptr);
    std::vector<float> xf(x.begin(), x.end()), wf(w.begin(), w.end()), yf(want.size());
    conv2d_fwd_ref<float>(s, xf.data(), wf.data(), nullptr, yf.data());
    std::vector<float> wantf(wantnb.begin(), wantnb.end());
    EXPECT_TRUE(test::all_close(yf, wantf, 1e-5, 1e-5)) << name;
  }
}

TEST(ConvRef, GradientsMatchCentralDifferences) {
  uint64_t seed = 100;
  for (const auto& [name, s, with_bias] : ref_shapes()) {
    SCOPED_TRACE(name);
    auto x = test::random_vec<double>(s.x_numel(), seed++);
    auto w = test::random_vec<double>(s.w_numel(), seed++);
    auto b = test::random_vec<double>(s.k, seed++);
    auto g = test::random_vec<double>(s.y_numel(), seed++);  // loss = sum g*y, so dy = g
    std::vector<double> y(g.size()), dx(x.size()), dw(w.size()), db(b.size());
    conv2d_bwd_data_ref<double>(s, g.data(), w.data(), dx.data());
    conv2d_bwd_filter_ref<double>(s, x.data(), g.data(), dw.data(), db.data());
    // C++17 lambdas cannot capture a structured binding (clang refuses; C++20 allows): capture
    // s by an init-capture.
    auto loss = [&, &s = s](const std::vector<double>& xx, const std::vector<double>& ww,
                            const std::vector<double>& bb) {
      conv2d_fwd_ref<double>(s, xx.data(), ww.data(), bb.data(), y.data());
      return test::dot(g, y);
    };
    EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(v, w, b); }, x, dx));
    EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(x, v, b); }, w, dw));
    EXPECT_TRUE(test::grad_check([&](const std::vector<double>& v) { return loss(x, w, v); }, b, db));
  }
}

TEST(ConvRef, BackwardFilterWithoutBiasLeavesBiasAlone) {
  ConvShape s = conv_shape(2, 3, 6, 6, 4, 3, 3, 1, 1);
  auto x = test::random_vec<float>(s.x_numel(), 7);
  auto g = test::random_vec<float>(s.y_numel(), 8);
  std::vector<float> dw(s.w_numel(), 99.0f), dw2(s.w_numel()), db(s.k);
  conv2d_bwd_filter_ref<float>(s, x.data(), g.data(), dw.data(), nullptr);
  conv2d_bwd_filter_ref<float>(s, x.data(), g.data(), dw2.data(), db.data());
  EXPECT_TRUE(test::all_close(dw, dw2, 0, 0));  // overwritten, not accumulated
}

// The bias gradient of a large plane is its double sum rounded once: the reference summed each
// image's plane in float, which stalls at 2^24 (2^24 + 2^22 ones summed to 2^24) and drifts
// well before, as the global average pool did.
TEST(ConvRef, BiasGradientOfALargePlaneIsTheRoundedSum) {
  const int64_t big = (int64_t{1} << 24) + (int64_t{1} << 22);
  ConvShape s = conv_shape(1, 1, 4096, big / 4096, 1, 1, 1, 1, 0);
  std::vector<float> x(static_cast<size_t>(big), 0.f), ones(static_cast<size_t>(big), 1.f);
  std::vector<float> dw(1), db(1, std::numeric_limits<float>::quiet_NaN());
  conv2d_bwd_filter_ref<float>(s, x.data(), ones.data(), dw.data(), db.data());
  EXPECT_EQ(db[0], static_cast<float>(big));
  s = conv_shape(1, 1, 1000, 1000, 1, 1, 1, 1, 0);
  const auto dy = test::random_vec<float>(1000000, 43, 10, 11);
  double sum = 0;
  for (float v : dy) sum += v;
  conv2d_bwd_filter_ref<float>(s, x.data(), dy.data(), dw.data(), db.data());
  EXPECT_EQ(db[0], static_cast<float>(sum));
}

// The reference splits images over threads (engine/parallel.h) and sums the filter gradient
// over fixed groups of images: every output is bit-identical whatever the thread count, also
// for batches that leave threads without work or groups part-filled, with the fused ReLU's
// masked gradient and a bias.
template <typename T>
void expect_same_bits_for_any_thread_count(uint64_t seed) {
  const std::vector<ConvShape> shapes = {
      conv_shape(1, 3, 7, 6, 4, 3, 3, 1, 1), conv_shape(7, 2, 6, 6, 5, 3, 3, 1, 0),
      conv_shape(33, 3, 5, 5, 4, 3, 3, 2, 1), conv_shape(70, 2, 4, 4, 3, 1, 1, 1, 0),
      conv_shape(70, 1, 6, 6, 2, 3, 3, 1, 1)};
  for (const ConvShape& s : shapes) {
    SCOPED_TRACE("n " + std::to_string(s.n) + " c " + std::to_string(s.c) + " kh " +
                 std::to_string(s.kh));
    auto x = test::random_vec<T>(s.x_numel(), seed++);
    auto w = test::random_vec<T>(s.w_numel(), seed++);
    auto b = test::random_vec<T>(s.k, seed++);
    auto dy = test::random_vec<T>(s.y_numel(), seed++);
    struct Out {
      std::vector<T> y, dx, dw, db, dx_masked, dw_masked;
    };
    auto run = [&](int threads) {
      test::ThreadCount tc(threads);
      const T poison = std::numeric_limits<T>::quiet_NaN();
      Out o{std::vector<T>(s.y_numel(), poison), std::vector<T>(s.x_numel(), poison),
            std::vector<T>(s.w_numel(), poison), std::vector<T>(s.k, poison),
            std::vector<T>(s.x_numel(), poison), std::vector<T>(s.w_numel(), poison)};
      conv2d_fwd_ref<T>(s, x.data(), w.data(), b.data(), o.y.data(), true);
      conv2d_bwd_data_ref<T>(s, dy.data(), w.data(), o.dx.data());
      conv2d_bwd_filter_ref<T>(s, x.data(), dy.data(), o.dw.data(), o.db.data());
      conv2d_bwd_data_ref<T>(s, dy.data(), w.data(), o.dx_masked.data(), o.y.data());
      conv2d_bwd_filter_ref<T>(s, x.data(), dy.data(), o.dw_masked.data(), nullptr, o.y.data());
      return o;
    };
    const Out one = run(1);
    for (const auto* v : {&one.y, &one.dx, &one.dw, &one.db, &one.dx_masked, &one.dw_masked})
      for (T t : *v) ASSERT_TRUE(std::isfinite(t));  // every output written
    for (int threads : {2, 3, 5, 16}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      const Out o = run(threads);
      EXPECT_TRUE(test::bitwise_equal(o.y, one.y));
      EXPECT_TRUE(test::bitwise_equal(o.dx, one.dx));
      EXPECT_TRUE(test::bitwise_equal(o.dw, one.dw));
      EXPECT_TRUE(test::bitwise_equal(o.db, one.db));
      EXPECT_TRUE(test::bitwise_equal(o.dx_masked, one.dx_masked));
      EXPECT_TRUE(test::bitwise_equal(o.dw_masked, one.dw_masked));
    }
  }
}

TEST(ConvRef, ThreadCountDoesNotChangeABit) {
  expect_same_bits_for_any_thread_count<float>(300);
  expect_same_bits_for_any_thread_count<double>(400);
}

// ---- the float references' direct path (conv_direct_cpu.cpp) ------------------------------------

std::vector<double> as_double(const std::vector<float>& v, bool absolute = false) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) d[i] = absolute ? std::fabs(double(v[i])) : double(v[i]);
  return d;
}

// |got - want| <= rel * bound element by element, bound being the same computation over absolute
// values (the sum of |terms|, the scale of float rounding). NaN (an unwritten element of a
// poisoned buffer) fails.
::testing::AssertionResult within_rounding(const std::vector<float>& got,
                                           const std::vector<double>& want,
                                           const std::vector<double>& bound, double rel) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= rel * bound[i] + 1e-30))
      return ::testing::AssertionFailure() << "element " << i << ": " << got[i] << " vs " << want[i]
                                           << " (bound " << bound[i] << ")";
  return ::testing::AssertionSuccess();
}

struct PathScope {  // one conv path for this scope
  explicit PathScope(const std::string& name) { set_conv_ref_path(name); }
  ~PathScope() { set_conv_ref_path(""); }
};

// The direct paths (instruction sets) this CPU runs.
std::vector<std::string> direct_paths() {
  std::vector<std::string> v = conv_ref_paths();
  v.pop_back();  // im2col, always last
  return v;
}

// 80 seeded random stride-1 shapes (kernels 1x2 to 5x5, padding below the kernel, 1 to 19
// channels each way for the tails of the channel tiles, planes from 1 position to 20 x 20 for
// tails of the position tiles) and 3 with other padding: the three passes on each direct path,
// with or without the fused ReLU's mask. The first path against the double reference; every other
// path gives its bits (the same float operations in the same order, in other registers);
// conv2d_*_ref<float> give the default path's bits (the filter gradient where the batch is one
// group of images), and on the im2col path are also within rounding.
TEST(ConvDirect, MatchesTheDoubleReferenceOnRandomShapes) {
  const std::vector<std::string> paths = direct_paths();
  if (paths.empty()) GTEST_SKIP() << "this CPU has neither AVX-512F nor AVX2 + FMA";
  ASSERT_EQ(conv_ref_path(), paths[0]);  // the default: the best
  test::SeededInts ri(77);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    ConvShape s;
    bool relu;
  };
  std::vector<Case> cases;
  for (int i = 0; i < 80; ++i) {
    const int64_t kh = ri(1, 5), kw = ri(kh == 1 ? 2 : 1, 5),
                  pad = ri(0, int(std::min(kh, kw)) - 1);
    const int64_t ih = ri(int(std::max<int64_t>(1, kh - 2 * pad)), 20);
    const int64_t iw = ri(int(std::max<int64_t>(1, kw - 2 * pad)), 20);
    const ConvShape s = conv_shape(ri(1, 5), ri(1, 19), ih, iw, ri(1, 19), kh, kw, 1, pad);
    cases.push_back({s, ri(0, 1) == 1});
  }
  // and padding the random ones leave out: a 1x1 kernel with padding (not the 1x1 GEMM), and
  // padding up to and past the kernel (the forward and filter gradient direct, backward-data not)
  cases.push_back({conv_shape(2, 3, 7, 6, 5, 1, 1, 1, 1), true});
  cases.push_back({conv_shape(2, 4, 5, 6, 3, 3, 2, 1, 2), false});
  cases.push_back({conv_shape(1, 2, 4, 4, 9, 3, 3, 1, 3), true});
  for (size_t i = 0; i < cases.size(); ++i) {
    const ConvShape& s = cases[i].s;
    const bool relu = cases[i].relu;
    const int64_t kh = s.kh, kw = s.kw, pad = s.pad, ih = s.h, iw = s.w;
    const bool data_direct = pad <= kh - 1 && pad <= kw - 1;
    SCOPED_TRACE("shape " + std::to_string(i) + ": n " + std::to_string(s.n) + " c " +
                 std::to_string(s.c) + " " + std::to_string(ih) + "x" + std::to_string(iw) + " k " +
                 std::to_string(s.k) + " kernel " + std::to_string(kh) + "x" + std::to_string(kw) +
                 " pad " + std::to_string(pad) + (relu ? " relu" : ""));
    const uint64_t seed = 1000 + 10 * static_cast<uint64_t>(i);
    // Any order of summing t float products is within (t + 2) * 2^-24 of the sum of their
    // magnitudes (the last 2: the final rounding and the bias): a dropped term of average size is
    // 1/t of it, some 2^24 / t^2 times the bound (twice at the largest filter gradient possible
    // here, 5 * 24 * 24 terms).
    const auto rel = [](int64_t terms) { return double(terms + 2) / 16777216.0; };
    const double y_rel = rel(s.c * kh * kw), dx_rel = rel(s.k * kh * kw),
                 dw_rel = rel(s.n * s.p() * s.q());
    const auto x = test::random_vec<float>(s.x_numel(), seed),
               w = test::random_vec<float>(s.w_numel(), seed + 1);
    const auto b = test::random_vec<float>(s.k, seed + 2),
               dy = test::random_vec<float>(s.y_numel(), seed + 3);
    const auto ry = test::random_vec<float>(s.y_numel(), seed + 4);  // about half <= 0
    const float* mask = relu ? ry.data() : nullptr;
    const std::vector<double> ryd = as_double(ry);
    const double* mask_d = relu ? ryd.data() : nullptr;
    const auto xd = as_double(x), wd = as_double(w), bd = as_double(b), dyd = as_double(dy);
    const auto xa = as_double(x, true), wa = as_double(w, true), ba = as_double(b, true),
               dya = as_double(dy, true);

    // the double reference, and the sums of magnitudes that bound float rounding
    std::vector<double> y_want(s.y_numel()), y_bound(s.y_numel()), dx_want(s.x_numel()),
        dx_bound(s.x_numel()), dw_want(s.w_numel()), dw_bound(s.w_numel());
    conv2d_fwd_ref<double>(s, xd.data(), wd.data(), bd.data(), y_want.data(), relu);
    conv2d_fwd_ref<double>(s, xa.data(), wa.data(), ba.data(), y_bound.data());
    conv2d_bwd_data_ref<double>(s, dyd.data(), wd.data(), dx_want.data(), mask_d);
    conv2d_bwd_data_ref<double>(s, dya.data(), wa.data(), dx_bound.data(), mask_d);
    conv2d_bwd_filter_ref<double>(s, xd.data(), dyd.data(), dw_want.data(), nullptr, mask_d);
    conv2d_bwd_filter_ref<double>(s, xa.data(), dya.data(), dw_bound.data(), nullptr, mask_d);

    struct Out {
      std::vector<float> y, dx, dw;
    };
    auto run = [&](const std::string& path, bool direct) {
      PathScope scope(path);
      Out o{std::vector<float>(s.y_numel(), nan), std::vector<float>(s.x_numel(), nan),
            std::vector<float>(s.w_numel(), nan)};
      if (direct) {
        EXPECT_TRUE(conv_direct::forward(s, x.data(), w.data(), b.data(), o.y.data(), relu));
        EXPECT_EQ(conv_direct::backward_data(s, dy.data(), w.data(), o.dx.data(), mask),
                  data_direct);
        if (!data_direct) conv2d_bwd_data_ref<float>(s, dy.data(), w.data(), o.dx.data(), mask);
        const conv_direct::Isa* isa = conv_direct::filter_isa(s);
        EXPECT_NE(isa, nullptr);
        if (isa)
          conv_direct::backward_filter_group(isa, s, x.data(), dy.data(), mask, 0, s.n,
                                             o.dw.data());
      } else {
        EXPECT_EQ(conv_direct::filter_isa(s) != nullptr, path != "im2col");
        conv2d_fwd_ref<float>(s, x.data(), w.data(), b.data(), o.y.data(), relu);
        conv2d_bwd_data_ref<float>(s, dy.data(), w.data(), o.dx.data(), mask);
        conv2d_bwd_filter_ref<float>(s, x.data(), dy.data(), o.dw.data(), nullptr, mask);
      }
      return o;
    };
    const Out first = run(paths[0], true);
    EXPECT_TRUE(within_rounding(first.y, y_want, y_bound, y_rel)) << "forward, " << paths[0];
    EXPECT_TRUE(within_rounding(first.dx, dx_want, dx_bound, dx_rel))
        << "backward-data, " << paths[0];
    EXPECT_TRUE(within_rounding(first.dw, dw_want, dw_bound, dw_rel))
        << "backward-filter, " << paths[0];
    for (size_t p = 1; p < paths.size(); ++p) {
      const Out o = run(paths[p], true);
      EXPECT_TRUE(test::bitwise_equal(o.y, first.y)) << "forward, " << paths[p];
      EXPECT_TRUE(test::bitwise_equal(o.dx, first.dx)) << "backward-data, " << paths[p];
      EXPECT_TRUE(test::bitwise_equal(o.dw, first.dw)) << "backward-filter, " << paths[p];
    }
    const Out by_ref = run("", false);
    EXPECT_TRUE(test::bitwise_equal(by_ref.y, first.y)) << "conv2d_fwd_ref<float>";
    EXPECT_TRUE(test::bitwise_equal(by_ref.dx, first.dx)) << "conv2d_bwd_data_ref<float>";
    if (s.n <= 4)  // one group of images (the reference adds groups of 4 afterwards)
      EXPECT_TRUE(test::bitwise_equal(by_ref.dw, first.dw)) << "conv2d_bwd_filter_ref<float>";
    else
      EXPECT_TRUE(within_rounding(by_ref.dw, dw_want, dw_bound, dw_rel))
          << "conv2d_bwd_filter_ref<float>";
    const Out im2col = run("im2col", false);
    EXPECT_TRUE(within_rounding(im2col.y, y_want, y_bound, y_rel)) << "forward, im2col";
    EXPECT_TRUE(within_rounding(im2col.dx, dx_want, dx_bound, dx_rel)) << "backward-data, im2col";
    EXPECT_TRUE(within_rounding(im2col.dw, dw_want, dw_bound, dw_rel)) << "backward-filter, im2col";
  }
}

// A non-finite input reaches the filter gradient's taps that multiply it and no others, on every
// path, as in the double reference (the CUDA kernels' rule): the direct sums also multiply dy's
// zeros past each row's end by the x there, so an Inf or NaN at a row's start or end made every
// tap NaN (until 2026-12-07; such a group is now summed again by im2col). With and without a
// bias gradient, one image group and several.
TEST(ConvDirect, AFilterGradientHasNaNOnlyWhereANonFiniteInputReaches) {
  const float inf = std::numeric_limits<float>::infinity(),
              nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    ConvShape s;
    int64_t at;  // the input element made non-finite
    float v;
  };
  const std::vector<Case> cases = {
      {conv_shape(1, 1, 5, 5, 1, 3, 3, 1, 1), 2 * 5 + 0, nan},  // a row's first column, pad 1
      {conv_shape(1, 1, 4, 4, 1, 3, 3, 1, 0), 1 * 4 + 3, inf},  // a row's last column, no pad
      {conv_shape(9, 3, 6, 7, 4, 3, 3, 1, 1), 5 * 126 + 2 * 42 + 3 * 7 + 6, -inf},  // image 5
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const ConvShape& s = cases[i].s;
    SCOPED_TRACE("case " + std::to_string(i));
    auto x = test::random_vec<float>(s.x_numel(), 500 + i);
    x[static_cast<size_t>(cases[i].at)] = cases[i].v;
    const auto dy = test::random_vec<float>(s.y_numel(), 600 + i);
    std::vector<double> want(s.w_numel()), want_b(s.k);
    conv2d_bwd_filter_ref<double>(s, as_double(x).data(), as_double(dy).data(), want.data(),
                                  want_b.data(), nullptr);
    int bad = 0;
    for (double v : want) bad += !std::isfinite(v);
    ASSERT_GT(bad, 0);
    ASSERT_LT(bad, s.w_numel());  // some taps never meet the element
    for (const std::string& path : conv_ref_paths())
      for (bool bias : {true, false}) {
        SCOPED_TRACE(path + (bias ? " with bias" : ""));
        PathScope scope(path);
        std::vector<float> dw(s.w_numel(), 7.f), db(s.k, 7.f);
        conv2d_bwd_filter_ref<float>(s, x.data(), dy.data(), dw.data(), bias ? db.data() : nullptr,
                                     nullptr);
        for (int64_t j = 0; j < s.w_numel(); ++j) {
          if (std::isnan(want[j])) {
            EXPECT_TRUE(std::isnan(dw[j])) << "tap " << j;
          } else if (std::isinf(want[j])) {
            EXPECT_EQ(double(dw[j]), want[j]) << "tap " << j;
          } else {
            EXPECT_NEAR(dw[j], want[j], 1e-4 * (1 + std::fabs(want[j]))) << "tap " << j;
          }
        }
        if (bias)
          for (int64_t k = 0; k < s.k; ++k)
            EXPECT_NEAR(db[k], want_b[k], 1e-4 * (1 + std::fabs(want_b[k])));
      }
  }
}

TEST(ConvDirect, PathsAreListedBestFirstAndChosenByName) {
  const std::vector<std::string> paths = conv_ref_paths();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.back(), "im2col");
  EXPECT_EQ(conv_ref_path(), paths.front());
  for (const std::string& p : paths) {
    PathScope scope(p);
    EXPECT_EQ(conv_ref_path(), p);
  }
  EXPECT_EQ(conv_ref_path(), paths.front());
  try {
    set_conv_ref_path("sse9");
    ADD_FAILURE() << "an unknown path was taken";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("'sse9'"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("im2col"), std::string::npos) << e.message();
  }
  EXPECT_EQ(conv_ref_path(), paths.front());
}

// What the direct path leaves to im2col: strides past 1, the 1x1/stride 1/pad 0 GEMM, and (for
// backward-data, whose flipped kernel would need a negative padding) padding past the kernel.
TEST(ConvDirect, LeavesStridesOneByOneAndWidePaddingToIm2col) {
  const ConvShape strided = conv_shape(2, 3, 9, 9, 4, 3, 3, 2, 1);
  const ConvShape one = conv_shape(2, 3, 9, 9, 4, 1, 1, 1, 0);
  const ConvShape wide = conv_shape(2, 3, 9, 9, 4, 3, 3, 1, 3);
  std::vector<float> x(2 * 3 * 9 * 9, 1.f), w(4 * 3 * 9, 1.f), y(2 * 4 * 15 * 15);
  for (const ConvShape& s : {strided, one}) {
    EXPECT_FALSE(conv_direct::forward(s, x.data(), w.data(), nullptr, y.data(), false));
    EXPECT_FALSE(conv_direct::backward_data(s, y.data(), w.data(), x.data(), nullptr));
    EXPECT_EQ(conv_direct::filter_isa(s), nullptr);
  }
  EXPECT_FALSE(conv_direct::backward_data(wide, y.data(), w.data(), x.data(), nullptr));
  EXPECT_EQ(conv_direct::forward(wide, x.data(), w.data(), nullptr, y.data(), false),
            conv_ref_path() != "im2col");
}

// ---- Conv2d layer ------------------------------------------------------------------------------

void expect_usage_error(Model& m, const std::vector<std::string>& fragments) {
  try {
    m.build(Device::CPU, 1);
    ADD_FAILURE() << "build did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    for (const auto& f : fragments) EXPECT_NE(e.message().find(f), std::string::npos) << e.message();
  }
}

TEST(ConvRef, EmptyBatchGivesZeroGradients) {
  // n = 0 (a direct caller's empty batch): dw and db are sums over no images, so zero; nothing
  // else is touched (dw was left as it was before).
  const ConvShape s = conv_shape(0, 3, 8, 8, 4, 3, 3, 1, 1);
  std::vector<double> dw(s.w_numel(), NAN), db(s.k, NAN), x(1, 0.0), dy(1, 0.0);
  conv2d_bwd_filter_ref<double>(s, x.data(), dy.data(), dw.data(), db.data());
  EXPECT_EQ(dw, std::vector<double>(dw.size(), 0.0));
  EXPECT_EQ(db, std::vector<double>(db.size(), 0.0));
}

TEST(ConvGpuEmpty, EmptyBatchLaunchesNothingAndZeroesGradients) {
  // n = 0: a grid of zero blocks is a launch error on a device and the split plan divided by
  // zero; forward and backward-data have nothing to write, dw and db are zero.
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  for (const ConvShape& s :
       {conv_shape(0, 3, 8, 8, 4, 3, 3, 1, 1), conv_shape(0, 5, 7, 7, 6, 1, 1, 1, 0)}) {
    Tensor X = test::poisoned({1}, Device::CUDA), G = test::poisoned({1}, Device::CUDA);
    Tensor Wt = test::poisoned({s.w_numel()}, Device::CUDA),
           B = test::poisoned({s.k}, Device::CUDA);
    Tensor Y = test::poisoned({1}, Device::CUDA), DX = test::poisoned({1}, Device::CUDA);
    Tensor DW = test::poisoned({s.w_numel()}, Device::CUDA),
           DB = test::poisoned({s.k}, Device::CUDA);
    EXPECT_EQ(conv2d_bwd_filter_workspace(s), 0u);
    conv2d_fwd(s, X.data(), Wt.data(), B.data(), Y.data(), nullptr);
    conv2d_bwd_data(s, G.data(), Wt.data(), DX.data(), nullptr);
    conv2d_bwd_filter(s, X.data(), G.data(), DW.data(), DB.data(), nullptr, nullptr);
    EXPECT_TRUE(test::all_close(DW.to_vector(), std::vector<float>(s.w_numel(), 0.f), 0, 0));
    EXPECT_TRUE(test::all_close(DB.to_vector(), std::vector<float>(s.k, 0.f), 0, 0));
    EXPECT_TRUE(std::isnan(Y.to_vector()[0]) && std::isnan(DX.to_vector()[0]))
        << "wrote past an empty output";
  }
#endif
}

TEST(Conv2dLayer, InputSmallerThanKernelNamesLayerAndShapes) {
  Model m({8, 4, 4});
  m.add(std::make_unique<Conv2d>(8, 8, 3));
  m.add(std::make_unique<Conv2d>(8, 16, 3));  // input [8, 2, 2]
  expect_usage_error(m, {"layer 1 (Conv2d(8->16, k3 s1 p0))", "[8, 2, 2]", "3x3"});
}

TEST(Conv2dLayer, ChannelMismatchNamesBothShapes) {
  Model m({1, 28, 28});
  m.add(std::make_unique<Conv2d>(3, 8, 3, 1, 1));
  expect_usage_error(m, {"layer 0 (Conv2d(3->8, k3 s1 p1))", "[3, H, W]", "[1, 28, 28]"});
}

TEST(ConvIndexRange, ProductsPastTwoTo31Minus64AreRejectedByName) {
  // Realistic large shapes fit; the limit is inclusive at 2^31-64 (a 64-wide tile past the last
  // column still fits an int).
  EXPECT_EQ(conv_index_range_error(conv_shape(256, 64, 224, 224, 64, 3, 3, 1, 1)), "");
  EXPECT_EQ(conv_index_range_error(conv_shape(kConvIndexLimit / 64, 1, 1, 64, 1, 3, 3, 1, 1)), "");
  EXPECT_EQ(conv_index_range_error(conv_shape(kConvIndexLimit / 64 + 1, 1, 1, 64, 1, 3, 3, 1, 1)),
            "input N*C*H*W = 33554432*1*1*64 = 2147483648 exceeds 2^31-64");
  // The output is the larger tensor (and bounds N*P*Q, the forward GEMM's long axis).
  EXPECT_EQ(conv_index_range_error(conv_shape(32, 1, 1024, 1024, 64, 3, 3, 1, 1)),
            "output N*K*P*Q = 32*64*1024*1024 = 2147483648 exceeds 2^31-64");
  EXPECT_EQ(conv_index_range_error(conv_shape(1, 70000, 1, 1, 40000, 1, 1, 1, 0)),
            "weight K*C*kh*kw = 40000*70000*1*1 = 2800000000 exceeds 2^31-64");
  // Products that overflow int64 itself are still caught.
  EXPECT_EQ(conv_index_range_error(conv_shape(1000000, 1000000, 1000000, 1000000, 1, 1, 1, 1, 0)),
            "input N*C*H*W = 1000000*1000000*1000000*1000000 = more than 2^63 exceeds 2^31-64");
  // Window coordinates: a huge padding with a stride that keeps the output at 1x1.
  const std::string pad = conv_index_range_error(conv_shape(1, 1, 1, 1, 1, 3, 3, int64_t(1) << 32, int64_t(1) << 30));
  EXPECT_NE(pad.find("padded input 1+2*1073741824"), std::string::npos) << pad;
  // Channels past the grid's y extent (65535 tiles of 64).
  const std::string ch = conv_index_range_error(conv_shape(1, 1, 1, 1, kConvMaxChannels + 1, 1, 1, 1, 0));
  EXPECT_NE(ch.find("K = 4194241"), std::string::npos) << ch;
}

// Shapes no layer builds are refused by every reference and launcher too (pooling's
// PoolShapeCheck for conv): a window larger than the image gave a positive output size through
// C++'s division (the reference wrote y for a 2x2 image under a 3x3 kernel at stride 2), a
// negative one a std::length_error or zeros, a stride of 0 a division by zero.
TEST(ConvShapeCheck, UnsupportedShapesAreErrorsNamingTheFunction) {
  EXPECT_EQ(conv_shape_error(conv_shape(2, 3, 5, 5, 4, 3, 3, 2, 1)), "");
  EXPECT_EQ(conv_shape_error(conv_shape(0, 3, 5, 5, 4, 3, 3, 1, 0)), "");  // an empty batch
  EXPECT_EQ(conv_shape_error(conv_shape(1, 1, 1, 1, 1, 3, 3, 1, 1)), "");  // 1x1 image, padded
  EXPECT_FALSE(conv_shape(1, 1, 1, 1, 1, 1, 1, 1, 1).is_1x1()) << "padding is not the 1x1 path";
  const std::pair<ConvShape, const char*> bad[] = {
      {conv_shape(1, 1, 2, 2, 1, 3, 3, 2, 0), "window larger than the padded input"},
      {conv_shape(1, 1, 1, 1, 1, 3, 3, 1, 0), "window larger than the padded input"},
      {conv_shape(1, 1, 1, 5, 1, 3, 3, 1, 0), "window larger than the padded input"},
      {conv_shape(1, 1, 4, 4, 1, 3, 3, 0, 1), "kernel and stride must be >= 1, padding >= 0"},
      {conv_shape(1, 1, 4, 4, 1, 0, 3, 1, 0), "kernel and stride must be >= 1, padding >= 0"},
      {conv_shape(1, 1, 4, 4, 1, 3, 3, 1, -1), "kernel and stride must be >= 1, padding >= 0"},
      {conv_shape(1, 0, 4, 4, 1, 3, 3, 1, 0), "negative or empty dimensions"},
      {conv_shape(-1, 1, 4, 4, 1, 3, 3, 1, 0), "negative or empty dimensions"},
      {conv_shape(1, 1, 4, int64_t(1) << 40, 1, 3, 3, 1, 0), "a dimension past 2^31-64"}};
  std::vector<float> buf(64, 0.f);
  for (const auto& [s, why] : bad) {
    EXPECT_EQ(conv_shape_error(s), why);
    EXPECT_EQ(conv_index_range_error(s), why);  // the range check (layers, launchers) says why
    try {
      conv2d_fwd_ref<float>(s, buf.data(), buf.data(), nullptr, buf.data());
      ADD_FAILURE() << why << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Runtime);
      EXPECT_EQ(e.message().rfind("conv2d_fwd_ref: unsupported shape n=", 0), 0u) << e.message();
      EXPECT_NE(e.message().find(why), std::string::npos) << e.message();
    }
    EXPECT_THROW(conv2d_bwd_data_ref<float>(s, buf.data(), buf.data(), buf.data()), Error) << why;
    EXPECT_THROW(conv2d_bwd_filter_ref<float>(s, buf.data(), buf.data(), buf.data(), nullptr),
                 Error)
        << why;
#ifdef KILN_WITH_CUDA
    if (cuda_available()) {  // checked before any launch: nothing is touched
      EXPECT_THROW(conv2d_fwd(s, nullptr, nullptr, nullptr, nullptr, nullptr), Error) << why;
      EXPECT_THROW(conv2d_bwd_data(s, nullptr, nullptr, nullptr, nullptr), Error) << why;
      EXPECT_THROW(conv2d_bwd_filter(s, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr),
                   Error)
          << why;
      EXPECT_THROW(conv2d_bwd_filter_workspace(s), Error) << why;
    }
#endif
  }
}

TEST(Conv2dLayer, SamplePastIndexRangeIsUsageErrorAtSetup) {
  // Shape level only: build() fails in setup, before anything of the input's size exists.
  {
    Model m({1, 50000, 50000});
    m.add(std::make_unique<Conv2d>(1, 4, 3));
    expect_usage_error(m, {"layer 0 (Conv2d(1->4, k3 s1 p0))", "[1, 50000, 50000]",
                           "input N*C*H*W = 1*1*50000*50000 = 2500000000 exceeds 2^31-64"});
  }
  {
    Model m({1, 8000, 8000});  // the input fits, the 64-channel output does not
    m.add(std::make_unique<Conv2d>(1, 64, 3, 1, 1));
    expect_usage_error(m, {"layer 0 (Conv2d(1->64, k3 s1 p1))", "[1, 8000, 8000]",
                           "output N*K*P*Q = 1*64*8000*8000 = 4096000000 exceeds 2^31-64"});
  }
}

TEST(Conv2dLayer, ParametersInitAndReceptiveField) {
  Model m({3, 9, 9});
  m.add(std::make_unique<Conv2d>(3, 4, 3, 2, 1));
  m.add(std::make_unique<Conv2d>(4, 5, 3, 1, 0, /*bias=*/false, InitScheme::Default));
  m.build(Device::CPU, 3);
  ASSERT_EQ(m.param_refs().size(), 3u);
  EXPECT_EQ(m.param_refs()[0].name, "0.weight");
  EXPECT_EQ(m.param_refs()[1].name, "0.bias");
  EXPECT_EQ(m.param_refs()[2].name, "1.weight");
  EXPECT_EQ(m.param_refs()[0].param->shape, Shape({4, 3, 3, 3}));
  EXPECT_TRUE(m.param_refs()[0].param->decay);
  EXPECT_FALSE(m.param_refs()[1].param->decay);
  EXPECT_EQ(m.output_shape(), Shape({5, 3, 3}));
  const double bound = 1.0 / std::sqrt(27.0);
  for (float v : m.param_refs()[0].param->value.to_vector()) EXPECT_LE(std::fabs(v), bound);
  auto rows = m.summary();
  EXPECT_EQ(rows[0].rf.size, 3);
  EXPECT_EQ(rows[0].rf.jump, 2);
  EXPECT_EQ(rows[1].rf.size, 7);  // 3 + (3-1)*2
  EXPECT_EQ(m.num_params(), 4 * 27 + 4 + 5 * 36);
  EXPECT_FALSE(rows[1].rf.whole);
}

TEST(Model, SummaryMarksLayersThatSeeTheWholeInput) {
  // Flatten keeps each unit's window; the Linear after it mixes them all: "all" in the table,
  // for every layer from there on.
  ModelOptions o;
  o.model = "mlp";
  o.width = 8;
  o.depth = 1;
  auto m = make_model(o, {1, 28, 28}, 10);
  m->build(Device::CPU, 1);
  const auto rows = m->summary();
  ASSERT_EQ(rows.size(), 4u);  // Flatten Linear ReLU Linear
  EXPECT_FALSE(rows[0].rf.whole);
  EXPECT_EQ(rows[0].rf.size, 1);
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_TRUE(rows[i].rf.whole) << rows[i].description;
  const std::string table = m->summary_table();
  const size_t at = table.find("Linear(784 -> 8)");
  ASSERT_NE(at, std::string::npos) << table;
  const std::string row = table.substr(at, table.find('\n', at) - at);
  EXPECT_EQ(row.substr(row.size() - 15), "     all      1") << row;
}

TEST(Conv2dLayer, ForwardBackwardMatchReferenceOnCpu) {
  Model m({3, 7, 6});
  m.add(std::make_unique<Conv2d>(3, 4, 3, 1, 1));
  m.add(std::make_unique<Conv2d>(4, 2, 1));  // the 1x1 path
  m.build(Device::CPU, 5);
  Context ctx(Device::CPU);
  auto xv = test::random_vec<float>(2 * 3 * 7 * 6, 11);
  Tensor x = Tensor::from_vector(xv, {2, 3, 7, 6}, Device::CPU);
  Tensor y = m.forward(ctx, x);
  ASSERT_EQ(y.shape(), Shape({2, 2, 7, 6}));
  auto* c0 = static_cast<Conv2d*>(m.layers()[0]);
  auto* c1 = static_cast<Conv2d*>(m.layers()[1]);
  std::vector<float> h(2 * 4 * 42), want(2 * 2 * 42);
  auto p = m.param_refs();
  conv2d_fwd_ref<float>(c0->conv_shape(2), xv.data(), p[0].param->value.data(), p[1].param->value.data(), h.data());
  conv2d_fwd_ref<float>(c1->conv_shape(2), h.data(), p[2].param->value.data(), p[3].param->value.data(), want.data());
  EXPECT_TRUE(test::all_close(y.to_vector(), want, 0, 0));
  auto g = test::random_vec<float>(want.size(), 12);
  Tensor dx = m.backward(ctx, Tensor::from_vector(g, y.shape(), Device::CPU));
  EXPECT_FALSE(dx.defined());  // the first layer skips dx
  std::vector<float> dw1(p[2].param->value.numel()), db1(2);
  conv2d_bwd_filter_ref<float>(c1->conv_shape(2), h.data(), g.data(), dw1.data(), db1.data());
  EXPECT_TRUE(test::all_close(p[2].param->grad.to_vector(), dw1, 0, 0));
  EXPECT_TRUE(test::all_close(p[3].param->grad.to_vector(), db1, 0, 0));
}

// ---- model builders ----------------------------------------------------------------------------

TEST(CnnModel, UnderTwentyThousandParamsWithReceptiveFieldInSummary) {
  ModelOptions o;
  auto m = make_cnn(o, {1, 28, 28}, 10);
  m->build(Device::CPU, 1);
  EXPECT_LT(m->num_params(), 20000);
  EXPECT_GT(m->num_params(), 5000);
  EXPECT_EQ(m->output_shape(), Shape({10}));
  std::string t = m->summary_table();
  EXPECT_NE(t.find("RF"), std::string::npos);
  EXPECT_NE(t.find("MaxPool2d"), std::string::npos);
  // the pool comes right after the receptive field reaches 7
  auto rows = m->summary();
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i].description.find("MaxPool2d") == 0) EXPECT_EQ(rows[i - 1].rf.size, 7);
}

// --pool-after moves the maxpool through the fixed 7-conv plan: the parameter count never
// changes, the pool follows exactly pool_after conv layers, the receptive field before it grows
// with the position, and out-of-range values or inputs too small for a position are usage errors.
TEST(CnnModel, PoolAfterMovesThePoolNotTheParameters) {
  const int want_rf[8] = {1, 3, 5, 7, 7, 9, 11, 13};
  for (int k = 0; k <= 7; ++k) {
    ModelOptions o;
    o.pool_after = k;
    auto m = make_cnn(o, {1, 28, 28}, 10);
    m->build(Device::CPU, 1);
    EXPECT_EQ(m->num_params(), 17354) << "pool_after " << k;
    auto rows = m->summary();
    int convs = 0, pools = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].description.find("MaxPool2d") == 0) {
        ++pools;
        EXPECT_EQ(convs, k);
        EXPECT_EQ(i == 0 ? 1 : rows[i - 1].rf.size, want_rf[k]) << "pool_after " << k;
      }
      if (rows[i].description.find("Conv2d") == 0) ++convs;
    }
    EXPECT_EQ(pools, 1);
    EXPECT_EQ(convs, 8);  // 7 + the 1x1 to the classes
    Context ctx(Device::CPU);
    Tensor y = m->forward(ctx, Tensor::from_vector(test::random_vec<float>(784, k), {1, 1, 28, 28}, Device::CPU));
    EXPECT_EQ(y.shape(), Shape({1, 10}));
  }
  ModelOptions bad;
  bad.pool_after = 8;
  EXPECT_THROW(make_model(bad, {1, 28, 28}, 10), Error);
  ModelOptions early;
  early.pool_after = 0;  // 20x20 pooled first leaves 10 -> ... -> 0 after six 3x3 convs
  try {
    make_cnn(early, {1, 20, 20}, 10)->build(Device::CPU, 1);
    ADD_FAILURE() << "no error for a map that shrinks to nothing";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.message();
  }
}

TEST(CnnModel, CifarBuildsAndRuns) {
  ModelOptions o;
  o.model = "cifar";
  auto m = make_cifar(o, {3, 32, 32}, 10);
  m->build(Device::CPU, 1);
  EXPECT_EQ(m->output_shape(), Shape({10}));
  Context ctx(Device::CPU);
  Tensor y = m->forward(ctx, Tensor::from_vector(test::random_vec<float>(3 * 32 * 32, 4), {1, 3, 32, 32}, Device::CPU));
  for (float v : y.to_vector()) EXPECT_TRUE(std::isfinite(v));
}

// ---- GPU vs reference (and cuDNN) -------------------------------------------------------------

std::vector<NamedShape> gpu_shapes() {
  auto v = awkward_shapes();
  v.push_back({"Channels13to35", conv_shape(2, 13, 6, 7, 35, 3, 3, 1, 1)});
  v.push_back({"Channels33to65Pad1", conv_shape(2, 33, 9, 9, 65, 3, 3, 1, 1)});
  v.push_back({"Batch3Mnist28", conv_shape(3, 1, 28, 28, 8, 3, 3, 1, 0)});
  v.push_back({"K5Stride2Pad2", conv_shape(2, 4, 13, 12, 6, 5, 5, 2, 2)});
  v.push_back({"OneByOneWide", conv_shape(3, 40, 7, 9, 70, 1, 1, 1, 0)});
  // More than 64 GEMM rows: 128-row tiles (under ConvTiles::kWide; kAuto steps down at this
  // size), the second tile 2 rows deep; backward-data's 72 input channels likewise.
  v.push_back({"Rows130Stride2", conv_shape(2, 72, 9, 10, 130, 3, 3, 2, 1)});
  v.push_back({"OneByOneRows130", conv_shape(2, 70, 5, 6, 130, 1, 1, 1, 0)});
  v.push_back({"SplitKFilter", conv_shape(16, 8, 24, 24, 16, 3, 3, 1, 0)});
  v.push_back({"SplitKOneByOne", conv_shape(16, 16, 22, 22, 8, 1, 1, 1, 0)});
  // The bias gradient splits the images once n*P*Q passes 16384: 37 images in two splits of 19
  // and 18; 65 images of 64x64 in 22 splits of 3 (the last one 2).
  v.push_back({"BiasSplitUneven", conv_shape(37, 3, 26, 26, 5, 3, 3, 1, 0)});
  v.push_back({"BiasSplitMany", conv_shape(65, 1, 64, 64, 2, 1, 1, 1, 0)});
  // 1x1 with 17-32 output channels: the 32-row tiles of the channel GEMM and of the 1x1
  // backward-filter. C <= 16: one 16-deep forward slice, backward-data (16-row tiles) over 24
  // output channels prefetches; C in 17-32: forward and backward-data both run the 32-row
  // tile past one slice (the register prefetch).
  v.push_back({"OneByOneC12K24", conv_shape(2, 12, 5, 7, 24, 1, 1, 1, 0)});
  v.push_back({"OneByOneC20K24", conv_shape(2, 20, 6, 5, 24, 1, 1, 1, 0)});
  // Sixteen seeded random shapes on top of the chosen ones: combinations nobody listed
  // (non-square kernels with stride 3, padding on a 1-wide image, ...). Fixed seed: the same
  // shapes on every run and in every test name.
  const size_t fixed = v.size();
  test::SeededInts draw(2026);
  while (v.size() < fixed + 16) {
    ConvShape s = conv_shape(draw(1, 3), draw(1, 12), draw(1, 12), draw(1, 12), draw(1, 12), draw(1, 5),
                             draw(1, 5), draw(1, 3), draw(0, 2));
    if (s.h + 2 * s.pad < s.kh || s.w + 2 * s.pad < s.kw) continue;  // no output position
    if (2 * s.pad > std::min(s.kh, s.kw)) continue;  // padding past half the kernel: not a shape nets use
    auto d = [](int64_t x) { return std::to_string(x); };  // the name carries the shape
    v.push_back({"Random" + d(int64_t(v.size() - fixed)) + "_n" + d(s.n) + "c" + d(s.c) + "h" + d(s.h) + "w" +
                     d(s.w) + "k" + d(s.k) + "_" + d(s.kh) + "x" + d(s.kw) + "s" + d(s.stride) + "p" + d(s.pad),
                 s});
  }
  return v;
}

// Reference results in double, returned as float.
struct RefResults {
  std::vector<float> y, dx, dw, db;
};
RefResults reference(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& b, const std::vector<float>& g) {
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), bd(b.begin(), b.end()),
      gd(g.begin(), g.end()), y(s.y_numel()), dx(s.x_numel()), dw(s.w_numel()), db(s.k);
  conv2d_fwd_ref<double>(s, xd.data(), wd.data(), bd.data(), y.data());
  conv2d_bwd_data_ref<double>(s, gd.data(), wd.data(), dx.data());
  conv2d_bwd_filter_ref<double>(s, xd.data(), gd.data(), dw.data(), db.data());
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  return {f(y), f(dx), f(dw), f(db)};
}

#ifdef KILN_WITH_CUDA
// One conv's inputs on the device; run() launches forward, backward-data and backward-filter
// into freshly poisoned outputs and returns them (db empty without bias: then the forward adds
// none and backward-filter computes no bias gradient).
struct ConvOnDevice {
  ConvShape s;
  Tensor x, w, b, g, ws;
  ConvOnDevice(const ConvShape& shape, const std::vector<float>& xv, const std::vector<float>& wv,
               const std::vector<float>& bv, const std::vector<float>& gv)
      : s(shape),
        x(Tensor::from_vector(xv, {s.x_numel()}, Device::CUDA)),
        w(Tensor::from_vector(wv, {s.w_numel()}, Device::CUDA)),
        b(Tensor::from_vector(bv, {s.k}, Device::CUDA)),
        g(Tensor::from_vector(gv, {s.y_numel()}, Device::CUDA)),
        ws(test::poisoned({std::max<int64_t>(1, int64_t(conv2d_bwd_filter_workspace(s)))},
                          Device::CUDA)) {}
  RefResults run(bool with_bias = true) const {
    Tensor Y = test::poisoned({s.y_numel()}, Device::CUDA),
           DX = test::poisoned({s.x_numel()}, Device::CUDA);
    Tensor DW = test::poisoned({s.w_numel()}, Device::CUDA),
           DB = test::poisoned({s.k}, Device::CUDA);
    conv2d_fwd(s, x.data(), w.data(), with_bias ? b.data() : nullptr, Y.data(), nullptr);
    conv2d_bwd_data(s, g.data(), w.data(), DX.data(), nullptr);
    conv2d_bwd_filter(s, x.data(), g.data(), DW.data(), with_bias ? DB.data() : nullptr, ws.data(),
                      nullptr);
    return {Y.to_vector(), DX.to_vector(), DW.to_vector(),
            with_bias ? DB.to_vector() : std::vector<float>{}};
  }
};

// got against want: forward and backward-data to 1e-4, the filter and bias gradients (longer
// sums) to 1e-3 relative; bit for bit when exact.
void expect_conv_results(const RefResults& got, const RefResults& want, bool exact,
                         const std::string& what) {
  const double rf = exact ? 0 : 1e-4, rw = exact ? 0 : 1e-3, a = exact ? 0 : 1e-4;
  EXPECT_TRUE(test::all_close(got.y, want.y, rf, a)) << what << ": forward";
  EXPECT_TRUE(test::all_close(got.dx, want.dx, rf, a)) << what << ": backward-data";
  EXPECT_TRUE(test::all_close(got.dw, want.dw, rw, a)) << what << ": backward-filter";
  EXPECT_TRUE(test::all_close(got.db, want.db, rw, a)) << what << ": bias";
}
#endif

class ConvGpu : public ::testing::TestWithParam<NamedShape> {};

TEST_P(ConvGpu, MatchesReference) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const ConvShape s = GetParam().s;
  auto x = test::random_vec<float>(s.x_numel(), 21), w = test::random_vec<float>(s.w_numel(), 22);
  auto b = test::random_vec<float>(s.k, 23), g = test::random_vec<float>(s.y_numel(), 24);
  RefResults want = reference(s, x, w, b, g);
  const ConvOnDevice dev(s, x, w, b, g);
  const RefResults got = dev.run();
  expect_conv_results(got, want, false, "reference");
  // without bias: forward adds nothing, dw is bit-identical (deterministic)
  RefResults nobias = dev.run(false);
  int64_t pq = s.p() * s.q();
  for (size_t i = 0; i < nobias.y.size(); ++i) nobias.y[i] += b[(i / pq) % s.k];
  EXPECT_TRUE(test::all_close(nobias.y, got.y, 1e-5, 1e-5)) << "forward without bias";
  EXPECT_TRUE(test::all_close(nobias.dw, got.dw, 0, 0)) << "backward-filter not deterministic";
  // The other tile choices give the same bits (each output is one thread's sum in reduction
  // order whatever the tile): the 64 x 64 tiles of before, the largest the shape allows, and
  // the most rows at 64 columns.
  struct Restore {
    ~Restore() { conv_set_tiles(ConvTiles::kAuto); }
  } restore;
  for (ConvTiles t : {ConvTiles::kSmall, ConvTiles::kWide, ConvTiles::kTall}) {
    conv_set_tiles(t);
    expect_conv_results(dev.run(), got, true, conv_tile_plan(s));
  }
#endif
}

#ifdef KILN_WITH_CUDA
// The tile choice is host arithmetic (no launch, no GPU needed): 128 x 128 tiles where the
// grid keeps 256 blocks, stepping down (columns, then rows) where it would not.
TEST(ConvTilePlan, WideTilesOnlyWhereTheGridStaysFull) {
  struct Restore {
    ~Restore() { conv_set_tiles(ConvTiles::kAuto); }
  } restore;
  conv_set_tiles(ConvTiles::kAuto);
  const ConvShape c512 = conv_shape(512, 128, 8, 8, 128, 3, 3, 1, 1);  // cifar's last conv
  const ConvShape c128 = conv_shape(128, 128, 8, 8, 128, 3, 3, 1, 1);
  EXPECT_EQ(conv_tile_plan(c512), "fwd 128x128, bwd_data 128x128, bwd_filter 128x64 x 15 splits");
  EXPECT_EQ(conv_tile_plan(c128), "fwd 64x64, bwd_data 64x64, bwd_filter 128x64 x 15 splits");
  // 8 output rows, 86,528 columns: one 16-row tile, 128 wide (676 blocks)
  EXPECT_EQ(conv_tile_plan(conv_shape(128, 1, 28, 28, 8, 3, 3, 1, 0)),
            "fwd 16x128, bwd_data 16x128, bwd_filter 16x64 x 169 splits");
  EXPECT_EQ(conv_tile_plan(conv_shape(128, 16, 24, 24, 8, 1, 1, 1, 0)),
            "fwd 16x128, bwd_data 16x128, bwd_filter 16x64 x 144 splits (1x1)");
  EXPECT_EQ(conv_tiles(), ConvTiles::kAuto);
  conv_set_tiles(ConvTiles::kSmall);
  EXPECT_EQ(conv_tile_plan(c512), "fwd 64x64, bwd_data 64x64, bwd_filter 64x64 x 15 splits");
  conv_set_tiles(ConvTiles::kWide);
  EXPECT_EQ(conv_tile_plan(c128), "fwd 128x128, bwd_data 128x128, bwd_filter 128x64 x 15 splits");
  conv_set_tiles(ConvTiles::kTall);
  EXPECT_EQ(conv_tile_plan(c512), "fwd 128x64, bwd_data 128x64, bwd_filter 128x64 x 15 splits");
  // kAuto between the two: 24,576 columns make 192 blocks of 128 x 128, 384 of 128 x 64
  conv_set_tiles(ConvTiles::kAuto);
  EXPECT_EQ(conv_tile_plan(conv_shape(384, 128, 8, 8, 128, 3, 3, 1, 1)),
            "fwd 128x64, bwd_data 128x64, bwd_filter 128x64 x 15 splits");
}
#endif

#if defined(KILN_WITH_CUDA) && defined(KILN_HAVE_CUDNN)
TEST_P(ConvGpu, MatchesCudnn) {
  KILN_SKIP_WITHOUT_GPU();
  const ConvShape s = GetParam().s;
  auto x = test::random_vec<float>(s.x_numel(), 31), w = test::random_vec<float>(s.w_numel(), 32);
  auto b = test::random_vec<float>(s.k, 33), g = test::random_vec<float>(s.y_numel(), 34);
  const ConvOnDevice dev(s, x, w, b, g);
  RefResults cudnn;
  {
    Tensor Y = test::poisoned({s.y_numel()}, Device::CUDA),
           DX = test::poisoned({s.x_numel()}, Device::CUDA);
    Tensor DW = test::poisoned({s.w_numel()}, Device::CUDA),
           DB = test::poisoned({s.k}, Device::CUDA);
    cudnn_conv::Conv ref(s, nullptr);
    ref.fwd(dev.x.data(), dev.w.data(), dev.b.data(), Y.data());
    ref.bwd_data(dev.g.data(), dev.w.data(), DX.data());
    ref.bwd_filter(dev.x.data(), dev.g.data(), DW.data(), DB.data());
    cudnn = {Y.to_vector(), DX.to_vector(), DW.to_vector(), DB.to_vector()};
  }
  expect_conv_results(dev.run(), cudnn, false, "cuDNN");
}
#endif

INSTANTIATE_TEST_SUITE_P(Shapes, ConvGpu, ::testing::ValuesIn(gpu_shapes()),
                         [](const ::testing::TestParamInfo<NamedShape>& i) { return i.param.name; });

TEST(ConvLimitGpu, LargestBatchAtIndexLimitMatchesReference) {
  // N*P*Q = N*H*W = 2^31-64 exactly (1-row images of 64, 3x3, pad 1): the last forward tile
  // ends at the limit, backward-filter's 512 split chunks end at 2^31 (rbeg + chunk overflowed
  // an int before), the bias gradient's 64 image splits end at the last image. x and dy are zero
  // except in the last 2^17 images, so the reference on those images alone is the whole answer. 4 x
  // 8 GiB on the device.
  KILN_SKIP_WITHOUT_GPU();
  KILN_SKIP_ON_EMULATOR("4 x 8 GiB");
#ifdef KILN_WITH_CUDA
  const ConvShape s = conv_shape(kConvIndexLimit / 64, 1, 1, 64, 1, 3, 3, 1, 1);
  ASSERT_EQ(s.y_numel(), kConvIndexLimit);
  ASSERT_EQ(conv_index_range_error(s), "");
  const int64_t tail_n = int64_t(1) << 17, total = s.x_numel(), tail = tail_n * 64, off = total - tail;
  const ConvShape ts = conv_shape(tail_n, 1, 1, 64, 1, 3, 3, 1, 1);
  auto xt = test::random_vec<float>(tail, 31), gt = test::random_vec<float>(tail, 32);
  auto w = test::random_vec<float>(9, 33), b = test::random_vec<float>(1, 34);
  RefResults want = reference(ts, xt, w, b, gt);
  Tensor X = Tensor::zeros({total}, Device::CUDA), G = Tensor::zeros({total}, Device::CUDA);
  copy_bytes(X.data() + off, Device::CUDA, xt.data(), Device::CPU, tail * sizeof(float));
  copy_bytes(G.data() + off, Device::CUDA, gt.data(), Device::CPU, tail * sizeof(float));
  Tensor Wt = Tensor::from_vector(w, {9}, Device::CUDA), B = Tensor::from_vector(b, {1}, Device::CUDA);
  Tensor Y = Tensor::empty({total}, Device::CUDA), DX = Tensor::empty({total}, Device::CUDA);
  KILN_CUDA_CHECK(cudaMemset(Y.data(), 0xff, Y.bytes()));  // NaN: unwritten elements show
  KILN_CUDA_CHECK(cudaMemset(DX.data(), 0xff, DX.bytes()));
  Tensor DW = test::poisoned({9}, Device::CUDA), DB = test::poisoned({1}, Device::CUDA);
  Tensor WS = test::poisoned({std::max<int64_t>(1, int64_t(conv2d_bwd_filter_workspace(s)))}, Device::CUDA);
  conv2d_fwd(s, X.data(), Wt.data(), B.data(), Y.data(), nullptr);
  conv2d_bwd_data(s, G.data(), Wt.data(), DX.data(), nullptr);
  conv2d_bwd_filter(s, X.data(), G.data(), DW.data(), DB.data(), WS.data(), nullptr);
  auto slice = [](const Tensor& t, int64_t from, int64_t n) {
    std::vector<float> v(n);
    copy_bytes(v.data(), Device::CPU, t.data() + from, Device::CUDA, n * sizeof(float));
    return v;
  };
  const int64_t before = 65536;  // zero input there: y = bias, dx = 0, and written
  EXPECT_TRUE(test::all_close(slice(Y, 0, before), std::vector<float>(before, b[0]), 0, 0)) << "forward head";
  EXPECT_TRUE(test::all_close(slice(Y, off - before, before), std::vector<float>(before, b[0]), 0, 0)) << "forward";
  EXPECT_TRUE(test::all_close(slice(Y, off, tail), want.y, 1e-4, 1e-4)) << "forward tail";
  EXPECT_TRUE(test::all_close(slice(DX, 0, before), std::vector<float>(before, 0.f), 0, 0)) << "backward-data head";
  EXPECT_TRUE(test::all_close(slice(DX, off - before, before), std::vector<float>(before, 0.f), 0, 0)) << "backward-data";
  EXPECT_TRUE(test::all_close(slice(DX, off, tail), want.dx, 1e-4, 1e-4)) << "backward-data tail";
  // sums of 8M products (values ~1e3): float accumulation error well under 1
  EXPECT_TRUE(test::all_close(DW.to_vector(), want.dw, 1.0, 1e-3)) << "backward-filter";
  EXPECT_TRUE(test::all_close(DB.to_vector(), want.db, 1.0, 1e-3)) << "bias";
#endif
}

// A stride past the padded image is one output position, whatever its size: the layer accepts
// any positive stride. 2^32 narrowed to 0 in the launchers' divisors (SIGFPE); 2^31 and
// 2^32+2 narrowed to a negative and a small stride; 9 is a plain stride past a 5x6 image.
TEST(ConvGpu, StridesPastThePaddedImageMatchReference) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const int64_t two31 = int64_t(1) << 31, two32 = int64_t(1) << 32;
  for (int64_t stride : {int64_t(9), two31, two32, two32 + 2}) {
    const ConvShape s = conv_shape(2, 3, 5, 6, 4, 3, 3, stride, 1);
    ASSERT_EQ(s.p() * s.q(), 1);
    ASSERT_EQ(conv_index_range_error(s), "");
    auto x = test::random_vec<float>(s.x_numel(), 41), w = test::random_vec<float>(s.w_numel(), 42);
    auto b = test::random_vec<float>(s.k, 43), g = test::random_vec<float>(s.y_numel(), 44);
    expect_conv_results(ConvOnDevice(s, x, w, b, g).run(), reference(s, x, w, b, g), false,
                        "stride " + std::to_string(stride));
  }
#endif
}

// The CUDA bias gradient sums in double too: two 512 x 512 planes of 0.1 (two image splits, so
// the combine kernel adds them) give the reference's bits, 2^19 * 0.1f rounded once (a float sum
// per thread was 1e-5 off).
TEST(ConvGpu, BiasGradientOfALargePlaneIsTheRoundedSum) {
  KILN_SKIP_WITHOUT_GPU();
#ifdef KILN_WITH_CUDA
  const ConvShape s = conv_shape(2, 1, 512, 512, 1, 1, 1, 1, 0);
  const std::vector<float> x(static_cast<size_t>(s.x_numel()), 0.f), w(1, 0.5f), b(1, 0.f);
  const std::vector<float> g(static_cast<size_t>(s.y_numel()), 0.1f);
  const RefResults want = reference(s, x, w, b, g);
  ASSERT_EQ(want.db[0], static_cast<float>(524288 * static_cast<double>(0.1f)));
  EXPECT_EQ(ConvOnDevice(s, x, w, b, g).run().db, want.db);
#endif
}

TEST(Conv2dLayerGpu, ModelForwardBackwardMatchCpu) {
  KILN_SKIP_WITHOUT_GPU();
  // the same model, same seed, on both devices: outputs and every gradient agree
  auto run = [](Device d, std::vector<float>* out, std::vector<float>* grads) {
    Model m({3, 11, 10});
    m.add(std::make_unique<Conv2d>(3, 6, 3, 2, 1));
    m.add(std::make_unique<Conv2d>(6, 5, 1));
    m.add(std::make_unique<Conv2d>(5, 4, 3, 1, 0, false, InitScheme::KaimingUniform));
    m.build(d, 9);
    test::forward_backward(m, d, {2, 3, 11, 10}, 41, out, grads);
  };
  std::vector<float> yc, gc, yg, gg;
  run(Device::CPU, &yc, &gc);
  run(Device::CUDA, &yg, &gg);
  EXPECT_TRUE(test::all_close(yg, yc, 1e-4, 1e-4));
  EXPECT_TRUE(test::all_close(gg, gc, 1e-3, 1e-4));
}

}  // namespace
}  // namespace kiln
