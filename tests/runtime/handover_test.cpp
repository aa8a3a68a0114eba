#include "mphost/runtime/handover.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "mphost/ipc/error.hpp"
#include "mphost/runtime/exit_status.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

TEST(HandoverTest, DescriptorsArriveAtTheirTargetNumbers) {
  testing::watchdog dog(20s);
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  int p1[2], p2[2];
  ASSERT_EQ(::pipe(p1), 0);
  ASSERT_EQ(::pipe(p2), 0);
  // Targets chosen to collide with the receiver's socket and with each other's sources.
  const int target_a = pair[1];
  const int target_b = 40;
  const pid_t pid = testing::fork_child([&] {
    ::close(pair[0]);
    ::close(p1[0]);
    ::close(p2[0]);
    int sock = pair[1];
    const std::vector<std::byte> payload = receive_handover(sock);
    if (std::string(reinterpret_cast<const char*>(payload.data()), payload.size()) != "work") return 2;
    if (sock == target_a) return 3;
    if (::write(target_a, "a", 1) != 1 || ::write(target_b, "b", 1) != 1) return 4;
    // Placed descriptors are inheritable; they were close-on-exec before.
    if ((::fcntl(target_b, F_GETFD) & FD_CLOEXEC) != 0) return 5;
    return 0;
  });
  ::close(pair[1]);
  const fd_placement fds[] = {{p1[1], target_a}, {p2[1], target_b}};
  send_handover(pair[0], bytes_of("work"), fds);
  ::close(p1[1]);
  ::close(p2[1]);
  char a = 0, b = 0;
  EXPECT_EQ(::read(p1[0], &a, 1), 1);
  EXPECT_EQ(::read(p2[0], &b, 1), 1);
  EXPECT_EQ(a, 'a');
  EXPECT_EQ(b, 'b');
  EXPECT_EQ(wait_for_exit(pid, true), 0);
  ::close(pair[0]);
  ::close(p1[0]);
  ::close(p2[0]);
}

TEST(HandoverTest, LargePayloadCrossesWhole) {
  testing::watchdog dog(20s);
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  const std::string big(5 << 20, 'q');
  const pid_t pid = testing::fork_child([&] {
    ::close(pair[0]);
    int sock = pair[1];
    return receive_handover(sock).size() == big.size() ? 0 : 1;
  });
  ::close(pair[1]);
  send_handover(pair[0], bytes_of(big), {});
  EXPECT_EQ(wait_for_exit(pid, true), 0);
  ::close(pair[0]);
}

TEST(HandoverTest, ClosedSocketIsPeerClosed) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  ::close(pair[0]);
  int sock = pair[1];
  try {
    receive_handover(sock);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), errc::peer_closed);
  }
  ::close(sock);
}

TEST(HandoverTest, GarbageHeaderIsCorruptFrame) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  ASSERT_EQ(::write(pair[0], "XXXXXXXXXXXXXXXXXXXX", 20), 20);
  int sock = pair[1];
  try {
    receive_handover(sock);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), errc::corrupt_frame);
  }
  ::close(pair[0]);
  ::close(sock);
}

}  // namespace
}  // namespace mphost::runtime
