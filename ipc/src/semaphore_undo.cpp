// The counter of a semaphore created with undo: detail/undo_table.hpp.
#include <algorithm>
#include <limits>

#include "detail/owner_word.hpp"
#include "detail/undo_table.hpp"
#include "mphost/ipc/process_identity.hpp"

namespace mphost::ipc::detail {
namespace {

constexpr std::uint32_t no_slot = std::numeric_limits<std::uint32_t>::max();

bool holder_alive(std::uint64_t stamp) noexcept {
  const auto pid = static_cast<pid_t>(stamp >> 40);
  return process_is_alive(pid, stamp & ((std::uint64_t{1} << 40) - 1));
}

}  // namespace

void undo_counter::init(undo_table& table, std::size_t bytes) noexcept {
  table.capacity = undo_capacity(bytes);
  table.used.store(0, std::memory_order_relaxed);
}

wait_result undo_counter::lock() noexcept {
  // The guard is held for a few stores and never across a sleep, so a
  // signal is left for after the call: a release must not fail with EINTR.
  for (;;) {
    const wait_result r = owner_lock(table_.guard, table_.guard_stamp, deadline::infinite());
    if (r == wait_result::owner_died) roll_back();
    if (acquired(r)) return r;
  }
}

void undo_counter::unlock() noexcept { owner_unlock(table_.guard, table_.guard_stamp); }

void undo_counter::roll_back() noexcept {
  undo_journal& j = table_.journal;
  if (j.armed.load(std::memory_order_acquire) == 0) return;
  if (j.slot < table_.capacity) {
    table_.slots[j.slot].holder.store(j.holder_before, std::memory_order_relaxed);
    table_.slots[j.slot].adjustment.store(j.adjustment_before, std::memory_order_relaxed);
  }
  value_.store(j.value_before, std::memory_order_seq_cst);
  j.armed.store(0, std::memory_order_release);
}

void undo_counter::step(std::uint32_t slot, std::uint64_t holder, std::int64_t adjustment,
                        std::uint32_t value) noexcept {
  undo_journal& j = table_.journal;
  j.slot = slot;
  j.value_before = value_.load(std::memory_order_relaxed);
  if (slot < table_.capacity) {
    j.holder_before = table_.slots[slot].holder.load(std::memory_order_relaxed);
    j.adjustment_before = table_.slots[slot].adjustment.load(std::memory_order_relaxed);
  }
  j.armed.store(1, std::memory_order_release);
  if (slot < table_.capacity) {
    table_.slots[slot].holder.store(holder, std::memory_order_relaxed);
    table_.slots[slot].adjustment.store(adjustment, std::memory_order_relaxed);
  }
  value_.store(value, std::memory_order_seq_cst);
  j.armed.store(0, std::memory_order_release);
}

std::uint32_t undo_counter::find_slot(std::uint64_t me, std::uint32_t hint) noexcept {
  const std::uint32_t used = table_.used.load(std::memory_order_relaxed);
  if (hint < used && table_.slots[hint].holder.load(std::memory_order_relaxed) == me) return hint;
  for (std::uint32_t i = 0; i < used; ++i) {
    if (table_.slots[i].holder.load(std::memory_order_relaxed) == me) return i;
  }
  return no_slot;
}

std::uint32_t undo_counter::claim_slot(std::uint64_t me, std::uint32_t& hint) noexcept {
  std::uint32_t found = find_slot(me, hint);
  for (int round = 0; found == no_slot && round < 2; ++round) {
    const std::uint32_t used = table_.used.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < used && found == no_slot; ++i) {
      if (table_.slots[i].holder.load(std::memory_order_relaxed) == 0) found = i;
    }
    if (found == no_slot && used < table_.capacity) {
      // A death right after this store leaves a free slot in range: harmless.
      table_.used.store(used + 1, std::memory_order_relaxed);
      found = used;
    }
    if (found != no_slot) {
      step(found, me, 0, value_.load(std::memory_order_relaxed));
    } else if (round == 0) {
      // Full: the slots of every dead process go, given back or not.
      if (const std::uint32_t given = reap_locked(true); given > 0 && waiters_.load(std::memory_order_seq_cst) > 0) {
        futex_wake_all(value_);
      }
    }
  }
  if (found != no_slot) hint = found;
  return found;
}

