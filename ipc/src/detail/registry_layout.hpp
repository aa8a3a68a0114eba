#pragma once
// Private: the bytes of a resource registry, shared by resource_registry.cpp
// (names of segments, membership, sweeping) and
// resource_registry_registrations.cpp (typed registrations).
//
//   [ header: 4096 bytes ]
//   [ name slots: slot_count x 128 bytes ]
//   [ registration slots: registration_count x 1024 bytes ]
//   [ process slots: process_count x 128 bytes ]   (process_table.hpp)
//
// Both tables are open-addressed on a 64-bit tag claimed with
// compare-and-swap: free (0), being written (2), or the odd hash of what the
// slot holds. A reader trusts a slot's bytes only after reading its odd tag
// with acquire. Each table has a bitmap in the header with one bit per page
// of slots ever written, set before the slot is claimed, so that scans read
// only those pages (reading a hole of a tmpfs file would allocate it).

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "mphost/ipc/process_table.hpp"

#include "mphost/ipc/resource_registry.hpp"
#include "mphost/ipc/segment.hpp"

namespace mphost::ipc::detail {

inline constexpr std::uint64_t registry_magic = 0x3130676572687068ull;  // "hphreg01"
inline constexpr std::uint32_t registry_version = 4;
inline constexpr std::size_t registry_header_bytes = 4096;
inline constexpr std::size_t registry_probe_window = 64;

inline constexpr std::uint64_t tag_free = 0;
inline constexpr std::uint64_t tag_writing = 2;

// Name slots: 32 to a page, 256 bitmap words, up to 524288 slots.
inline constexpr std::size_t name_group_slots = 32;
inline constexpr std::size_t name_bitmap_words = 256;
// Registration slots: 4 to a page, 32 bitmap words, up to 8192 slots.
inline constexpr std::size_t registration_group_slots = 4;
inline constexpr std::size_t registration_bitmap_words = 32;
// Process slots: 32 to a page, 4 bitmap words, up to 8192 slots.
inline constexpr std::size_t process_group_slots = 32;
inline constexpr std::size_t process_bitmap_words = 4;
inline constexpr std::uint32_t default_process_count = 4096;

struct registry_header {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t slot_count;
  std::int32_t owner_pid;
  std::atomic<std::uint32_t> finished;  // set by the root when it ends
  std::uint64_t owner_start_time;
  std::atomic<std::uint64_t> untracked;
  std::atomic<std::uint32_t> ready;  // stored last, with release
  std::uint32_t registration_count;
  std::atomic<std::uint64_t> touched[name_bitmap_words];
  std::atomic<std::uint64_t> registration_touched[registration_bitmap_words];
  std::uint32_t process_count;
  std::uint32_t reserved;
  std::atomic<std::uint64_t> process_touched[process_bitmap_words];
};
static_assert(sizeof(registry_header) <= registry_header_bytes);

struct name_slot {
  std::atomic<std::uint64_t> tag;
  std::int32_t creator;
  std::uint16_t length;
  char name[resource_registry::max_name_length];
};
static_assert(sizeof(name_slot) == 128);

// A registration: the type and the name side by side in `text`.
struct registration_slot {
  std::atomic<std::uint64_t> tag;
  std::atomic<std::uint64_t> watcher;  // may change while the slot is live
  std::int32_t creator;
  std::uint16_t name_length;
  std::uint8_t rtype_length;
  std::uint8_t unused;
  char text[resource_registry::max_registration_text];
};
static_assert(sizeof(registration_slot) == 1024);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// A process of the tree (process_table.hpp). Keyed by pid: the tag is
// pid << 1 | 1. Every field is an atomic of its own, written by the process
// itself or by its parent, so a reader never sees a torn word; `name` holds
// up to process_name_bytes - 1 bytes, NUL-padded.
inline constexpr std::size_t process_name_words = 10;
struct process_slot {
  std::atomic<std::uint64_t> tag;
  std::atomic<std::uint64_t> start_time;     // /proc ticks since boot; 0: unknown
  std::atomic<std::uint64_t> started_at_ns;  // unix time
  std::atomic<std::int32_t> pid;
  std::atomic<std::int32_t> ppid;
  std::atomic<std::uint8_t> role;
  std::atomic<std::uint8_t> state;
  std::atomic<std::uint8_t> method;
  std::atomic<std::uint8_t> has_exit;
  std::atomic<std::int32_t> exit_code;
  std::atomic<std::uint64_t> name[process_name_words];
  std::uint64_t unused;
};
static_assert(sizeof(process_slot) == 128);

inline std::uint64_t hash_bytes(std::uint64_t h, std::string_view bytes) noexcept {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;  // FNV-1a
  }
  return h;
}

