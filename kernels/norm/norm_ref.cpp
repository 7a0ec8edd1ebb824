// CPU references for batch norm and group norm (float and double). Straightforward loops with
// double accumulation; the double instantiation is what the gradient checks differentiate.
#include <algorithm>
#include <climits>
#include <cmath>
#include <sstream>

#include "engine/error.h"
#include "engine/lanes.h"
#include "engine/parallel.h"
#include "kernels/activation/relu_rule.h"
#include "kernels/norm/norm.h"

namespace kiln {

namespace {
// Element (n, c, k) of an [n, c, hw] tensor.
inline int64_t at(const NormShape& s, int64_t n, int64_t c, int64_t k) {
  return (n * s.c + c) * s.hw + k;
}
}  // namespace

std::string norm_index_range_error(const NormShape& s) {
  // Compared by division: user-sized factors could overflow the int64 product itself.
  const int64_t lim = INT_MAX;
  // An empty batch fits (torch returns an empty tensor; batch norm's training refuses it
  // elsewhere: no statistics).
  const bool fits = s.n >= 0 && s.c > 0 && s.hw > 0 &&
                    (s.n == 0 || (s.c <= lim / s.n && s.hw <= lim / (s.n * s.c)));
  std::ostringstream os;
  // Batch norm's kernels also keep three coefficients per channel at [c], [C + c], [2C + c].
  if (fits && s.c > lim / 3) os << "3*C = 3*" << s.c << " = " << 3 * s.c << " exceeds 2^31-1";
  if (fits) return os.str();
  os << "N*C*HW = " << s.n << "*" << s.c << "*" << s.hw;
  if (s.n > 0 && s.c > 0 && s.hw > 0 && s.c <= INT64_MAX / s.n && s.hw <= INT64_MAX / (s.n * s.c))
    os << " = " << s.n * s.c * s.hw;
  os << " exceeds 2^31-1";
  return os.str();
}

int64_t batchnorm_splits(const NormShape& s) {
  const int64_t m = s.n * s.hw;
  return std::clamp<int64_t>((m + 8191) / 8192, 1, 64);
}

size_t batchnorm_workspace_bytes(const NormShape& s) {
  // per (channel, split): two double partial sums; per channel: three float dx coefficients
  return static_cast<size_t>(s.c * batchnorm_splits(s)) * 2 * sizeof(double) +
         static_cast<size_t>(s.c) * 3 * sizeof(float);
}

bool groupnorm_splits_planes(const NormShape& s) {
  return s.groups > 0 && s.n * s.groups < 128 && s.c / s.groups >= 2 && s.hw >= 32;
}

size_t groupnorm_workspace_bytes(const NormShape& s) {
  // per (sample, channel): dweight and dbias terms (float); with planes, also two double plane
  // sums and per (sample, group) two float dx coefficients
  size_t bytes = static_cast<size_t>(s.n * s.c) * 2 * sizeof(float);
  if (groupnorm_splits_planes(s))
    bytes += static_cast<size_t>(s.n * s.c) * 2 * sizeof(double) +
             static_cast<size_t>(s.n * s.groups) * 2 * sizeof(float);
  return bytes;
}

// ---- batch norm --------------------------------------------------------------------------------
template <typename T>
void batchnorm_fwd_train_ref(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                             T* save_invstd, T* running_mean, T* running_var,
                             T* num_batches_tracked, double momentum, double eps,
                             const NormShape& s, void* /*workspace*/, bool relu) {
  KILN_CHECK(s.n > 0, "batchnorm_fwd_train_ref: an empty batch (n=0) has no batch statistics");
  const double m = static_cast<double>(s.n * s.hw);
  parallel_for(
      s.c,
      [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          // (sums over Lanes, plane by plane: one dependent add per element was most of a
          // CPU epoch with batch norm)
          Lanes sum, sq_lanes;
          for (int64_t n = 0; n < s.n; ++n) {
            const T* xp = x + at(s, n, c, 0);
            sum.add(s.hw, [&](int64_t k) { return static_cast<double>(xp[k]); });
          }
          const double mean = sum.total() / m;
          for (int64_t n = 0; n < s.n; ++n) {
            const T* xp = x + at(s, n, c, 0);
            sq_lanes.add(s.hw, [&](int64_t k) {
              const double d = xp[k] - mean;
              return d * d;
            });
          }
          const double sq = sq_lanes.total();
          const double var = sq / m;
          const double invstd = 1.0 / std::sqrt(var + eps);
          const double w = weight[c], b = bias[c];
          for (int64_t n = 0; n < s.n; ++n)
            for (int64_t k = 0; k < s.hw; ++k) {
              int64_t i = at(s, n, c, k);
              const T v = static_cast<T>((x[i] - mean) * invstd * w + b);
              y[i] = relu ? relu_fwd(v) : v;
            }
          save_mean[c] = static_cast<T>(mean);
          save_invstd[c] = static_cast<T>(invstd);
          if (running_mean) {
            const double unbiased = m > 1 ? sq / (m - 1) : var;
            running_mean[c] = static_cast<T>((1 - momentum) * running_mean[c] + momentum * mean);
            running_var[c] = static_cast<T>((1 - momentum) * running_var[c] + momentum * unbiased);
          }
        }
      },
      row_grain(s.n * s.hw));
  if (num_batches_tracked) {  // [count mod 2^24, count / 2^24], as the CUDA kernel keeps it
    const T lo = num_batches_tracked[0] + T(1);
    num_batches_tracked[0] = lo < T(16777216) ? lo : T(0);
    if (lo >= T(16777216)) num_batches_tracked[1] += T(1);
  }
}

