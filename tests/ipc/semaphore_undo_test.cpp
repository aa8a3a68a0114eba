// Semaphores created with undo: a dead process's net acquisitions are given
// back (semaphore.hpp, detail/undo_table.hpp); without undo they stay taken.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "detail/owner_word.hpp"
#include "detail/undo_table.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/semaphore.hpp"
#include "mphost/testing/child_process.hpp"
#include "mphost/testing/watchdog.hpp"
#include "shm_check.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using mphost::testing::fork_child;
using mphost::testing::wait_child;
using mphost::testing::watchdog;

class SemaphoreUndoTest : public testing::named_shm_test {
 protected:
  semaphore make(std::uint32_t value, std::uint32_t maxvalue, bool undo = true, bool track_holder = true) {
    return semaphore::create(semlock_kind::semaphore, value, maxvalue, fresh_name("undo"), {track_holder, undo});
  }
};

detail::undo_table& table_of(const semaphore& sem) {
  return *reinterpret_cast<detail::undo_table*>(const_cast<char*>(static_cast<const char*>(sem.handle())) +
                                                detail::undo_table_offset);
}

// A child that takes `units` of `sem`, releases `gives` of them, tells the
// parent through `ready`, and waits to be killed.
pid_t holder(semaphore& sem, semaphore& ready, int units, int gives = 0) {
  return fork_child([&sem, &ready, units, gives] {
    for (int i = 0; i < units; ++i) {
      if (sem.acquire(deadline::after(10s)) != wait_result::ok) return 1;
    }
    for (int i = 0; i < gives; ++i) sem.release();
    ready.release();
    for (;;) ::pause();
  });
}

