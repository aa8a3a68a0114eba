// The process bindings (process_binding.cpp, spawn_binding.cpp) through the
// Python C API, without a start method: a launched child's exit status
// through wait_for_exit (blocking or not, a code or -signum, reaped once),
// its sentinel, a signal during the wait, and receive_handover when the
// parent closed the socket.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <string>

#include "python_test_support.hpp"

namespace mphost::embed {
namespace {

using namespace std::chrono_literals;
using testing::scope;
using testing::seconds_since;
using testing::take_error;

class ProcessBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(py.exec("import os, select, signal, socket, time\n"
                        "import _mphost\n"
                        "hits = []\n"
                        "def note(signo, frame): hits.append(signo)\n"
                        "def interrupt(signo, frame): raise KeyboardInterrupt('from the handler')\n"
                        "def sh(script):\n"
                        "    return _mphost.launch('/bin/sh', ['-c', script], [])\n"))
        << take_error();
  }
  void TearDown() override { EXPECT_TRUE(py.exec("signal.signal(signal.SIGUSR1, signal.SIG_IGN)")) << take_error(); }

  scope py;
};

TEST_F(ProcessBindingTest, WaitForExitGivesTheExitCodeOnce) {
  ASSERT_TRUE(py.exec("pid = sh('exit 3')")) << take_error();
  EXPECT_EQ(py.show("_mphost.wait_for_exit(pid, True)"), "3");
  EXPECT_EQ(py.show("_mphost.wait_for_exit(pid, True)"), "raised builtins.ChildProcessError: [Errno 10] waitpid: No child processes");
  EXPECT_EQ(py.show("_mphost.wait_for_exit(sh('exit 0'), True)"), "0");
}

TEST_F(ProcessBindingTest, ARunningChildIsNoneThenMinusTheSignalThatKilledIt) {
  ASSERT_TRUE(py.exec("pid = sh('sleep 20')")) << take_error();
  EXPECT_EQ(py.show("_mphost.wait_for_exit(pid, False)"), "None");
  EXPECT_EQ(py.show("(os.kill(pid, signal.SIGKILL), _mphost.wait_for_exit(pid, True))"), "(None, -9)");
}

TEST_F(ProcessBindingTest, TheSentinelIsReadableOnceTheChildEnded) {
  ASSERT_TRUE(py.exec("pid = sh('sleep 0.2')\nfd = _mphost.open_sentinel(pid)")) << take_error();
  EXPECT_EQ(py.show("select.select([fd], [], [], 0)[0]"), "[]");
  EXPECT_EQ(py.show("(select.select([fd], [], [], 10)[0] == [fd], _mphost.wait_for_exit(pid, False))"), "(True, 0)");
  ASSERT_TRUE(py.exec("os.close(fd)")) << take_error();
}

TEST_F(ProcessBindingTest, AProgramThatCannotStartRaisesFileNotFoundError) {
  EXPECT_EQ(py.show("_mphost.launch('/nonexistent/program', [], [])"),
            "raised builtins.FileNotFoundError: [Errno 2] cannot start /nonexistent/program: No such file or directory");
}

TEST_F(ProcessBindingTest, ASignalWhoseHandlerRaisesInterruptsTheWait) {
  ASSERT_TRUE(py.exec("pid = sh('sleep 1')\nsignal.signal(signal.SIGUSR1, interrupt)")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    const testing::signal_later sender(SIGUSR1, 130ms);
    EXPECT_EQ(py.show("_mphost.wait_for_exit(pid, True)"), "raised builtins.KeyboardInterrupt: from the handler");
  }
  EXPECT_LT(seconds_since(start), 0.9);
  // The child was not reaped: a later wait still gets its status.
  EXPECT_EQ(py.show("_mphost.wait_for_exit(pid, True)"), "0");
}

TEST_F(ProcessBindingTest, ASignalWhoseHandlerReturnsLeavesTheWaitGoingOn) {
  ASSERT_TRUE(py.exec("pid = sh('sleep 0.4; exit 7')\nsignal.signal(signal.SIGUSR1, note)")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    const testing::signal_later sender(SIGUSR1, 100ms);
    EXPECT_EQ(py.show("_mphost.wait_for_exit(pid, True)"), "7");
  }
  EXPECT_GE(seconds_since(start), 0.3);
  EXPECT_EQ(py.show("hits"), testing::list_repr(SIGUSR1));
}

TEST_F(ProcessBindingTest, AHandoverWhoseParentClosedTheSocketRaisesEOFError) {
  ASSERT_TRUE(py.exec("child_end, parent_end = socket.socketpair()\nparent_end.close()")) << take_error();
  EXPECT_EQ(py.show("_mphost.receive_handover(child_end.detach())"),
            "raised builtins.EOFError: the parent closed the handover socket: the peer has closed its end");
}

}  // namespace
}  // namespace mphost::embed
