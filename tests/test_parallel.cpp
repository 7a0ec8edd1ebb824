// The CPU path's threads (engine/parallel.h): parallel_for covers its range once in contiguous
// pieces on several threads, falls back to the calling thread when nested or when another
// caller holds the pool, passes exceptions on, survives fork(); and training on the CPU gives
// the same bits whatever the thread count.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/parallel.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/hash.h"
#include "kernels/norm/norm.h"
#include "tests/test_util.h"
#include "tuning/run.h"

namespace kiln {
namespace {

using test::ThreadCount;

struct Piece {
  int64_t begin, end;
  std::thread::id who;
};

std::vector<Piece> pieces_of(int64_t n) {
  std::mutex m;
  std::vector<Piece> got;
  parallel_for(n, [&](int64_t b, int64_t e) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // the others get theirs
    std::lock_guard<std::mutex> lk(m);
    got.push_back({b, e, std::this_thread::get_id()});
  });
  std::sort(got.begin(), got.end(),
            [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
  return got;
}

TEST(Parallel, PiecesCoverTheRangeOnceOnSeveralThreads) {
  EXPECT_GE(available_cpus(), 1);
  for (int threads : {1, 2, 3, 7}) {
    ThreadCount tc(threads);
    EXPECT_EQ(num_threads(), threads);
    for (int64_t n : {1, 2, 5, 64, 1001}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + ", n " + std::to_string(n));
      auto got = pieces_of(n);
      ASSERT_EQ(got.size(), static_cast<size_t>(std::min<int64_t>(threads, n)));
      int64_t next = 0;
      std::set<std::thread::id> who;
      for (const auto& p : got) {
        EXPECT_EQ(p.begin, next);
        EXPECT_LT(p.begin, p.end);  // no empty piece
        next = p.end;
        who.insert(p.who);
      }
      EXPECT_EQ(next, n);
      EXPECT_EQ(who.size(), got.size());                     // each piece on a thread of its own
      EXPECT_EQ(who.count(std::this_thread::get_id()), 1u);  // the caller works too
    }
  }
  parallel_for(0, [](int64_t, int64_t) { FAIL() << "an empty range calls nothing"; });
}

// Each way the pool waits (it spins, then sleeps): a caller whose own piece is done at once waits
// past its spin for workers whose pieces sleep; workers that fell asleep in an idle gap are woken;
// a loop with fewer pieces leaves a worker out and the next loop still reaches it; the pool is
// replaced right after its last loop (ThreadCount's restore). Every index runs once.
TEST(Parallel, EveryWaitAndWakePathOfThePoolCompletes) {
  for (int round = 0; round < 30; ++round) {
    ThreadCount tc(3);
    for (int loop = 0; loop < 4; ++loop) {
      const int64_t n = loop % 2 ? 2 : 3;  // a worker left out every other loop
      std::vector<int> seen(3, 0);
      parallel_for(n, [&](int64_t b, int64_t e) {
        if (b > 0 && (round + loop) % 2 == 0)  // longer than the pool's spin (1 ms)
          std::this_thread::sleep_for(std::chrono::milliseconds(3));
        for (int64_t i = b; i < e; ++i) ++seen[static_cast<size_t>(i)];  // pieces disjoint
      });
      for (int64_t i = 0; i < 3; ++i)
        ASSERT_EQ(seen[static_cast<size_t>(i)], i < n ? 1 : 0) << round << " " << loop;
      if (loop == 1)
        std::this_thread::sleep_for(std::chrono::milliseconds(3));  // workers fall asleep
    }
  }
}

TEST(Parallel, NestedLoopsRunOnTheirPiecesThread) {
  ThreadCount tc(3);
  std::atomic<int> inner_pieces{0}, outer{0};
  std::atomic<bool> same_thread{true};
  parallel_for(3, [&](int64_t b, int64_t e) {
    outer += static_cast<int>(e - b);
    const auto me = std::this_thread::get_id();
    parallel_for(10, [&](int64_t ib, int64_t ie) {
      ++inner_pieces;
      if (ib != 0 || ie != 10 || std::this_thread::get_id() != me) same_thread = false;
    });
  });
  EXPECT_EQ(outer, 3);
  EXPECT_EQ(inner_pieces, 3);  // one whole-range piece per outer piece
  EXPECT_TRUE(same_thread);
}

TEST(Parallel, ConcurrentCallersEachGetTheirWholeRange) {
  ThreadCount tc(2);
  constexpr int kCallers = 4, kLoops = 200;
  std::vector<std::vector<int>> counts(kCallers, std::vector<int>(37, 0));
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      for (int l = 0; l < kLoops; ++l)
        parallel_for(37, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) ++counts[c][static_cast<size_t>(i)];  // pieces disjoint
        });
    });
  for (auto& t : callers) t.join();
  for (const auto& v : counts)
    for (int x : v) EXPECT_EQ(x, kLoops);
}

