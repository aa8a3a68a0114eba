#include "mphost/ipc/robust_mutex.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <new>
#include <thread>

#include "mphost/ipc/segment.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"
#include "shm_check.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::fork_child;
using mphost::testing::run_in_child;
using mphost::testing::wait_child;
using mphost::testing::watchdog;

struct shared {
  robust_mutex mutex;
  std::atomic<int> stage{0};
  long counter = 0;
};

class RobustMutexTest : public testing::shm_checked_test {
 protected:
  void SetUp() override {
    seg_ = segment::create(4096, testing::test_prefix());
    names_.set(seg_.name());
    s_ = new (seg_.base()) shared();
  }
  void TearDown() override {
    seg_.reset();
    names_.set({});
    testing::shm_checked_test::TearDown();
  }
  shared& s() { return *s_; }

  // A child that takes the lock, says so, and waits to be killed.
  pid_t child_holding_the_lock() {
    const pid_t pid = fork_child([this] {
      if (!acquired(s().mutex.lock())) return 1;
      s().stage.store(1);
      for (;;) ::pause();
    });
    while (s().stage.load() != 1) std::this_thread::sleep_for(1ms);
    return pid;
  }

 private:
  segment seg_;
  testing::name_guard names_;
  shared* s_ = nullptr;
};

TEST_F(RobustMutexTest, LocksAndUnlocksWithoutContention) {
  EXPECT_EQ(s().mutex.owner(), 0);
  EXPECT_EQ(s().mutex.lock(), wait_result::ok);
  EXPECT_EQ(s().mutex.owner(), ::getpid());
  s().mutex.unlock();
  EXPECT_EQ(s().mutex.owner(), 0);
  EXPECT_EQ(s().mutex.try_lock(), wait_result::ok);
  s().mutex.unlock();
}

TEST_F(RobustMutexTest, LiveHolderInAnotherProcessKeepsOthersOut) {
  watchdog guard(20s);
  const pid_t pid = child_holding_the_lock();
  EXPECT_EQ(s().mutex.owner(), pid);
  EXPECT_EQ(s().mutex.try_lock(), wait_result::timed_out);
  EXPECT_EQ(s().mutex.lock(deadline::after(50ms)), wait_result::timed_out);
  ::kill(pid, SIGKILL);
  wait_child(pid);
}

TEST_F(RobustMutexTest, LockHolderKilledIsRecoveredWithOwnerDied) {
  watchdog guard(20s);
  const pid_t pid = child_holding_the_lock();
  ::kill(pid, SIGKILL);
  wait_child(pid);
  EXPECT_EQ(s().mutex.lock(deadline::after(5s)), wait_result::owner_died);
  EXPECT_EQ(s().mutex.owner(), ::getpid());
  s().mutex.unlock();
  // Usable as before once unlocked.
  EXPECT_EQ(s().mutex.lock(deadline::after(5s)), wait_result::ok);
  s().mutex.unlock();
}

TEST_F(RobustMutexTest, UnreapedZombieHolderCountsAsDead) {
  watchdog guard(20s);
  const pid_t pid = child_holding_the_lock();
  ::kill(pid, SIGKILL);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);
  EXPECT_EQ(s().mutex.try_lock(), wait_result::owner_died);
  s().mutex.unlock();
  wait_child(pid);
}

TEST_F(RobustMutexTest, SleepingWaiterTakesOverWhenTheHolderDies) {
  watchdog guard(20s);
  const pid_t pid = child_holding_the_lock();
  std::thread killer([pid] {
    std::this_thread::sleep_for(50ms);
    ::kill(pid, SIGKILL);
  });
  // Blocks until the holder dies; the death wakes no one, so the waiter
  // finds out by itself.
  EXPECT_EQ(s().mutex.lock(deadline::after(10s)), wait_result::owner_died);
  s().mutex.unlock();
  killer.join();
  wait_child(pid);
}

TEST_F(RobustMutexTest, ExcludesAcrossProcessesAndThreads) {
  watchdog guard(60s);
  constexpr int rounds = 20000;
  auto work = [this] {
    for (int i = 0; i < rounds; ++i) {
      if (!acquired(s().mutex.lock())) return 1;
      const long v = s().counter;
      if ((i & 63) == 0) std::this_thread::yield();
      s().counter = v + 1;
      s().mutex.unlock();
    }
    return 0;
  };
  const pid_t a = fork_child(work);
  const pid_t b = fork_child(work);
  std::thread t([&] { EXPECT_EQ(work(), 0); });
  EXPECT_EQ(work(), 0);
  t.join();
  EXPECT_EQ(wait_child(a).code, 0);
  EXPECT_EQ(wait_child(b).code, 0);
  EXPECT_EQ(s().counter, 4L * rounds);
}

TEST_F(RobustMutexTest, UnlockWakesASleepingWaiterInAnotherProcess) {
  watchdog guard(20s);
  ASSERT_EQ(s().mutex.lock(), wait_result::ok);
  const pid_t pid = fork_child([this] {
    s().stage.store(2);
    const wait_result r = s().mutex.lock(deadline::after(10s));
    if (r != wait_result::ok) return 1;
    s().mutex.unlock();
    return 0;
  });
  while (s().stage.load() != 2) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(30ms);
  s().mutex.unlock();
  const auto result = wait_child(pid);
  EXPECT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
}

}  // namespace
}  // namespace mphost::ipc
