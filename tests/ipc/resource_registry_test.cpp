#include "mphost/ipc/resource_registry.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"
#include "shm_check.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::fork_child;
using mphost::testing::run_in_child;
using mphost::testing::wait_child;
using mphost::testing::watchdog;

// Registries of these tests carry the test prefix, so the fixture reports any
// left behind and the sweeps here never see a real program's registry.
std::string registry_prefix() { return testing::test_prefix() + "reg-"; }

class ResourceRegistryTest : public testing::shm_checked_test {
 protected:
  void TearDown() override {
    set_current_registry(resource_registry());
    shm_checked_test::TearDown();
  }
};

// A pipe the child reports names on, one per line.
class name_pipe {
 public:
  name_pipe() { EXPECT_EQ(::pipe(fds_), 0); }
  ~name_pipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void send(const std::string& name) const {
    const std::string line = name + "\n";
    (void)!::write(fds_[1], line.data(), line.size());
  }
  std::vector<std::string> receive(std::size_t count) const {
    std::vector<std::string> out;
    std::string current;
    char c;
    while (out.size() < count && ::read(fds_[0], &c, 1) == 1) {
      if (c == '\n') {
        out.push_back(current);
        current.clear();
      } else {
        current.push_back(c);
      }
    }
    return out;
  }

 private:
  int fds_[2] = {-1, -1};
};

TEST_F(ResourceRegistryTest, RecordsReleasesAndListsNames) {
  resource_registry r = resource_registry::create(1024, registry_prefix());
  testing::name_guard guard(r.name());
  EXPECT_EQ(r.owner(), process_identity::current());
  EXPECT_TRUE(r.owner_is_alive());
  EXPECT_EQ(r.slot_count(), 1024u);
  EXPECT_NE(r.record("mphost-a"), resource_registry::not_tracked);
  EXPECT_NE(r.record("/mphost-b"), resource_registry::not_tracked);
  EXPECT_TRUE(r.contains("mphost-a"));
  EXPECT_TRUE(r.contains("/mphost-a"));
  EXPECT_TRUE(r.contains("mphost-b"));
  EXPECT_FALSE(r.contains("mphost-c"));
  auto names = r.names();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"mphost-a", "mphost-b"}));
  EXPECT_EQ(r.release("mphost-a"), 1u);
  EXPECT_EQ(r.release("mphost-a"), 0u);
  EXPECT_FALSE(r.contains("mphost-a"));
  EXPECT_EQ(r.names(), std::vector<std::string>{"mphost-b"});
}

TEST_F(ResourceRegistryTest, ListingAndEmptyingReadOnlyThePagesSlotsWereWrittenIn) {
  resource_registry r = resource_registry::create(resource_registry::default_slot_count, registry_prefix());
  testing::name_guard guard(r.name());
  std::vector<std::string> recorded;
  for (int i = 0; i < 100; ++i) {
    recorded.push_back(testing::test_prefix() + "never-created-" + std::to_string(i));
    ASSERT_NE(r.record(recorded.back()), resource_registry::not_tracked);
  }
  auto names = r.names();
  std::sort(names.begin(), names.end());
  std::sort(recorded.begin(), recorded.end());
  EXPECT_EQ(names, recorded);
  // 4 MiB of slots, of which at most the header and 100 pages were touched.
  struct stat st{};
  ASSERT_EQ(::stat(("/dev/shm/" + r.name()).c_str(), &st), 0);
  EXPECT_GE(st.st_size, 4 << 20);
  EXPECT_LE(st.st_blocks * 512, 101 * 4096);
  EXPECT_EQ(r.remove_all(), 0u);  // none of them exists
  EXPECT_TRUE(r.names().empty());
  EXPECT_FALSE(testing::shm_exists(r.name()));
}

TEST_F(ResourceRegistryTest, OpeningSomethingElseThanARegistryFails) {
  segment plain = segment::create(8192, testing::test_prefix());
  testing::name_guard guard(plain.name());
  try {
    resource_registry::open(plain.name());
    FAIL() << "a zero-filled segment was taken for a registry";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::invalid_argument);
  }
}

