// Shared test helpers: seeded random inputs, poisoned outputs, GPU-vs-reference comparison that
// prints the first mismatches, central-difference gradient checks in double precision, and the
// skip used by every GPU test on a machine without a device.
#pragma once
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/device.h"
#include "engine/parallel.h"
#include "engine/tensor.h"

#define KILN_SKIP_WITHOUT_GPU()                                          \
  do {                                                                   \
    if (!::kiln::cuda_available()) GTEST_SKIP() << "no CUDA device answers"; \
  } while (0)

// A GPU test sized for a real device (gigabytes, or minutes of emulated threads) skips under the
// CUDA emulator (tests/cuda_emu, the `emu` preset); every other GPU test runs there.
#ifdef KILN_CUDA_EMU
#define KILN_SKIP_ON_EMULATOR(why) GTEST_SKIP() << "too large for the CUDA emulator: " << why
#else
#define KILN_SKIP_ON_EMULATOR(why) \
  do {                             \
  } while (0)
#endif

namespace kiln::test {

#ifdef KILN_TEST_DATA_DIR
// The real-MNIST subset: $KILN_TEST_DATA where set (a GPU bundle's run.sh points it at the
// bundle's copy: the build checkout's path does not exist on that machine), else this
// checkout's tests/data.
inline std::string data_dir() {
  const char* env = std::getenv("KILN_TEST_DATA");
  return env && *env ? env : KILN_TEST_DATA_DIR;
}
#endif

// A scratch file name in gtest's temp directory, unique to this process: two test runs at once
// (a build's ctest while another build's runs) must not write each other's files.
inline std::string temp_file(const std::string& name) {
  return ::testing::TempDir() + "kiln_" + std::to_string(::getpid()) + "_" + name;
}

// Removes the files it holds when the scope ends, an ASSERT's early return included.
struct RemoveAtExit {
  std::vector<std::string> paths;
  std::string add(const std::string& path) {
    paths.push_back(path);
    return path;
  }
  ~RemoveAtExit() {
    for (const std::string& p : paths) std::remove(p.c_str());
  }
};

// Runs `body` in a forked child, whose exit status is its result (0: passed; `codes` says what
// the others mean); `seconds` to end, a hang fails through SIGALRM.
inline void expect_child_passes(const std::function<int()>& body, const char* codes = "",
                                unsigned seconds = 20) {
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(seconds);
    ::_exit(body());
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << codes;
}

// Caps this process's address space (RLIMIT_AS) at what it maps now plus `slack` bytes, so an
// allocation past them fails; false when that cannot be set. For a child of
// expect_child_passes: the cap cannot be raised again.
inline bool cap_address_space(size_t slack) {
  long pages = 0;
  std::ifstream("/proc/self/statm") >> pages;
  const rlim_t cap =
      static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + slack;
  const rlimit lim{cap, cap};
  return pages > 0 && ::setrlimit(RLIMIT_AS, &lim) == 0;
}

// Sets an environment variable for a scope and restores its previous value (or its absence).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_.c_str(), old_.c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

// Fresh random values in [lo, hi); each test passes its own seed.
template <typename T = float>
std::vector<T> random_vec(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(g));
  return v;
}

// Integers in [lo, hi] from a seeded mt19937, for seeded random shapes: mt19937's output is fixed
// by the standard (uniform_int_distribution's is not), so the shapes and their test names are the
// same with every standard library.
struct SeededInts {
  std::mt19937 rng;
  explicit SeededInts(uint32_t seed) : rng(seed) {}
  int operator()(int lo, int hi) { return lo + static_cast<int>(rng() % static_cast<unsigned>(hi - lo + 1)); }
};

// A tensor on `device` filled with NaN, so any element a kernel fails to write shows up.
inline Tensor poisoned(const Shape& s, Device d) {
  std::vector<float> v(static_cast<size_t>(shape_numel(s)), std::numeric_limits<float>::quiet_NaN());
  return Tensor::from_vector(v, s, d);
}

