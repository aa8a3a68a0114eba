// The live state of a program tree (ipc/tree_state.hpp, process_table.hpp)
// with real processes: forked children noted by the supervisor, a lock held
// by a child, a full channel, and a tree stuck on purpose read from another
// process by its root pid.
#include "mphost/ipc/tree_state.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/ipc/process_table.hpp"
#include "mphost/ipc/resource_registry.hpp"
#include "mphost/ipc/semaphore.hpp"
#include "mphost/runtime/supervisor.hpp"
#include "mphost/testing/child_process.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;

std::string test_prefix() { return "mphost-tst" + std::to_string(::getpid()) + "-reg-"; }

// A registry of this process made current for the test, removed after it.
class TreeStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_current_registry(resource_registry::create(1024, test_prefix(), 64));
    ASSERT_TRUE(join_current_registry());
  }
  void TearDown() override {
    if (resource_registry* r = current_registry()) r->remove_all();
    set_current_registry(resource_registry());
  }
};

// Blocks until one byte arrives on `fd` (or 20 s pass).
bool await_byte(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 20000) != 1) return false;
  char c;
  return ::read(fd, &c, 1) == 1;
}

const process_view* find_process(const tree_snapshot& s, pid_t pid) {
  for (const auto& p : s.processes) {
    if (p.record.pid == pid) return &p;
  }
  return nullptr;
}

template <typename F>
bool eventually(F&& ok, std::chrono::milliseconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (ok()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return ok();
}

TEST_F(TreeStateTest, SupervisedChildrenAreNotedWithNameRoleAndExitCode) {
  ASSERT_TRUE(note_this_process(process_role::main, "MainProcess"));
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  auto& table = runtime::supervisor::of_this_process();
  std::vector<runtime::forked> kids;
  for (int i = 0; i < 2; ++i) {
    const runtime::forked f = table.fork_child({}, false);
    if (f.pid == 0) {
      note_this_process(process_role::child, "worker-" + std::to_string(i), process_method::fork);
      await_byte(go[0]);
      ::_exit(3 + i);
    }
    kids.push_back(f);
  }
  ASSERT_TRUE(eventually([&] {
    const tree_snapshot s = take_tree_snapshot(0);
    for (const auto& f : kids) {
      const process_view* p = find_process(s, f.pid);
      if (p == nullptr || p->record.state != process_state::running) return false;
    }
    return true;
  }));
  const tree_snapshot running = take_tree_snapshot(0);
  EXPECT_EQ(running.root, ::getpid());
  const process_view* me = find_process(running, ::getpid());
  ASSERT_NE(me, nullptr);
  EXPECT_EQ(me->record.role, process_role::main);
  EXPECT_GT(me->cpu_seconds, 0.0 - 1e-9);
  EXPECT_GT(me->rss_bytes, 0);
  for (int i = 0; i < 2; ++i) {
    const process_view* p = find_process(running, kids[i].pid);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->record.name, "worker-" + std::to_string(i));
    EXPECT_EQ(p->record.role, process_role::child);
    EXPECT_EQ(p->record.method, process_method::fork);
    EXPECT_EQ(p->record.ppid, ::getpid());
    EXPECT_TRUE(p->alive);
    EXPECT_FALSE(p->record.exit_code.has_value());
  }
  // One ends normally, the other is killed.
  ::kill(kids[1].pid, SIGKILL);
  EXPECT_EQ(table.wait(kids[1].ticket, deadline::after(20s)), wait_result::ok);
  ASSERT_EQ(::write(go[1], "x", 1), 1);
  for (const auto& f : kids) EXPECT_EQ(table.wait(f.ticket, deadline::after(20s)), wait_result::ok);
  const tree_snapshot ended = take_tree_snapshot(0);
  for (const auto& f : kids) {
    const process_view* p = find_process(ended, f.pid);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->record.state, process_state::exited);
    EXPECT_FALSE(p->alive);
    EXPECT_EQ(p->record.exit_code, table.poll(f.ticket));
    table.release(f.ticket);
  }
  EXPECT_EQ(find_process(ended, kids[1].pid)->record.exit_code, -SIGKILL);
  ::close(go[0]);
  ::close(go[1]);
}

