#include "mphost/runtime/sentinel.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include "mphost/runtime/exit_status.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

TEST(SentinelTest, BecomesReadableWhenTheChildEnds) {
  ASSERT_TRUE(pidfd_supported());
  testing::watchdog dog(10s);
  int gate[2];
  ASSERT_EQ(::pipe(gate), 0);
  const pid_t pid = testing::fork_child([&] {
    char byte;
    ::close(gate[1]);
    return static_cast<int>(::read(gate[0], &byte, 1));
  });
  ::close(gate[0]);
  const int fd = open_process_sentinel(pid);
  EXPECT_FALSE(sentinel_ready(fd));
  ::close(gate[1]);
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, -1), 1);
  EXPECT_TRUE(sentinel_ready(fd));
  // The pidfd does not reap: the exit code is still ours to collect.
  EXPECT_EQ(wait_for_exit(pid, true), 0);
  ::close(fd);
}

TEST(SentinelTest, ManyChildrenAtOnceEachReportTheirOwnExit) {
  testing::watchdog dog(20s);
  constexpr int count = 32;
  pid_t pids[count];
  int fds[count];
  for (int i = 0; i < count; ++i) {
    pids[i] = testing::fork_child([i] { return i; });
    fds[i] = open_process_sentinel(pids[i]);
  }
  for (int i = 0; i < count; ++i) {
    pollfd p{fds[i], POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, -1), 1);
    EXPECT_EQ(wait_for_exit(pids[i], true), i);
    ::close(fds[i]);
  }
}

TEST(SentinelTest, OpeningForANonexistentPidThrows) {
  EXPECT_THROW(open_process_sentinel(0x3ffffff0), std::system_error);
}

}  // namespace
}  // namespace mphost::runtime