TEST_F(ResourceRegistryTest, SegmentsAreRecordedWhileCurrentAndAnyProcessRemovingThemReleasesThem) {
  watchdog dog(20s);
  resource_registry created = resource_registry::create(1024, registry_prefix());
  testing::name_guard guard(created.name());
  set_current_registry(std::move(created));
  resource_registry* r = current_registry();
  ASSERT_NE(r, nullptr);
  segment a = segment::create(4096, testing::test_prefix());
  segment b = segment::create(4096, testing::test_prefix());
  testing::name_guard ga(a.name()), gb(b.name());
  EXPECT_TRUE(r->contains(a.name()));
  EXPECT_TRUE(r->contains(b.name()));
  // A failed creation leaves no record of its own.
  EXPECT_THROW(segment::create_named(a.name(), 4096), std::system_error);
  EXPECT_EQ(r->names().size(), 2u);

  const std::string b_name = b.name();
  const auto result = run_in_child([&] { return segment::remove(b_name) ? 0 : 1; });
  ASSERT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
  EXPECT_FALSE(r->contains(b.name()));
  EXPECT_TRUE(segment::remove(a.name()));
  EXPECT_TRUE(r->names().empty());
}

TEST_F(ResourceRegistryTest, NamesOfAKilledChildAreRemovedWhenTheRootFinishes) {
  watchdog dog(20s);
  resource_registry created = resource_registry::create(4096, registry_prefix());
  const std::string registry_name = created.name();
  testing::name_guard guard(registry_name);
  set_current_registry(std::move(created));

  name_pipe pipe;
  const pid_t child = fork_child([&] {
    for (int i = 0; i < 3; ++i) {
      segment s = segment::create(4096, testing::test_prefix());
      pipe.send(s.name());
    }
    ::pause();
    return 0;
  });
  testing::child_guard reap(child);
  const auto names = pipe.receive(3);
  ASSERT_EQ(names.size(), 3u);
  ::kill(child, SIGKILL);
  const auto result = wait_child(reap.release());
  EXPECT_FALSE(result.exited);
  for (const auto& n : names) EXPECT_TRUE(testing::shm_exists(n)) << n;

  // A forked child of the root is not the root: it removes nothing.
  const auto forked = run_in_child([] {
    finish_root_registry();
    return current_registry() != nullptr ? 0 : 1;
  });
  EXPECT_TRUE(forked.exited && forked.code == 0);
  for (const auto& n : names) EXPECT_TRUE(testing::shm_exists(n)) << n;

  finish_root_registry();
  EXPECT_EQ(current_registry(), nullptr);
  for (const auto& n : names) EXPECT_FALSE(testing::shm_exists(n)) << n;
  EXPECT_FALSE(testing::shm_exists(registry_name));
  finish_root_registry();  // twice is harmless
}

// Starts a child that becomes the root of its own registry, creates two
// segments, reports the registry's name and theirs, and waits to be killed.
pid_t start_root_child(const name_pipe& pipe) {
  return fork_child([&] {
    set_current_registry(resource_registry::create(4096, registry_prefix()));
    pipe.send(current_registry()->name());
    for (int i = 0; i < 2; ++i) {
      segment s = segment::create(4096, testing::test_prefix());
      pipe.send(s.name());
    }
    ::pause();
    return 0;
  });
}

TEST_F(ResourceRegistryTest, TheRegistryOfAKilledRootIsSweptByTheNext) {
  watchdog dog(20s);
  name_pipe pipe;
  testing::child_guard reap(start_root_child(pipe));
  const auto names = pipe.receive(3);
  ASSERT_EQ(names.size(), 3u);
  testing::name_guard g0(names[0]), g1(names[1]), g2(names[2]);
  const pid_t child = reap.release();
  ::kill(child, SIGKILL);
  wait_child(child);
  for (const auto& n : names) EXPECT_TRUE(testing::shm_exists(n)) << n;
  EXPECT_EQ(sweep_dead_registries(registry_prefix()), 1u);
  for (const auto& n : names) EXPECT_FALSE(testing::shm_exists(n)) << n;
}

