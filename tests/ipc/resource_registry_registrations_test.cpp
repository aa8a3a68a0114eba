// Registrations of a resource registry: typed, per watcher, kept across
// processes, removed by type when the tree ends (the root's end, the sweep of
// a killed root, the last member of a tree whose root was killed).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "mphost/ipc/resource_registry.hpp"
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

std::string registry_prefix() { return testing::test_prefix() + "reg-"; }

// A named shared memory object of the test prefix, outside any registry.
std::string make_shm(const std::string& tag) {
  const std::string name = testing::test_prefix() + tag;
  std::string path(1, '/');
  path.append(name);
  const int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  EXPECT_GE(fd, 0) << name;
  if (fd >= 0) ::close(fd);
  return name;
}

// A private directory with a file inside, under the system's temp folder.
std::filesystem::path make_folder(const std::string& tag) {
  const auto dir = std::filesystem::temp_directory_path() / (testing::test_prefix() + tag);
  std::filesystem::create_directories(dir / "sub");
  std::ofstream(dir / "sub" / "file") << "x";
  return dir;
}

class RegistrationsTest : public testing::shm_checked_test {
 protected:
  void TearDown() override {
    set_current_registry(resource_registry());
    shm_checked_test::TearDown();
  }
};

using entry = std::pair<std::string, std::string>;

