#include "mphost/runtime/forkserver.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mphost/ipc/error.hpp"
#include "mphost/ipc/fd_passing.hpp"
#include "mphost/runtime/exit_status.hpp"
#include "mphost/runtime/names.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

// A zygote in a forked process: each of its children writes its own pid to
// the first descriptor it received and exits with the second byte it reads.
struct zygote_fixture {
  forkserver_listener listener = open_forkserver_listener();
  std::string token = new_forkserver_token();
  int alive[2] = {-1, -1};
  pid_t zygote = -1;

  zygote_fixture() {
    EXPECT_EQ(::pipe(alive), 0);
    zygote = testing::fork_child([this] {
      ::close(alive[1]);
      auto fds = run_zygote(listener.fd, alive[0], token, {});
      if (!fds) return 0;  // the zygote ends
      // In a forked child: fds[0] is a pipe to write to, fds[1] a pipe to read from.
      const pid_t self = ::getpid();
      if (::write((*fds)[0], &self, sizeof self) != sizeof self) ::_exit(90);
      char code = 0;
      if (::read((*fds)[1], &code, 1) != 1) ::_exit(91);
      ::_exit(code);
    });
    ::close(alive[0]);
  }
  ~zygote_fixture() {
    ::close(alive[1]);
    EXPECT_EQ(wait_for_exit(zygote, true), 0);
    ::close(listener.fd);
    remove_private_directory(listener.directory);
  }
};

// A child of the zygote, started and running: it has reported its pid and
// waits for the exit code to use (see zygote_fixture).
struct running_child {
  forked_child child;
  int from_child = -1;  // where it wrote its pid
  int to_child = -1;    // where it reads its exit code

  explicit running_child(const zygote_fixture& z) {
    int out[2], in[2];
    EXPECT_EQ(::pipe(out), 0);
    EXPECT_EQ(::pipe(in), 0);
    const int send[] = {out[1], in[0]};
    child = request_fork(z.listener.path, z.token, send);
    ::close(out[1]);
    ::close(in[0]);
    from_child = out[0];
    to_child = in[1];
    pid_t reported = 0;
    EXPECT_EQ(::read(from_child, &reported, sizeof reported), static_cast<ssize_t>(sizeof reported));
    EXPECT_EQ(reported, child.pid);
  }
  ~running_child() {
    ::close(child.status_fd);
    ::close(from_child);
    ::close(to_child);
  }
  void exit_with(int code) const {
    const char byte = static_cast<char>(code);
    EXPECT_EQ(::write(to_child, &byte, 1), 1);
  }
};

TEST(ForkserverTest, SocketLivesInAPrivateDirectory) {
  testing::watchdog dog(10s);
  zygote_fixture z;
  struct stat st{};
  ASSERT_EQ(::stat(z.listener.directory.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(z.listener.path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
}

TEST(ForkserverTest, ForksChildrenAndReportsTheirExitCodes) {
  testing::watchdog dog(20s);
  zygote_fixture z;
  for (int code : {0, 3, 42}) {
    running_child c(z);
    pollfd p{c.child.status_fd, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0) << "status before the child ended";
    c.exit_with(code);
    EXPECT_EQ(read_child_exit_code(c.child.status_fd), code);
  }
}

TEST(ForkserverTest, ChildKilledBySignalReportsMinusSignum) {
  testing::watchdog dog(20s);
  zygote_fixture z;
  running_child c(z);
  ::kill(c.child.pid, SIGKILL);
  EXPECT_EQ(read_child_exit_code(c.child.status_fd), -SIGKILL);
}

TEST(ForkserverTest, EndedChildKeepsItsPidUntilItsExitCodeIsCollected) {
  testing::watchdog dog(20s);
  zygote_fixture z;
  running_child c(z);
  const forked_child& child = c.child;
  c.exit_with(4);
  // Ended, not reaped until the exit code is collected: the pid still names the zombie.
  pollfd ready{child.status_fd, POLLIN, 0};
  ASSERT_EQ(::poll(&ready, 1, -1), 1);
  EXPECT_EQ(::kill(child.pid, 0), 0);
  EXPECT_EQ(read_child_exit_code(child.status_fd), 4);
  bool gone = false;
  for (int i = 0; i < 2000 && !gone; ++i) {
    gone = ::kill(child.pid, 0) != 0 && errno == ESRCH;
    if (!gone) ::usleep(1000);
  }
  EXPECT_TRUE(gone) << "the zygote did not reap the child after its exit code was collected";
  // The sentinel stays readable once the child has ended.
  pollfd after{child.status_fd, POLLIN, 0};
  EXPECT_EQ(::poll(&after, 1, 5000), 1);
}

TEST(ForkserverTest, WrongTokenIsRefused) {
  testing::watchdog dog(20s);
  zygote_fixture z;
  std::string wrong = z.token;
  wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
  try {
    request_fork(z.listener.path, wrong, {});
    FAIL() << "the zygote accepted a wrong token";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), errc::auth_failed);
  }
}

// The request check apart from its I/O (what tests/fuzz/fuzz_forkserver_request
// drives over a socket pair).
TEST(ForkserverTest, RequestCheckAcceptsOnlyTheMagicTheCountAndTheToken) {
  const std::string token(forkserver_token_size, 't');
  std::string header = "MPFS";
  const std::uint32_t two = 2;
  header.append(reinterpret_cast<const char*>(&two), 4);
  header += token;
  ASSERT_EQ(header.size(), forkserver_request_size);
  const auto check = [&](const std::string& h, bool truncated, std::size_t fds, const std::string& t) {
    return forkserver_request_valid(std::span<const char>(h.data(), h.size()), truncated, fds, t);
  };
  EXPECT_TRUE(check(header, false, 2, token));
  EXPECT_FALSE(check(header, true, 2, token));    // more descriptors than the zygote takes
  EXPECT_FALSE(check(header, false, 1, token));   // a count that does not match
  EXPECT_FALSE(check(header, false, 2, std::string(forkserver_token_size, 'u')));
  EXPECT_FALSE(check(header, false, 2, "short"));
  EXPECT_FALSE(check(header.substr(0, header.size() - 1), false, 2, token));
  std::string bad_magic = header;
  bad_magic[0] = 'X';
  EXPECT_FALSE(check(bad_magic, false, 2, token));
  std::string bad_token = header;
  bad_token.back() ^= 1;
  EXPECT_FALSE(check(bad_token, false, 2, token));
}

// A request with descriptors and a wrong token: refused, and the descriptors
// that came with it are closed, not kept.
TEST(ForkserverTest, RefusedRequestClosesTheDescriptorsItCarried) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  std::string header = "MPFS";
  const std::uint32_t one = 1;
  header.append(reinterpret_cast<const char*>(&one), 4);
  header += std::string(forkserver_token_size, 'w');
  const int carried[] = {pipe_fds[1]};
  ASSERT_EQ(ipc::send_with_fds(pair[0], header.data(), header.size(), carried), static_cast<ssize_t>(header.size()));
  ::close(pipe_fds[1]);
  EXPECT_FALSE(receive_forkserver_request(pair[1], std::string(forkserver_token_size, 'k')).has_value());
  // Every write end is closed now: the read end sees end of file at once.
  char byte;
  EXPECT_EQ(::read(pipe_fds[0], &byte, 1), 0);
  ::close(pipe_fds[0]);
  ::close(pair[0]);
  ::close(pair[1]);
}

}  // namespace
}  // namespace mphost::runtime