TEST_F(SemaphoreUndoTest, AKilledHoldersUnitsAreGivenBackToAWaiter) {
  watchdog guard(30s);
  semaphore sem = make(2, semaphore::value_max);
  semaphore ready = make(0, semaphore::value_max, false);
  EXPECT_TRUE(sem.undo());
  EXPECT_FALSE(ready.undo());
  const pid_t pid = holder(sem, ready, 2);
  ASSERT_EQ(ready.acquire(deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(sem.value(), 0u);
  EXPECT_EQ(sem.acquire(deadline::after(50ms)), wait_result::timed_out);
  std::chrono::steady_clock::time_point killed;
  std::thread killer([&] {
    std::this_thread::sleep_for(100ms);
    killed = std::chrono::steady_clock::now();
    ::kill(pid, SIGKILL);
  });
  EXPECT_EQ(sem.acquire(deadline::after(10s)), wait_result::ok);  // waiting while the holder dies
  const auto noticed = std::chrono::steady_clock::now();
  killer.join();
  wait_child(pid);
  EXPECT_LT(noticed - killed, 500ms);
  EXPECT_EQ(sem.value(), 1u);  // both units came back; this process holds one
  sem.release();
  EXPECT_EQ(sem.value(), 2u);
}

TEST_F(SemaphoreUndoTest, OnlyTheNetAcquisitionsOfTheDeadAreGivenBack) {
  watchdog guard(30s);
  semaphore sem = make(3, semaphore::value_max);
  semaphore ready = make(0, semaphore::value_max, false);
  const pid_t pid = holder(sem, ready, 3, 1);
  ASSERT_EQ(ready.acquire(deadline::after(10s)), wait_result::ok);
  EXPECT_EQ(sem.value(), 1u);
  ::kill(pid, SIGKILL);
  wait_child(pid);
  EXPECT_EQ(sem.value(), 3u);
}

TEST_F(SemaphoreUndoTest, GivingBackNeverPassesTheBound) {
  watchdog guard(30s);
  semaphore sem = make(1, 1);
  semaphore ready = make(0, semaphore::value_max, false);
  const pid_t pid = holder(sem, ready, 1);
  ASSERT_EQ(ready.acquire(deadline::after(10s)), wait_result::ok);
  sem.release();  // on the holder's behalf (a signal, as any process may)
  EXPECT_EQ(sem.try_release(), make_error_code(errc::released_too_many_times));
  ::kill(pid, SIGKILL);
  wait_child(pid);
  EXPECT_EQ(sem.value(), 1u);
  EXPECT_EQ(sem.try_release(), make_error_code(errc::released_too_many_times));
  EXPECT_EQ(sem.acquire(deadline::immediate()), wait_result::ok);
  EXPECT_EQ(sem.acquire(deadline::immediate()), wait_result::timed_out);
}

TEST_F(SemaphoreUndoTest, WithoutUndoADeadProcesssUnitsStayTaken) {
  watchdog guard(30s);
  semaphore ready = make(0, semaphore::value_max, false);
  semaphore counting = make(1, semaphore::value_max, false);
  semaphore bounded = make(1, 1, false, false);  // BoundedSemaphore(1): no holder
  for (semaphore* sem : {&counting, &bounded}) {
    const pid_t pid = holder(*sem, ready, 1);
    ASSERT_EQ(ready.acquire(deadline::after(10s)), wait_result::ok);
    ::kill(pid, SIGKILL);
    wait_child(pid);
    EXPECT_EQ(sem->acquire(deadline::after(200ms)), wait_result::timed_out);
    EXPECT_EQ(sem->value(), 0u);
  }
}

TEST_F(SemaphoreUndoTest, AnotherProcessOpensItWithUndo) {
  watchdog guard(30s);
  semaphore sem = make(1, 1);
  semaphore ready = make(0, semaphore::value_max, false);
  const std::string name = sem.name();
  const pid_t pid = fork_child([&] {
    semaphore opened = semaphore::open(name);
    if (!opened.undo() || opened.acquire(deadline::after(10s)) != wait_result::ok) return 1;
    ready.release();
    for (;;) ::pause();
  });
  ASSERT_EQ(ready.acquire(deadline::after(10s)), wait_result::ok);
  ::kill(pid, SIGKILL);
  wait_child(pid);
  EXPECT_EQ(sem.acquire(deadline::after(5s)), wait_result::ok);
}

TEST_F(SemaphoreUndoTest, ADeathInsideTheGuardIsRolledBack) {
  watchdog guard(30s);
  semaphore sem = make(2, semaphore::value_max);
  ASSERT_EQ(sem.acquire(), wait_result::ok);
  const pid_t pid = fork_child([&] {
    // Half a step, then death: the guard held, the journal armed, the
    // counter already changed.
    detail::undo_table& t = table_of(sem);
    if (detail::owner_lock(t.guard, t.guard_stamp, deadline::infinite()) != wait_result::ok) return 1;
    t.journal.slot = 0;
    t.journal.value_before = 1;
    t.journal.holder_before = t.slots[0].holder.load();
    t.journal.adjustment_before = t.slots[0].adjustment.load();
    t.journal.armed.store(1);
    t.slots[0].adjustment.store(77);
    ::_exit(0);
  });
  EXPECT_EQ(wait_child(pid).code, 0);
  EXPECT_EQ(sem.value(), 1u);
  EXPECT_EQ(table_of(sem).slots[0].adjustment.load(), 1);
  EXPECT_EQ(table_of(sem).journal.armed.load(), 0u);
  sem.release();
  EXPECT_EQ(sem.value(), 2u);
}

TEST_F(SemaphoreUndoTest, AFullTableRefusesANewProcessWithENOSPC) {
  watchdog guard(30s);
  semaphore sem = make(2, semaphore::value_max);
  sem.reserve_undo();
  table_of(sem).capacity = 1;  // as if every other slot belonged to a live process
  const pid_t pid = fork_child([&] {
    try {
      sem.reserve_undo();
      return 1;
    } catch (const std::system_error& e) {
      if (e.code().value() != ENOSPC) return 2;
    }
    return sem.acquire(deadline::immediate()) == wait_result::timed_out ? 0 : 3;
  });
  EXPECT_EQ(wait_child(pid).code, 0);
  EXPECT_EQ(sem.acquire(deadline::immediate()), wait_result::ok);
  EXPECT_EQ(sem.value(), 1u);
}

TEST_F(SemaphoreUndoTest, ProcessesKilledAtRandomMomentsLeaveTheCountExact) {
  watchdog guard(60s);
  constexpr std::uint32_t units = 3;
  semaphore sem = make(units, units);
  std::mt19937 rng(12345);
  std::vector<pid_t> pids;
  for (int round = 0; round < 40; ++round) {
    const pid_t pid = fork_child([&] {
      for (;;) {
        if (sem.acquire(deadline::after(10s)) != wait_result::ok) return 1;
        if (sem.acquire(deadline::immediate()) == wait_result::ok) sem.release();
        sem.release();
      }
    });
    pids.push_back(pid);
    std::this_thread::sleep_for(std::chrono::microseconds(1000 + rng() % 20000));
    if (pids.size() >= 4 || round == 39) {
      for (const pid_t p : pids) ::kill(p, SIGKILL);
      for (const pid_t p : pids) wait_child(p);
      pids.clear();
      EXPECT_EQ(sem.value(), units) << "round " << round;
    }
  }
}

}  // namespace
}  // namespace mphost::ipc
