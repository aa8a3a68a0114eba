#pragma once
// The timeout taken by every blocking call of the IPC core.
//
// A deadline is either infinite or a point on std::chrono::steady_clock
// (CLOCK_MONOTONIC, so it is not moved by changes of the wall clock). It is
// fixed when it is made: a call that waits several times (spin, sleep, wake,
// sleep again) measures every wait against the same point, so a timeout given
// by the user is never stretched by retries. A deadline that has already
// passed still lets a call try once without waiting: that is how a
// non-blocking attempt is spelled (deadline::immediate()).
//
// A deadline is a small value type; copy it freely.

#include <chrono>
#include <ctime>

namespace mphost::ipc {

class deadline {
 public:
  using clock = std::chrono::steady_clock;

  // Never expires.
  static constexpr deadline infinite() noexcept { return deadline(); }
  // Has already expired: the call tries once and does not wait.
  // It is the clock's epoch, so that making and testing it reads no clock:
  // single attempts (an uncontended lock) are the hottest calls of the core.
  static constexpr deadline immediate() noexcept { return deadline(clock::time_point{}); }
  // Expires `timeout` from now; a zero or negative timeout is immediate().
  static deadline after(clock::duration timeout) noexcept;
  // Expires at `when`.
  static constexpr deadline at(clock::time_point when) noexcept { return deadline(when); }
  // From a timeout in seconds as Python gives it: a negative or zero value is
  // immediate(); +inf, or a value too large for the clock, is infinite().
  // NaN throws std::invalid_argument (Python callers reject it earlier with
  // the stdlib's message; this is the last line).
  static deadline from_seconds(double seconds);

  // The earlier of two deadlines.
  static deadline earliest(const deadline& a, const deadline& b) noexcept;

  bool is_infinite() const noexcept { return infinite_; }
  bool expired() const noexcept { return !infinite_ && (when_ == clock::time_point{} || clock::now() >= when_); }
  // The expiry point; clock::time_point::max() when infinite.
  clock::time_point when() const noexcept { return infinite_ ? clock::time_point::max() : when_; }
  // Time left: zero once expired, clock::duration::max() when infinite.
  clock::duration remaining() const noexcept;
  // The expiry as an absolute CLOCK_MONOTONIC timespec (for futex and
  // ppoll-style calls). Only meaningful when !is_infinite().
  timespec to_monotonic_timespec() const noexcept;

 private:
  constexpr deadline() noexcept = default;
  constexpr explicit deadline(clock::time_point when) noexcept : infinite_(false), when_(when) {}

  bool infinite_ = true;
  clock::time_point when_{};
};

}  // namespace mphost::ipc
