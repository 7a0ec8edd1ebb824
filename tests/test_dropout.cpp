// Dropout: the CPU mask equals a re-derivation from the hash, the drop rate is p, kept values
// are scaled by 1/(1-p), eval and p=0 are the identity, backward applies the same mask, masks
// change with step and layer, Dropout2d drops whole planes; on a GPU the masks are bit-identical.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"
#include "layers/dropout.h"
#include "layers/model.h"
#include "test_util.h"

namespace kiln {
namespace {

using test::random_vec;

DropoutParams params(double p, uint64_t seed, uint64_t step, uint64_t salt, bool channel = false) {
  return {dropout_key(seed, step, salt), dropout_threshold(p), static_cast<float>(1.0 / (1.0 - p)),
          channel};
}

TEST(DropoutHash, ThresholdAndKeysBehave) {
  EXPECT_EQ(dropout_threshold(0.0), 0u);
  EXPECT_EQ(dropout_threshold(0.5), 0x80000000u);
  EXPECT_EQ(dropout_threshold(0.25), 0x40000000u);
  EXPECT_NE(dropout_key(1, 0, 0), dropout_key(1, 1, 0));
  EXPECT_NE(dropout_key(1, 0, 0), dropout_key(1, 0, 1));
  EXPECT_NE(dropout_key(1, 0, 0), dropout_key(2, 0, 0));
  EXPECT_NE(dropout_bits(7, 0), dropout_bits(7, 1));
  // threshold 0 keeps everything
  for (uint64_t i = 0; i < 1000; ++i) EXPECT_TRUE(dropout_keep(123, i, 0));
}

TEST(DropoutRef, MaskEqualsRederivationFromHash) {
  const DropoutShape s{3, 5, 7};
  const auto p = params(0.4, 99, 17, 3);
  auto x = random_vec(s.numel(), 1, 0.5, 1.5);  // nonzero, so a kept element is never 0
  std::vector<float> y(x.size());
  dropout_fwd_ref<float>(x.data(), y.data(), p, s);
  const uint64_t key = dropout_key(99, 17, 3);
  const uint32_t thr = static_cast<uint32_t>(0.4 * 4294967296.0);
  int dropped = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const bool keep = static_cast<uint32_t>(mix64(key + i * 0x9E3779B97F4A7C15ull) >> 32) >= thr;
    ASSERT_EQ(y[i], keep ? x[i] * p.scale : 0.0f) << "element " << i;
    dropped += !keep;
  }
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, static_cast<int>(x.size()));
}

// torch's dropout is input * mask * scale: a NaN or inf that is dropped becomes NaN, not 0, so a
// non-finite activation or gradient is not hidden behind a dropout layer.
TEST(DropoutRef, DroppedNonFiniteValuesStayNanAsTorch) {
  const DropoutShape s{2, 3, 50};
  const float nan = std::numeric_limits<float>::quiet_NaN(),
              inf = std::numeric_limits<float>::infinity();
  for (bool channel : {false, true}) {
    const auto p = params(0.5, 7, 1, 2, channel);
    auto x = random_vec(s.numel(), 5, -1, 1);
    for (size_t i = 0; i < x.size(); i += 3) x[i] = i % 2 ? nan : (i % 4 ? inf : -inf);
    std::vector<float> y(x.size());
    dropout_fwd_ref<float>(x.data(), y.data(), p, s);
    int dropped_nonfinite = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const uint64_t ctr = channel ? i / s.hw : i;
      const bool keep = dropout_keep(p.key, ctr, p.threshold);
      if (std::isfinite(x[i])) {
        EXPECT_EQ(y[i], keep ? x[i] * p.scale : 0.0f) << i;
      } else if (keep) {
        EXPECT_TRUE(std::isnan(x[i]) ? std::isnan(y[i]) : y[i] == x[i]) << i;
      } else {
        EXPECT_TRUE(std::isnan(y[i])) << i << ": dropped " << x[i] << " gave " << y[i];
        ++dropped_nonfinite;
      }
    }
    EXPECT_GT(dropped_nonfinite, 5) << "channel " << channel;
  }
}

