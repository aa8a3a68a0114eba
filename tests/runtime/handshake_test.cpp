#include "mphost/runtime/handshake.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <new>
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

// A length within the limit that the peer does not back with bytes must not
// reserve it up front (found by tests/fuzz/fuzz_handshake: 32 GiB allocated
// for a 1-byte message). Run with 1 GiB of address space: reserving the
// declared length would fail with bad_alloc instead of peer_closed.
TEST(HandshakeTest, LargeDeclaredLengthIsNotReservedBeforeTheBytesArrive) {
  testing::watchdog dog(20s);
  const testing::child_result r = testing::run_in_child([] {
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
    // (A sanitizer's runtime reserves far more address space than that and
    // cannot map its own memory under such a limit; the release build checks
    // this with the limit.)
    const rlimit limit{std::uint64_t{1} << 30, std::uint64_t{1} << 30};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) return 2;
#endif
    int p[2];
    if (::pipe(p) != 0) return 3;
    const unsigned char header[8] = {0, 0, 0, 0, 8, 0, 0, 0};  // 32 GiB, below the default limit
    write_all(p[1], header, sizeof header);
    write_all(p[1], "x", 1);
    ::close(p[1]);
    try {
      read_message(p[0]);
    } catch (const std::system_error& e) {
      return e.code() == errc::peer_closed ? 0 : 4;
    } catch (const std::bad_alloc&) {
      return 5;
    }
    return 6;
  });
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 0) << "2/3: setup, 4: another error, 5: reserved the declared length, 6: no error";
}

// A message that grows past the first step arrives whole.
TEST(HandshakeTest, MessageLargerThanTheGrowthStepArrivesWhole) {
  testing::watchdog dog(20s);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::string big(5 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  const pid_t pid = testing::fork_child([&] {
    ::close(p[0]);
    write_message(p[1], bytes_of(big));
    return 0;
  });
  ::close(p[1]);
  const auto got = read_message(p[0]);
  ::close(p[0]);
  ASSERT_EQ(got.size(), big.size());
  EXPECT_EQ(std::memcmp(got.data(), big.data(), big.size()), 0);
  EXPECT_TRUE(testing::wait_child(pid).exited);
}

}  // namespace
}  // namespace mphost::runtime