TEST_F(ResourceRegistryTest, TheRegistryOfALiveRootIsLeftAloneAndThatOfAZombieIsNot) {
  watchdog dog(20s);
  name_pipe pipe;
  testing::child_guard reap(start_root_child(pipe));
  const auto names = pipe.receive(3);
  ASSERT_EQ(names.size(), 3u);
  testing::name_guard g0(names[0]), g1(names[1]), g2(names[2]);
  EXPECT_EQ(sweep_dead_registries(registry_prefix()), 0u);
  for (const auto& n : names) EXPECT_TRUE(testing::shm_exists(n)) << n;

  // Killed but not reaped: it will never act again.
  const pid_t child = reap.release();
  ::kill(child, SIGKILL);
  for (int i = 0; i < 2000 && process_is_alive(child); ++i) ::usleep(1000);
  EXPECT_EQ(sweep_dead_registries(registry_prefix()), 1u);
  for (const auto& n : names) EXPECT_FALSE(testing::shm_exists(n)) << n;
  wait_child(child);
}

TEST_F(ResourceRegistryTest, AFullTableLeavesNamesUntrackedAndSegmentsStillWork) {
  resource_registry created = resource_registry::create(8, registry_prefix());
  testing::name_guard guard(created.name());
  set_current_registry(std::move(created));
  resource_registry* r = current_registry();
  std::vector<segment> segments;
  std::vector<testing::name_guard> guards(10);
  for (int i = 0; i < 10; ++i) {
    segments.push_back(segment::create(4096, testing::test_prefix()));
    guards[i].set(segments.back().name());
  }
  EXPECT_EQ(r->names().size(), 8u);
  EXPECT_EQ(r->untracked_count(), 2u);
  EXPECT_EQ(r->record(std::string(resource_registry::max_name_length + 1, 'x')), resource_registry::not_tracked);
  EXPECT_EQ(r->untracked_count(), 3u);
  for (auto& s : segments) EXPECT_TRUE(s.unlink());
  EXPECT_TRUE(r->names().empty());
  // Freed slots are used again.
  EXPECT_NE(r->record("mphost-again"), resource_registry::not_tracked);
}

TEST_F(ResourceRegistryTest, AStartedProcessAttachesThroughTheEnvironmentOnlyToALiveOwner) {
  watchdog dog(20s);
  resource_registry live = resource_registry::create(1024, registry_prefix());
  testing::name_guard guard(live.name());
  ASSERT_EQ(::setenv(resource_registry::environment_variable, live.name().c_str(), 1), 0);
  EXPECT_TRUE(attach_registry_from_environment());
  ASSERT_NE(current_registry(), nullptr);
  EXPECT_EQ(current_registry()->name(), live.name());
  set_current_registry(resource_registry());

  name_pipe pipe;
  testing::child_guard reap(start_root_child(pipe));
  const auto names = pipe.receive(3);
  ASSERT_EQ(names.size(), 3u);
  testing::name_guard g0(names[0]), g1(names[1]), g2(names[2]);
  const pid_t child = reap.release();
  ::kill(child, SIGKILL);
  wait_child(child);
  ASSERT_EQ(::setenv(resource_registry::environment_variable, names[0].c_str(), 1), 0);
  EXPECT_FALSE(attach_registry_from_environment());
  EXPECT_EQ(current_registry(), nullptr);
  ::unsetenv(resource_registry::environment_variable);
  EXPECT_FALSE(attach_registry_from_environment());
}

TEST_F(ResourceRegistryTest, ARootExportsItsRegistryAndRemovesItWithItsNamesAtTheEnd) {
  const char* before = std::getenv(resource_registry::environment_variable);
  const std::string saved = before != nullptr ? before : "";
  ASSERT_TRUE(start_root_registry());
  ASSERT_NE(current_registry(), nullptr);
  const std::string registry_name = current_registry()->name();
  testing::name_guard guard(registry_name);
  EXPECT_EQ(registry_name.rfind(std::string(resource_registry::name_prefix), 0), 0u);
  EXPECT_STREQ(std::getenv(resource_registry::environment_variable), registry_name.c_str());
  segment s = segment::create(4096, testing::test_prefix());
  testing::name_guard gs(s.name());
  EXPECT_TRUE(testing::shm_exists(registry_name));
  finish_root_registry();
  EXPECT_FALSE(testing::shm_exists(s.name()));
  EXPECT_FALSE(testing::shm_exists(registry_name));
  if (saved.empty()) {
    ::unsetenv(resource_registry::environment_variable);
  } else {
    ::setenv(resource_registry::environment_variable, saved.c_str(), 1);
  }
}


