#include "mphost/ipc/robust_mutex.hpp"

#include <pthread.h>

#include <chrono>

#include "detail/owner_word.hpp"
#include "detail/spin.hpp"
#include "mphost/ipc/interrupt.hpp"
#include "mphost/ipc/process_identity.hpp"

namespace mphost::ipc {
namespace detail {
namespace {

// Lock holders in the core keep their locks for well under a microsecond;
// a waiter that has spun a few microseconds is better off asleep.
adaptive_spin lock_spin(500, 8000);

// How often a sleeper wakes on its own to see whether the owner died.
constexpr auto liveness_interval = std::chrono::milliseconds(100);

std::uint32_t self_word() noexcept { return current_identity().word; }

void publish_stamp(std::atomic<std::uint64_t>& stamp) noexcept {
  stamp.store(current_identity().stamp, std::memory_order_relaxed);
}

void identity_after_fork() noexcept { identity_epoch.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

const self_identity& refresh_self_identity() noexcept {
  // The handler only marks every thread's entry stale; the entry is rebuilt
  // here, on first use, from process_identity (refreshed by its own handler,
  // whichever of the two runs first).
  static const bool registered = [] { return ::pthread_atfork(nullptr, nullptr, &identity_after_fork) == 0; }();
  (void)registered;
  self_identity& me = this_thread_identity;
  const std::uint64_t epoch = identity_epoch.load(std::memory_order_relaxed);
  const process_identity who = process_identity::current();
  me.word = static_cast<std::uint32_t>(who.pid) & owner_mask;
  me.stamp = pack_stamp(who.pid, who.start_time);
  me.tid = current_thread_id();
  me.epoch = epoch;
  return me;
}

bool owner_is_dead(std::uint32_t word_value, const std::atomic<std::uint64_t>& stamp) noexcept {
  const std::uint32_t owner = word_value & owner_mask;
  if (owner == 0 || owner == unknown_owner) return false;
  const std::uint64_t s = stamp.load(std::memory_order_acquire);
  std::uint64_t start = 0;
  if (static_cast<std::uint32_t>(s >> 40) == owner) start = s & ((std::uint64_t{1} << 40) - 1);
  return !process_is_alive(static_cast<pid_t>(owner), start);
}

wait_result owner_try_lock(futex_word& word, std::atomic<std::uint64_t>& stamp) noexcept {
  const std::uint32_t self = self_word();
  std::uint32_t v = word.load(std::memory_order_relaxed);
  for (;;) {
    if ((v & owner_mask) == 0) {
      if (word.compare_exchange_weak(v, self | (v & waiters_bit), std::memory_order_acquire, std::memory_order_relaxed)) {
        publish_stamp(stamp);
        return wait_result::ok;
      }
      continue;
    }
    if (owner_is_dead(v, stamp)) {
      if (word.compare_exchange_strong(v, self | (v & waiters_bit), std::memory_order_acquire, std::memory_order_relaxed)) {
        publish_stamp(stamp);
        return wait_result::owner_died;
      }
      continue;
    }
    return wait_result::timed_out;
  }
}

wait_result owner_lock(futex_word& word, std::atomic<std::uint64_t>& stamp, const deadline& until) noexcept {
  const std::uint32_t self = self_word();
  if (owner_take_free(word, stamp, current_identity())) return wait_result::ok;
  const std::int64_t start_ns = monotonic_ns();
  const bool got = lock_spin.spin(
      [&]() noexcept {
        std::uint32_t v = word.load(std::memory_order_relaxed);
        return (v & owner_mask) == 0 &&
               word.compare_exchange_weak(v, self | (v & waiters_bit), std::memory_order_acquire, std::memory_order_relaxed);
      },
      start_ns);
  if (got) {
    publish_stamp(stamp);
    lock_spin.record(start_ns);
    return wait_result::ok;
  }

  bool check_owner = true;
  for (;;) {
    std::uint32_t v = word.load(std::memory_order_relaxed);
    if ((v & owner_mask) == 0) {
      // Others may still sleep: keep the waiters bit so our unlock wakes one.
      if (word.compare_exchange_weak(v, self | waiters_bit, std::memory_order_acquire, std::memory_order_relaxed)) {
        publish_stamp(stamp);
        lock_spin.record(start_ns);
        return wait_result::ok;
      }
      continue;
    }
    if (check_owner) {
      check_owner = false;
      if (owner_is_dead(v, stamp)) {
        if (word.compare_exchange_strong(v, self | waiters_bit, std::memory_order_acquire, std::memory_order_relaxed)) {
          publish_stamp(stamp);
          return wait_result::owner_died;
        }
        check_owner = true;
        continue;
      }
    }
    if ((v & waiters_bit) == 0) {
      if (!word.compare_exchange_weak(v, v | waiters_bit, std::memory_order_relaxed, std::memory_order_relaxed)) continue;
      v |= waiters_bit;
    }
    const deadline slice = deadline::earliest(until, deadline::after(liveness_interval));
    const wait_result r = futex_wait(word, v, slice);
    if (r == wait_result::interrupted) return r;
    if (r == wait_result::timed_out) {
      if (until.expired()) {
        // One last look: the lock may have been freed at the very end.
        const wait_result last = owner_try_lock(word, stamp);
        return last;
      }
      check_owner = true;
    }
  }
}

}  // namespace detail

wait_result robust_mutex::lock(const deadline& until) noexcept {
  const interrupt_shield guards_are_short;
  return detail::owner_lock(word_, stamp_, until);
}

wait_result robust_mutex::try_lock() noexcept {
  if (detail::owner_take_free(word_, stamp_, detail::current_identity())) return wait_result::ok;
  return detail::owner_try_lock(word_, stamp_);
}

void robust_mutex::unlock() noexcept { detail::owner_unlock(word_, stamp_); }

pid_t robust_mutex::owner() const noexcept {
  const std::uint32_t v = word_.load(std::memory_order_relaxed) & detail::owner_mask;
  return v == detail::unknown_owner ? 0 : static_cast<pid_t>(v);
}

}  // namespace mphost::ipc