TEST(DropoutRef, RateIsPAndKeptValuesScaled) {
  for (double prob : {0.1, 0.5, 0.9}) {
    const DropoutShape s{1, 1, 200000};
    const auto p = params(prob, 5, 1, 0);
    std::vector<float> x(s.numel(), 1.0f), y(x.size());
    dropout_fwd_ref<float>(x.data(), y.data(), p, s);
    size_t dropped = 0;
    for (float v : y) {
      if (v == 0.0f) ++dropped;
      else ASSERT_EQ(v, static_cast<float>(1.0 / (1.0 - prob)));
    }
    // binomial std sqrt(p(1-p)/n) <= 0.0012: 5 sigma
    EXPECT_NEAR(static_cast<double>(dropped) / y.size(), prob, 0.006) << "p " << prob;
  }
}

TEST(DropoutRef, ChannelwiseDropsWholePlanes) {
  const DropoutShape s{50, 40, 9};
  const auto p = params(0.3, 8, 2, 1, true);
  std::vector<float> x(s.numel(), 2.0f), y(x.size());
  dropout_fwd_ref<float>(x.data(), y.data(), p, s);
  size_t dropped = 0;
  for (int64_t plane = 0; plane < s.n * s.c; ++plane) {
    const bool keep = dropout_keep(p.key, plane, p.threshold);
    dropped += !keep;
    for (int64_t k = 0; k < s.hw; ++k)
      ASSERT_EQ(y[plane * s.hw + k], keep ? 2.0f * p.scale : 0.0f) << "plane " << plane;
  }
  EXPECT_NEAR(static_cast<double>(dropped) / (s.n * s.c), 0.3, 0.06);
}

// The mask loop is compiled for several instruction sets (AVX-512 and AVX2 on x86-64, and the
// build's own): each one this CPU runs must write exactly the hash's mask, bit for bit, for
// float and double, on runs that start and end anywhere (1 and 3 threads, odd lengths), with
// NaN and inf among the inputs; the default entry points use the first.
template <typename T>
void check_every_isa() {
  const auto isas = dropout_ref_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), "generic");
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  for (int64_t total : {1, 7, 16, 1000, 100003}) {
    const DropoutShape s{1, 1, total};
    const auto p = params(0.3, 11, static_cast<uint64_t>(total), 5);
    auto x = random_vec<T>(static_cast<size_t>(total), 21 + total, -2, 2);
    for (size_t i = 5; i < x.size(); i += 97) x[i] = i % 2 ? nan : inf;
    std::vector<T> want(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      want[i] = x[i] * (dropout_keep(p.key, i, p.threshold) ? static_cast<T>(p.scale) : T(0));
    for (int threads : {1, 3}) {
      test::ThreadCount tc(threads);
      for (const std::string& isa : isas) {
        std::vector<T> y(x.size(), T(-77));  // poisoned
        dropout_ref_isa<T>(isa, x.data(), y.data(), p, s);
        ASSERT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(T)), 0)
            << isa << ", " << total << " elements, " << threads << " threads";
      }
      std::vector<T> y(x.size(), T(-77));
      dropout_bwd_ref<T>(x.data(), y.data(), p, s);
      ASSERT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(T)), 0) << total;
    }
  }
}

TEST(DropoutRef, EveryInstructionSetWritesTheSameBits) {
  check_every_isa<float>();
  check_every_isa<double>();
  std::vector<float> x(4, 1.f), y(4);
  EXPECT_THROW(dropout_ref_isa<float>("sse9", x.data(), y.data(), params(0.5, 1, 1, 1), {1, 1, 4}),
               Error);
}

