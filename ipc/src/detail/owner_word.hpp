#pragma once
// Private: the lock protocol shared by robust_mutex and the lock kinds of
// semaphore (semlock).
//
// The 32-bit futex word holds 0 when free, else the owner's pid in the low
// 30 bits and, in bit 31, "someone may be asleep". A second, 64-bit word (the
// stamp) holds the owner's pid and start time once the owner has written it;
// it is cleared before every release, so whoever reads a stamp whose pid
// matches the word's owner reads that owner's start time, never a previous
// owner's (pid reuse cannot make a live owner look dead).
//
// `unknown_owner` marks a word that is held by no identifiable process (a
// semaphore created at zero): it never counts as dead.

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc::detail {

inline constexpr std::uint32_t waiters_bit = 1u << 31;
inline constexpr std::uint32_t owner_mask = (1u << 30) - 1;
inline constexpr std::uint32_t unknown_owner = owner_mask;

inline std::uint64_t pack_stamp(pid_t pid, std::uint64_t start_time) noexcept {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 40) | (start_time & ((std::uint64_t{1} << 40) - 1));
}

// True when the owner recorded in `word_value` is certainly dead.
bool owner_is_dead(std::uint32_t word_value, const std::atomic<std::uint64_t>& stamp) noexcept;

// Acquires for the calling process: ok, owner_died (taken over from a dead
// owner), timed_out or interrupted.
wait_result owner_lock(futex_word& word, std::atomic<std::uint64_t>& stamp, const deadline& until) noexcept;

// One attempt without sleeping: ok, owner_died, or timed_out when held.
wait_result owner_try_lock(futex_word& word, std::atomic<std::uint64_t>& stamp) noexcept;

// Releases whoever holds it; false if it was free.
bool owner_unlock(futex_word& word, std::atomic<std::uint64_t>& stamp) noexcept;

}  // namespace mphost::ipc::detail
