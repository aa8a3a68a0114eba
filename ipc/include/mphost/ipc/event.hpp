#pragma once
// A flag in shared memory that processes set, clear and wait for: the
// mechanism behind multiprocessing.Event.
//
// Contract.
// - set() raises the flag and wakes every waiter; clear() lowers it; both
//   are single atomic operations that never wait, so they cannot be held up
//   by any other process, alive or dead.
// - wait() returns ok when the flag is up, or when it went up at any moment
//   since the wait began, even if it was lowered again before the waiter
//   looked (threading.Event's promise): every set() that raises the flag
//   starts a new "generation", and a waiter compares generations, not only
//   the flag. wait() returns timed_out when the deadline passes with neither,
//   interrupted when a signal handler ran (call wait() again with the same
//   `since` to keep the promise across the interruption).
// - No locks: a waiter that dies (killed in its sleep) leaves nothing held,
//   so set, clear and the other waiters go on unaffected; at most the next
//   set() makes one wake-up system call for nobody.
//
// Memory ordering: set() is a release, a wait() that returns ok an acquire,
// so what the setter wrote before set() is visible to the waiter after it.
//
// Waiting: a short adaptive spin, then a futex sleep; set() makes a system
// call only when someone may be asleep.
//
// Lifetime and names: each event lives in a small segment of its own, named
// at creation (the caller's name or an unguessable one), opened by name from
// other processes; unlink() removes the name, handles keep working. Copy is
// deleted (a handle owns its mapping); move is allowed.

#include <cstdint>
#include <string>
#include <string_view>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/segment.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

namespace detail {
struct event_state;
}

class event {
 public:
  static constexpr std::string_view default_prefix = "mphost-evt-";

  // A new, lowered event (EEXIST if `name` is taken).
  static event create(const std::string& name = {});
  // Opens an existing event; ENOENT if there is none, EINVAL if the segment
  // holds something else.
  static event open(const std::string& name);
  // Removes a name; false if it did not exist.
  static bool unlink(const std::string& name) noexcept;

  event(event&&) noexcept;
  event& operator=(event&&) noexcept;
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  ~event();

  const std::string& name() const noexcept { return segment_.name(); }

  bool is_set() const noexcept;
  void set() noexcept;
  void clear() noexcept;

  // What a waiter compares with: take it once, before the first wait() of
  // one logical wait, and pass the same value to every retry.
  std::uint32_t since() const noexcept;
  // ok: the flag is up or was raised after `since`; timed_out; interrupted.
  [[nodiscard]] wait_result wait(std::uint32_t since, const deadline& until) noexcept;
  [[nodiscard]] wait_result wait(const deadline& until = deadline::infinite()) noexcept { return wait(since(), until); }

 private:
  explicit event(segment seg) noexcept;

  segment segment_;
  detail::event_state* state_ = nullptr;
};

}  // namespace mphost::ipc
