#include "mphost/runtime/exit_status.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <system_error>

#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

TEST(ExitStatusTest, NormalExitGivesItsCode) {
  testing::watchdog dog(10s);
  const pid_t pid = testing::fork_child([] { return 7; });
  EXPECT_EQ(wait_for_exit(pid, true), 7);
}

TEST(ExitStatusTest, DeathBySignalGivesMinusSignum) {
  testing::watchdog dog(10s);
  const pid_t pid = testing::fork_child([] {
    ::raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(wait_for_exit(pid, true), -SIGKILL);
}

TEST(ExitStatusTest, NonBlockingWaitReportsARunningChild) {
  testing::watchdog dog(10s);
  int gate[2];
  ASSERT_EQ(::pipe(gate), 0);
  const pid_t pid = testing::fork_child([&] {
    char byte;
    ::close(gate[1]);
    return ::read(gate[0], &byte, 1) == 0 ? 3 : 4;
  });
  ::close(gate[0]);
  EXPECT_EQ(wait_for_exit(pid, false), std::nullopt);
  ::close(gate[1]);
  EXPECT_EQ(wait_for_exit(pid, true), 3);
}

TEST(ExitStatusTest, WaitingForAStrangerThrowsEchild) {
  try {
    wait_for_exit(::getpid(), false);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ECHILD);
  }
}

TEST(ExitStatusTest, StatusConversion) {
  EXPECT_EQ(exit_code_from_wait_status(0), 0);
  EXPECT_EQ(exit_code_from_wait_status(3 << 8), 3);
  EXPECT_EQ(exit_code_from_wait_status(SIGTERM), -SIGTERM);
}

}  // namespace
}  // namespace mphost::runtime
