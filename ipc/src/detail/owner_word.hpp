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
//
// Cost of the uncontended path: taking a free word is one compare-exchange
// and one plain store (the stamp); releasing is one plain store and one
// exchange, plus a futex wake only when the waiters bit is set. Both are
// inline here so that callers pay no call across translation units, and the
// caller's identity (its word value, stamp and thread id) comes from a
// per-thread cache, not from system calls.

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

// Who the calling thread is, as the lock protocol writes it: the word value
// of its process, the stamp of its process, and its kernel thread id.
// Computed once per thread and recomputed after a fork: a fork makes
// `identity_epoch` move on (pthread_atfork), and a cached entry of an older
// epoch is stale. Epoch 0 is never current, so a new thread computes its own.
struct self_identity {
  std::uint64_t epoch = 0;
  std::uint64_t stamp = 0;
  std::uint32_t word = 0;
  std::uint32_t tid = 0;
};

inline std::atomic<std::uint64_t> identity_epoch{1};
inline thread_local constinit self_identity this_thread_identity{};

// Recomputes the calling thread's entry (out of line; robust_mutex.cpp).
const self_identity& refresh_self_identity() noexcept;

inline const self_identity& current_identity() noexcept {
  const self_identity& me = this_thread_identity;
  if (me.epoch == identity_epoch.load(std::memory_order_relaxed)) [[likely]] return me;
  return refresh_self_identity();
}

// True when the owner recorded in `word_value` is certainly dead.
bool owner_is_dead(std::uint32_t word_value, const std::atomic<std::uint64_t>& stamp) noexcept;

// Acquires for the calling process: ok, owner_died (taken over from a dead
// owner), timed_out or interrupted.
wait_result owner_lock(futex_word& word, std::atomic<std::uint64_t>& stamp, const deadline& until) noexcept;

// One attempt without sleeping: ok, owner_died, or timed_out when held.
wait_result owner_try_lock(futex_word& word, std::atomic<std::uint64_t>& stamp) noexcept;

// The uncontended case alone: takes a word that is free with nobody asleep
// (true), else changes nothing (false; use owner_try_lock or owner_lock).
inline bool owner_take_free(futex_word& word, std::atomic<std::uint64_t>& stamp, const self_identity& me) noexcept {
  std::uint32_t expected = 0;
  if (!word.compare_exchange_strong(expected, me.word, std::memory_order_acquire, std::memory_order_relaxed)) {
    return false;
  }
  stamp.store(me.stamp, std::memory_order_relaxed);
  return true;
}

// Releases whoever holds it, waking one sleeper if the waiters bit was set;
// false if it was free. The stamp is cleared before the word (release order).
inline bool owner_unlock(futex_word& word, std::atomic<std::uint64_t>& stamp) noexcept {
  stamp.store(0, std::memory_order_relaxed);
  const std::uint32_t old = word.exchange(0, std::memory_order_release);
  if (old & waiters_bit) futex_wake(word, 1);
  return (old & owner_mask) != 0;
}

}  // namespace mphost::ipc::detail
