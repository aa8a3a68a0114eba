#pragma once
// Private: the shared-memory layout of a channel and its endpoint table.
//
// Control segment (named <name>):
//   control            magic, geometry, the write and read locks, the futex
//                      words and waiter counters, endpoint counters and the
//                      endpoint table's marks, then ring 0's header and data,
//   endpoint table     at table_offset (page aligned, after ring 0's data):
//                      max_endpoints slots. Only its first page is allocated
//                      when the channel is made; a page is allocated (and
//                      touched) when the high-water mark first reaches it,
//                      so a channel pays for the places it has had at once,
//                      not for the limit.
// Extra rings of an unbounded channel (named <name>.r<id>):
//   ring_header, data.
// Large blocks (named <name>.b<random>): see large_block.hpp. Blocks whose
// message has been dropped wait in the control segment's block pool
// (pool_lock) for the next large send.
//
// Writers hold `write_lock` only to reserve space (and to start a new ring);
// readers hold `read_lock` while they take one frame. `tail_ring` is the ring
// writers append to, `head_ring` the one readers drain; all rings between
// them are full and sealed (no reservation is made in a ring once a later
// one is published).

#include <atomic>
#include <cstdint>

#include "mphost/ipc/futex.hpp"
#include "mphost/ipc/large_block.hpp"
#include "mphost/ipc/robust_mutex.hpp"

namespace mphost::ipc::detail {

inline constexpr std::uint64_t control_magic = 0x316c6e6863706d6dull;  // "mmphchl1"
inline constexpr std::uint64_t ring_magic = 0x31676e6972706d6dull;     // "mmpring1"
inline constexpr std::uint32_t layout_version = 6;
// Endpoints of one channel alive at once (a fork child's inherited places
// count): 2^15, far above what a tree of processes reaches on one machine,
// and within the 16 bits a writer id gives the slot (frame.hpp).
inline constexpr std::uint32_t max_endpoints = 32768;
inline constexpr std::uint32_t no_slot = ~0u;
inline constexpr std::uint64_t min_capacity = 4096;
inline constexpr std::uint64_t max_capacity = std::uint64_t{1} << 40;
inline constexpr std::uint32_t pool_slots = 16;
inline constexpr std::uint64_t pool_byte_limit = std::uint64_t{64} << 20;  // pooled block bytes per channel

struct ring_header {
  std::uint64_t magic;
  std::uint64_t id;
  std::uint64_t capacity;     // power of two
  std::uint64_t data_offset;  // from this header to the ring's first byte
  alignas(64) std::atomic<std::uint64_t> tail;  // written under write_lock
  alignas(64) std::atomic<std::uint64_t> head;  // written under read_lock
};

// owner word of an endpoint slot: pid << 32 | generation << 16 | role << 8 | status
enum slot_status : std::uint8_t { slot_free = 0, slot_active = 1, slot_pending = 2 };

constexpr std::uint64_t make_owner(std::uint32_t pid, std::uint32_t generation, std::uint8_t role, std::uint8_t status) noexcept {
  return (std::uint64_t{pid} << 32) | (std::uint64_t{generation & 0xffff} << 16) | (std::uint64_t{role} << 8) | status;
}
constexpr std::uint32_t owner_pid(std::uint64_t o) noexcept { return static_cast<std::uint32_t>(o >> 32); }
constexpr std::uint32_t owner_generation(std::uint64_t o) noexcept { return static_cast<std::uint32_t>(o >> 16) & 0xffff; }
constexpr std::uint8_t owner_role(std::uint64_t o) noexcept { return static_cast<std::uint8_t>(o >> 8); }
constexpr std::uint8_t owner_status(std::uint64_t o) noexcept { return static_cast<std::uint8_t>(o); }

struct endpoint_slot {
  std::atomic<std::uint64_t> owner;
  std::atomic<std::uint64_t> start_time;  // of owner_pid; 0 while unknown
  std::atomic<std::uint64_t> expiry_ns;   // pending slots: CLOCK_MONOTONIC ns after which the place lapses
};

struct control {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t flags;  // flag_unbounded | flag_remove_when_unused
  std::uint64_t capacity;
  std::uint64_t large_threshold;
  std::uint32_t endpoint_limit;  // max_endpoints
  // Set (before the segment exists) by the first writer that makes a name
  // of the form <name>.<something> (an extra ring, a large block): until
  // then removing the channel's names need not list /dev/shm for them.
  std::atomic<std::uint32_t> extra_names;