TEST(Parallel, TheFirstExceptionReachesTheCallerAfterEveryPiece) {
  ThreadCount tc(4);
  std::atomic<int> finished{0};
  try {
    parallel_for(4, [&](int64_t b, int64_t) {
      if (b == 2) throw std::runtime_error("piece 2 failed");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ++finished;
    });
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "piece 2 failed");
  }
  EXPECT_EQ(finished, 3);       // the other pieces ran to their end before the rethrow
  std::atomic<int64_t> sum{0};  // and the pool still works
  parallel_for(100, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum, 4950);
}

TEST(Parallel, CountsBelowOneAreErrors) {
  ThreadCount tc(2);
  EXPECT_THROW(set_num_threads(0), Error);
  EXPECT_THROW(set_num_threads(-3), Error);
  EXPECT_EQ(num_threads(), 2);
}

// The indices a parallel_for(n) covered and the threads its pieces ran on.
struct Coverage {
  int64_t covered = 0;
  size_t threads = 0;
};
Coverage cover(int64_t n) {
  Coverage c;
  std::set<std::thread::id> who;
  for (const Piece& p : pieces_of(n)) {
    c.covered += p.end - p.begin;
    who.insert(p.who);
  }
  c.threads = who.size();
  return c;
}

// The parent's workers do not exist in a child of fork(): waiting for them would hang.
TEST(Parallel, AForkedChildStartsThreadsOfItsOwn) {
  ThreadCount tc(3);
  ASSERT_EQ(cover(3).threads, 3u);  // the pool is up
  test::expect_child_passes([] {
    const Coverage c = cover(3);
    return c.covered == 3 && c.threads == 3 ? 0 : 1;
  });
}

// Another thread's loop holds the pool while this one forks: the child, which has neither
// that thread nor the workers, still gets threads of its own and can change the count.
// The fork waits until both pieces run, the worker's too: a thread still starting up may hold
// a lock of the C library's or a sanitizer's thread bookkeeping, which the child would then never
// get (ASan's hung the child's thread creation here, once in ~1000 runs under load).
TEST(Parallel, AForkWhileAnotherThreadsLoopRunsLeavesTheChildAPoolOfItsOwn) {
  ThreadCount tc(2);
  std::atomic<int> inside{0};
  std::atomic<bool> release{false};
  std::thread busy([&] {
    parallel_for(2, [&](int64_t, int64_t) {
      ++inside;
      while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  });
  while (inside < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  test::expect_child_passes([] {
    set_num_threads(3);
    return cover(3).threads == 3 ? 0 : 1;
  });
  release = true;
  busy.join();
}

// From inside a loop the pool is busy with that very loop: changing the count is an error,
// not a deadlock.
TEST(Parallel, ChangingTheCountInsideALoopIsAnError) {
  ThreadCount tc(2);
  EXPECT_THROW(parallel_for(2, [](int64_t, int64_t) { set_num_threads(3); }), Error);
  EXPECT_EQ(num_threads(), 2);
}

// Where the system refuses threads (here: an address-space limit a few thread stacks above
// what the process uses), the pool runs on those it could start; nothing aborts.
TEST(Parallel, ThreadsTheSystemRefusesAreDoneWithout) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizers reserve address space an RLIMIT_AS would take from them";
#else
  test::expect_child_passes(
      [] {
        if (!test::cap_address_space(48u << 20)) return 3;  // room for a few 8 MiB stacks, not 63
        set_num_threads(64);
        const Coverage c = cover(6400);
        if (c.threads >= 64) return 2;
        return c.covered == 6400 && c.threads > 1 ? 0 : 1;
      },
      "1: range or thread count wrong, 2: no limit hit, 3: no cap set");
#endif
}

TEST(Parallel, CgroupCpuQuotaIsRoundedUp) {
  EXPECT_EQ(cpu_quota("200000 100000\n"), 2);
  EXPECT_EQ(cpu_quota("150000 100000"), 2);
  EXPECT_EQ(cpu_quota("50000 100000"), 1);
  EXPECT_EQ(cpu_quota("max 100000"), 0);
  EXPECT_EQ(cpu_quota(""), 0);
  EXPECT_EQ(cpu_quota("12x 100000"), 0);
  EXPECT_EQ(cpu_quota("100000 0"), 0);
  EXPECT_GE(available_cpus(), 1);
}

// Batch norm (train and eval, forward and backward), group norm and dropout references split
// channels, (image, group) pairs or elements over threads: the same bits on 1 and 3 threads,
// into NaN-poisoned outputs, on shapes big enough to be split.
TEST(Parallel, NormAndDropoutReferencesGiveTheSameBitsOnAnyThreadCount) {
  NormShape s;  // 105,600 elements: three pieces of dropout's element grain, 3 threads' worth
  s.n = 8;
  s.c = 12;
  s.hw = 1100;
  s.groups = 3;
  const size_t N = static_cast<size_t>(s.numel()), C = static_cast<size_t>(s.c);
  const auto x = test::random_vec<float>(N, 1), dy = test::random_vec<float>(N, 2);
  const auto w = test::random_vec<float>(C, 3, 0.5, 1.5), b = test::random_vec<float>(C, 4);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto run = [&](int threads) {
    ThreadCount tc(threads);
    std::vector<std::vector<float>> out;
    auto fresh = [&](size_t n) { return std::vector<float>(n, nan); };
    std::vector<float> y = fresh(N), mean = fresh(C), is = fresh(C), dx = fresh(N), dw = fresh(C),
                       db = fresh(C), rm(C, 0.f), rv(C, 1.f), nbt(2, 0.f), ye = fresh(N);
    batchnorm_fwd_train_ref<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), is.data(),
                                   rm.data(), rv.data(), nbt.data(), 0.1, 1e-5, s, nullptr, true);
    batchnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), mean.data(), is.data(), dx.data(),
                             dw.data(), db.data(), true, s, nullptr, y.data());
    batchnorm_fwd_eval_ref<float>(x.data(), w.data(), b.data(), rm.data(), rv.data(), ye.data(),
                                  1e-5, s, false);
    out = {y, mean, is, dx, dw, db, rm, rv, ye};
    const size_t G = static_cast<size_t>(s.n * s.groups);
    std::vector<float> gy = fresh(N), gm = fresh(G), gi = fresh(G), gdx = fresh(N), gdw = fresh(C),
                       gdb = fresh(C);
    groupnorm_fwd_ref<float>(x.data(), w.data(), b.data(), gy.data(), gm.data(), gi.data(), 1e-5,
                             s);
    groupnorm_bwd_ref<float>(x.data(), dy.data(), w.data(), gm.data(), gi.data(), gdx.data(),
                             gdw.data(), gdb.data(), s, nullptr);
    out.insert(out.end(), {gy, gm, gi, gdx, gdw, gdb});
    for (bool channelwise : {false, true}) {
      DropoutParams p;
      p.key = dropout_key(7, 11, 3);
      p.threshold = dropout_threshold(0.3);
      p.scale = 1.f / 0.7f;
      p.channelwise = channelwise;
      DropoutShape d{s.n, s.c, s.hw};
      std::vector<float> dyo = fresh(N), dxo = fresh(N);
      dropout_fwd_ref<float>(x.data(), dyo.data(), p, d);
      dropout_bwd_ref<float>(dy.data(), dxo.data(), p, d);
      out.insert(out.end(), {dyo, dxo});
    }
    return out;
  };
  const auto one = run(1), three = run(3);
  ASSERT_EQ(one.size(), three.size());
  for (size_t i = 0; i < one.size(); ++i) {
    for (float v : one[i]) ASSERT_TRUE(std::isfinite(v)) << "output " << i << " not all written";
    EXPECT_TRUE(test::bitwise_equal(three[i], one[i])) << "output " << i;
  }
}

