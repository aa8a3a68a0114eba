// The endpoint table of a channel at scale: fork children's inherited
// places beyond the old 256-slot limit, a killed child's places freed, a
// zombie counted as dead, the table's pages allocated only as used, and the
// cached liveness verdicts (process_seems_alive).

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "detail/channel_layout.hpp"
#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"
#include "channel_fixture.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::fork_child;
using mphost::testing::wait_child;
using mphost::testing::watchdog;

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

// Children that hold what they inherited until released (their end of a
// pipe reads EOF) and then exit 0. add() returns once the child runs (its
// fork handlers have taken over its places: a child killed before that
// leaves its places pending until they lapse, channel.hpp).
class held_children {
 public:
  held_children() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    hold_ = fds[0];
    release_ = fds[1];
    EXPECT_EQ(::pipe(fds), 0);
    ready_read_ = fds[0];
    ready_write_ = fds[1];
  }
  ~held_children() {
    release();
    for (pid_t p : pids_) ::kill(p, SIGKILL);
    for (pid_t p : pids_) wait_child(p);
    ::close(ready_read_);
    ::close(ready_write_);
  }
  pid_t add() {
    const int hold = hold_;
    const int release = release_;
    const int ready = ready_write_;
    const pid_t p = fork_child([hold, release, ready] {
      ::close(release);
      char c = 'r';
      (void)::write(ready, &c, 1);
      while (::read(hold, &c, 1) < 0 && errno == EINTR) {
      }
      return 0;
    });
    pids_.push_back(p);
    char c;
    while (::read(ready_read_, &c, 1) < 0 && errno == EINTR) {
    }
    return p;
  }
  void release() {
    if (release_ >= 0) ::close(release_);
    if (hold_ >= 0) ::close(hold_);
    release_ = hold_ = -1;
  }
  std::vector<pid_t>& pids() { return pids_; }

 private:
  int hold_ = -1;
  int release_ = -1;
  int ready_read_ = -1;
  int ready_write_ = -1;
  std::vector<pid_t> pids_;
};

