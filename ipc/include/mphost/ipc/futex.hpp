#pragma once
// Waiting on, and waking, a 32-bit word in shared memory (Linux futex).
//
// These are the only sleeping primitives of the IPC core; every lock,
// semaphore and channel is a protocol over a few such words. The calls use
// the shared (non-PRIVATE) futex operations, so a waiter in one process is
// woken by a wake in another as long as both map the same memory.
//
// futex_wait sleeps only if the word still holds `expected` when the kernel
// looks; it can return without any wake (a spurious return, or the word had
// already changed), so callers always re-check their condition in a loop.
// A wake reaches only threads that are asleep at that moment: the callers'
// protocols announce waiters (a counter or a bit) before sleeping so that a
// waker knows it must call futex_wake.

#include <atomic>
#include <cstdint>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

using futex_word = std::atomic<std::uint32_t>;
static_assert(sizeof(futex_word) == sizeof(std::uint32_t) && futex_word::is_always_lock_free,
              "a futex word must be a plain lock-free 32-bit integer");

// Sleeps while `word == expected`, until woken, `until` passes or a signal
// handler runs. Returns ok (woken, spurious, or the word differed),
// timed_out, or interrupted (EINTR; within an interrupt_watch also a signal
// noted since the watch began, before or during the sleep, in any thread:
// interrupt.hpp).
wait_result futex_wait(const futex_word& word, std::uint32_t expected, const deadline& until) noexcept;

// Wakes up to `count` threads sleeping on `word`, in any process; returns how
// many were woken.
int futex_wake(const futex_word& word, int count) noexcept;

// Wakes every thread sleeping on `word`.
inline int futex_wake_all(const futex_word& word) noexcept { return futex_wake(word, 0x7fffffff); }

}  // namespace mphost::ipc