// A CPU run ends with the same weights, optimizer state and losses on one thread and on three
// (--threads is not part of the recipe): the cnn with batch norm and dropout, and a wide mlp whose
// Linear layers are cut into blocks, trained with L2 and a global clip norm over tensors of
// several optimizer pieces.
void expect_same_training_on_any_thread_count(const std::string& model) {
  SCOPED_TRACE(model);
  auto train = [&](int threads) {
    RunConfig c;
    c.device = "cpu";
    c.threads = threads;
    c.data.data_dir = test::data_dir();
    c.data.train_limit = 300;
    c.data.test_limit = 100;
    c.model.model = model;
    if (model == "cnn") {
      c.model.norm = "batch";
      c.model.dropout = 0.1f;
    } else {
      c.model.width = 1024;  // first layer: 8 blocks of 128 outputs, forward and back
      c.optim.l2 = 1e-4f;
      c.optim.global_clipnorm = 0.5f;
    }
    c.train.epochs = 1;
    c.train.batch_size = 64;  // cnn: groups of four images in the conv filter gradients
    c.train.progress = 0;
    c.save = ::testing::TempDir() + "kiln_threads_" + std::to_string(threads) + "_" +
             std::to_string(getpid()) + ".safetensors";
    RunResult r = run_training(c, {});
    EXPECT_EQ(num_threads(), threads);
    set_num_threads(1);
    SafetensorsFile f = read_safetensors(c.save);
    std::remove(c.save.c_str());
    return std::make_pair(r, f);
  };
  const auto [r1, f1] = train(1);
  const auto [r3, f3] = train(3);
  EXPECT_EQ(r1.epochs.at(0).train_loss, r3.epochs.at(0).train_loss);
  EXPECT_EQ(r1.test_loss, r3.test_loss);
  ASSERT_EQ(f1.tensors.size(), f3.tensors.size());
  size_t compared = 0;
  for (size_t i = 0; i < f1.tensors.size(); ++i) {
    EXPECT_EQ(f1.tensors[i].name, f3.tensors[i].name);
    EXPECT_TRUE(f1.tensors[i].data == f3.tensors[i].data) << f1.tensors[i].name;
    compared += f1.tensors[i].data.size();
  }
  EXPECT_GT(compared, 17000u * 4u);  // the weights and more
}

TEST(Parallel, TrainingGivesTheSameBitsOnAnyThreadCount) {
  expect_same_training_on_any_thread_count("cnn");
  expect_same_training_on_any_thread_count("mlp");
}

}  // namespace
}  // namespace kiln