  alignas(64) robust_mutex write_lock;
  std::atomic<std::uint64_t> tail_ring;
  // For observers (tree_state.hpp): frames reserved by writers, under
  // write_lock, on the line writers touch anyway.
  std::atomic<std::uint64_t> messages_written;

  alignas(64) robust_mutex read_lock;
  std::atomic<std::uint64_t> head_ring;
  // Messages taken (or dropped as abandoned) by readers, under read_lock.
  std::atomic<std::uint64_t> messages_read;

  // Readers sleep on data_seq; writers bump it after a commit when
  // readers_waiting > 0. Watchers (doorbell threads) sleep on watch_seq.
  alignas(64) futex_word data_seq;
  std::atomic<std::uint32_t> readers_waiting;
  futex_word watch_seq;
  std::atomic<std::uint32_t> watchers;

  // Writers of a full bounded ring sleep on space_seq, after publishing in
  // space_wanted the free bytes they need (the smallest such need; 0: none).
  // Readers wake them once that much is free, and not before a quarter of
  // the ring is: ten writers are not woken for every frame read.
  alignas(64) futex_word space_seq;
  std::atomic<std::uint32_t> writers_waiting;
  std::atomic<std::uint64_t> space_wanted;

  // The socket doorbell of a Pipe end (doorbell.hpp, channel.hpp Readiness):
  // bell_socket is the inode of the socket writers write a marker into to
  // make the readers' socket readable (0: none); bell_armed is 1 once some
  // process asked for the descriptor (until then nobody rings); bell_rung
  // is 1 while a marker is there. They change only under bell_lock.
  alignas(64) robust_mutex bell_lock;
  std::atomic<std::uint64_t> bell_socket;
  std::atomic<std::uint32_t> bell_armed;
  std::atomic<std::uint32_t> bell_rung;

  alignas(64) std::atomic<std::uint32_t> live_readers;
  std::atomic<std::uint32_t> live_writers;
  std::atomic<std::uint32_t> endpoints;
  std::atomic<std::uint32_t> removed;
  // What the program calls it ("Queue", "Pipe", ...), NUL-padded; written
  // once after creation (label_channel), for observers only.
  char label[32];

  // The endpoint table (at table_offset from this header). Slots at and
  // above high_water have never been used; every scan stops there. A freed
  // slot's index goes into free_hint, where the next claim looks first.
  std::uint64_t table_offset;
  std::atomic<std::uint32_t> high_water;
  std::atomic<std::uint32_t> free_hint;

  // Free large blocks: refs whose size is the block's whole capacity.
  alignas(64) robust_mutex pool_lock;
  std::uint32_t pool_count;
  std::uint32_t reserved1;
  std::uint64_t pool_bytes;
  block_ref pool[pool_slots];

  alignas(64) ring_header ring0;
  // ring 0's data follows
};

inline constexpr std::uint64_t table_bytes = std::uint64_t{max_endpoints} * sizeof(endpoint_slot);
inline constexpr std::uint64_t table_page = 4096;
inline constexpr std::uint64_t table_offset_for(std::uint64_t control_and_ring0) noexcept {
  return (control_and_ring0 + table_page - 1) & ~(table_page - 1);
}
inline endpoint_slot* slot_table(const control& c) noexcept {
  return reinterpret_cast<endpoint_slot*>(reinterpret_cast<std::uintptr_t>(&c) + c.table_offset);
}
inline endpoint_slot& slot_at(const control& c, std::uint32_t i) noexcept { return slot_table(c)[i]; }

inline constexpr std::uint32_t flag_unbounded = 1;
inline constexpr std::uint32_t flag_remove_when_unused = 2;

}  // namespace mphost::ipc::detail