// Bytes of /dev/shm the channel's control segment really occupies.
std::uint64_t allocated_bytes(const std::string& name) {
  struct stat st{};
  const std::string path = "/dev/shm/" + (name[0] == '/' ? name.substr(1) : name);
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds budget) {
  const auto until = std::chrono::steady_clock::now() + budget;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

class ChannelTableTest : public testing::channel_test_base {
 protected:
  ChannelTableTest() : channel_test_base("tb-") {}
  channel make(endpoint_role role) { return channel_test_base::make(options(), role); }
};

TEST_F(ChannelTableTest, ForkChildrenHoldInheritedPlacesFarBeyondTheOldLimit) {
  watchdog guard(120s);
  constexpr int children = 600;  // the table had 256 places
  std::vector<channel> channels;
  for (int i = 0; i < 4; ++i) channels.push_back(make(endpoint_role::both));
  held_children held;
  for (int i = 0; i < children; ++i) held.add();
  for (channel& ch : channels) {
    const auto n = ch.endpoints();
    EXPECT_EQ(n.readers, 1u + children);
    EXPECT_EQ(n.writers, 1u + children);
    // Pages of the table are allocated as the places are used, not up front.
    EXPECT_LT(allocated_bytes(ch.name()), ch.capacity() + 64 * 1024 + (children + 1) * sizeof(detail::endpoint_slot) + 8192);
  }
  // A newcomer still finds a place, and messages go both ways.
  channel late = channel::open(channels[0].name(), endpoint_role::both);
  ASSERT_EQ(late.send(bytes_of("x"), deadline::after(5s)), wait_result::ok);
  message m;
  ASSERT_EQ(channels[0].recv(m, deadline::after(5s)), wait_result::ok);
  held.release();
  for (pid_t p : held.pids()) EXPECT_TRUE(wait_child(p).exited);
  held.pids().clear();
  for (channel& ch : channels) {
    const auto n = ch.endpoints();
    EXPECT_EQ(n.writers, ch.name() == late.name() ? 2u : 1u);
  }
}

TEST_F(ChannelTableTest, KilledChildrensPlacesAreFreedAndReused) {
  watchdog guard(120s);
  channel ch = make(endpoint_role::both);
  const std::uint64_t before = allocated_bytes(ch.name());
  for (int round = 0; round < 20; ++round) {
    held_children held;
    for (int i = 0; i < 50; ++i) held.add();
    EXPECT_EQ(ch.endpoints().writers, 51u);
    for (pid_t p : held.pids()) ::kill(p, SIGKILL);
    for (pid_t p : held.pids()) EXPECT_FALSE(wait_child(p).exited);
    held.pids().clear();
    EXPECT_TRUE(eventually([&] { return ch.endpoints().writers == 1u; }, 5s)) << ch.endpoints().writers;
  }
  // 1000 killed children went through 51 places: the table did not grow.
  EXPECT_LE(allocated_bytes(ch.name()), before + 4096);
}

TEST_F(ChannelTableTest, AZombieHoldingTheOnlyWriterReadsAsEndOfFile) {
  watchdog guard(30s);
  channel r = make(endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  held_children held;
  const pid_t child = held.add();  // inherits w
  w.close();
  message m;
  // The child's copy keeps the channel open, as a descriptor would.
  EXPECT_EQ(r.recv(m, deadline::after(300ms)), wait_result::timed_out);
  ::kill(child, SIGKILL);
  // Not reaped: a zombie, which never writes again.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(r.recv(m, deadline::after(10s)), wait_result::closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_FALSE(process_seems_alive(child));
  EXPECT_FALSE(process_is_alive(child));
}

TEST_F(ChannelTableTest, AnInheritedWriterKeepsThePipeOpenUntilTheChildEnds) {
  watchdog guard(30s);
  channel r = make(endpoint_role::reader);
  channel w = channel::open(r.name(), endpoint_role::writer);
  const pid_t child = fork_child([&w] {
    std::this_thread::sleep_for(300ms);
    return w.send(bytes_of("from child"), deadline::after(5s)) == wait_result::ok ? 0 : 1;
  });
  w.close();
  message m;
  ASSERT_EQ(r.recv(m, deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(m.size(), 10u);
  EXPECT_EQ(r.recv(m, deadline::after(10s)), wait_result::closed);
  const auto res = wait_child(child);
  EXPECT_TRUE(res.exited);
  EXPECT_EQ(res.code, 0);
}

TEST(ProcessVerdicts, CachedVerdictsFollowDeathWithinTheirValidity) {
  watchdog guard(30s);
  EXPECT_TRUE(process_seems_alive(::getpid()));
  EXPECT_TRUE(process_seems_alive(process_identity::current().pid, process_identity::current().start_time));
  EXPECT_FALSE(process_seems_alive(::getpid(), process_identity::current().start_time + 1));
  EXPECT_FALSE(process_seems_alive(0));
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = fork_child([&] {
    char c;
    ::close(fds[1]);
    (void)::read(fds[0], &c, 1);
    return 0;
  });
  ::close(fds[0]);
  const std::uint64_t start = process_start_time(child);
  EXPECT_TRUE(process_seems_alive(child, start));
  EXPECT_FALSE(process_seems_alive(child, start + 1));  // another process's start time
  ::kill(child, SIGKILL);
  // A zombie: dead once the cached "alive" lapses (25 ms), long before 1 s.
  EXPECT_TRUE(eventually([&] { return !process_seems_alive(child, start); }, 1s));
  wait_child(child);
  EXPECT_FALSE(process_seems_alive(child, start));
  forget_process_verdicts();
  EXPECT_FALSE(process_seems_alive(child, start));
  ::close(fds[1]);
}

}  // namespace
}  // namespace mphost::ipc
