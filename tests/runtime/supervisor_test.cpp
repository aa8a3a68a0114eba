// The supervisor's table across real processes: the exit code collected once
// with several threads waiting, a killed child's signal code, a child reaped
// behind the table's back, a pid's identity checked before signalling,
// orphans reaped, daemon children terminated at exit (in a helper child, so
// that the test process's own table stays out of it), and the empty table of
// a forked child.
#include "mphost/runtime/supervisor.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

supervisor& table() { return supervisor::of_this_process(); }

// A child of the table that runs `fn` and _exit()s with its result.
template <class Fn>
forked start(Fn fn, bool daemon = false) {
  const forked child = table().fork_child({}, daemon);
  if (child.pid == 0) ::_exit(fn());
  return child;
}

int sleep_then(std::chrono::milliseconds nap, int code) {
  std::this_thread::sleep_for(nap);
  return code;
}

int wait_forever() {
  for (;;) ::pause();
}

ipc::wait_result wait_long(child_ticket ticket) { return table().wait(ticket, ipc::deadline::after(20s)); }

bool still_our_zombie_or_child(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

TEST(SupervisorTest, TheExitCodeIsCollectedOnceAndEveryWaitingThreadGetsIt) {
  testing::watchdog dog(20s);
  const forked child = start([] { return sleep_then(200ms, 7); });
  std::vector<std::thread> waiters;
  std::vector<std::optional<int>> codes(4);
  for (auto& code : codes) {
    waiters.emplace_back([&code, ticket = child.ticket] {
      if (wait_long(ticket) == ipc::wait_result::ok) code = table().poll(ticket);
    });
  }
  for (auto& waiter : waiters) waiter.join();
  for (const auto& code : codes) EXPECT_EQ(code, 7);
  EXPECT_EQ(table().poll(child.ticket), 7);
  // Reaped by the table: nothing is left for waitpid.
  EXPECT_FALSE(still_our_zombie_or_child(child.pid));
  table().release(child.ticket);
  EXPECT_FALSE(table().view(child.ticket));
}

TEST(SupervisorTest, ARunningChildHasNoCodeThenMinusTheSignalThatKilledIt) {
  testing::watchdog dog(20s);
  const forked child = start(wait_forever);
  EXPECT_EQ(table().poll(child.ticket), std::nullopt);
  EXPECT_EQ(table().wait(child.ticket, ipc::deadline::after(50ms)), ipc::wait_result::timed_out);
  table().signal(child.ticket, SIGKILL);
  ASSERT_EQ(wait_long(child.ticket), ipc::wait_result::ok);
  EXPECT_EQ(table().poll(child.ticket), -SIGKILL);
  table().signal(child.ticket, SIGTERM);  // collected: not sent, not an error
  EXPECT_EQ(table().poll(child.ticket), -SIGKILL);
  table().release(child.ticket);
}

TEST(SupervisorTest, AChildReapedBehindTheTablesBackHasNoCodeAsTheStdlibReportsIt) {
  testing::watchdog dog(20s);
  const forked child = start([] { return 5; });
  int status = 0;
  ASSERT_EQ(::waitpid(child.pid, &status, 0), child.pid);  // os.waitpid(-1) in user code
  EXPECT_EQ(wait_long(child.ticket), ipc::wait_result::ok);
  EXPECT_EQ(table().poll(child.ticket), std::nullopt);
  const auto view = table().view(child.ticket);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->ended);
  const auto running = table().running();
  EXPECT_NE(std::find(running.begin(), running.end(), child.ticket), running.end());
  table().signal(child.ticket, SIGKILL);  // gone: nothing is sent
  table().release(child.ticket);
  EXPECT_FALSE(table().view(child.ticket));
}

TEST(SupervisorTest, AnUnknownTicketIsNoChild) {
  try {
    table().poll(~child_ticket{0});
    ADD_FAILURE() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ECHILD);
  }
  table().release(~child_ticket{0});  // releasing twice is harmless
}

TEST(SupervisorTest, APidIsSignalledOnlyWhileItNamesTheRecordedProcess) {
  testing::watchdog dog(20s);
  // A process outside the table stands for the process that got the pid of
  // an earlier child; a status descriptor that never reports stands for a
  // forkserver child's.
  const pid_t other = testing::fork_child([] { return wait_forever(); });
  const std::uint64_t born = process_start_time(other);
  ASSERT_NE(born, 0u);
  EXPECT_EQ(process_start_time(other), born);
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  const child_ticket earlier = table().admit(
      {.pid = other, .method = start_method::forkserver, .status_fd = pair[0], .start_time = born + 1});
  table().signal(earlier, SIGKILL);
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(still_our_zombie_or_child(other));
  int status = 0;
  EXPECT_EQ(::waitpid(other, &status, WNOHANG), 0) << "a process with another start time was signalled";

  const child_ticket same = table().admit({.pid = other, .method = start_method::forkserver, .status_fd = ::dup(pair[1])});
  EXPECT_EQ(table().view(same)->start_time, born);
  table().signal(same, SIGKILL);
  const testing::child_result result = testing::wait_child(other);
  EXPECT_FALSE(result.exited);
  EXPECT_EQ(result.signal, SIGKILL);
  table().release(earlier);
  table().release(same);
  EXPECT_EQ(table().reap_orphans(), 2u);  // their status descriptors never report
  ::close(pair[1]);
}

