#include "mphost/ipc/event.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "mphost/ipc/semaphore.hpp"
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

class EventTest : public testing::named_shm_test {
 protected:
  event make() { return event::create(fresh_name("evt")); }
};

TEST_F(EventTest, StartsLoweredAndFollowsSetAndClear) {
  event ev = make();
  EXPECT_FALSE(ev.is_set());
  EXPECT_EQ(ev.wait(deadline::immediate()), wait_result::timed_out);
  ev.set();
  ev.set();
  EXPECT_TRUE(ev.is_set());
  EXPECT_EQ(ev.wait(deadline::immediate()), wait_result::ok);
  EXPECT_EQ(ev.wait(), wait_result::ok);
  ev.clear();
  EXPECT_FALSE(ev.is_set());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ev.wait(deadline::after(50ms)), wait_result::timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 45ms);
}

TEST_F(EventTest, AWaitSeesASetThatWasClearedBeforeItLooked) {
  event ev = make();
  const std::uint32_t since = ev.since();
  ev.set();
  ev.clear();
  EXPECT_FALSE(ev.is_set());
  EXPECT_EQ(ev.wait(since, deadline::immediate()), wait_result::ok);
  EXPECT_EQ(ev.wait(deadline::immediate()), wait_result::timed_out);
}

TEST_F(EventTest, SetWakesWaitersInOtherProcessesAndThreads) {
  watchdog guard(20s);
  event ev = make();
  semaphore started = semaphore::create(semlock_kind::semaphore, 0, 10, fresh_name("evt"));
  std::vector<pid_t> children;
  for (int i = 0; i < 2; ++i) {
    children.push_back(fork_child([&] {
      started.release();
      return ev.wait(deadline::after(10s)) == wait_result::ok ? 0 : 1;
    }));
  }
  std::atomic<bool> thread_woke{false};
  std::thread waiter([&] { thread_woke = ev.wait(deadline::after(10s)) == wait_result::ok; });
  for (int i = 0; i < 2; ++i) ASSERT_EQ(started.acquire(deadline::after(10s)), wait_result::ok);
  std::this_thread::sleep_for(50ms);  // let them fall asleep
  ev.set();
  waiter.join();
  EXPECT_TRUE(thread_woke);
  for (pid_t pid : children) {
    const auto r = wait_child(pid);
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.code, 0);
  }
}

TEST_F(EventTest, AWaiterKilledInItsSleepDisturbsNoOne) {
  watchdog guard(20s);
  event ev = make();
  semaphore started = semaphore::create(semlock_kind::semaphore, 0, 10, fresh_name("evt"));
  const pid_t doomed = fork_child([&] {
    started.release();
    (void)ev.wait();
    return 0;
  });
  testing::child_guard reap(doomed);
  ASSERT_EQ(started.acquire(deadline::after(10s)), wait_result::ok);
  std::this_thread::sleep_for(50ms);
  ::kill(doomed, SIGKILL);
  wait_child(reap.release());
  // A live waiter in another process is woken by the next set.
  const pid_t pid = fork_child([&] {
    started.release();
    return ev.wait(deadline::after(10s)) == wait_result::ok ? 0 : 1;
  });
  ASSERT_EQ(started.acquire(deadline::after(10s)), wait_result::ok);
  ev.set();
  const auto r = wait_child(pid);
  EXPECT_EQ(r.code, 0);
  ev.clear();
  EXPECT_EQ(ev.wait(deadline::after(10ms)), wait_result::timed_out);
}

TEST_F(EventTest, PingPongBetweenTwoProcesses) {
  watchdog guard(30s);
  event ping = make();
  event pong = make();
  constexpr int rounds = 2000;
  const pid_t pid = fork_child([&] {
    for (int i = 0; i < rounds; ++i) {
      if (ping.wait(deadline::after(10s)) != wait_result::ok) return 1;
      ping.clear();
      pong.set();
    }
    return 0;
  });
  for (int i = 0; i < rounds; ++i) {
    ping.set();
    ASSERT_EQ(pong.wait(deadline::after(10s)), wait_result::ok);
    pong.clear();
  }
  EXPECT_EQ(wait_child(pid).code, 0);
}

TEST_F(EventTest, AnotherProcessOpensItByNameAndOtherSegmentsAreRefused) {
  watchdog guard(20s);
  event ev = make();
  const std::string name = ev.name();
  const auto r = run_in_child([&] {
    event other = event::open(name);
    other.set();
    return 0;
  });
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(ev.is_set());
  const std::string plain = fresh_name("evt");
  segment seg = segment::create_named(plain, 4096);
  try {
    (void)event::open(plain);
    FAIL() << "opened a segment that holds no event";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::invalid_argument);
  }
  EXPECT_TRUE(event::unlink(name));
  EXPECT_FALSE(event::unlink(name));
}

}  // namespace
}  // namespace mphost::ipc