TEST_F(TreeStateTest, ALockHeldByAChildNamesItsHolderEvenUnlinked) {
  semaphore named = semaphore::create(semlock_kind::semaphore, 1, 1, test_prefix() + "lock");
  // A fork-context lock: unlinked at once, found through the tree's mappings.
  semaphore anonymous = semaphore::create(semlock_kind::semaphore, 1, 1);
  const std::string anonymous_name = anonymous.name();
  semaphore::unlink(anonymous_name);
  ASSERT_TRUE(note_this_process(process_role::main, "MainProcess"));
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  const pid_t holder = testing::fork_child([&] {
    if (named.acquire() != wait_result::ok || anonymous.acquire() != wait_result::ok) return 1;
    (void)!::write(ready[1], "x", 1);
    await_byte(done[0]);
    named.release();
    anonymous.release();
    return 0;
  });
  ASSERT_TRUE(await_byte(ready[0]));
  const tree_snapshot s = take_tree_snapshot(0);
  int found = 0;
  for (const sync_view& v : s.syncs) {
    const std::string bare = v.name;
    if (bare != named.name().substr(named.name().front() == '/') && bare != anonymous_name.substr(anonymous_name.front() == '/')) continue;
    ++found;
    EXPECT_EQ(v.kind, "Lock");
    EXPECT_EQ(v.value, 0);
    EXPECT_EQ(v.maxvalue, 1);
    ASSERT_TRUE(v.holder_pid.has_value());
    EXPECT_EQ(*v.holder_pid, holder);
  }
  EXPECT_EQ(found, 2);
  ASSERT_EQ(::write(done[1], "x", 1), 1);
  EXPECT_EQ(testing::wait_child(holder).code, 0);
  for (const sync_view& v : take_tree_snapshot(0).syncs) {
    if (v.kind == "Lock") {
      EXPECT_FALSE(v.holder_pid.has_value()) << v.name;
    }
  }
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
}

TEST_F(TreeStateTest, AFullChannelShowsItsDepthBytesAndBlockedWriter) {
  channel_options options;
  options.capacity = 4096;
  const std::string prefix = test_prefix() + "ch-";
  options.prefix = prefix;
  channel reader = channel::create(options, endpoint_role::reader);
  channel writer = channel::open(reader.name(), endpoint_role::writer, reader.hand_over(endpoint_role::writer));
  label_channel(reader.name().front() == '/' ? reader.name().substr(1) : reader.name(), "Queue");
  const std::vector<std::byte> payload(500, std::byte{7});
  std::size_t sent = 0;
  while (writer.send(payload, deadline::after(0ms)) == wait_result::ok) ++sent;
  ASSERT_GT(sent, 3u);
  // A child blocks sending one more.
  const pid_t blocked = testing::fork_child([&] {
    channel w = channel::open(reader.name(), endpoint_role::writer);
    return w.send(payload, deadline::after(30s)) == wait_result::ok ? 0 : 1;
  });
  auto view = [&]() -> std::optional<channel_view> {
    for (const channel_view& c : take_tree_snapshot(0).channels) {
      if (reader.name().find(c.name) != std::string::npos) return c;
    }
    return std::nullopt;
  };
  ASSERT_TRUE(eventually([&] { auto c = view(); return c && c->writers_waiting == 1; }));
  const channel_view full = *view();
  EXPECT_EQ(full.label, "Queue");
  EXPECT_EQ(full.depth, sent);
  EXPECT_EQ(full.messages_total, sent);
  EXPECT_GE(full.bytes_in_flight, sent * 500);
  EXPECT_EQ(full.capacity, 4096u);
  EXPECT_FALSE(full.unbounded);
  EXPECT_EQ(full.creator_pid, ::getpid());
  // Draining lets the child's message in.
  message m;
  for (std::size_t i = 0; i < sent; ++i) ASSERT_EQ(reader.recv(m, deadline::after(5s)), wait_result::ok);
  EXPECT_EQ(testing::wait_child(blocked).code, 0);
  ASSERT_TRUE(eventually([&] { auto c = view(); return c && c->messages_total == sent + 1 && c->depth == 1; }));
}