TEST(SupervisorTest, APidfdChildsIdentityIsKnownAtOnceAndItsStartTimeWhenViewed) {
  testing::watchdog dog(20s);
  const forked child = start([] { return wait_forever(); });
  const auto [pid, sentinel] = table().identity(child.ticket);
  EXPECT_EQ(pid, child.pid);
  EXPECT_GE(sentinel, 0);
  const std::uint64_t born = process_start_time(child.pid);
  ASSERT_NE(born, 0u);
  EXPECT_EQ(table().view(child.ticket)->start_time, born);
  table().signal(child.ticket, SIGKILL);
  EXPECT_EQ(wait_long(child.ticket), ipc::wait_result::ok);
  EXPECT_EQ(table().view(child.ticket)->start_time, born);  // kept once read
  table().release(child.ticket);
  try {
    table().identity(child.ticket);
    ADD_FAILURE() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ECHILD);
  }
}

TEST(SupervisorTest, AnOrphanIsReapedWithoutAnyoneWaitingForIt) {
  testing::watchdog dog(20s);
  const forked child = start([] { return sleep_then(150ms, 0); });
  table().release(child.ticket);
  ASSERT_TRUE(table().view(child.ticket));
  EXPECT_TRUE(table().view(child.ticket)->orphan);
  const auto running = table().running();
  EXPECT_EQ(std::find(running.begin(), running.end(), child.ticket), running.end());
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (table().view(child.ticket) && std::chrono::steady_clock::now() < until) {
    table().reap_orphans();
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_FALSE(table().view(child.ticket));
  EXPECT_FALSE(still_our_zombie_or_child(child.pid)) << "a zombie was left";
}

TEST(SupervisorTest, RunningListsTheLiveChildrenInStartOrder) {
  testing::watchdog dog(20s);
  const forked first = start(wait_forever);
  const forked quick = start([] { return 0; });
  const forked last = start(wait_forever);
  ASSERT_EQ(wait_long(quick.ticket), ipc::wait_result::ok);
  EXPECT_EQ(table().running(), (std::vector<child_ticket>{first.ticket, last.ticket}));
  EXPECT_EQ(table().view(first.ticket)->method, start_method::fork);
  for (const forked& child : {first, last}) {
    table().signal(child.ticket, SIGKILL);
    EXPECT_EQ(wait_long(child.ticket), ipc::wait_result::ok);
  }
  EXPECT_TRUE(table().running().empty());
  for (const forked& child : {first, quick, last}) table().release(child.ticket);
}

TEST(SupervisorTest, AtExitDaemonsAreTerminatedThenEveryChildIsJoined) {
  testing::watchdog dog(30s);
  const testing::child_result helper = testing::run_in_child([] {
    const forked daemon = start(wait_forever, true);
    const forked worker = start([] { return sleep_then(300ms, 3); });
    if (!table().view(daemon.ticket)->daemon || table().view(worker.ticket)->daemon) return 10;
    if (table().end_children(ipc::deadline::after(20s)) != 0) return 11;
    if (table().poll(daemon.ticket) != -SIGTERM) return 12;
    if (table().poll(worker.ticket) != 3) return 13;
    return 0;
  });
  EXPECT_TRUE(helper.exited);
  EXPECT_EQ(helper.code, 0);
}

TEST(SupervisorTest, ADaemonDiesWithAParentThatEndsWithoutTheExitPath) {
  testing::watchdog dog(30s);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const testing::child_result helper = testing::run_in_child([&] {
    const forked daemon = start(wait_forever, true);
    (void)!::write(pipe_fds[1], &daemon.pid, sizeof daemon.pid);
    return 0;  // _exit: no end_children
  });
  ::close(pipe_fds[1]);
  pid_t daemon = 0;
  ASSERT_EQ(::read(pipe_fds[0], &daemon, sizeof daemon), static_cast<ssize_t>(sizeof daemon));
  ::close(pipe_fds[0]);
  EXPECT_EQ(helper.code, 0);
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (::kill(daemon, 0) == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_NE(::kill(daemon, 0), 0) << "the daemon outlived its parent";
}

TEST(SupervisorTest, AForkedChildStartsWithAnEmptyTable) {
  testing::watchdog dog(20s);
  const forked child = start(wait_forever);
  const testing::child_result inside = testing::run_in_child([&] {
    if (table().size() != 0 || table().view(child.ticket)) return 1;
    const forked own = start([] { return 4; });
    if (own.ticket <= child.ticket) return 2;  // tickets count on
    if (wait_long(own.ticket) != ipc::wait_result::ok || table().poll(own.ticket) != 4) return 3;
    return 0;
  });
  EXPECT_EQ(inside.code, 0);
  table().signal(child.ticket, SIGKILL);
  EXPECT_EQ(wait_long(child.ticket), ipc::wait_result::ok);
  table().release(child.ticket);
}

TEST(SupervisorTest, TheStartMethodsHaveTheirStdlibNames) {
  EXPECT_STREQ(to_string(start_method::fork), "fork");
  EXPECT_STREQ(to_string(start_method::spawn), "spawn");
  EXPECT_STREQ(to_string(start_method::forkserver), "forkserver");
}

}  // namespace
}  // namespace mphost::runtime
