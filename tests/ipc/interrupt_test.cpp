#include "mphost/ipc/interrupt.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "mphost/ipc/robust_mutex.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using mphost::testing::fork_child;
using mphost::testing::wait_child;
using mphost::testing::watchdog;

// A handler as the embed layer installs one: its own work, then the note.
std::atomic<int> handled{0};
extern "C" void noting_handler(int) {
  handled.fetch_add(1);
  note_signal();
}

class signal_scope {
 public:
  explicit signal_scope(int sig) : sig_(sig) {
    struct sigaction action{};
    action.sa_handler = &noting_handler;
    sigemptyset(&action.sa_mask);
    ::sigaction(sig_, &action, &previous_);
  }
  ~signal_scope() { ::sigaction(sig_, &previous_, nullptr); }

 private:
  int sig_;
  struct sigaction previous_{};
};

auto elapsed_since(clock_type::time_point start) { return clock_type::now() - start; }

TEST(InterruptTest, NoteBeforeTheSleepEndsAWatchedWaitAtOnce) {
  watchdog guard(10s);
  futex_word word{0};
  const interrupt_watch watch;
  note_signal();
  const auto start = clock_type::now();
  EXPECT_EQ(futex_wait(word, 0, deadline::after(5s)), wait_result::interrupted);
  EXPECT_LT(elapsed_since(start), 1s);
}

TEST(InterruptTest, WaitsOutsideAWatchIgnoreNotes) {
  watchdog guard(10s);
  futex_word word{0};
  note_signal();
  EXPECT_EQ(futex_wait(word, 0, deadline::after(30ms)), wait_result::timed_out);
}

TEST(InterruptTest, RearmForgetsTheNotesSeen) {
  watchdog guard(10s);
  futex_word word{0};
  interrupt_watch watch;
  note_signal();
  watch.rearm();
  EXPECT_EQ(futex_wait(word, 0, deadline::after(30ms)), wait_result::timed_out);
}

TEST(InterruptTest, APassedDeadlineIsNotCutShort) {
  futex_word word{0};
  const interrupt_watch watch;
  note_signal();
  EXPECT_EQ(futex_wait(word, 0, deadline::immediate()), wait_result::timed_out);
}

TEST(InterruptTest, NoteFromAnotherThreadWakesAWatchedSleeper) {
  watchdog guard(10s);
  futex_word word{0};
  const interrupt_watch watch;
  std::thread noter([] {
    std::this_thread::sleep_for(50ms);
    note_signal();
  });
  const auto start = clock_type::now();
  EXPECT_EQ(futex_wait(word, 0, deadline::infinite()), wait_result::interrupted);
  EXPECT_LT(elapsed_since(start), 2s);
  noter.join();
}

TEST(InterruptTest, AWakeOnTheWordStillReportsOk) {
  watchdog guard(10s);
  futex_word word{0};
  const interrupt_watch watch;
  std::thread waker([&] {
    std::this_thread::sleep_for(30ms);
    word.store(1);
    futex_wake_all(word);
  });
  wait_result r = wait_result::ok;
  while (word.load() == 0 && (r = futex_wait(word, 0, deadline::after(5s))) == wait_result::ok) {
  }
  EXPECT_EQ(r, wait_result::ok);
  waker.join();
}

TEST(InterruptTest, InnerWatchEndsAndTheOuterOneResumes) {
  futex_word word{0};
  const interrupt_watch outer;
  note_signal();
  {
    const interrupt_watch inner;
    EXPECT_EQ(futex_wait(word, 0, deadline::after(20ms)), wait_result::timed_out);
  }
  EXPECT_EQ(futex_wait(word, 0, deadline::after(5s)), wait_result::interrupted);
}

TEST(InterruptTest, ShieldIgnoresTheWatch) {
  futex_word word{0};
  const interrupt_watch watch;
  note_signal();
  {
    const interrupt_shield shield;
    EXPECT_EQ(futex_wait(word, 0, deadline::after(20ms)), wait_result::timed_out);
  }
  EXPECT_EQ(futex_wait(word, 0, deadline::after(5s)), wait_result::interrupted);
}