// Channel dropout draws once per plane, also where a thread's run of elements starts or ends
// inside a plane (3 threads: two runs of 35,024 and 35,025 elements over 7 planes of 10,007).
TEST(DropoutRef, ChannelRunsStartingInsideAPlaneKeepThePlanesMask) {
  const DropoutShape s{7, 1, 10007};
  const auto p = params(0.5, 4, 9, 2, true);
  auto x = random_vec(s.numel(), 6, 0.5, 1.5);
  for (int threads : {1, 3}) {
    test::ThreadCount tc(threads);
    std::vector<float> y(x.size(), -77.f);
    dropout_fwd_ref<float>(x.data(), y.data(), p, s);
    int kept = 0;
    for (int64_t plane = 0; plane < s.n; ++plane) {
      const bool keep = dropout_keep(p.key, plane, p.threshold);
      kept += keep;
      for (int64_t k = 0; k < s.hw; ++k) {
        const size_t i = static_cast<size_t>(plane * s.hw + k);
        ASSERT_EQ(y[i], x[i] * (keep ? p.scale : 0.f)) << "plane " << plane << ", " << threads;
      }
    }
    EXPECT_GT(kept, 0);
    EXPECT_LT(kept, s.n);
  }
}

TEST(DropoutLayer, EvalAndZeroPAreIdentityAndBackwardUsesSameMask) {
  Model m({4, 6, 6});
  auto& d = static_cast<Dropout&>(m.add(std::make_unique<Dropout>(0.5)));
  m.add(std::make_unique<Dropout>(0.0));
  m.build(Device::CPU, 1);
  Context ctx(Device::CPU, 1234);
  ctx.step = 9;
  auto xv = random_vec(2 * 144, 3, 0.5, 1.5);
  Tensor x = Tensor::from_vector(xv, {2, 4, 6, 6}, Device::CPU);
  ctx.training = false;
  EXPECT_EQ(m.forward(ctx, x).to_vector(), xv);
  ctx.training = true;
  auto y = m.forward(ctx, x).to_vector();
  // the layer's mask is the hash of (ctx.seed, ctx.step, its salt)
  std::vector<float> want(xv.size());
  dropout_fwd_ref<float>(xv.data(), want.data(), d.params_for(ctx), {2, 4, 36});
  EXPECT_EQ(y, want);
  auto dyv = random_vec(xv.size(), 4, 0.5, 1.5);
  d.need_dx = true;
  auto dx = d.backward(ctx, Tensor::from_vector(dyv, {2, 4, 6, 6}, Device::CPU)).to_vector();
  for (size_t i = 0; i < dx.size(); ++i)
    ASSERT_EQ(dx[i], y[i] == 0.0f ? 0.0f : dyv[i] * 2.0f) << i;
  // the next step draws a different mask
  ctx.step = 10;
  EXPECT_NE(m.forward(ctx, x).to_vector(), y);
}

TEST(DropoutLayer, TwoLayersDrawDifferentMasks) {
  Dropout a(0.5, false, 1), b(0.5, false, 2);
  Context ctx(Device::CPU, 7);
  EXPECT_NE(a.params_for(ctx).key, b.params_for(ctx).key);
}

TEST(DropoutLayer, POutsideRangeIsUsageErrorNamingLayer) {
  for (double p : {1.0, 1.5, -0.1}) {
    Model m({4});
    m.add(std::make_unique<Dropout>(p));
    try {
      m.build(Device::CPU, 1);
      FAIL() << "p " << p;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_NE(e.message().find("layer 0 (Dropout(p="), std::string::npos) << e.message();
    }
  }
  Model m({12});
  m.add(std::make_unique<Dropout2d>(0.2));
  EXPECT_THROW(m.build(Device::CPU, 1), Error);  // Dropout2d needs (C, H, W)
}

// ---- GPU: bit-identical masks ------------------------------------------------------------------
void gpu_matches_cpu(DropoutShape s, const DropoutParams& p, uint64_t seed) {
  auto x = random_vec(s.numel(), seed, -2, 2);
  std::vector<float> y(x.size()), dx(x.size());
  dropout_fwd_ref<float>(x.data(), y.data(), p, s);
  dropout_bwd_ref<float>(x.data(), dx.data(), p, s);
  Tensor gx = Tensor::from_vector(x, {s.numel()}, Device::CUDA);
  Tensor gy = test::poisoned({s.numel()}, Device::CUDA);
  Tensor gdx = test::poisoned({s.numel()}, Device::CUDA);
#ifdef KILN_WITH_CUDA
  dropout_fwd(gx.data(), gy.data(), p, s, nullptr);
  dropout_bwd(gx.data(), gdx.data(), p, s, nullptr);
#endif
  auto a = gy.to_vector(), b = gdx.to_vector();
  ASSERT_EQ(a.size(), y.size());
  // bit for bit: compare the representations
  EXPECT_EQ(std::memcmp(a.data(), y.data(), a.size() * sizeof(float)), 0)
      << test::all_close(a, y, 0, 0).message();
  EXPECT_EQ(std::memcmp(b.data(), dx.data(), b.size() * sizeof(float)), 0)
      << test::all_close(b, dx, 0, 0).message();
}

