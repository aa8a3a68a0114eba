#pragma once
// A condition variable in shared memory, for a lock the caller holds: the
// mechanism behind multiprocessing.Condition.
//
// The condition does not own the lock it is used with (a multiprocessing
// Lock or RLock, i.e. an ipc::semaphore, or anything else the caller
// serializes with). One wait is three steps:
//   1. enlist()  while holding the lock: the caller becomes a waiter, so a
//                notify() issued after the lock is let go cannot miss it;
//   2. the caller lets the lock go (as many times as it holds it);
//   3. wait()    sleeps until notified, the deadline passes or a signal
//                handler runs; the caller then takes the lock back.
// notify(n) wakes up to n waiters, oldest first, and returns how many it
// woke; notify_all() wakes every waiter enlisted at that moment. A waiter
// enlisted after a notify is not woken by it.
//
// Outcomes of wait(): ok (notified: the waiter has consumed one
// notification), timed_out (not notified; the waiter has left), interrupted
// (a signal handler ran; still enlisted: call wait() again, or withdraw()).
// A notification and a timeout that race are settled by one compare-and-
// swap on the waiter's slot: either the waiter returns ok, or the notifier
// did not count it and woke someone else instead. withdraw() leaves after an
// interruption; a notification that had arrived meanwhile is passed on to
// the next waiter, so that none is lost.
//
// Death of a process. No lock is ever held across a sleep, so a dead waiter
// blocks no one. A notifier that finds a waiter whose process is gone (or a
// zombie) frees its slot and does not count it: notify(n) wakes n live
// waiters when there are that many. A waiter that was notified and died
// before it returned is found by the next notify(), which passes that
// notification on. The condition's own bookkeeping is guarded by a robust
// mutex held for a few instructions; if a process dies inside, the next
// caller takes it over and the slots, all updated by compare-and-swap, are
// consistent.
//
// Capacity. 250 waiters have slots of their own; more waiters than that
// share an overflow bell, and a notify that must reach one of them wakes all
// of them (each returns ok): more wake-ups than asked, never fewer.
//
// Ordering: what a notifier wrote before notify() is visible to the waiter
// it woke (release/acquire on the slot). Waiting: a short adaptive spin,
// then a futex sleep on the waiter's own slot, so notify(1) wakes one
// process, not all of them.
//
// Lifetime and names: as ipc::event (a segment of its own, opened by name;
// copy deleted, move allowed).

#include <cstdint>
#include <string>
#include <string_view>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/segment.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

namespace detail {
struct condition_state;
}

class condition {
 public:
  static constexpr std::string_view default_prefix = "mphost-cnd-";
  static constexpr std::uint32_t slot_count = 250;

  // A waiter's place, from enlist() to the end of its wait.
  struct waiter {
    std::uint32_t slot = 0;  // slot_count: on the overflow bell
    std::uint32_t mark = 0;  // the overflow bell's count when enlisted
    bool active = false;
  };

  static condition create(const std::string& name = {});
  static condition open(const std::string& name);
  static bool unlink(const std::string& name) noexcept;

  condition(condition&&) noexcept;
  condition& operator=(condition&&) noexcept;
  condition(const condition&) = delete;
  condition& operator=(const condition&) = delete;
  ~condition();

  const std::string& name() const noexcept { return segment_.name(); }

  // Step 1, with the caller's lock held.
  [[nodiscard]] waiter enlist() noexcept;
  // Step 3: ok, timed_out or interrupted (see above).
  [[nodiscard]] wait_result wait(waiter& w, const deadline& until = deadline::infinite()) noexcept;
  // Leaves without waiting further (after interrupted); passes on a
  // notification that arrived meanwhile. Does nothing for an inactive waiter.
  void withdraw(waiter& w) noexcept;

  // Wakes up to `n` live waiters; returns how many.
  std::uint32_t notify(std::uint32_t n = 1) noexcept;
  std::uint32_t notify_all() noexcept { return notify(0xffffffffu); }

  // Waiters enlisted and not yet gone (notified ones included until they
  // return). A snapshot.
  std::uint32_t waiting() const noexcept;

 private:
  explicit condition(segment seg) noexcept;
  void leave(waiter& w) noexcept;

  segment segment_;
  detail::condition_state* state_ = nullptr;
};

}  // namespace mphost::ipc