// Odd: never free or writing.
inline std::uint64_t name_tag(std::string_view name) noexcept { return hash_bytes(0xcbf29ce484222325ull, name) | 1; }

inline registry_header* header_of(const segment& seg) noexcept { return static_cast<registry_header*>(seg.base()); }
inline name_slot* name_slots_of(const segment& seg) noexcept {
  return reinterpret_cast<name_slot*>(seg.data() + registry_header_bytes);
}
inline registration_slot* registration_slots_of(const segment& seg) noexcept {
  return reinterpret_cast<registration_slot*>(seg.data() + registry_header_bytes +
                                              std::size_t{header_of(seg)->slot_count} * sizeof(name_slot));
}

inline process_slot* process_slots_of(const segment& seg) noexcept {
  const registry_header* h = header_of(seg);
  return reinterpret_cast<process_slot*>(seg.data() + registry_header_bytes +
                                         std::size_t{h->slot_count} * sizeof(name_slot) +
                                         std::size_t{h->registration_count} * sizeof(registration_slot));
}

inline std::size_t registry_bytes(std::uint32_t slot_count, std::uint32_t registration_count,
                                  std::uint32_t process_count = default_process_count) noexcept {
  return registry_header_bytes + std::size_t{slot_count} * sizeof(name_slot) +
         std::size_t{registration_count} * sizeof(registration_slot) + std::size_t{process_count} * sizeof(process_slot);
}

// Sets the bit of the page holding slot `index` of a table.
inline void mark_touched(std::atomic<std::uint64_t>* bitmap, std::size_t group_slots, std::size_t index) noexcept {
  const std::size_t group = index / group_slots;
  const std::uint64_t bit = std::uint64_t{1} << (group % 64);
  std::atomic<std::uint64_t>& word = bitmap[group / 64];
  if ((word.load(std::memory_order_relaxed) & bit) == 0) word.fetch_or(bit, std::memory_order_release);
}

// Calls fn(slot&) for every slot of `table` (of `count`) in a page ever written.
template <typename Slot, typename F>
void for_each_touched(const std::atomic<std::uint64_t>* bitmap, std::size_t group_slots, Slot* table, std::size_t count,
                      F&& fn) {
  const std::size_t groups = (count + group_slots - 1) / group_slots;
  for (std::size_t g = 0; g < groups; ++g) {
    if ((bitmap[g / 64].load(std::memory_order_acquire) & (std::uint64_t{1} << (g % 64))) == 0) continue;
    const std::size_t end = count < (g + 1) * group_slots ? count : (g + 1) * group_slots;
    for (std::size_t i = g * group_slots; i < end; ++i) fn(table[i]);
  }
}

// The tag of the process row of `pid`; a row as read, or nullopt when it is
// free or changed while being read (process_table.cpp).
std::uint64_t process_tag(pid_t pid) noexcept;
std::optional<process_record> read_process_slot(const process_slot& s) noexcept;

// A name shm_unlink may be given safely: one path component.
bool removable_name(std::string_view name) noexcept;
// shm_unlink("/" + name); true if it removed something.
bool unlink_name(std::string_view name) noexcept;
// Removes what the registrations recorded in `seg` name, by type (see
// remove_registered), and frees their slots. Returns how many were removed.
std::size_t remove_registrations(const segment& seg) noexcept;

}  // namespace mphost::ipc::detail