TEST(DropoutGpu, MasksBitIdenticalToCpu) {
  KILN_SKIP_WITHOUT_GPU();
  gpu_matches_cpu({128, 16, 784}, params(0.1, 1, 0, 4), 1);
  gpu_matches_cpu({1, 1, 1}, params(0.5, 2, 3, 4), 2);
  gpu_matches_cpu({3, 7, 13}, params(0.37, 3, 5, 6), 3);      // odd numel
  gpu_matches_cpu({1, 1, 1000003}, params(0.9, 4, 1, 2), 4);  // prime, large
}

// Non-finite inputs: NaN where the reference has NaN (a GPU's NaN bits may differ), the rest
// bit for bit.
TEST(DropoutGpu, NonFiniteValuesMatchCpu) {
  KILN_SKIP_WITHOUT_GPU();
  const float nan = std::numeric_limits<float>::quiet_NaN(),
              inf = std::numeric_limits<float>::infinity();
  for (bool channel : {false, true}) {
    const DropoutShape s{4, 3, 20};
    const auto p = params(0.5, 11, 2, 3, channel);
    auto x = random_vec(s.numel(), 9, -2, 2);
    for (size_t i = 0; i < x.size(); i += 5) x[i] = i % 2 ? nan : (i % 3 ? inf : -inf);
    std::vector<float> y(x.size());
    dropout_fwd_ref<float>(x.data(), y.data(), p, s);
    Tensor gx = Tensor::from_vector(x, {s.numel()}, Device::CUDA);
    Tensor gy = test::poisoned({s.numel()}, Device::CUDA);
#ifdef KILN_WITH_CUDA
    dropout_fwd(gx.data(), gy.data(), p, s, nullptr);
#endif
    auto a = gy.to_vector();
    ASSERT_EQ(a.size(), y.size());
    int nans = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (std::isnan(y[i])) {
        EXPECT_TRUE(std::isnan(a[i])) << i;
        ++nans;
      } else {
        EXPECT_EQ(std::memcmp(&a[i], &y[i], sizeof(float)), 0)
            << i << ": " << a[i] << " vs " << y[i];
      }
    }
    EXPECT_GT(nans, 5);
  }
}

TEST(DropoutGpu, ChannelMasksBitIdenticalToCpu) {
  KILN_SKIP_WITHOUT_GPU();
  gpu_matches_cpu({32, 16, 196}, params(0.2, 1, 7, 4, true), 5);
  gpu_matches_cpu({3, 5, 7}, params(0.5, 2, 3, 1, true), 6);  // odd plane size
  gpu_matches_cpu({2, 3, 1}, params(0.5, 2, 3, 1, true), 7);
}