TEST_F(ResourceRegistryTest, AProcessThatOutlivesItsRootRecordsWhatItMakesInARegistryOfItsOwn) {
  watchdog dog(20s);
  resource_registry created = resource_registry::create(1024, registry_prefix());
  const std::string registry_name = created.name();
  testing::name_guard guard(registry_name);
  set_current_registry(std::move(created));
  ASSERT_TRUE(join_current_registry());
  EXPECT_FALSE(others_attached_to_current_registry());

  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  name_pipe pipe;
  const pid_t child = fork_child([&] {
    char byte;
    if (::read(go[0], &byte, 1) != 1) return 1;
    segment s = segment::create(4096, testing::test_prefix());
    pipe.send(s.name());
    pipe.send(current_registry() != nullptr ? current_registry()->name() : "none");
    ::pause();
    return 0;
  });
  testing::child_guard reap(child);
  // A forked child is a member of its own (its lock is taken again after fork).
  bool member = false;
  for (int i = 0; i < 2000 && !(member = others_attached_to_current_registry()); ++i) ::usleep(1000);
  EXPECT_TRUE(member);

  // The root ends first: everything recorded goes, whoever still runs.
  finish_root_registry();
  EXPECT_EQ(current_registry(), nullptr);
  EXPECT_FALSE(testing::shm_exists(registry_name));

  ASSERT_EQ(::write(go[1], "g", 1), 1);
  const auto got = pipe.receive(2);
  ::close(go[0]);
  ::close(go[1]);
  ASSERT_EQ(got.size(), 2u);
  testing::name_guard g0(got[0]), g1(got[1]);
  EXPECT_EQ(got[1].rfind(registry_prefix() + std::to_string(child) + "-", 0), 0u) << got[1];
  EXPECT_TRUE(testing::shm_exists(got[0]));
  EXPECT_TRUE(testing::shm_exists(got[1]));

  ::kill(reap.release(), SIGKILL);
  wait_child(child);
  EXPECT_EQ(sweep_dead_registries(registry_prefix()), 1u);
  EXPECT_FALSE(testing::shm_exists(got[0]));
  EXPECT_FALSE(testing::shm_exists(got[1]));
}

TEST_F(ResourceRegistryTest, TheRegistryOfAKilledRootIsSweptOnlyOnceItsTreeHasEnded) {
  watchdog dog(20s);
  name_pipe pipe;
  // A root that forks a member, which creates a segment and outlives it.
  const pid_t root = fork_child([&] {
    set_current_registry(resource_registry::create(4096, registry_prefix()));
    join_current_registry();
    pipe.send(current_registry()->name());
    fork_child([&] {
      segment s = segment::create(4096, testing::test_prefix());
      pipe.send(s.name());
      pipe.send(std::to_string(::getpid()));
      ::pause();
      return 0;
    });
    ::pause();
    return 0;
  });
  testing::child_guard reap_root(root);
  const auto got = pipe.receive(3);
  ASSERT_EQ(got.size(), 3u);
  testing::name_guard g0(got[0]), g1(got[1]);
  const pid_t member = std::stoi(got[2]);
  struct killer {
    pid_t pid;
    ~killer() { ::kill(pid, SIGKILL); }
  } kill_member{member};
  ::kill(reap_root.release(), SIGKILL);
  wait_child(root);
  // The root is dead, its orphan runs: nothing is swept.
  EXPECT_EQ(sweep_dead_registries(registry_prefix()), 0u);
  EXPECT_TRUE(testing::shm_exists(got[0]));
  EXPECT_TRUE(testing::shm_exists(got[1]));
  ::kill(member, SIGKILL);
  // The member's lock goes when its last thread has ended, which can be
  // after its main thread reads as a zombie (a sanitizer's runtime thread).
  std::size_t swept = 0;
  for (int i = 0; i < 2000 && swept == 0; ++i) {
    swept = sweep_dead_registries(registry_prefix());
    if (swept == 0) ::usleep(1000);
  }
  EXPECT_EQ(swept, 1u);
  EXPECT_FALSE(testing::shm_exists(got[0]));
  EXPECT_FALSE(testing::shm_exists(got[1]));
}

}  // namespace
}  // namespace mphost::ipc
