#pragma once
// A mutex shared by processes, which survives the death of its owner.
//
// robust_mutex lives in shared memory (construct it once, in place, in a
// segment; every process that maps the segment uses that same object). It is
// owned by a process, not by a thread: the lock word holds the owner's pid,
// and the owner's start time is recorded beside it so that a reused pid is
// not mistaken for the owner.
//
// Owner death. If the owning process dies (exits, is killed, or becomes a
// zombie) while holding the mutex, the lock is not lost: the next process
// that tries to acquire it takes it over, and lock() tells it so by returning
// wait_result::owner_died instead of ok. The caller then owns the mutex, but
// the data it protects may have been left half-updated by the dead owner; it
// must repair or reset that data before unlocking. There is no separate
// "make consistent" step (unlike pthread robust mutexes): unlocking after
// owner_died simply makes the mutex usable again. Death is noticed when a
// waiter looks: at once if the owner is already dead when lock() is called,
// otherwise within about 100 ms of the death (sleepers re-check periodically;
// a dead process wakes no one).
//
// What is not covered: a thread that exits while its (still running) process
// holds the mutex leaves it locked; relocking from the owning thread
// deadlocks; unlock() by a process that does not hold it is not detected.
//
// Waiting: lock() first spins briefly (a few microseconds, adapting to how
// long recent waits took), then sleeps on the futex. Waiters are announced in
// the lock word, so an uncontended unlock makes no system call.
// Its users are guards held for short, bounded stretches, which retry on
// `interrupted`: lock() ignores an interrupt_watch (interrupt.hpp), so that
// only EINTR interrupts it.
//
// Copy and move are deleted: the object is identified by its address in the
// shared mapping (the kernel keys futex waits on it, and other processes
// find it there). A copy would be a different, unrelated lock.

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

class robust_mutex {
 public:
  // Unlocked. Construct once, in shared memory, before other processes use it.
  robust_mutex() noexcept = default;
  robust_mutex(const robust_mutex&) = delete;
  robust_mutex& operator=(const robust_mutex&) = delete;
  robust_mutex(robust_mutex&&) = delete;
  robust_mutex& operator=(robust_mutex&&) = delete;

  // Acquires: ok; owner_died (acquired, after taking it over from a dead
  // owner); timed_out; interrupted (a signal handler ran; not acquired).
  [[nodiscard]] wait_result lock(const deadline& until = deadline::infinite()) noexcept;
  // One attempt: ok, owner_died, or timed_out when another live process holds it.
  [[nodiscard]] wait_result try_lock() noexcept;
  // Releases; wakes one sleeper if there is one.
  void unlock() noexcept;

  // The owning pid, or 0 when free. A snapshot: it may change at once.
  pid_t owner() const noexcept;

 private:
  futex_word word_{0};
  std::uint32_t reserved_ = 0;
  std::atomic<std::uint64_t> stamp_{0};
};

static_assert(sizeof(robust_mutex) == 16);

}  // namespace mphost::ipc
