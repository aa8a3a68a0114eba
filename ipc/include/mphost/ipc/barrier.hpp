#pragma once
// A barrier for a fixed number of parties in shared memory: the mechanism
// behind multiprocessing.Barrier, with threading.Barrier's states.
//
// A cycle: parties arrive one by one (enter() gives each its index, 0 for
// the first); the last to arrive (index parties-1) may run an action, then
// releases the others (release()), or breaks the barrier if the action
// failed (abandon()). The others wait for that release (await_release()).
// Every party that entered leaves once (leave(); release() and abandon()
// include it). The barrier then "drains": parties arriving for the next
// cycle wait in enter() until every party of this one has left.
//
// States, as threading.Barrier's _state: 0 filling, 1 draining, -1
// resetting (reset() while parties wait: they leave broken; the barrier
// fills again once they are gone), -2 broken (abort(), a timeout, a failed
// action, or a dead party; stays broken until reset()).
//
// Outcomes: enter() gives passed (with the index), broken (nothing taken),
// or interrupted (a signal handler ran; nothing taken). await_release()
// gives passed, broken, timed_out (the deadline passed: the barrier is now
// broken for everyone, as threading does), or interrupted (still in the
// cycle: call it again, or abandon()).
//
// Death of a party. Each party's process is recorded in the slot of its
// index until it leaves. Waiters look at every party's slot after each
// 100 ms of waiting in which nothing changed: a party whose process died
// while in the cycle (waiting, or holding the last slot while its action
// ran) breaks the barrier, so the others get broken within about 100 ms
// instead of at their timeout; a dead party in a draining or resetting
// barrier is counted as gone, so the next cycle is not blocked by it. A
// party that died after arriving still counts as arrived: if the last party
// arrives before the death is seen, the cycle passes. The barrier's
// fields are guarded by a robust mutex held for a few instructions; a
// process that dies inside it is taken over by the next caller.
//
// Ordering: everything a party wrote before it arrived is visible to every
// party after await_release()/release() returns passed. Waiting: a short
// adaptive spin, then a futex sleep.
//
// Lifetime and names: as ipc::event (a segment of its own, opened by name;
// copy deleted, move allowed).

#include <cstdint>
#include <string>
#include <string_view>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/segment.hpp"

namespace mphost::ipc {

namespace detail {
struct barrier_state;
}

enum class barrier_result : std::uint8_t { passed, broken, timed_out, interrupted };

class barrier {
 public:
  static constexpr std::string_view default_prefix = "mphost-bar-";
  static constexpr std::uint32_t max_parties = 1u << 20;

  enum state : int { filling = 0, draining = 1, resetting = -1, broken = -2 };

  struct entry {
    barrier_result result;
    std::uint32_t index;
  };

  // A barrier for `parties` (1..max_parties; EINVAL otherwise).
  static barrier create(std::uint32_t parties, const std::string& name = {});
  static barrier open(const std::string& name);
  static bool unlink(const std::string& name) noexcept;

  barrier(barrier&&) noexcept;
  barrier& operator=(barrier&&) noexcept;
  barrier(const barrier&) = delete;
  barrier& operator=(const barrier&) = delete;
  ~barrier();

  const std::string& name() const noexcept { return segment_.name(); }
  std::uint32_t parties() const noexcept;

  // Takes a place in the filling cycle, waiting while the barrier drains or
  // resets (no deadline, as threading).
  [[nodiscard]] entry enter() noexcept;
  // The last party: releases the cycle and leaves.
  void release(std::uint32_t index) noexcept;
  // Any party: breaks the barrier and leaves (a failed action, an
  // interrupted wait that gives up).
  void abandon(std::uint32_t index) noexcept;
  // Waits for the release of the cycle `index` belongs to.
  [[nodiscard]] barrier_result await_release(std::uint32_t index, const deadline& until) noexcept;
  void leave(std::uint32_t index) noexcept;

  // The whole wait without an action: the index, or the failure.
  [[nodiscard]] entry wait(const deadline& until = deadline::infinite()) noexcept;

  void abort() noexcept;
  void reset() noexcept;

  // Snapshots.
  state current_state() const noexcept;
  std::uint32_t count() const noexcept;        // parties in the barrier
  std::uint32_t n_waiting() const noexcept;    // count() while filling, else 0
  bool is_broken() const noexcept { return current_state() == broken; }

 private:
  explicit barrier(segment seg) noexcept;

  segment segment_;
  detail::barrier_state* state_ = nullptr;
};

}  // namespace mphost::ipc
