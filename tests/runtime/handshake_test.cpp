#include "mphost/runtime/handshake.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "mphost/ipc/error.hpp"
#include "mphost/runtime/exit_status.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

TEST(HandshakeTest, MessagesCrossAProcessBoundaryWhole) {
  testing::watchdog dog(20s);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const std::string big(3 << 20, 'x');  // larger than a pipe buffer
  const pid_t pid = testing::fork_child([&] {
    ::close(p[0]);
    write_message(p[1], bytes_of("hello"));
    write_message(p[1], bytes_of(""));
    write_message(p[1], bytes_of(big));
    return 0;
  });
  ::close(p[1]);
  auto first = read_message(p[0]);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(first.data()), first.size()), "hello");
  EXPECT_TRUE(read_message(p[0]).empty());
  auto third = read_message(p[0]);
  EXPECT_EQ(third.size(), big.size());
  EXPECT_THROW(read_message(p[0]), std::system_error);
  ::close(p[0]);
  EXPECT_EQ(wait_for_exit(pid, true), 0);
}

TEST(HandshakeTest, TruncatedMessageIsPeerClosed) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const unsigned char header[8] = {100, 0, 0, 0, 0, 0, 0, 0};
  write_all(p[1], header, sizeof header);
  write_all(p[1], "abc", 3);
  ::close(p[1]);
  try {
    read_message(p[0]);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), errc::peer_closed);
  }
  ::close(p[0]);
}

TEST(HandshakeTest, OversizedLengthIsRejectedBeforeAllocating) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const unsigned char header[8] = {0, 0, 0, 0, 0, 0, 0, 0x7f};
  write_all(p[1], header, sizeof header);
  try {
    read_message(p[0], 1 << 20);
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), errc::message_too_large);
  }
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace
}  // namespace mphost::runtime
