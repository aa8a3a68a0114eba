#include "mphost/runtime/parent_death.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "mphost/runtime/fork.hpp"
#include "mphost/runtime/sentinel.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

// Running, as opposed to gone or a zombie waiting for init to reap it.
bool running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  const auto close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return false;
  const char state = text[close + 2];
  return state != 'Z' && state != 'X';
}

bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running(pid)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return !running(pid);
}

enum class from { main_thread, short_lived_thread };

// Starts a middle process that forks a sleeping grandchild (tied to it or
// not) and reports the grandchild's pid; returns {middle, grandchild}.
std::pair<pid_t, pid_t> middle_with_grandchild(bool die_with_parent, from where) {
  int fds[2];
  if (::pipe(fds) != 0) return {-1, -1};
  const pid_t middle = testing::fork_child([&] {
    ::close(fds[0]);
    pid_t grandchild = -1;
    const auto start = [&] {
      grandchild = fork_process({}, {die_with_parent});
      if (grandchild == 0) {
        ::sleep(60);
        ::_exit(0);
      }
    };
    if (where == from::main_thread) {
      start();
    } else {
      std::thread(start).join();  // the forking thread ends here
    }
    if (::write(fds[1], &grandchild, sizeof grandchild) != sizeof grandchild) return 1;
    ::pause();
    return 0;
  });
  ::close(fds[1]);
  pid_t grandchild = -1;
  if (::read(fds[0], &grandchild, sizeof grandchild) != sizeof grandchild) grandchild = -1;
  ::close(fds[0]);
  return {middle, grandchild};
}

TEST(ParentDeathTest, ChildForkedFromTheMainThreadDiesWithItsKilledParent) {
  testing::watchdog dog(20s);
  const auto [middle, grandchild] = middle_with_grandchild(true, from::main_thread);
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(running(grandchild));
  ::kill(middle, SIGKILL);
  testing::wait_child(middle);
  EXPECT_TRUE(gone_within(grandchild, 2000ms));
}

TEST(ParentDeathTest, ChildForkedFromAnEndedThreadLivesUntilTheProcessEnds) {
  testing::watchdog dog(20s);
  const auto [middle, grandchild] = middle_with_grandchild(true, from::short_lived_thread);
  ASSERT_GT(grandchild, 0);
  // The thread that forked it has ended; the process has not.
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(running(grandchild));
  ::kill(middle, SIGKILL);
  testing::wait_child(middle);
  EXPECT_TRUE(gone_within(grandchild, 2000ms));
}

TEST(ParentDeathTest, ChildNotTiedOutlivesItsParent) {
  testing::watchdog dog(20s);
  const auto [middle, grandchild] = middle_with_grandchild(false, from::main_thread);
  ASSERT_GT(grandchild, 0);
  ::kill(middle, SIGKILL);
  testing::wait_child(middle);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(running(grandchild));
  ::kill(grandchild, SIGKILL);
}

TEST(ParentDeathTest, WatcherKillsAtOnceWhenTheParentIsNotTheExpectedOne) {
  testing::watchdog dog(10s);
  const testing::child_result r = testing::run_in_child([] {
    const int pidfd = open_process_sentinel(::getppid());
    // Told that its parent was another process: it has been reparented.
    watch_parent(pidfd, ::getppid() + 1);
    return 0;
  });
  EXPECT_FALSE(r.exited);
  EXPECT_EQ(r.signal, parent_death_signal);
}

TEST(ParentDeathTest, WatcherLeavesTheChildAloneWhileTheParentLives) {
  testing::watchdog dog(10s);
  const testing::child_result r = testing::run_in_child([] {
    const int pidfd = open_process_sentinel(::getppid());
    watch_parent(pidfd, ::getppid());
    ::close(pidfd);  // the watcher keeps its own duplicate
    std::this_thread::sleep_for(200ms);
    return 7;
  });
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 7);
}

TEST(ParentDeathTest, OnMainThreadTellsThreadsApart) {
  EXPECT_TRUE(on_main_thread());
  bool other = true;
  std::thread([&] { other = on_main_thread(); }).join();
  EXPECT_FALSE(other);
}

}  // namespace
}  // namespace mphost::runtime
