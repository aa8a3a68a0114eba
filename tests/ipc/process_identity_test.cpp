#include "mphost/ipc/process_identity.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::fork_child;
using mphost::testing::run_in_child;
using mphost::testing::wait_child;
using mphost::testing::watchdog;

TEST(ProcessIdentityTest, CurrentIsThisProcessWithAStartTime) {
  const process_identity me = process_identity::current();
  EXPECT_EQ(me.pid, ::getpid());
  EXPECT_NE(me.start_time, 0u);
  EXPECT_EQ(me.start_time, process_start_time(::getpid()));
  EXPECT_TRUE(process_is_alive(me));
}

TEST(ProcessIdentityTest, ThreadIdIsTheKernelThreadId) {
  EXPECT_EQ(current_thread_id(), static_cast<std::uint32_t>(::syscall(SYS_gettid)));
}

TEST(ProcessIdentityTest, SameProcessWithAnotherStartTimeIsNotAlive) {
  // What a reused pid looks like: the number exists, the process is another.
  const process_identity me = process_identity::current();
  EXPECT_FALSE(process_is_alive(me.pid, me.start_time + 1));
}

TEST(ProcessIdentityTest, ZombieAndReapedChildrenAreNotAlive) {
  watchdog guard(10s);
  const pid_t pid = fork_child([] {
    ::pause();
    return 0;
  });
  ASSERT_GT(pid, 0);
  const std::uint64_t start = process_start_time(pid);
  EXPECT_TRUE(process_is_alive(pid, start));
  ::kill(pid, SIGKILL);
  // Until reaped it is a zombie: it will never act again, so it is dead.
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(process_is_alive(pid, start));
  wait_child(pid);
  EXPECT_FALSE(process_is_alive(pid, start));
  EXPECT_FALSE(process_is_alive(pid));
}

TEST(ProcessIdentityTest, ForkedChildSeesItsOwnIdentity) {
  watchdog guard(10s);
  const std::uint64_t parent_generation = fork_generation();
  (void)current_thread_id();  // cache the parent's thread id first
  const auto result = run_in_child([&] {
    if (current_pid() != ::getpid()) return 1;
    if (process_identity::current().start_time != process_start_time(::getpid())) return 2;
    if (current_thread_id() != static_cast<std::uint32_t>(::syscall(SYS_gettid))) return 3;
    if (fork_generation() != parent_generation + 1) return 4;
    return 0;
  });
  EXPECT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
}

// A forked child judges peers right even when a thread of its parent held
// the very cache entry at the instant of the fork (the child never writes
// the cache to free such entries: it just does not see them as held).
TEST(ProcessIdentityTest, ForkedChildJudgesPeersWhileAParentThreadHeldTheirEntry) {
  watchdog guard(30s);
  const pid_t me = ::getpid();
  const pid_t gone = fork_child([] { return 0; });
  ASSERT_TRUE(wait_child(gone).exited);
  std::atomic<bool> stop{false};
  std::thread checker([&] {
    while (!stop.load()) {
      forget_process_verdicts();
      (void)process_seems_alive(me == 1 ? 2 : 1);
      (void)process_seems_alive(::getppid());
    }
  });
  int failures = 0;
  for (int round = 0; round < 40 && failures == 0; ++round) {
    const auto result = run_in_child([&] {
      if (!process_seems_alive(me)) return 1;
      if (!process_seems_alive(::getppid())) return 2;
      if (process_seems_alive(gone)) return 3;
      return 0;
    });
    if (!result.exited || result.code != 0) ++failures;
  }
  stop.store(true);
  checker.join();
  EXPECT_EQ(failures, 0);
}

TEST(ProcessIdentityTest, NonPositivePidsAreNeverAlive) {
  EXPECT_FALSE(process_is_alive(0));
  EXPECT_FALSE(process_is_alive(-1));
}

}  // namespace
}  // namespace mphost::ipc
