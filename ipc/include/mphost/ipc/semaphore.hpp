#pragma once
// A semaphore or recursive mutex in shared memory: the "semlock" behind
// multiprocessing's Lock, RLock, Semaphore and BoundedSemaphore, and behind
// the `_multiprocessing.SemLock` that mphost provides.
//
// Each semaphore lives in a small segment of its own, named at creation (the
// caller's name, or an unguessable one) and openable by that name from any
// process of the same user, as POSIX named semaphores are. The handle returned
// by create/open maps it; unlink removes the name (existing handles keep
// working), like sem_unlink.
//
// Kinds, as in the stdlib:
//   recursive_mutex  (RLock) owned by one thread of one process; the owner
//                    may acquire again, and must release as many times; a
//                    release by anyone else fails with errc::not_owner.
//   semaphore        a counter between 0 and maxvalue. Lock is a semaphore
//                    with value 1 and maxvalue 1; BoundedSemaphore(n) has
//                    maxvalue n; Semaphore(n) has maxvalue value_max. Any
//                    thread of any process may release; releasing past
//                    maxvalue fails with errc::released_too_many_times.
//
// Death of a process. The rule: what has an owner is recovered, what is a
// counter is not -- unless it was created with undo.
//   Lock, RLock   A recursive mutex records its owner (pid, start time,
//                 thread id, recursion count); so does a lock-like semaphore
//                 (maxvalue 1, created with track_holder: Lock), whose holder
//                 is the process that last acquired it. If that process dies
//                 holding it, the next acquirer takes it over and acquire()
//                 returns wait_result::owner_died (acquired; the protected
//                 state may be inconsistent). A Lock acquired by one process
//                 and meant to be released by another counts as held by the
//                 first, so if the first dies before the release the lock is
//                 recovered early.
//   Semaphore,    A counter (any maxvalue; track_holder false for maxvalue 1)
//   Bounded-      has no owner: any process may release (signalling), so it
//   Semaphore     cannot know which units a dead process still held. As with
//                 POSIX semaphores, a dead process's acquisitions stay taken.
//   ... with undo A counter created with undo keeps, in its own segment, a
//                 table of each process's net acquisitions (acquires minus
//                 releases it made; detail/undo_table.hpp), like System V's
//                 SEM_UNDO: when a process dies, however it dies, its
//                 positive balance is given back (never past maxvalue).
//                 Waiters notice within about 50 ms; value() gives back
//                 before it reads. The table is bounded (about 4000
//                 processes): a process that needs a slot when all belong to
//                 live processes gets ENOSPC from reserve_undo(), and its
//                 acquire() fails as timed_out. Every acquire and release
//                 takes a short robust lock (two atomic operations more than
//                 a plain counter) and records its step in a journal, so any
//                 process may die at any instruction and the count stays
//                 exact.
//
// Waiting: a short adaptive spin, then a futex sleep; releasers wake sleepers
// only when there are any. acquire() returns ok, owner_died, timed_out, or
// interrupted (a signal handler ran: call again after handling it).
//
// Process-local bookkeeping mirrors CPython's SemLock object: count() and
// is_mine() for the semaphore kind report this handle's own acquisitions in
// this process (reset by after_fork()); for the recursive mutex they read the
// shared owner record.
//
// Cost. An uncontended acquire+release of a Lock or an RLock is two atomic
// read-modify-writes on the lock word (one to take it, one to free it) and
// plain stores; a nested acquire+release of an RLock by its owner is none.
// The lock kinds keep their bookkeeping with plain stores because holding
// the lock already serializes it; a counting semaphore counts atomically.

#include <atomic>
#include <cstdint>
#include <string>
#include <system_error>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/segment.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

// Values match multiprocessing.synchronize's RECURSIVE_MUTEX and SEMAPHORE.
enum class semlock_kind : int { recursive_mutex = 0, semaphore = 1 };