// A separate tree, stuck: its root holds a lock a child of it waits for.
// Another process reads it by the root's pid, quickly, and leaves it as it was.
TEST(TreeStateStuck, AnotherProcessReadsAStuckTreeByPid) {
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  const pid_t root = testing::fork_child([&] {
    set_current_registry(resource_registry());
    if (!start_root_registry()) return 2;
    note_this_process(process_role::main, "StuckRoot");
    semaphore lock = semaphore::create(semlock_kind::semaphore, 1, 1);
    semaphore::unlink(lock.name());
    if (lock.acquire() != wait_result::ok) return 3;
    auto& table = runtime::supervisor::of_this_process();
    const runtime::forked waiter = table.fork_child({}, true);
    if (waiter.pid == 0) {
      note_this_process(process_role::child, "waiter", process_method::fork);
      const wait_result got = lock.acquire(deadline::after(60s));
      ::_exit(got == wait_result::ok ? 0 : 4);
    }
    const std::string pid_text = std::to_string(waiter.pid) + "\n";
    (void)!::write(ready[1], pid_text.data(), pid_text.size());
    await_byte(done[0]);
    lock.release();
    table.wait(waiter.ticket, deadline::after(20s));
    const int code = table.poll(waiter.ticket).value_or(5);
    finish_root_registry();
    return code;
  });
  char text[32] = {};
  std::size_t got = 0;
  while (got < sizeof text - 1 && ::read(ready[0], text + got, 1) == 1 && text[got] != '\n') ++got;
  const pid_t waiter = std::atoi(text);
  ASSERT_GT(waiter, 0);
  // The waiter is asleep on the lock once its state says so.
  ASSERT_TRUE(eventually([&] {
    const tree_snapshot s = take_tree_snapshot(root);
    const process_view* w = find_process(s, waiter);
    return w != nullptr && w->record.state == process_state::running && w->os_state == 'S' &&
           std::any_of(s.syncs.begin(), s.syncs.end(), [](const sync_view& v) { return v.may_have_waiters; });
  }));
  const auto start = std::chrono::steady_clock::now();
  const tree_snapshot s = take_tree_snapshot(root);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(s.root, root);
  EXPECT_TRUE(s.root_alive);
  EXPECT_EQ(s.registry, find_tree_registry(root));
  ASSERT_NE(find_process(s, root), nullptr);
  EXPECT_EQ(find_process(s, root)->record.name, "StuckRoot");
  ASSERT_NE(find_process(s, waiter), nullptr);
  EXPECT_EQ(find_process(s, waiter)->record.ppid, root);
  const auto held = std::find_if(s.syncs.begin(), s.syncs.end(), [](const sync_view& v) { return v.kind == "Lock"; });
  ASSERT_NE(held, s.syncs.end());
  EXPECT_EQ(held->holder_pid, root);
  EXPECT_TRUE(held->may_have_waiters);
  // Reading changed nothing: the tree goes on once the root lets go.
  ASSERT_EQ(::write(done[1], "x", 1), 1);
  const testing::child_result r = testing::wait_child(root);
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 0);
  EXPECT_THROW(take_tree_snapshot(root), std::system_error);
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
}

TEST(TreeStateStuck, NoSuchProgramIsAnError) {
  try {
    take_tree_snapshot(999999999);
    FAIL() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ESRCH);
  }
}

}  // namespace
}  // namespace mphost::ipc
