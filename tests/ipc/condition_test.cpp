#include "mphost/ipc/condition.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
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

class ConditionTest : public testing::named_shm_test {
 protected:
  condition make() { return condition::create(fresh_name("cnd")); }
  semaphore counter() { return semaphore::create(semlock_kind::semaphore, 0, semaphore::value_max, fresh_name("cnd")); }
  // Waits until `cond` has `n` waiters (they enlist before they signal).
  static bool until_waiting(const condition& cond, std::uint32_t n) {
    for (int i = 0; i < 2000 && cond.waiting() != n; ++i) std::this_thread::sleep_for(5ms);
    return cond.waiting() == n;
  }
};

TEST_F(ConditionTest, NotifyWithoutWaitersWakesNoOne) {
  condition cond = make();
  EXPECT_EQ(cond.notify(), 0u);
  EXPECT_EQ(cond.notify_all(), 0u);
  EXPECT_EQ(cond.waiting(), 0u);
}

TEST_F(ConditionTest, NotifyWakesTheOldestWaitersFirst) {
  condition cond = make();
  condition::waiter a = cond.enlist();
  condition::waiter b = cond.enlist();
  condition::waiter c = cond.enlist();
  EXPECT_EQ(cond.waiting(), 3u);
  EXPECT_EQ(cond.notify(2), 2u);
  EXPECT_EQ(cond.wait(a, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(cond.wait(b, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(cond.wait(c, deadline::immediate()), wait_result::timed_out);
  EXPECT_EQ(cond.waiting(), 0u);
  // A waiter enlisted after a notify is not woken by it.
  EXPECT_EQ(cond.notify(), 0u);
  condition::waiter d = cond.enlist();
  EXPECT_EQ(cond.wait(d, deadline::after(20ms)), wait_result::timed_out);
}

TEST_F(ConditionTest, WithdrawPassesAnArrivedNotificationOn) {
  condition cond = make();
  condition::waiter a = cond.enlist();
  condition::waiter b = cond.enlist();
  EXPECT_EQ(cond.notify(1), 1u);
  cond.withdraw(a);
  EXPECT_EQ(cond.wait(b, deadline::immediate()), wait_result::ok);
  condition::waiter c = cond.enlist();
  cond.withdraw(c);  // nothing arrived: nothing to pass on
  EXPECT_EQ(cond.waiting(), 0u);
}

TEST_F(ConditionTest, MoreWaitersThanSlotsAreAllReached) {
  condition cond = make();
  std::vector<condition::waiter> waiters;
  for (std::uint32_t i = 0; i < condition::slot_count + 5; ++i) waiters.push_back(cond.enlist());
  EXPECT_EQ(waiters.back().slot, condition::slot_count);
  EXPECT_EQ(cond.waiting(), condition::slot_count + 5);
  EXPECT_EQ(cond.notify_all(), condition::slot_count + 5);
  for (auto& w : waiters) EXPECT_EQ(cond.wait(w, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(cond.waiting(), 0u);
}

TEST_F(ConditionTest, NotifyWakesSleepersInOtherProcesses) {
  watchdog guard(30s);
  condition cond = make();
  semaphore woke = counter();
  std::vector<pid_t> children;
  for (int i = 0; i < 3; ++i) {
    children.push_back(fork_child([&] {
      condition::waiter w = cond.enlist();
      if (cond.wait(w, deadline::after(10s)) != wait_result::ok) return 1;
      woke.release();
      return 0;
    }));
  }
  ASSERT_TRUE(until_waiting(cond, 3));
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(cond.notify(1), 1u);
  ASSERT_EQ(woke.acquire(deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(woke.acquire(deadline::after(50ms)), wait_result::timed_out);
  EXPECT_EQ(cond.notify_all(), 2u);
  for (pid_t pid : children) EXPECT_EQ(wait_child(pid).code, 0);
}

TEST_F(ConditionTest, AWaiterKilledInItsSleepLosesNoNotification) {
  watchdog guard(30s);
  condition cond = make();
  semaphore woke = counter();
  const pid_t doomed = fork_child([&] {
    condition::waiter w = cond.enlist();
    (void)cond.wait(w);
    return 0;
  });
  testing::child_guard reap(doomed);
  ASSERT_TRUE(until_waiting(cond, 1));
  const pid_t live = fork_child([&] {
    condition::waiter w = cond.enlist();
    if (cond.wait(w, deadline::after(10s)) != wait_result::ok) return 1;
    woke.release();
    return 0;
  });
  ASSERT_TRUE(until_waiting(cond, 2));
  std::this_thread::sleep_for(30ms);
  ::kill(doomed, SIGKILL);
  wait_child(reap.release());
  // The dead waiter is the oldest; notify(1) must still reach the live one.
  EXPECT_EQ(cond.notify(1), 1u);
  EXPECT_EQ(woke.acquire(deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(wait_child(live).code, 0);
  EXPECT_EQ(cond.waiting(), 0u);
}

TEST_F(ConditionTest, ANotificationTakenByAWaiterThatThenDiedIsPassedOn) {
  watchdog guard(30s);
  condition cond = make();
  semaphore woke = counter();
  const pid_t doomed = fork_child([&]() -> int {
    condition::waiter w = cond.enlist();
    (void)cond.wait(w);
    for (;;) ::pause();
  });
  testing::child_guard reap(doomed);
  ASSERT_TRUE(until_waiting(cond, 1));
  std::this_thread::sleep_for(30ms);
  // Stopped, it cannot take the notification it is given; then it dies.
  ::kill(doomed, SIGSTOP);
  EXPECT_EQ(cond.notify(1), 1u);
  ::kill(doomed, SIGKILL);
  wait_child(reap.release());
  std::vector<pid_t> live;
  for (int i = 0; i < 2; ++i) {
    live.push_back(fork_child([&] {
      condition::waiter w = cond.enlist();
      if (cond.wait(w, deadline::after(10s)) != wait_result::ok) return 1;
      woke.release();
      return 0;
    }));
  }
  ASSERT_TRUE(until_waiting(cond, 3));
  // The lost notification is handed on besides the one asked for.
  EXPECT_EQ(cond.notify(1), 1u);
  EXPECT_EQ(woke.acquire(deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(woke.acquire(deadline::after(10s)), wait_result::ok);
  for (pid_t pid : live) EXPECT_EQ(wait_child(pid).code, 0);
}

TEST_F(ConditionTest, TimeoutAndNotifyRacingNeverLoseAWakeUp) {
  watchdog guard(60s);
  condition cond = make();
  std::atomic<int> ok{0};
  std::atomic<int> notified{0};
  std::atomic<bool> stop{false};
  std::thread notifier([&] {
    while (!stop) notified += static_cast<int>(cond.notify(1));
  });
  std::vector<std::thread> waiters;
  for (int t = 0; t < 3; ++t) {
    waiters.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        condition::waiter w = cond.enlist();
        if (cond.wait(w, deadline::after(std::chrono::microseconds(i % 50))) == wait_result::ok) ++ok;
      }
    });
  }
  for (auto& t : waiters) t.join();
  stop = true;
  notifier.join();
  // Every counted notification was consumed by exactly one waiter.
  EXPECT_EQ(ok.load(), notified.load());
  EXPECT_EQ(cond.waiting(), 0u);
}

}  // namespace
}  // namespace mphost::ipc