std::uint32_t undo_counter::reap_locked(bool every_dead) noexcept {
  std::uint32_t given = 0;
  const std::uint32_t used = table_.used.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < used; ++i) {
    const std::uint64_t holder = table_.slots[i].holder.load(std::memory_order_relaxed);
    if (holder == 0) continue;
    const std::int64_t owed = table_.slots[i].adjustment.load(std::memory_order_relaxed);
    if ((owed <= 0 && !every_dead) || holder_alive(holder)) continue;
    const std::uint32_t now = value_.load(std::memory_order_relaxed);
    const auto back = static_cast<std::uint32_t>(std::clamp<std::int64_t>(owed, 0, maxvalue_ - now));
    step(i, 0, 0, now + back);
    given += back;
  }
  return given;
}

std::uint32_t undo_counter::reap() noexcept {
  lock();
  const std::uint32_t given = reap_locked(false);
  unlock();
  if (given > 0 && waiters_.load(std::memory_order_seq_cst) > 0) futex_wake_all(value_);
  return given;
}

bool undo_counter::reserve(std::uint32_t& hint) noexcept {
  lock();
  const bool ok = claim_slot(current_identity().stamp, hint) != no_slot;
  unlock();
  return ok;
}

undo_counter::outcome undo_counter::attempt(std::uint32_t& hint) noexcept {
  lock();
  const std::uint64_t me = current_identity().stamp;
  const std::uint32_t slot = claim_slot(me, hint);
  outcome result = outcome::no_slot;
  if (slot != no_slot) {
    const std::uint32_t now = value_.load(std::memory_order_relaxed);
    result = outcome::empty;
    if (now > 0) {
      step(slot, me, table_.slots[slot].adjustment.load(std::memory_order_relaxed) + 1, now - 1);
      result = outcome::taken;
    }
  }
  unlock();
  return result;
}

wait_result undo_counter::try_take(std::uint32_t& hint) noexcept {
  outcome o = attempt(hint);
  if (o == outcome::empty && reap() > 0) o = attempt(hint);
  return o == outcome::taken ? wait_result::ok : wait_result::timed_out;
}

wait_result undo_counter::take(std::uint32_t& hint, const deadline& until) noexcept {
  for (;;) {
    const outcome o = attempt(hint);
    if (o == outcome::taken) return wait_result::ok;
    if (o == outcome::no_slot) return wait_result::timed_out;
    if (reap() > 0) continue;
    if (until.expired()) return wait_result::timed_out;
    // Announce, then look again: a give after the announcement wakes us.
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    if (value_.load(std::memory_order_seq_cst) != 0) {
      waiters_.fetch_sub(1, std::memory_order_relaxed);
      continue;
    }
    const wait_result r = futex_wait(value_, 0, deadline::earliest(until, deadline::after(reap_interval)));
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    if (r == wait_result::interrupted) return r;
  }
}

errc undo_counter::give(std::uint32_t& hint) noexcept {
  lock();
  const std::uint64_t me = current_identity().stamp;
  // A process that finds no slot still releases; it just records nothing
  // (a negative balance is never given back anyway).
  const std::uint32_t slot = claim_slot(me, hint);
  const std::uint32_t now = value_.load(std::memory_order_relaxed);
  if (now >= maxvalue_) {
    unlock();
    return errc::released_too_many_times;
  }
  if (slot != no_slot) {
    step(slot, me, table_.slots[slot].adjustment.load(std::memory_order_relaxed) - 1, now + 1);
  } else {
    step(no_slot, 0, 0, now + 1);
  }
  unlock();
  if (waiters_.load(std::memory_order_seq_cst) > 0) futex_wake(value_, 1);
  return errc{};
}

}  // namespace mphost::ipc::detail
