#include "mphost/ipc/doorbell.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <thread>

#include "mphost/testing/watchdog.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::watchdog;

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

TEST(DoorbellTest, ANewDoorbellIsQuietAndCloseOnExec) {
  doorbell bell;
  ASSERT_GE(bell.fd(), 0);
  EXPECT_FALSE(readable(bell.fd()));
  EXPECT_FALSE(bell.is_ringing());
  EXPECT_TRUE(::fcntl(bell.fd(), F_GETFD) & FD_CLOEXEC);
}

TEST(DoorbellTest, RingingMakesItReadableUntilCleared) {
  doorbell bell;
  bell.ring();
  EXPECT_TRUE(readable(bell.fd()));
  EXPECT_TRUE(readable(bell.fd()));  // level-triggered: polling does not consume
  bell.ring();
  bell.clear();  // ringing twice is ringing once
  EXPECT_FALSE(readable(bell.fd()));
  bell.clear();
  EXPECT_FALSE(readable(bell.fd()));
}

TEST(DoorbellTest, WaitSeesARingFromAnotherThread) {
  watchdog guard(10s);
  doorbell bell;
  std::thread ringer([&] {
    std::this_thread::sleep_for(10ms);
    bell.ring();
  });
  EXPECT_EQ(bell.wait(deadline::after(5s)), wait_result::ok);
  ringer.join();
}

TEST(DoorbellTest, WaitTimesOutWhenNobodyRings) {
  watchdog guard(10s);
  doorbell bell;
  EXPECT_EQ(bell.wait(deadline::after(20ms)), wait_result::timed_out);
  EXPECT_EQ(bell.wait(deadline::immediate()), wait_result::timed_out);
}

TEST(DoorbellTest, MovedDoorbellKeepsTheDescriptor) {
  doorbell a;
  const int fd = a.fd();
  doorbell b = std::move(a);
  EXPECT_EQ(a.fd(), -1);
  EXPECT_EQ(b.fd(), fd);
  b.ring();
  EXPECT_TRUE(readable(fd));
}

}  // namespace
}  // namespace mphost::ipc
