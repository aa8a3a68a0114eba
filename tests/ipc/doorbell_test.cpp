#include "mphost/ipc/doorbell.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

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


// ---- socket doorbells ----

// A doorbell over one end of a socket pair, rung through a duplicate of the
// other end, which the test keeps as `peer` to write into like a Pipe's other
// end would.
struct socket_pair {
  doorbell bell;
  int peer = -1;
  socket_pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    peer = sv[1];
    bell = doorbell::over_socket(sv[0], ::fcntl(sv[1], F_DUPFD_CLOEXEC, 0));
  }
  ~socket_pair() { ::close(peer); }
};

long receive_text(doorbell& bell, std::string& text, std::vector<int>& fds, const deadline& until) {
  std::vector<std::byte> buf(64);
  wait_result result = wait_result::ok;
  const long n = bell.receive(buf, 4, fds, until, result);
  text.assign(reinterpret_cast<const char*>(buf.data()), n > 0 ? static_cast<std::size_t>(n) : 0);
  return n;
}

TEST(SocketDoorbellTest, RingingMakesTheSocketReadableUntilCleared) {
  socket_pair s;
  EXPECT_TRUE(s.bell.is_socket());
  EXPECT_FALSE(readable(s.bell.fd()));
  s.bell.ring();
  s.bell.ring();  // twice is once
  EXPECT_TRUE(readable(s.bell.fd()));
  s.bell.clear();
  EXPECT_FALSE(readable(s.bell.fd()));
}

TEST(SocketDoorbellTest, ClearLeavesTheBytesOfOthers) {
  socket_pair s;
  s.bell.ring();
  ASSERT_EQ(::write(s.peer, "\0", 1), 1);
  s.bell.clear();
  EXPECT_TRUE(readable(s.bell.fd()));  // the raw byte stays for its reader
  std::string text;
  std::vector<int> fds;
  ASSERT_EQ(receive_text(s.bell, text, fds, deadline::immediate()), 1);
  EXPECT_EQ(text, std::string(1, '\0'));
  EXPECT_TRUE(fds.empty());
  EXPECT_FALSE(readable(s.bell.fd()));
}

TEST(SocketDoorbellTest, ReceiveSkipsMarkersAndStopsBeforeTheNextOnes) {
  socket_pair s;
  s.bell.ring();
  ASSERT_EQ(::write(s.peer, "ab", 2), 2);
  s.bell.ring();  // readable already: adds nothing
  const unsigned char marker = 0xFF;
  ASSERT_EQ(::write(s.peer, &marker, 1), 1);
  ASSERT_EQ(::write(s.peer, "c", 1), 1);
  std::string text;
  std::vector<int> fds;
  ASSERT_EQ(receive_text(s.bell, text, fds, deadline::after(1s)), 2);
  EXPECT_EQ(text, "ab");
  ASSERT_EQ(receive_text(s.bell, text, fds, deadline::after(1s)), 1);
  EXPECT_EQ(text, "c");
  wait_result result = wait_result::ok;
  std::vector<std::byte> buf(8);
  EXPECT_EQ(s.bell.receive(buf, 0, fds, deadline::after(20ms), result), -1);
  EXPECT_EQ(result, wait_result::timed_out);
}

TEST(SocketDoorbellTest, ReceivePassesDescriptorsSentIntoThePeer) {
  socket_pair s;
  s.bell.ring();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  char byte = 1;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &p[1], sizeof(int));
  ASSERT_EQ(::sendmsg(s.peer, &msg, 0), 1);
  ::close(p[1]);
  s.bell.clear();  // must not take the descriptor's byte
  std::string text;
  std::vector<int> fds;
  ASSERT_EQ(receive_text(s.bell, text, fds, deadline::after(1s)), 1);
  EXPECT_EQ(text, std::string(1, '\1'));
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_TRUE(::fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  ASSERT_EQ(::write(fds[0], "x", 1), 1);
  char got = 0;
  ASSERT_EQ(::read(p[0], &got, 1), 1);
  EXPECT_EQ(got, 'x');
  ::close(fds[0]);
  ::close(p[0]);
}

TEST(SocketDoorbellTest, ReceiveReportsEndOfFileWhenThePeerIsClosedEverywhere) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  doorbell bell = doorbell::over_socket(sv[0], -1);  // write-only end: no ring
  bell.ring();
  EXPECT_FALSE(readable(bell.fd()));
  ::close(sv[1]);
  std::string text;
  std::vector<int> fds;
  EXPECT_EQ(receive_text(bell, text, fds, deadline::after(1s)), 0);
}

TEST(SocketDoorbellTest, AnEventfdDoorbellCannotReceive) {
  doorbell bell;
  std::vector<std::byte> buf(1);
  std::vector<int> fds;
  wait_result result = wait_result::ok;
  EXPECT_THROW(bell.receive(buf, 0, fds, deadline::immediate(), result), std::system_error);
}

TEST(DoorbellTest, RingSocketWritesThroughADescriptorOfThatSocket) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const std::uint64_t peer = doorbell::socket_inode(sv[1]);
  ASSERT_NE(peer, 0u);
  EXPECT_EQ(doorbell::socket_inode(-1), 0u);
  {
    doorbell reader = doorbell::over_socket(sv[0], -1);
    reader.set_reads_markers(true);
    EXPECT_FALSE(doorbell::ring_socket(peer)) << "no doorbell holds the peer yet";
    {
      doorbell writer = doorbell::over_socket(sv[1], -1);
      doorbell moved = std::move(writer);  // moving keeps the registration
      EXPECT_TRUE(doorbell::ring_socket(peer));
      EXPECT_TRUE(readable(reader.fd()));
      reader.clear();
      EXPECT_FALSE(readable(reader.fd()));
      EXPECT_FALSE(reader.at_end_of_file());
    }
    EXPECT_FALSE(doorbell::ring_socket(peer)) << "gone with its doorbell";
    EXPECT_TRUE(readable(reader.fd()));
    EXPECT_TRUE(reader.at_end_of_file());
  }
}

TEST(DoorbellTest, DroppingTheRingEndLetsThePeerEndOfFileShow) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  doorbell reader = doorbell::over_socket(sv[0], ::fcntl(sv[1], F_DUPFD_CLOEXEC, 0));
  ::close(sv[1]);
  EXPECT_FALSE(reader.at_end_of_file()) << "the ring end is a copy of the peer";
  reader.ring();
  EXPECT_TRUE(readable(reader.fd()));
  reader.clear();
  reader.drop_ring_end();
  EXPECT_EQ(reader.ring_fd(), -1);
  EXPECT_TRUE(reader.at_end_of_file());
}

}  // namespace
}  // namespace mphost::ipc