std::vector<entry> entries_of(const resource_registry& r, std::uint64_t watcher) {
  std::vector<entry> out;
  for (const auto& e : r.registrations()) {
    if (e.watcher == watcher) out.emplace_back(e.rtype, e.name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(RegistrationsTest, AddDropListAndMoveBetweenWatchers) {
  resource_registry r = resource_registry::create(64, registry_prefix(), 16);
  testing::name_guard guard(r.name());
  EXPECT_TRUE(r.add_registration("shared_memory", "/psm_a", 7));
  EXPECT_TRUE(r.add_registration("shared_memory", "/psm_a", 7));  // once per watcher
  EXPECT_TRUE(r.add_registration("semaphore", "/psm_a", 7));      // another type: another entry
  EXPECT_TRUE(r.add_registration("folder", "/tmp/x:y", 8));       // ':' in a name is fine
  EXPECT_EQ(entries_of(r, 7), (std::vector<entry>{{"semaphore", "/psm_a"}, {"shared_memory", "/psm_a"}}));
  EXPECT_EQ(entries_of(r, 8), (std::vector<entry>{{"folder", "/tmp/x:y"}}));

  EXPECT_EQ(r.move_registrations(7, 8), 2u);
  EXPECT_TRUE(entries_of(r, 7).empty());
  EXPECT_EQ(entries_of(r, 8).size(), 3u);

  EXPECT_EQ(r.drop_registration("shared_memory", "/psm_a"), 1u);
  EXPECT_EQ(r.drop_registration("shared_memory", "/psm_a"), 0u);
  EXPECT_EQ(r.registrations().size(), 2u);
  // Not kept: no type, or type and name too long together.
  EXPECT_FALSE(r.add_registration("", "x", 1));
  EXPECT_FALSE(r.add_registration("file", std::string(resource_registry::max_registration_text, 'x'), 1));
  std::string longest(resource_registry::max_registration_text - 4, 'x');
  longest.front() = '/';
  EXPECT_TRUE(r.add_registration("file", longest, 1));
  EXPECT_EQ(r.untracked_count(), 2u);
}

TEST_F(RegistrationsTest, AFullWindowRefusesAndFreedSlotsAreReused) {
  resource_registry r = resource_registry::create(8, registry_prefix(), 4);
  testing::name_guard guard(r.name());
  for (const char* name : {"n0", "n1", "n2", "n3"}) EXPECT_TRUE(r.add_registration("noop", name, 1));
  EXPECT_FALSE(r.add_registration("noop", "n4", 1));
  EXPECT_EQ(r.drop_registration("noop", "n2"), 1u);
  EXPECT_TRUE(r.add_registration("noop", "n4", 1));
}

TEST_F(RegistrationsTest, RemovedByTypeTheCoreKnows) {
  const std::string shm = make_shm("typed");
  const auto folder = make_folder("typed-dir");
  const auto file = folder / "sub" / "file";
  EXPECT_EQ(remove_registered("file", file.string()), 0);
  EXPECT_EQ(remove_registered("file", file.string()), ENOENT);
  EXPECT_EQ(remove_registered("folder", folder.string()), 0);
  EXPECT_FALSE(std::filesystem::exists(folder));
  EXPECT_EQ(remove_registered("folder", folder.string()), ENOENT);
  EXPECT_EQ(remove_registered("shared_memory", std::string(1, '/').append(shm)), 0);
  EXPECT_EQ(remove_registered("semaphore", shm), ENOENT);
  // Never a relative path, a path inside a shared memory name, or a type
  // only a program knows.
  EXPECT_EQ(remove_registered("folder", "relative/dir"), EINVAL);
  EXPECT_EQ(remove_registered("shared_memory", "/../tmp"), EINVAL);
  EXPECT_EQ(remove_registered("semlock", "/x"), EINVAL);
}

TEST_F(RegistrationsTest, ARegistrationMadeInAChildIsSeenByAllAndRemovedAtTheRootsEnd) {
  watchdog dog(20s);
  resource_registry created = resource_registry::create(1024, registry_prefix(), 64);
  const std::string registry_name = created.name();
  testing::name_guard guard(registry_name);
  set_current_registry(std::move(created));
  const std::string shm = make_shm("child-registered");
  const auto folder = make_folder("child-registered-dir");
  const auto done = run_in_child([&] {
    resource_registry* r = current_registry();
    const bool ok = r->add_registration("shared_memory", std::string(1, '/').append(shm), 3) &&
                    r->add_registration("folder", folder.string(), 3) && r->add_registration("custom", "thing", 3);
    return ok ? 0 : 1;
  });
  ASSERT_TRUE(done.exited && done.code == 0);
  EXPECT_EQ(entries_of(*current_registry(), 3).size(), 3u);

  finish_root_registry();
  EXPECT_FALSE(testing::shm_exists(shm));
  EXPECT_FALSE(std::filesystem::exists(folder));
  EXPECT_FALSE(testing::shm_exists(registry_name));
}

TEST_F(RegistrationsTest, TheRegistrationsOfAKilledRootAreSweptByTheNext) {
  watchdog dog(20s);
  const std::string shm = make_shm("killed-root");
  const auto folder = make_folder("killed-root-dir");
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  const pid_t root = fork_child([&] {
    set_current_registry(resource_registry::create(256, registry_prefix(), 16));
    current_registry()->add_registration("shared_memory", shm, 9);
    current_registry()->add_registration("folder", folder.string(), 9);
    (void)!::write(report[1], "k", 1);
    ::pause();
    return 0;
  });
  testing::child_guard reap(root);
  char c = 0;
  ASSERT_EQ(::read(report[0], &c, 1), 1);
  ::close(report[0]);
  ::close(report[1]);
  ::kill(root, SIGKILL);
  wait_child(reap.release());
  EXPECT_TRUE(testing::shm_exists(shm));
  EXPECT_TRUE(std::filesystem::exists(folder));
  EXPECT_EQ(sweep_dead_registries(registry_prefix()), 1u);
  EXPECT_FALSE(testing::shm_exists(shm));
  EXPECT_FALSE(std::filesystem::exists(folder));
}

TEST_F(RegistrationsTest, TheLastMemberOfAKilledRootsTreeRemovesTheRegistry) {
  watchdog dog(20s);
  const std::string shm = make_shm("abandoned");
  int report[2], release[2];
  ASSERT_EQ(::pipe(report), 0);
  ASSERT_EQ(::pipe(release), 0);
  // The root forks a member (the tracker's part), which waits; the root
  // registers, reports the registry's name and is killed.
  const pid_t root = fork_child([&] {
    set_current_registry(resource_registry::create(256, registry_prefix(), 16));
    join_current_registry();
    int running[2];
    if (::pipe(running) != 0) return 1;
    const pid_t member = ::fork();
    if (member == 0) {
      // A forked member takes its lock in its fork handler, so it is a
      // member once it has run at all: say so before the root is killed.
      (void)!::write(running[1], "r", 1);
      char go = 0;
      (void)!::read(release[0], &go, 1);
      // The root is dead by now: this is the last process of the tree.
      const bool first = finish_abandoned_registry();
      std::_Exit(first && current_registry() == nullptr ? 0 : 1);
    }
    char ran = 0;
    (void)!::read(running[0], &ran, 1);
    current_registry()->add_registration("shared_memory", shm, 1);
    const std::string line = std::to_string(member) + " " + current_registry()->name() + "\n";
    (void)!::write(report[1], line.data(), line.size());
    ::pause();
    return 0;
  });
  testing::child_guard reap(root);
  std::string line;
  for (char c; line.find('\n') == std::string::npos && ::read(report[0], &c, 1) == 1;) line.push_back(c);
  const pid_t member = static_cast<pid_t>(std::stol(line));
  const std::string registry_name = line.substr(line.find(' ') + 1, line.size() - line.find(' ') - 2);
  testing::name_guard guard(registry_name);
  ::kill(root, SIGKILL);
  wait_child(reap.release());
  // Still a member alive: the sweep leaves it alone.
  EXPECT_EQ(sweep_dead_registries(registry_prefix()), 0u);
  EXPECT_TRUE(testing::shm_exists(shm));
  (void)!::write(release[1], "g", 1);
  // The member is the root's child (reparented): wait for its work.
  const auto give_up = std::chrono::steady_clock::now() + 15s;
  while (testing::shm_exists(registry_name) && std::chrono::steady_clock::now() < give_up) ::usleep(1000);
  EXPECT_FALSE(testing::shm_exists(registry_name));
  EXPECT_FALSE(testing::shm_exists(shm));
  for (int fd : {report[0], report[1], release[0], release[1]}) ::close(fd);
  (void)member;
}

TEST_F(RegistrationsTest, NothingIsRemovedWhileTheRootLives) {
  resource_registry created = resource_registry::create(64, registry_prefix(), 16);
  testing::name_guard guard(created.name());
  set_current_registry(std::move(created));
  const auto other = run_in_child([] { return finish_abandoned_registry() ? 1 : 0; });
  EXPECT_TRUE(other.exited && other.code == 0);
  EXPECT_FALSE(finish_abandoned_registry());
  EXPECT_NE(current_registry(), nullptr);
}

}  // namespace
}  // namespace mphost::ipc