// Creation options (create()).
struct semaphore_options {
  // A semaphore kind with maxvalue 1 records its holder and is recovered
  // when it dies (Lock). False: a plain counter (BoundedSemaphore(1)).
  bool track_holder = true;
  // Give back a dead process's net acquisitions (a semaphore kind only).
  bool undo = false;
};

namespace detail {
struct semlock_state;
struct self_identity;
}

class semaphore {
 public:
  static constexpr std::uint32_t value_max = 0x7fffffff;  // SEM_VALUE_MAX
  static constexpr std::string_view default_prefix = "mphost-sem-";

  // A new semaphore. An empty name picks an unguessable one; otherwise the
  // name must be free (EEXIST). Throws EINVAL for value > maxvalue, maxvalue
  // of 0 or above value_max, or a recursive mutex whose maxvalue is not 1
  // (one created with value 0 starts held by no identifiable owner), or
  // undo for a recursive mutex.
  static semaphore create(semlock_kind kind, std::uint32_t value, std::uint32_t maxvalue, const std::string& name = {},
                          const semaphore_options& options = {});
  // Opens an existing semaphore (ENOENT if there is none, EINVAL if the
  // segment does not hold one).
  static semaphore open(const std::string& name);
  // Removes a name; throws ENOENT when it does not exist (sem_unlink).
  static void unlink(const std::string& name);

  semaphore(semaphore&&) noexcept;
  semaphore& operator=(semaphore&&) noexcept;
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;
  ~semaphore();

  const std::string& name() const noexcept { return segment_.name(); }
  semlock_kind kind() const noexcept;
  std::uint32_t maxvalue() const noexcept;
  // The address of the shared state in this process (stable while mapped).
  const void* handle() const noexcept;

  [[nodiscard]] wait_result acquire(const deadline& until = deadline::infinite()) noexcept;
  // The cheapest attempt, for hot paths: takes a free lock, a unit of a
  // positive counter, or one more level of a recursive mutex the caller
  // owns (true); otherwise changes nothing (false) -- it neither waits nor
  // takes over from a dead owner, so follow a false with acquire().
  [[nodiscard]] bool try_acquire() noexcept;
  // Throws std::system_error: errc::released_too_many_times, errc::not_owner.
  void release();
  // The same without throwing: an empty error_code on success.
  [[nodiscard]] std::error_code try_release() noexcept;
  // The same for hot paths, without building an error_code: errc{} (zero)
  // on success, else errc::released_too_many_times or errc::not_owner.
  [[nodiscard]] errc release_status() noexcept;

  // Created with undo.
  bool undo() const noexcept { return mode_ == mode::undo; }
  // With undo: claims the calling process's slot in the table now (acquire
  // and release claim it too). Throws ENOSPC when the table is full of live
  // processes. Without undo: nothing.
  void reserve_undo();

  // Current value: the counter, or 1/0 for free/held locks. With undo, what
  // dead processes held is given back first.
  std::uint32_t value() const noexcept;
  bool is_zero() const noexcept { return value() == 0; }
  // Held by the calling thread (recursive mutex), or acquired through this
  // handle by the calling thread more often than released (semaphore).
  bool is_mine() const noexcept;
  // Recursion depth of the calling thread (recursive mutex), or this
  // handle's acquisitions minus releases in this process (semaphore).
  std::uint32_t count() const noexcept;
  // Forgets this handle's process-local acquisitions (in a forked child).
  void after_fork() noexcept;

 private:
  // Which protocol the shared state follows (fixed at creation; cached
  // here so that the hot paths read no shared field to choose).
  enum class mode : std::uint8_t { counter, lock, recursive, undo };

  explicit semaphore(segment seg);
  void note_owner_acquired(const detail::self_identity& me) noexcept;

  segment segment_;
  detail::semlock_state* state_ = nullptr;
  mode mode_ = mode::counter;
  std::atomic<std::uint32_t> local_count_{0};
  std::atomic<std::uint32_t> last_thread_{0};
  // With undo: the index of this process's slot, a hint read and written
  // under the table's guard only.
  std::uint32_t undo_hint_ = 0;
};

}  // namespace mphost::ipc