template <typename T>
void batchnorm_fwd_eval_ref(const T* x, const T* weight, const T* bias, const T* running_mean,
                            const T* running_var, T* y, double eps, const NormShape& s, bool relu) {
  parallel_for(
      s.c,
      [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const double scale = weight[c] / std::sqrt(static_cast<double>(running_var[c]) + eps);
          const double shift = bias[c] - running_mean[c] * scale;
          for (int64_t n = 0; n < s.n; ++n)
            for (int64_t k = 0; k < s.hw; ++k) {
              int64_t i = at(s, n, c, k);
              const T v = static_cast<T>(x[i] * scale + shift);
              y[i] = relu ? relu_fwd(v) : v;
            }
        }
      },
      row_grain(s.n * s.hw));
}

template <typename T>
void batchnorm_bwd_ref(const T* x, const T* dy, const T* weight, const T* mean, const T* invstd,
                       T* dx, T* dweight, T* dbias, bool train, const NormShape& s,
                       void* /*workspace*/, const T* relu_y) {
  const double m = static_cast<double>(s.n * s.hw);
  // dy behind the fused ReLU (kernels/activation/relu_rule.h)
  // (dy loaded first: a select, not a branch around the load)
  auto g_at = [&](int64_t i) {
    const T d = dy[i];
    return relu_y ? relu_bwd(relu_y[i], d) : d;
  };
  parallel_for(
      s.c,
      [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const double mu = mean[c], is = invstd[c], w = weight[c];
          Lanes sdy_lanes, sdyx_lanes;  // (as the forward's sums)
          for (int64_t n = 0; n < s.n; ++n) {
            const int64_t i0 = at(s, n, c, 0);
            sdy_lanes.add(s.hw, [&](int64_t k) { return static_cast<double>(g_at(i0 + k)); });
            sdyx_lanes.add(s.hw, [&](int64_t k) { return g_at(i0 + k) * (x[i0 + k] - mu) * is; });
          }
          const double sdy = sdy_lanes.total(), sdyx = sdyx_lanes.total();
          dweight[c] = static_cast<T>(sdyx);
          dbias[c] = static_cast<T>(sdy);
          if (!dx) continue;
          // dx = w*is*(g - (sdy + (x - mu)*is*sdyx)/m) in training through three per-channel
          // coefficients (a division per element was most of the pass); w*is*g in eval, which
          // reads no x (an inf or NaN in x stays out of dx, as on the GPU)
          const double a = w * is;
          if (!train) {
            for (int64_t n = 0; n < s.n; ++n) {
              const int64_t i0 = at(s, n, c, 0);
              for (int64_t k = 0; k < s.hw; ++k) dx[i0 + k] = static_cast<T>(a * g_at(i0 + k));
            }
            continue;
          }
          const double b = -a * is * sdyx / m, c0 = -a * sdy / m;
          for (int64_t n = 0; n < s.n; ++n) {
            const int64_t i0 = at(s, n, c, 0);
            for (int64_t k = 0; k < s.hw; ++k)
              dx[i0 + k] = static_cast<T>(a * g_at(i0 + k) + (b * (x[i0 + k] - mu) + c0));
          }
        }
      },
      row_grain(s.n * s.hw));
}

template <typename T>
void batchnorm_invstd_ref(const T* var, T* invstd, double eps, int64_t c) {
  for (int64_t i = 0; i < c; ++i)
    invstd[i] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(var[i]) + eps));
}

