// The CPU path's threads (engine/parallel.h): parallel_for covers its range once in contiguous
// pieces on several threads, falls back to the calling thread when nested or when another
// caller holds the pool, passes exceptions on, survives fork(); and training on the CPU gives
// the same bits whatever the thread count.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/parallel.h"
#include "tests/test_util.h"
#include "tuning/run.h"

namespace kiln {
namespace {

// Restores the process-wide count a test changes (earlier runs in this process may have set
// another: run_training applies --threads).
struct ThreadCount {
  explicit ThreadCount(int n) : before(num_threads()) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(before); }
  const int before;
};

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

TEST(Parallel, AForkedChildStartsThreadsOfItsOwn) {
  ThreadCount tc(3);
  std::atomic<int> warm{0};
  parallel_for(3, [&](int64_t b, int64_t e) { warm += static_cast<int>(e - b); });  // pool up
  ASSERT_EQ(warm, 3);
  fflush(nullptr);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The parent's workers do not exist here: waiting for them would hang (the parent's
    // waitpid below has a deadline through alarm()).
    alarm(20);
    std::mutex m;
    std::set<std::thread::id> who;
    int64_t covered = 0;
    parallel_for(3, [&](int64_t b, int64_t e) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      std::lock_guard<std::mutex> lk(m);
      who.insert(std::this_thread::get_id());
      covered += e - b;
    });
    _exit(covered == 3 && who.size() == 3 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// A CPU run of the cnn with batch norm and dropout ends with the same weights, optimizer state
// and losses on one thread and on three (--threads is not part of the recipe).
TEST(Parallel, TrainingGivesTheSameBitsOnAnyThreadCount) {
  auto train = [](int threads) {
    RunConfig c;
    c.device = "cpu";
    c.threads = threads;
    c.data.data_dir = test::data_dir();
    c.data.train_limit = 300;
    c.data.test_limit = 100;
    c.model.model = "cnn";
    c.model.norm = "batch";
    c.model.dropout = 0.1f;
    c.train.epochs = 1;
    c.train.batch_size = 64;  // groups of four images in the conv filter gradients
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

}  // namespace
}  // namespace kiln
