#include "mphost/ipc/semaphore.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "mphost/ipc/error.hpp"
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

class SemaphoreTest : public testing::named_shm_test {
 protected:
  semaphore make(semlock_kind kind, std::uint32_t value, std::uint32_t maxvalue) {
    return semaphore::create(kind, value, maxvalue, fresh_name("sem"));
  }
};

void expect_error(const std::function<void()>& fn, errc code) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(code)) << e.what();
  }
}

TEST_F(SemaphoreTest, CountingSemaphoreCountsDownAndUp) {
  semaphore sem = make(semlock_kind::semaphore, 2, semaphore::value_max);
  EXPECT_EQ(sem.kind(), semlock_kind::semaphore);
  EXPECT_EQ(sem.maxvalue(), semaphore::value_max);
  EXPECT_EQ(sem.value(), 2u);
  EXPECT_EQ(sem.acquire(), wait_result::ok);
  EXPECT_EQ(sem.acquire(), wait_result::ok);
  EXPECT_TRUE(sem.is_zero());
  EXPECT_EQ(sem.acquire(deadline::immediate()), wait_result::timed_out);
  EXPECT_EQ(sem.acquire(deadline::after(20ms)), wait_result::timed_out);
  sem.release();
  EXPECT_EQ(sem.value(), 1u);
}

TEST_F(SemaphoreTest, BoundedSemaphoreReleasedPastMaxvalueFails) {
  semaphore sem = make(semlock_kind::semaphore, 2, 2);
  ASSERT_EQ(sem.acquire(), wait_result::ok);
  sem.release();
  expect_error([&] { sem.release(); }, errc::released_too_many_times);
  EXPECT_EQ(sem.value(), 2u);
  EXPECT_EQ(sem.try_release(), make_error_code(errc::released_too_many_times));
}

TEST_F(SemaphoreTest, LockReleasedWhenFreeFails) {
  semaphore lock = make(semlock_kind::semaphore, 1, 1);
  expect_error([&] { lock.release(); }, errc::released_too_many_times);
  ASSERT_EQ(lock.acquire(), wait_result::ok);
  EXPECT_EQ(lock.value(), 0u);
  EXPECT_EQ(lock.acquire(deadline::immediate()), wait_result::timed_out);  // not recursive
  lock.release();
  EXPECT_EQ(lock.value(), 1u);
}

TEST_F(SemaphoreTest, LockMayBeReleasedByAnotherThread) {
  watchdog guard(10s);
  semaphore lock = make(semlock_kind::semaphore, 1, 1);
  ASSERT_EQ(lock.acquire(), wait_result::ok);
  std::thread other([&] { EXPECT_FALSE(lock.try_release()); });
  other.join();
  EXPECT_EQ(lock.value(), 1u);
}

TEST_F(SemaphoreTest, RecursiveMutexReentersAndCountsForItsOwner) {
  watchdog guard(10s);
  semaphore rlock = make(semlock_kind::recursive_mutex, 1, 1);
  EXPECT_FALSE(rlock.is_mine());
  ASSERT_EQ(rlock.acquire(), wait_result::ok);
  ASSERT_EQ(rlock.acquire(), wait_result::ok);
  EXPECT_TRUE(rlock.is_mine());
  EXPECT_EQ(rlock.count(), 2u);
  EXPECT_EQ(rlock.value(), 0u);
  std::thread other([&] {
    EXPECT_FALSE(rlock.is_mine());
    EXPECT_EQ(rlock.count(), 0u);
    EXPECT_EQ(rlock.acquire(deadline::after(20ms)), wait_result::timed_out);
    EXPECT_EQ(rlock.try_release(), make_error_code(errc::not_owner));
  });
  other.join();
  rlock.release();
  EXPECT_EQ(rlock.count(), 1u);
  rlock.release();
  EXPECT_FALSE(rlock.is_mine());
  EXPECT_EQ(rlock.value(), 1u);
  expect_error([&] { rlock.release(); }, errc::not_owner);
}

TEST_F(SemaphoreTest, IsMineAndCountOfASemaphoreFollowThisHandlesAcquisitions) {
  watchdog guard(10s);
  semaphore sem = make(semlock_kind::semaphore, 3, 3);
  EXPECT_FALSE(sem.is_mine());
  ASSERT_EQ(sem.acquire(), wait_result::ok);
  ASSERT_EQ(sem.acquire(), wait_result::ok);
  EXPECT_TRUE(sem.is_mine());
  EXPECT_EQ(sem.count(), 2u);
  std::thread other([&] { EXPECT_FALSE(sem.is_mine()); });
  other.join();
  sem.after_fork();
  EXPECT_EQ(sem.count(), 0u);
  EXPECT_FALSE(sem.is_mine());
}

