#include "mphost/ipc/barrier.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "mphost/ipc/semaphore.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"
#include "shm_check.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::fork_child;
using mphost::testing::wait_child;
using mphost::testing::watchdog;

class BarrierTest : public testing::named_shm_test {
 protected:
  barrier make(std::uint32_t parties) { return barrier::create(parties, fresh_name("bar")); }
  static bool until_count(const barrier& b, std::uint32_t n) {
    for (int i = 0; i < 2000 && b.count() != n; ++i) std::this_thread::sleep_for(5ms);
    return b.count() == n;
  }
};

TEST_F(BarrierTest, ASinglePartyPassesAtOnce) {
  barrier b = make(1);
  EXPECT_EQ(b.parties(), 1u);
  for (int i = 0; i < 3; ++i) {
    const auto e = b.wait(deadline::immediate());
    EXPECT_EQ(e.result, barrier_result::passed);
    EXPECT_EQ(e.index, 0u);
  }
  EXPECT_EQ(b.current_state(), barrier::filling);
  EXPECT_EQ(b.count(), 0u);
}

TEST_F(BarrierTest, PartiesInThreeProcessesPassInLockstep) {
  watchdog guard(60s);
  barrier b = make(3);
  semaphore tally = semaphore::create(semlock_kind::semaphore, 0, semaphore::value_max, fresh_name("bar"));
  constexpr int cycles = 300;
  auto party = [&]() {
    for (int i = 0; i < cycles; ++i) {
      const auto e = b.wait(deadline::after(20s));
      if (e.result != barrier_result::passed) return 1;
      if (e.index == 0) tally.release();
    }
    return 0;
  };
  const pid_t a = fork_child(party);
  const pid_t c = fork_child(party);
  EXPECT_EQ(party(), 0);
  EXPECT_EQ(wait_child(a).code, 0);
  EXPECT_EQ(wait_child(c).code, 0);
  EXPECT_EQ(tally.value(), static_cast<std::uint32_t>(cycles));  // one index 0 per cycle
  EXPECT_FALSE(b.is_broken());
}

TEST_F(BarrierTest, ATimeoutBreaksItForEveryone) {
  watchdog guard(20s);
  barrier b = make(3);
  std::atomic<int> broken{0};
  std::thread other([&] {
    if (b.wait(deadline::after(10s)).result == barrier_result::broken) ++broken;
  });
  ASSERT_TRUE(until_count(b, 1));
  EXPECT_EQ(b.n_waiting(), 1u);
  EXPECT_EQ(b.wait(deadline::after(50ms)).result, barrier_result::timed_out);
  other.join();
  EXPECT_EQ(broken.load(), 1);
  EXPECT_TRUE(b.is_broken());
  EXPECT_EQ(b.n_waiting(), 0u);
  EXPECT_EQ(b.wait(deadline::after(10s)).result, barrier_result::broken);
  b.reset();
  EXPECT_EQ(b.current_state(), barrier::filling);
}

TEST_F(BarrierTest, APartyKilledWhileWaitingBreaksItPromptly) {
  watchdog guard(20s);
  barrier b = make(3);
  const pid_t doomed = fork_child([&] {
    (void)b.wait();
    return 0;
  });
  testing::child_guard reap(doomed);
  ASSERT_TRUE(until_count(b, 1));
  std::thread killer([&] {
    std::this_thread::sleep_for(50ms);
    ::kill(doomed, SIGKILL);
  });
  const auto t0 = std::chrono::steady_clock::now();
  const auto e = b.wait(deadline::after(15s));
  killer.join();
  wait_child(reap.release());
  EXPECT_EQ(e.result, barrier_result::broken);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_TRUE(b.is_broken());
  b.reset();
  EXPECT_EQ(b.count(), 0u);
  EXPECT_EQ(b.current_state(), barrier::filling);
}

TEST_F(BarrierTest, TheLastPartyDyingBeforeItReleasesBreaksIt) {
  watchdog guard(20s);
  barrier b = make(2);
  std::atomic<int> result{-1};
  std::thread first([&] { result = static_cast<int>(b.wait(deadline::after(15s)).result); });
  ASSERT_TRUE(until_count(b, 1));
  // The second party arrives (its action would run now) and dies.
  const pid_t doomed = fork_child([&] {
    if (b.enter().index != 1) return 1;
    ::_exit(0);
  });
  wait_child(doomed);
  first.join();
  EXPECT_EQ(result.load(), static_cast<int>(barrier_result::broken));
}

TEST_F(BarrierTest, APartyThatDiedWhileDrainingDoesNotHoldUpTheNextCycle) {
  watchdog guard(20s);
  barrier b = make(2);
  const pid_t doomed = fork_child([&] {
    const auto e = b.enter();
    if (e.index != 0 || b.await_release(e.index, deadline::after(10s)) != barrier_result::passed) return 1;
    ::_exit(0);  // passed, but never leaves
  });
  ASSERT_TRUE(until_count(b, 1));
  const auto e = b.wait(deadline::after(10s));
  EXPECT_EQ(e.result, barrier_result::passed);
  EXPECT_EQ(e.index, 1u);
  EXPECT_EQ(wait_child(doomed).code, 0);
  EXPECT_EQ(b.current_state(), barrier::draining);
  // The next arrival waits out the drain only until the dead party is seen.
  const auto next = b.enter();
  EXPECT_EQ(next.result, barrier_result::passed);
  EXPECT_EQ(next.index, 0u);
  b.abandon(next.index);
  EXPECT_TRUE(b.is_broken());
}

TEST_F(BarrierTest, ResetFreesWaitersAsBrokenAndTheBarrierFillsAgain) {
  watchdog guard(20s);
  barrier b = make(3);
  std::atomic<int> broken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 2; ++i) {
    waiters.emplace_back([&] {
      if (b.wait(deadline::after(10s)).result == barrier_result::broken) ++broken;
    });
  }
  ASSERT_TRUE(until_count(b, 2));
  b.reset();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(broken.load(), 2);
  EXPECT_EQ(b.current_state(), barrier::filling);
  EXPECT_EQ(b.count(), 0u);
}

TEST_F(BarrierTest, AbortBreaksWaitersAndNewArrivals) {
  watchdog guard(20s);
  barrier b = make(2);
  std::atomic<int> result{-1};
  std::thread waiter([&] { result = static_cast<int>(b.wait(deadline::after(10s)).result); });
  ASSERT_TRUE(until_count(b, 1));
  b.abort();
  waiter.join();
  EXPECT_EQ(result.load(), static_cast<int>(barrier_result::broken));
  EXPECT_EQ(b.enter().result, barrier_result::broken);
}

TEST_F(BarrierTest, InvalidPartiesAndForeignSegmentsAreRefused) {
  EXPECT_THROW(barrier::create(0, fresh_name("bar")), std::system_error);
  const std::string plain = fresh_name("bar");
  segment seg = segment::create_named(plain, 4096);
  EXPECT_THROW(barrier::open(plain), std::system_error);
  barrier b = make(4);
  barrier again = barrier::open(b.name());
  EXPECT_EQ(again.parties(), 4u);
}

}  // namespace
}  // namespace mphost::ipc