TEST(DropoutGpu, UnalignedViewMatchesCpu) {
  KILN_SKIP_WITHOUT_GPU();
  // a view starting one float into a buffer: the kernel must not assume 16-byte alignment
  // (the scalar kernel), element-wise and channel-wise (whole planes of 47, odd, dropped)
  for (bool channel : {false, true}) {
    SCOPED_TRACE(channel ? "channel" : "element");
    const DropoutShape s = channel ? DropoutShape{3, 7, 47} : DropoutShape{1, 1, 1001};
    const auto p = params(channel ? 0.5 : 0.3, 9, 9, 9, channel);
    const size_t n = static_cast<size_t>(s.numel());
    auto x = random_vec(n + 1, 8);
    std::vector<float> y(n), dx(n);
    dropout_fwd_ref<float>(x.data() + 1, y.data(), p, s);
    dropout_bwd_ref<float>(x.data() + 1, dx.data(), p, s);
    Tensor gx = Tensor::from_vector(x, {int64_t(n + 1)}, Device::CUDA);
    Tensor gy = test::poisoned({int64_t(n + 1)}, Device::CUDA);
    Tensor gdx = test::poisoned({int64_t(n + 1)}, Device::CUDA);
#ifdef KILN_WITH_CUDA
    dropout_fwd(gx.data() + 1, gy.data() + 1, p, s, nullptr);
    dropout_bwd(gx.data() + 1, gdx.data() + 1, p, s, nullptr);
#endif
    auto a = gy.to_vector(), b = gdx.to_vector();
    EXPECT_TRUE(std::isnan(a[0]));  // nothing written before the view
    EXPECT_TRUE(std::isnan(b[0]));
    EXPECT_TRUE(test::all_close(std::vector<float>(a.begin() + 1, a.end()), y, 0, 0));
    EXPECT_TRUE(test::all_close(std::vector<float>(b.begin() + 1, b.end()), dx, 0, 0));
    if (channel) {  // the mask is per plane: some planes dropped whole, some kept whole
      int dropped = 0, kept = 0;
      for (int64_t pl = 0; pl < s.n * s.c; ++pl) {
        int zeros = 0;
        for (int64_t i = 0; i < s.hw; ++i) zeros += y[size_t(pl * s.hw + i)] == 0.0f;
        dropped += zeros == s.hw;
        kept += zeros == 0;
      }
      EXPECT_GT(dropped, 0);
      EXPECT_GT(kept, 0);
      EXPECT_EQ(dropped + kept, s.n * s.c);
    }
  }
}

TEST(DropoutGpu, LayersMatchCpuLayersForwardAndBackward) {
  KILN_SKIP_WITHOUT_GPU();
  auto build = [](Device d) {
    auto m = std::make_unique<Model>(Shape{6, 5, 5});
    m->add(std::make_unique<Dropout>(0.3));
    m->add(std::make_unique<Dropout2d>(0.4));
    m->build(d, 3);
    for (auto* l : m->layers()) l->need_dx = true;
    return m;
  };
  auto cpu = build(Device::CPU), gpu = build(Device::CUDA);
  Context cc(Device::CPU, 77), gc(Device::CUDA, 77);
  cc.step = gc.step = 12;
  auto xv = random_vec(3 * 150, 9);
  auto yc = cpu->forward(cc, Tensor::from_vector(xv, {3, 6, 5, 5}, Device::CPU)).to_vector();
  auto yg = gpu->forward(gc, Tensor::from_vector(xv, {3, 6, 5, 5}, Device::CUDA)).to_vector();
  EXPECT_TRUE(test::all_close(yg, yc, 0, 0));
  auto dc = cpu->backward(cc, Tensor::from_vector(xv, {3, 6, 5, 5}, Device::CPU)).to_vector();
  auto dg = gpu->backward(gc, Tensor::from_vector(xv, {3, 6, 5, 5}, Device::CUDA)).to_vector();
  EXPECT_TRUE(test::all_close(dg, dc, 0, 0));
}

// Zero elements (an empty batch): no zero-block grid is launched and nothing is written,
// element-wise and channel-wise.
TEST(DropoutGpuEmpty, EmptyBatchLaunchesNothing) {
  KILN_SKIP_WITHOUT_GPU();
  for (bool channel : {false, true}) {
    const DropoutShape s{0, 3, 5};
    const auto p = params(0.5, 1, 2, 3, channel);
    Tensor gx = test::poisoned({1}, Device::CUDA), gy = test::poisoned({1}, Device::CUDA),
           gdx = test::poisoned({1}, Device::CUDA);
#ifdef KILN_WITH_CUDA
    dropout_fwd(gx.data(), gy.data(), p, s, nullptr);
    dropout_bwd(gx.data(), gdx.data(), p, s, nullptr);
#endif
    EXPECT_TRUE(std::isnan(gy.to_vector()[0])) << channel;
    EXPECT_TRUE(std::isnan(gdx.to_vector()[0])) << channel;
  }
}

}  // namespace
}  // namespace kiln
