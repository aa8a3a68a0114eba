#pragma once
// Private: what event, condition and barrier share.
//
// - Their shared state lives at the start of a segment of its own, created
//   with the caller's name (or an unguessable one) and stamped with a magic
//   number and a version once it is fully built, so that open() refuses a
//   segment that holds something else.
// - A "party stamp" names the process behind a waiter or a barrier party:
//   its pid and start time packed as in owner_word.hpp. Zero means nobody.
//   party_alive() says whether that process still runs (a zombie does not);
//   a stamp of the calling process is alive without asking the kernel.
// - The "bell": a 32-bit futex word whose bit 0 says that someone may be
//   asleep on it and whose other bits count changes. ring() moves it on and
//   wakes every sleeper if the bit was set; sleep() sets the bit and waits
//   for the word to move on from the value read earlier. A process that dies
//   asleep leaves the bit set, which costs the next ring one system call.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "detail/owner_word.hpp"
#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/process_identity.hpp"
#include "mphost/ipc/segment.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc::detail {

// A fresh segment: `name` exactly, or `<prefix><24 hex>` when it is empty.
inline segment make_sync_segment(const std::string& name, std::size_t size, std::string_view prefix) {
  return name.empty() ? segment::create(size, prefix) : segment::create_named(name, size);
}

inline std::uint64_t self_stamp() noexcept { return current_identity().stamp; }

inline pid_t stamp_pid(std::uint64_t stamp) noexcept { return static_cast<pid_t>(stamp >> 40); }

inline bool party_alive(std::uint64_t stamp) noexcept {
  if (stamp == 0) return false;
  const pid_t pid = stamp_pid(stamp);
  if (pid == current_pid()) return true;
  return process_is_alive(pid, stamp & ((std::uint64_t{1} << 40) - 1));
}

inline constexpr std::uint32_t bell_sleepers = 1;

// Moves the bell on; wakes every sleeper if there may be any.
inline void ring(futex_word& bell) noexcept {
  std::uint32_t v = bell.load(std::memory_order_relaxed);
  while (!bell.compare_exchange_weak(v, (v + 2) & ~bell_sleepers, std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
  if (v & bell_sleepers) futex_wake_all(bell);
}

// The bell's count, without the sleepers bit: what sleep() compares with.
inline std::uint32_t bell_mark(const futex_word& bell) noexcept {
  return bell.load(std::memory_order_acquire) & ~bell_sleepers;
}

// Sleeps until the bell has moved on from `mark`, `until` passes or a signal
// arrives: ok (moved on, or spurious), timed_out, interrupted.
inline wait_result sleep(futex_word& bell, std::uint32_t mark, const deadline& until) noexcept {
  std::uint32_t v = bell.load(std::memory_order_acquire);
  for (;;) {
    if ((v & ~bell_sleepers) != mark) return wait_result::ok;
    if (v & bell_sleepers) break;
    if (bell.compare_exchange_weak(v, v | bell_sleepers, std::memory_order_acq_rel, std::memory_order_acquire)) {
      v |= bell_sleepers;
      break;
    }
  }
  return futex_wait(bell, v, until);
}

}  // namespace mphost::ipc::detail