// |got - want| <= atol + rtol*|want| element-wise; prints the first 10 mismatches.
inline ::testing::AssertionResult all_close(const std::vector<float>& got,
                                            const std::vector<float>& want, double atol,
                                            double rtol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  size_t bad = 0;
  std::string first;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    double g = got[i], w = want[i];
    double err = std::fabs(g - w);
    bool ok = std::isfinite(g) == std::isfinite(w) && (!std::isfinite(w) ? g == w : err <= atol + rtol * std::fabs(w));
    if (!ok) {
      if (bad < 10) first += "\n  [" + std::to_string(i) + "] got " + std::to_string(g) + " want " + std::to_string(w);
      ++bad;
    }
    if (std::isfinite(err)) worst = std::max(worst, err);
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << got.size()
                                       << " elements differ (max abs err " << worst << "):" << first;
}

// Sets the process-wide CPU thread count for a scope and restores the one before (earlier runs
// in this process may have set another: run_training applies --threads).
struct ThreadCount {
  explicit ThreadCount(int n) : before(num_threads()) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(before); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;
  const int before;
};

// The same bits in the same places (NaNs included); names the first element that differs.
template <typename T>
::testing::AssertionResult bitwise_equal(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0)
      return ::testing::AssertionFailure() << "[" << i << "] " << got[i] << " vs " << want[i];
  return ::testing::AssertionSuccess();
}

// Central-difference gradient check of a scalar function f(x) against an analytic gradient.
// Tolerance thr * max(|a|, |n|, 1), as in DESIGN.md. Inputs should avoid kinks.
inline ::testing::AssertionResult grad_check(const std::function<double(const std::vector<double>&)>& f,
                                             std::vector<double> x, const std::vector<double>& analytic,
                                             double h = 1e-6, double thr = 1e-6) {
  if (x.size() != analytic.size()) return ::testing::AssertionFailure() << "size mismatch";
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < x.size(); ++i) {
    double keep = x[i];
    x[i] = keep + h;
    double fp = f(x);
    x[i] = keep - h;
    double fm = f(x);
    x[i] = keep;
    double num = (fp - fm) / (2 * h);
    double a = analytic[i];
    double tol = thr * std::max({std::fabs(a), std::fabs(num), 1.0});
    if (!(std::fabs(a - num) <= tol)) {
      if (bad < 10) first += "\n  [" + std::to_string(i) + "] analytic " + std::to_string(a) + " numeric " + std::to_string(num);
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << x.size() << " gradients differ:" << first;
}

// sum_i w_i * y_i: a random linear functional turns an op's output into a scalar loss whose
// gradient wrt y is w, so backward can be checked with dy = w.
template <typename T>
double dot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

// Checkpoint editing for tests: a metadata value replaced, the checksums recomputed (a
// crafted file carries valid ones).
inline std::string hex(uint32_t c) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", c);
  return b;
}
inline std::string meta_crc_hex(std::vector<std::pair<std::string, std::string>> m) {
  std::sort(m.begin(), m.end());
  uint32_t c = 0;
  for (const auto& [k, v] : m) {
    if (k == "meta_crc32") continue;
    c = crc32(k.data(), k.size(), c);
    c = crc32("", 1, c);
    c = crc32(v.data(), v.size(), c);
    c = crc32("", 1, c);
  }
  return hex(c);
}
inline void set_meta(SafetensorsFile& f, const std::string& key, const std::string& value) {
  for (auto& [k, v] : f.metadata)
    if (k == key) v = value;
}
// Recomputes both checksums of a (version-2) checkpoint whose tensors were edited.
inline void reseal(SafetensorsFile& f) {
  std::vector<const StTensor*> ts;
  for (const auto& t : f.tensors) ts.push_back(&t);
  std::sort(ts.begin(), ts.end(),
            [](const StTensor* a, const StTensor* b) { return a->name < b->name; });
  uint32_t c = 0;
  for (const StTensor* t : ts) {
    std::string shape = "[";
    for (size_t i = 0; i < t->shape.size(); ++i)
      shape += (i ? "," : "") + std::to_string(t->shape[i]);
    const std::string head = t->name + '\0' + t->dtype + '\0' + shape + "]" + '\0';
    c = crc32(head.data(), head.size(), c);
    c = crc32(t->data.data(), t->data.size(), c);
  }
  set_meta(f, "data_crc32", hex(c));
  set_meta(f, "meta_crc32", meta_crc_hex(f.metadata));
}

}  // namespace kiln::test
