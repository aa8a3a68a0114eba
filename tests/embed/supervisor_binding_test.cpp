// _mphost.supervisor (supervisor_binding.cpp) through the Python C API: a
// forked child's code collected once and seen by every later asker, a
// launched child admitted, signalled and waited with a timeout, an unknown
// ticket as ChildProcessError, a signal handler that raises interrupting
// the wait, a NaN timeout refused, and a released child's row.
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

class SupervisorBindingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(py.exec("import os, signal\n"
                        "from _mphost import supervisor as table\n"
                        "import _mphost\n"
                        "def interrupt(signo, frame): raise KeyboardInterrupt('from the handler')\n"
                        "def sh(script, daemon=False):\n"
                        "    return table.admit(_mphost.launch('/bin/sh', ['-c', script], []), 'spawn', daemon)\n"))
        << take_error();
  }
  void TearDown() override { EXPECT_TRUE(py.exec("signal.signal(signal.SIGUSR1, signal.SIG_IGN)")) << take_error(); }

  scope py;
};

TEST_F(SupervisorBindingTest, AForkedChildsCodeIsCollectedOnceAndKept) {
  ASSERT_TRUE(py.exec("pid, ticket = table.fork()\n"
                      "if pid == 0:\n"
                      "    os._exit(3)\n"))
      << take_error();
  EXPECT_EQ(py.show("table.wait(ticket, 10)"), "True");
  EXPECT_EQ(py.show("[table.poll(ticket) for _ in range(3)]"), "[3, 3, 3]");
  EXPECT_EQ(py.show("os.waitpid(pid, os.WNOHANG)"), "raised builtins.ChildProcessError: [Errno 10] No child processes");
  EXPECT_EQ(py.show("{k: v for k, v in table.view(ticket).items() if k in ('method', 'daemon', 'ended', 'exitcode')}"),
            "{'method': 'fork', 'daemon': False, 'ended': True, 'exitcode': 3}");
  EXPECT_EQ(py.show("table.view(ticket)['pid'] == pid"), "True");
  ASSERT_TRUE(py.exec("table.release(ticket)")) << take_error();
  EXPECT_EQ(py.show("table.view(ticket)"), "None");
  EXPECT_EQ(py.show("table.poll(ticket)"), "raised builtins.ChildProcessError: [Errno 10] no such child in the process table: No child processes");
}

TEST_F(SupervisorBindingTest, ALaunchedChildIsWaitedWithATimeoutThenKilled) {
  ASSERT_TRUE(py.exec("ticket = sh('exec sleep 20', daemon=True)")) << take_error();
  EXPECT_EQ(py.show("(table.poll(ticket), table.wait(ticket, 0.05), table.wait(ticket, 0))"), "(None, False, False)");
  EXPECT_EQ(py.show("ticket in table.running()"), "True");
  EXPECT_EQ(py.show("table.view(ticket)['method'], table.view(ticket)['daemon']"), "('spawn', True)");
  EXPECT_EQ(py.show("(table.signal(ticket, signal.SIGKILL), table.wait(ticket), table.poll(ticket))"), "(None, True, -9)");
  EXPECT_EQ(py.show("ticket in table.running()"), "False");
  ASSERT_TRUE(py.exec("table.release(ticket)")) << take_error();
}

TEST_F(SupervisorBindingTest, ASignalWhoseHandlerRaisesInterruptsTheWait) {
  ASSERT_TRUE(py.exec("ticket = sh('sleep 1; exit 4')\nsignal.signal(signal.SIGUSR1, interrupt)")) << take_error();
  const auto start = std::chrono::steady_clock::now();
  {
    const testing::signal_later sender(SIGUSR1, 130ms);
    EXPECT_EQ(py.show("table.wait(ticket)"), "raised builtins.KeyboardInterrupt: from the handler");
  }
  EXPECT_LT(seconds_since(start), 0.9);
  // Nothing was collected: a later wait still gets the code.
  EXPECT_EQ(py.show("(table.wait(ticket, 10), table.poll(ticket))"), "(True, 4)");
  ASSERT_TRUE(py.exec("table.release(ticket)")) << take_error();
}

TEST_F(SupervisorBindingTest, ANaNTimeoutAndAnUnknownMethodAreRefused) {
  ASSERT_TRUE(py.exec("ticket = sh('sleep 5')")) << take_error();
  EXPECT_EQ(py.show("table.wait(ticket, float('nan'))"), "raised builtins.ValueError: timeout must not be NaN");
  EXPECT_EQ(py.show("table.admit(os.getpid(), 'thread')"), "raised builtins.ValueError: unknown start method: thread");
  ASSERT_TRUE(py.exec("table.signal(ticket, signal.SIGKILL)\ntable.wait(ticket, 10)\ntable.release(ticket)"))
      << take_error();
}

TEST_F(SupervisorBindingTest, AReleasedRunningChildIsAnOrphanUntilItEnds) {
  ASSERT_TRUE(py.exec("ticket = sh('sleep 0.2')\ntable.release(ticket)")) << take_error();
  EXPECT_EQ(py.show("(table.view(ticket)['orphan'], ticket in table.running())"), "(True, False)");
  ASSERT_TRUE(py.exec("import time\n"
                      "deadline = time.monotonic() + 10\n"
                      "while table.view(ticket) is not None and time.monotonic() < deadline:\n"
                      "    table.reap_orphans(); time.sleep(0.02)\n"))
      << take_error();
  EXPECT_EQ(py.show("table.view(ticket)"), "None");
}

}  // namespace
}  // namespace mphost::embed