// ---- group norm --------------------------------------------------------------------------------
template <typename T>
void groupnorm_fwd_ref(const T* x, const T* weight, const T* bias, T* y, T* save_mean,
                       T* save_invstd, double eps, const NormShape& s) {
  const int64_t cpg = s.c / s.groups, len = cpg * s.hw;
  parallel_for(
      s.n * s.groups,
      [&](int64_t ng0, int64_t ng1) {
        for (int64_t ng = ng0; ng < ng1; ++ng) {
          const int64_t n = ng / s.groups, g = ng % s.groups;
          const int64_t base = (n * s.c + g * cpg) * s.hw;  // a group is contiguous in NCHW
          const T* xg = x + base;
          Lanes sum, sq;  // (as batch norm's)
          sum.add(len, [&](int64_t i) { return static_cast<double>(xg[i]); });
          const double mean = sum.total() / len;
          sq.add(len, [&](int64_t i) {
            const double d = xg[i] - mean;
            return d * d;
          });
          const double invstd = 1.0 / std::sqrt(sq.total() / len + eps);
          for (int64_t ci = 0; ci < cpg; ++ci) {  // (a channel a row: no division per element)
            const int64_t c = g * cpg + ci;
            const double w = weight[c], b = bias[c];
            for (int64_t k = 0; k < s.hw; ++k) {
              const int64_t i = base + ci * s.hw + k;
              y[i] = static_cast<T>((x[i] - mean) * invstd * w + b);
            }
          }
          save_mean[ng] = static_cast<T>(mean);
          save_invstd[ng] = static_cast<T>(invstd);
        }
      },
      row_grain(len));
}

template <typename T>
void groupnorm_bwd_ref(const T* x, const T* dy, const T* weight, const T* mean, const T* invstd,
                       T* dx, T* dweight, T* dbias, const NormShape& s, void* /*workspace*/) {
  const int64_t cpg = s.c / s.groups;
  const double len = static_cast<double>(cpg * s.hw);
  // dx: each (image, group) on its own; the parameter gradients: each channel over the images
  // in order. Both split over threads without changing a sum.
  if (dx)
    parallel_for(
        s.n * s.groups,
        [&](int64_t ng0, int64_t ng1) {
          for (int64_t ng = ng0; ng < ng1; ++ng) {
            const int64_t n = ng / s.groups, g = ng % s.groups;
            const double mu = mean[ng], is = invstd[ng];
            // sums over the group of dxhat = dy * weight and of dxhat * xhat
            Lanes sg_lanes, sgx_lanes;
            for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
              const int64_t i0 = at(s, n, c, 0);
              const double w = weight[c];
              sg_lanes.add(s.hw, [&](int64_t k) { return dy[i0 + k] * w; });
              sgx_lanes.add(s.hw,
                            [&](int64_t k) { return dy[i0 + k] * w * ((x[i0 + k] - mu) * is); });
            }
            const double sg = sg_lanes.total(), sgx = sgx_lanes.total();
            // dx = is*(dy*w - (sg + xhat*sgx)/len) through per-group coefficients (no division
            // per element)
            const double a = -is * sg / len, b = -is * is * sgx / len;
            for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
              const int64_t i0 = at(s, n, c, 0);
              const double iw = is * weight[c];
              for (int64_t k = 0; k < s.hw; ++k)
                dx[i0 + k] = static_cast<T>(iw * dy[i0 + k] + (b * (x[i0 + k] - mu) + a));
            }
          }
        },
        row_grain(cpg * s.hw));
  parallel_for(
      s.c,
      [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t g = c / cpg;
          Lanes dw, db;
          for (int64_t n = 0; n < s.n; ++n) {
            const double mu = mean[n * s.groups + g], is = invstd[n * s.groups + g];
            const int64_t i0 = at(s, n, c, 0);
            dw.add(s.hw, [&](int64_t k) { return dy[i0 + k] * ((x[i0 + k] - mu) * is); });
            db.add(s.hw, [&](int64_t k) { return static_cast<double>(dy[i0 + k]); });
          }
          dweight[c] = static_cast<T>(dw.total());
          dbias[c] = static_cast<T>(db.total());
        }
      },
      row_grain(s.n * s.hw));
}

#define KILN_NORM_INSTANTIATE(T)                                                                   \
  template void batchnorm_fwd_train_ref<T>(const T*, const T*, const T*, T*, T*, T*, T*, T*, T*,   \
                                           double, double, const NormShape&, void*, bool);         \
  template void batchnorm_fwd_eval_ref<T>(const T*, const T*, const T*, const T*, const T*, T*,    \
                                          double, const NormShape&, bool);                         \
  template void batchnorm_bwd_ref<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                     bool, const NormShape&, void*, const T*);                     \
  template void batchnorm_invstd_ref<T>(const T*, T*, double, int64_t);                            \
  template void groupnorm_fwd_ref<T>(const T*, const T*, const T*, T*, T*, T*, double,             \
                                     const NormShape&);                                            \
  template void groupnorm_bwd_ref<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                     const NormShape&, void*);
KILN_NORM_INSTANTIATE(float)
KILN_NORM_INSTANTIATE(double)

}  // namespace kiln