TEST_F(SemaphoreTest, TryAcquireTakesWhatIsFreeAndOtherwiseChangesNothing) {
  semaphore lock = make(semlock_kind::semaphore, 1, 1);
  EXPECT_TRUE(lock.try_acquire());
  EXPECT_FALSE(lock.try_acquire());
  EXPECT_EQ(lock.value(), 0u);
  EXPECT_EQ(lock.count(), 1u);
  EXPECT_TRUE(lock.is_mine());
  EXPECT_EQ(lock.release_status(), errc{});
  EXPECT_EQ(lock.release_status(), errc::released_too_many_times);
  EXPECT_EQ(lock.count(), 0u);
  EXPECT_EQ(lock.value(), 1u);

  semaphore rlock = make(semlock_kind::recursive_mutex, 1, 1);
  EXPECT_TRUE(rlock.try_acquire());
  EXPECT_TRUE(rlock.try_acquire());
  EXPECT_EQ(rlock.count(), 2u);
  std::thread other([&] {
    EXPECT_FALSE(rlock.try_acquire());
    EXPECT_EQ(rlock.release_status(), errc::not_owner);
  });
  other.join();
  EXPECT_EQ(rlock.count(), 2u);
  EXPECT_EQ(rlock.release_status(), errc{});
  EXPECT_EQ(rlock.release_status(), errc{});
  EXPECT_EQ(rlock.release_status(), errc::not_owner);
  EXPECT_EQ(rlock.value(), 1u);

  semaphore counter = make(semlock_kind::semaphore, 1, 3);
  EXPECT_TRUE(counter.try_acquire());
  EXPECT_FALSE(counter.try_acquire());
  EXPECT_EQ(counter.count(), 1u);
}

TEST_F(SemaphoreTest, AForkedChildIsNotTheOwnerOfItsParentsLocks) {
  watchdog guard(20s);
  semaphore rlock = make(semlock_kind::recursive_mutex, 1, 1);
  semaphore lock = make(semlock_kind::semaphore, 1, 1);
  ASSERT_EQ(rlock.acquire(), wait_result::ok);
  ASSERT_TRUE(rlock.is_mine());
  ASSERT_TRUE(lock.try_acquire());
  const auto held = run_in_child([&] {
    // Same thread, new process: the parent's ownership is not this one's.
    if (rlock.is_mine() || rlock.count() != 0) return 1;
    if (rlock.try_acquire()) return 2;
    if (rlock.release_status() != errc::not_owner) return 3;
    if (lock.try_acquire()) return 4;
    return 0;
  });
  ASSERT_TRUE(held.exited);
  EXPECT_EQ(held.code, 0);
  rlock.release();
  lock.release();
  const auto free = run_in_child([&] {
    // Taken in the child, by the child.
    if (!rlock.try_acquire() || !rlock.is_mine() || !rlock.try_acquire() || rlock.count() != 2) return 1;
    if (rlock.release_status() != errc{} || rlock.release_status() != errc{}) return 2;
    return 0;
  });
  ASSERT_TRUE(free.exited);
  EXPECT_EQ(free.code, 0);
  EXPECT_EQ(rlock.value(), 1u);
}

TEST_F(SemaphoreTest, AnotherProcessOpensItByName) {
  watchdog guard(20s);
  semaphore sem = make(semlock_kind::semaphore, 0, 5);
  const std::string name = sem.name();
  const auto result = run_in_child([&] {
    semaphore other = semaphore::open(name);
    if (other.kind() != semlock_kind::semaphore || other.maxvalue() != 5) return 1;
    other.release();
    other.release();
    return 0;
  });
  ASSERT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
  EXPECT_EQ(sem.value(), 2u);
}

TEST_F(SemaphoreTest, ReleaseWakesAWaiterInAnotherProcess) {
  watchdog guard(20s);
  semaphore sem = make(semlock_kind::semaphore, 0, semaphore::value_max);
  semaphore started = make(semlock_kind::semaphore, 0, semaphore::value_max);
  const pid_t pid = fork_child([&] {
    started.release();
    return sem.acquire(deadline::after(10s)) == wait_result::ok ? 0 : 1;
  });
  ASSERT_EQ(started.acquire(deadline::after(10s)), wait_result::ok);
  std::this_thread::sleep_for(30ms);
  sem.release();
  const auto result = wait_child(pid);
  EXPECT_TRUE(result.exited);
  EXPECT_EQ(result.code, 0);
  EXPECT_EQ(sem.value(), 0u);
}