TEST(InterruptTest, RobustMutexLockIgnoresTheWatch) {
  watchdog guard(10s);
  robust_mutex m;
  ASSERT_EQ(m.lock(), wait_result::ok);
  std::atomic<bool> done{false};
  std::thread other([&] {
    const interrupt_watch watch;
    note_signal();
    // A guard's lock waits for its holder, watch or not.
    EXPECT_EQ(m.lock(deadline::after(50ms)), wait_result::timed_out);
    done = true;
  });
  other.join();
  EXPECT_TRUE(done.load());
  m.unlock();
}

// The bug this guards against: a signal whose handler runs while the
// waiting thread is between two sleeps of a sliced wait (here: a spin and
// 5 ms slices) left no EINTR, and the wait ran on to its deadline.
TEST(InterruptTest, ASignalAtAnyMomentOfASlicedWaitEndsIt) {
  watchdog guard(60s);
  const signal_scope handler(SIGUSR1);
  const pthread_t waiter = ::pthread_self();
  std::mt19937 random(12345);
  for (int round = 0; round < 200; ++round) {
    futex_word word{0};
    const interrupt_watch watch;
    const auto delay = std::chrono::microseconds(random() % 3000);
    // Every other round the kernel picks the thread: a second one that
    // takes the signal too, so it is not always the waiter that runs it.
    const bool to_waiter = round % 2 == 0;
    std::thread sender([&] {
      std::this_thread::sleep_for(delay);
      if (to_waiter) {
        ::pthread_kill(waiter, SIGUSR1);
      } else {
        noting_handler(SIGUSR1);  // as if the kernel had run it in this thread
      }
    });
    const auto start = clock_type::now();
    const deadline until = deadline::after(3s);
    wait_result r = wait_result::timed_out;
    while (!until.expired()) {
      std::atomic<int> spins{0};
      while (spins.fetch_add(1, std::memory_order_relaxed) < 2000) {
      }
      r = futex_wait(word, 0, deadline::earliest(until, deadline::after(5ms)));
      if (r == wait_result::interrupted) break;
    }
    sender.join();
    ASSERT_EQ(r, wait_result::interrupted) << "round " << round;
    ASSERT_LT(elapsed_since(start), delay + 500ms) << "round " << round;
  }
}

TEST(InterruptTest, PollReadableSeesDataAndTimesOut) {
  watchdog guard(10s);
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(fd, 0);
  const interrupt_watch watch;
  EXPECT_EQ(poll_readable(fd, deadline::after(20ms)), wait_result::timed_out);
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(fd, &one, sizeof one), 8);
  EXPECT_EQ(poll_readable(fd, deadline::after(5s)), wait_result::ok);
  ::close(fd);
}

TEST(InterruptTest, PollReadableIsWokenByANoteAndForgetsItAfterRearm) {
  watchdog guard(10s);
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(fd, 0);
  interrupt_watch watch;
  (void)poll_readable(fd, deadline::after(1ms));  // the signal eventfd exists from here on
  std::thread noter([] {
    std::this_thread::sleep_for(30ms);
    note_signal();
  });
  const auto start = clock_type::now();
  EXPECT_EQ(poll_readable(fd, deadline::after(5s)), wait_result::interrupted);
  EXPECT_LT(elapsed_since(start), 2s);
  noter.join();
  // The eventfd is still readable from that note: a stale wake-up, not a new one.
  watch.rearm();
  EXPECT_EQ(poll_readable(fd, deadline::after(30ms)), wait_result::timed_out);
  ::close(fd);
}

TEST(InterruptTest, AForkedChildNotesToItselfOnly) {
  watchdog guard(20s);
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(fd, 0);
  {
    const interrupt_watch watch;
    (void)poll_readable(fd, deadline::after(1ms));
  }
  const pid_t pid = fork_child([&] {
    const interrupt_watch watch;
    // A note in the parent must not reach the child's poll.
    if (poll_readable(fd, deadline::after(200ms)) != wait_result::timed_out) return 1;
    note_signal();
    return poll_readable(fd, deadline::after(5s)) == wait_result::interrupted ? 0 : 2;
  });
  std::this_thread::sleep_for(50ms);
  note_signal();
  const auto ended = wait_child(pid);
  EXPECT_TRUE(ended.exited);
  EXPECT_EQ(ended.code, 0);
  ::close(fd);
}

}  // namespace
}  // namespace mphost::ipc
