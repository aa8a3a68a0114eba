#include "mphost/ipc/futex.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

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
using mphost::testing::wait_child;
using mphost::testing::watchdog;

class FutexTest : public testing::shm_checked_test {};

TEST_F(FutexTest, WaitReturnsAtOnceWhenTheWordDiffers) {
  futex_word word{7};
  EXPECT_EQ(futex_wait(word, 8, deadline::infinite()), wait_result::ok);
}

TEST_F(FutexTest, WaitTimesOutWhenNobodyWakes) {
  watchdog guard(10s);
  futex_word word{0};
  EXPECT_EQ(futex_wait(word, 0, deadline::after(20ms)), wait_result::timed_out);
  EXPECT_EQ(futex_wait(word, 0, deadline::immediate()), wait_result::timed_out);
}

TEST_F(FutexTest, WakeWithoutSleepersWakesNobody) {
  futex_word word{0};
  EXPECT_EQ(futex_wake(word, 1), 0);
}

TEST_F(FutexTest, WakeReachesASleeperInAnotherProcess) {
  watchdog guard(20s);
  segment seg = segment::create(4096, testing::test_prefix());
  testing::name_guard names(seg.name());
  auto* words = new (seg.base()) futex_word[2]{};
  futex_word& flag = words[0];
  futex_word& ready = words[1];
  const pid_t pid = fork_child([&] {
    ready.store(1);
    while (flag.load() == 0) {
      if (futex_wait(flag, 0, deadline::after(10s)) == wait_result::timed_out) return 1;
    }
    return flag.load() == 42 ? 0 : 2;
  });
  while (ready.load() == 0) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);  // let it fall asleep (not required for correctness)
  flag.store(42);
  futex_wake_all(flag);
  const auto result = wait_child(pid);
  EXPECT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
}

void ignore_signal(int) {}

TEST_F(FutexTest, SignalHandlerInterruptsTheWait) {
  watchdog guard(20s);
  struct sigaction sa {};
  struct sigaction old {};
  sa.sa_handler = &ignore_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART, as Python installs its handlers
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  futex_word word{0};
  const pthread_t self = ::pthread_self();
  std::atomic<bool> stop{false};
  std::thread poker([&] {
    while (!stop.load()) {
      ::pthread_kill(self, SIGUSR1);
      std::this_thread::sleep_for(20ms);
    }
  });
  const wait_result r = futex_wait(word, 0, deadline::after(10s));
  stop.store(true);
  poker.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(r, wait_result::interrupted);
}

}  // namespace
}  // namespace mphost::ipc
