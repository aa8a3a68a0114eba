#pragma once
// Private: the adjustment table of a semaphore created with undo
// (semaphore.hpp), and the counter operations that keep it.
//
// The table sits in the semaphore's segment after its state. Each slot
// names one process by its stamp (pid and start time, owner_word.hpp's
// pack_stamp) and holds that process's net acquisitions: acquires minus
// releases it made. Every change of the counter goes together with the
// change of one slot, under a small robust lock (the guard, an owner word):
//
//   counter + sum of live adjustments = what nobody has given back
//
// Robustness. Before it changes anything, the guard holder writes a journal
// (the slot, its previous holder and adjustment, the counter's previous
// value) and arms it; it disarms it after the last store. A process that
// takes over the guard from a dead holder (owner_lock's owner_died) finds
// the journal armed and restores the previous values: the dead process's
// unfinished step never happened, and since that process is dead its
// adjustment is given back like everyone else's. Disarmed, the journal
// means every store of the step is done. So a process may die at any
// instruction, inside or outside the guard, and the table stays exact.
//
// Giving back (reap): whoever finds the counter at zero, and every waiter
// each `reap_interval` of its sleep, looks at the slots with a positive
// adjustment; a slot whose process is dead is given back (the counter grows
// by the adjustment, up to maxvalue) and freed, and sleepers are woken. A
// full table reclaims every dead process's slot before it gives up.
//
// Capacity: fixed at creation from the segment's size (undo_segment_size,
// some 4000 processes). A process that needs a slot when every slot belongs
// to a live process cannot use the semaphore (reserve() is false: ENOSPC).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc::detail {

inline constexpr std::size_t undo_segment_size = 64 * 1024;
// Where the table starts, from the semaphore's shared state.
inline constexpr std::size_t undo_table_offset = 256;
inline constexpr auto reap_interval = std::chrono::milliseconds(50);

struct undo_slot {
  std::atomic<std::uint64_t> holder;       // stamp of the process; 0: free
  std::atomic<std::int64_t> adjustment;    // its acquires minus its releases
};

struct undo_journal {
  std::atomic<std::uint32_t> armed;
  std::uint32_t slot;
  std::uint32_t value_before;
  std::uint64_t holder_before;
  std::int64_t adjustment_before;
};

struct undo_table {
  futex_word guard;
  std::atomic<std::uint64_t> guard_stamp;
  undo_journal journal;
  std::atomic<std::uint32_t> used;  // slots ever claimed: [0, used)
  std::uint32_t capacity;
  alignas(16) undo_slot slots[1];   // `capacity` of them (the segment's rest)
};

// How many slots a table of `bytes` holds.
constexpr std::uint32_t undo_capacity(std::size_t bytes) noexcept {
  return static_cast<std::uint32_t>((bytes - offsetof(undo_table, slots)) / sizeof(undo_slot));
}

// The counter of an undo semaphore: its shared words and its table.
class undo_counter {
 public:
  undo_counter(futex_word& value, std::atomic<std::uint32_t>& waiters, std::uint32_t maxvalue,
               undo_table& table) noexcept
      : value_(value), waiters_(waiters), maxvalue_(maxvalue), table_(table) {}

  // Lays out a fresh table in `bytes` of zeroed memory.
  static void init(undo_table& table, std::size_t bytes) noexcept;

  // Claims the calling process's slot if it has none; false when the table
  // is full of live processes. `hint` caches the slot's index per handle.
  bool reserve(std::uint32_t& hint) noexcept;
  // Takes a unit if the counter is positive (ok), else timed_out; waits for
  // the guard only. No slot and a full table: timed_out too (reserve first).
  wait_result try_take(std::uint32_t& hint) noexcept;
  // Takes a unit, waiting until `until`; gives back dead processes' units
  // while it waits.
  wait_result take(std::uint32_t& hint, const deadline& until) noexcept;
  // Gives a unit back: errc{} or released_too_many_times (at maxvalue).
  errc give(std::uint32_t& hint) noexcept;
  // Gives back what dead processes held; how many units.
  std::uint32_t reap() noexcept;

 private:
  enum class outcome { taken, empty, no_slot, interrupted };
  wait_result lock() noexcept;
  void unlock() noexcept;
  void roll_back() noexcept;
  std::uint32_t find_slot(std::uint64_t me, std::uint32_t hint) noexcept;
  std::uint32_t claim_slot(std::uint64_t me, std::uint32_t& hint) noexcept;
  std::uint32_t reap_locked(bool every_dead) noexcept;
  void step(std::uint32_t slot, std::uint64_t holder, std::int64_t adjustment, std::uint32_t value) noexcept;
  outcome attempt(std::uint32_t& hint) noexcept;

  futex_word& value_;
  std::atomic<std::uint32_t>& waiters_;
  std::uint32_t maxvalue_;
  undo_table& table_;
};

}  // namespace mphost::ipc::detail
