#pragma once
// The normal outcomes of a blocking call in the IPC core.
//
// Every call that can wait (a lock, a semaphore, a channel's send, recv or
// poll) returns one of these values instead of throwing: waiting is the
// ordinary business of these calls, and each outcome is something the caller
// is expected to handle. Failures (a segment that cannot be mapped, a corrupt
// frame) are not outcomes; they throw std::system_error (see error.hpp).
//
//   ok           the call did what it was asked.
//   timed_out    the deadline passed first; nothing was acquired or moved.
//   closed       the other side is gone (every peer endpoint closed or died)
//                and nothing is left to deliver.
//   owner_died   a lock was acquired, but its previous owner died holding it:
//                the state it protected may be half-updated. The caller now
//                owns the lock exactly as with `ok`.
//   interrupted  a signal handler ran while waiting (EINTR). Nothing was
//                acquired; the caller handles the signal and calls again.

#include <cstdint>

namespace mphost::ipc {

enum class wait_result : std::uint8_t {
  ok,
  timed_out,
  closed,
  owner_died,
  interrupted,
};

// A short lower-case name of the outcome ("ok", "timed_out", ...).
const char* to_string(wait_result result) noexcept;

// True when the call acquired what it waited for: `ok` or `owner_died`.
constexpr bool acquired(wait_result result) noexcept {
  return result == wait_result::ok || result == wait_result::owner_died;
}

}  // namespace mphost::ipc