TEST_F(SemaphoreTest, LockHolderKilledIsRecoveredWithOwnerDied) {
  watchdog guard(20s);
  semaphore lock = make(semlock_kind::semaphore, 1, 1);
  semaphore held = make(semlock_kind::semaphore, 0, 1);
  const pid_t pid = fork_child([&] {
    if (lock.acquire() != wait_result::ok) return 1;
    held.release();
    for (;;) ::pause();
  });
  ASSERT_EQ(held.acquire(deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(lock.acquire(deadline::immediate()), wait_result::timed_out);
  ::kill(pid, SIGKILL);
  wait_child(pid);
  EXPECT_EQ(lock.acquire(deadline::after(5s)), wait_result::owner_died);
  EXPECT_EQ(lock.value(), 0u);
  lock.release();
  EXPECT_EQ(lock.value(), 1u);
}

TEST_F(SemaphoreTest, RecursiveOwnerKilledIsRecoveredWithOwnerDied) {
  watchdog guard(20s);
  semaphore rlock = make(semlock_kind::recursive_mutex, 1, 1);
  semaphore held = make(semlock_kind::semaphore, 0, 1);
  const pid_t pid = fork_child([&] {
    if (rlock.acquire() != wait_result::ok || rlock.acquire() != wait_result::ok) return 1;
    held.release();
    for (;;) ::pause();
  });
  ASSERT_EQ(held.acquire(deadline::after(10s)), wait_result::ok);
  std::thread killer([pid] {
    std::this_thread::sleep_for(30ms);
    ::kill(pid, SIGKILL);
  });
  EXPECT_EQ(rlock.acquire(deadline::after(10s)), wait_result::owner_died);
  killer.join();
  wait_child(pid);
  EXPECT_TRUE(rlock.is_mine());
  EXPECT_EQ(rlock.count(), 1u);  // the dead owner's recursion is not inherited
  rlock.release();
  EXPECT_EQ(rlock.value(), 1u);
}

TEST_F(SemaphoreTest, LockCreatedHeldHasNoOwnerToLose) {
  semaphore lock = make(semlock_kind::semaphore, 0, 1);
  EXPECT_EQ(lock.value(), 0u);
  EXPECT_EQ(lock.acquire(deadline::after(20ms)), wait_result::timed_out);
  lock.release();
  EXPECT_EQ(lock.acquire(deadline::immediate()), wait_result::ok);
}

TEST_F(SemaphoreTest, ContendedAcrossProcessesEveryUnitIsAccountedFor) {
  watchdog guard(60s);
  semaphore sem = make(semlock_kind::semaphore, 0, semaphore::value_max);
  constexpr int per_producer = 5000;
  auto producer = [&] {
    for (int i = 0; i < per_producer; ++i) sem.release();
    return 0;
  };
  auto consumer = [&] {
    for (int i = 0; i < per_producer; ++i) {
      if (sem.acquire(deadline::after(30s)) != wait_result::ok) return 1;
    }
    return 0;
  };
  const pid_t p1 = fork_child(producer);
  const pid_t c1 = fork_child(consumer);
  const pid_t p2 = fork_child(producer);
  EXPECT_EQ(consumer(), 0);
  EXPECT_EQ(wait_child(p1).code, 0);
  EXPECT_EQ(wait_child(p2).code, 0);
  EXPECT_EQ(wait_child(c1).code, 0);
  EXPECT_EQ(sem.value(), 0u);
}

TEST_F(SemaphoreTest, UnlinkRemovesTheNameAndMissingNamesThrowENOENT) {
  semaphore sem = make(semlock_kind::semaphore, 1, 1);
  semaphore::unlink(sem.name());
  EXPECT_FALSE(testing::shm_exists(sem.name()));
  EXPECT_EQ(sem.acquire(), wait_result::ok);  // the handle keeps working
  try {
    semaphore::unlink(sem.name());
    FAIL() << "unlinked twice";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
  try {
    semaphore::open(sem.name());
    FAIL() << "opened a removed semaphore";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
}

TEST_F(SemaphoreTest, InvalidParametersThrowEINVAL) {
  auto invalid = [](const std::function<void()>& fn) {
    try {
      fn();
      ADD_FAILURE() << "accepted";
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code(), std::errc::invalid_argument);
    }
  };
  invalid([&] { make(semlock_kind::semaphore, 3, 2); });
  invalid([&] { make(semlock_kind::semaphore, 0, 0); });
  invalid([&] { make(semlock_kind::recursive_mutex, 1, 2); });
  invalid([&] { make(static_cast<semlock_kind>(7), 1, 1); });
}

TEST_F(SemaphoreTest, RecursiveMutexCreatedAtZeroIsHeldByNoOne) {
  semaphore held = make(semlock_kind::recursive_mutex, 0, 1);
  EXPECT_TRUE(held.is_zero());
  EXPECT_FALSE(held.is_mine());
  EXPECT_EQ(held.acquire(deadline::immediate()), wait_result::timed_out);
  EXPECT_EQ(held.try_release(), make_error_code(errc::not_owner));
}

TEST_F(SemaphoreTest, OpeningSomethingElseThrowsEINVAL) {
  const std::string name = testing::test_prefix() + "notasem";
  testing::name_guard names(name);
  segment seg = segment::create_named(name, 4096);
  try {
    semaphore::open(name);
    FAIL() << "opened a segment that holds no semaphore";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::invalid_argument);
  }
}

}  // namespace
}  // namespace mphost::ipc
