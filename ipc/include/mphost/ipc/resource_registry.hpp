#pragma once
// The names a program tree has alive in /dev/shm, kept where a dead process
// cannot take them along: in one owner-only shared segment of its own.
//
// The root process of an mphost program creates a registry (a segment named
// `mphost-reg-<pid>-<24 hex>`, 0600) holding the root's identity (pid and
// start time) and a table of fixed-size slots. Every process of the tree maps
// the same registry: forked children inherit the mapping, started children
// open it by the name found in the MPHOST_REGISTRY environment variable.
// Once a registry is the process's current one (set_current_registry),
// segment::create/create_named record each name before the segment exists and
// segment::remove releases its slot after the name is gone, whichever process
// created it, so the names of a child that was killed or left by os._exit
// stay recorded.
//
// Membership. Every process of the tree that may create names holds a shared
// POSIX record lock on the registry file (join_current_registry: the root,
// every attached process, and every forked child of one, which takes its own
// lock again in a pthread_atfork handler). The kernel drops a process's lock
// however the process ends, so a lock held by another process means a
// member of the tree still runs. A member token (registry_member_token) is
// the same membership carried by a descriptor instead of a process (an
// open-file-description lock): handed to a process being started, it makes
// that process a member before it could join by itself.
//
// When the root ends (finish_root_registry) it marks the registry finished,
// removes every name still recorded and then the registry: whatever its
// children did, nothing of the tree is left. A process of the tree that
// outlives the root (the orphan of a killed child, a helper that ends after
// it) keeps what it has mapped; if it creates a name afterwards, it first
// becomes the root of a registry of its own (registry_for_new_name), so that
// its names are removed when it ends, or swept once it is dead.
//
// A registry whose owner is dead and that no member holds any more (a root
// that was itself killed, after the last process of its tree) is removed
// together with its names by the next root to start (sweep_dead_registries),
// which judges the owner dead when its pid is gone, a zombie, or now names a
// process with another start time. While a member of a killed root's tree
// still runs, its names stay: it may be using them; the last one may remove
// the registry itself when it ends (finish_abandoned_registry, which the
// resource tracker calls).
//
// Slots are claimed and released with compare-and-swap on one 64-bit tag
// (free, being written, or the name's hash), never under a lock, so a process
// killed at any instruction leaves the table usable: at worst one slot stays
// claimed and unused. A name lives in a window of 64 slots starting at its
// hash; when the window is full, or the name is longer than max_name_length,
// the name is simply not tracked (counted in untracked_count()). The table is
// sparse: pages of /dev/shm are allocated only when a slot in them is first
// written, and the header marks those pages so that listing or emptying the
// registry reads no other.
//
// Registrations. Besides the names of segments, which the core records by
// itself, a registry keeps the registrations of the stdlib's
// resource_tracker API (register(name, rtype) / unregister): a resource type
// and a name, plus the watcher the registration belongs to. They live in a
// second table of 1024-byte slots (type and name together up to
// max_registration_text bytes, which every message the stdlib accepts fits),
// claimed the same lock-free way. The watcher is an opaque number chosen by
// the caller (the shim uses the inode of the pipe to its tracker process,
// which warns about and removes the registrations of its own watcher when
// the processes holding that pipe have all ended). Whatever no watcher
// handled goes with the tree: remove_all -- the root's end, the sweep of a
// killed root -- removes every registered resource of a type the core knows
// (remove_registered: "shared_memory" and "semaphore" are shared memory
// names; "file" and "folder" absolute paths) and forgets the others, which
// only their program's Python code could remove.
//
// A process without a current registry (C++ applications, unit tests) works
// exactly as if this file did not exist. Registries belong to the user who
// created them: another user's are never opened or swept.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include "mphost/ipc/process_identity.hpp"
#include "mphost/ipc/segment.hpp"

namespace mphost::ipc {

struct process_note;    // process_table.hpp
struct process_record;  // process_table.hpp

class resource_registry {
 public:
  static constexpr std::string_view name_prefix = "mphost-reg-";
  static constexpr const char* environment_variable = "MPHOST_REGISTRY";
  // 32768 slots of 128 bytes: 4 MiB of address space, touched page by page.
  static constexpr std::uint32_t default_slot_count = 32768;
  static constexpr std::size_t max_name_length = 114;
  static constexpr std::size_t not_tracked = ~std::size_t{0};
  // 4096 registration slots of 1024 bytes: 4 MiB of address space, sparse too.
  static constexpr std::uint32_t default_registration_count = 4096;
  static constexpr std::size_t max_registration_text = 1000;

  // A fresh registry owned by the calling process, named
  // `<prefix><pid>-<24 hex>`, with 1 to 524288 name slots and 1 to 8192
  // registration slots. Throws std::system_error.
  static resource_registry create(std::uint32_t slot_count = default_slot_count,
                                  std::string_view prefix = name_prefix,
                                  std::uint32_t registration_count = default_registration_count);
  // Maps an existing registry; EINVAL if `name` is not a complete registry,
  // EACCES if another user owns it, ENOENT if it is gone.
  static resource_registry open(const std::string& name);

  resource_registry() noexcept = default;
  resource_registry(resource_registry&&) noexcept = default;
  resource_registry& operator=(resource_registry&&) noexcept = default;

  explicit operator bool() const noexcept { return static_cast<bool>(segment_); }
  const std::string& name() const noexcept { return segment_.name(); }
  process_identity owner() const noexcept;
  bool owner_is_alive() const noexcept;
  std::uint32_t slot_count() const noexcept;

  // Records `name` (a leading '/' is ignored) and returns its slot, or
  // not_tracked when the name cannot be kept.
  std::size_t record(std::string_view name) noexcept;
  // Frees the slot record() returned, if it still holds `name`.
  void release_slot(std::size_t slot, std::string_view name) noexcept;
  // Frees every slot holding `name`; returns how many there were.
  std::size_t release(std::string_view name) noexcept;
  bool contains(std::string_view name) const noexcept;
  // The names recorded now (a snapshot).
  std::vector<std::string> names() const;
  // How many names could not be recorded since the registry was created.
  std::uint64_t untracked_count() const noexcept;
  // Whether the owner has ended (finish_root_registry), and marking it so.
  bool finished() const noexcept;
  void mark_finished() noexcept;

  // ---- registrations ----
  struct registration {
    std::string rtype;
    std::string name;
    std::uint64_t watcher = 0;
    pid_t creator = 0;
  };
  // Records (rtype, name) for `watcher` unless that very registration is
  // there already. False when it cannot be kept: an empty type, type and
  // name longer than max_registration_text together, or a full window
  // (counted in untracked_count()).
  bool add_registration(std::string_view rtype, std::string_view name, std::uint64_t watcher) noexcept;
  // Forgets every registration of (rtype, name), whichever watcher it
  // belongs to; returns how many there were.
  std::size_t drop_registration(std::string_view rtype, std::string_view name) noexcept;
  // The registrations recorded now (a snapshot; a registration made twice
  // at the same instant by two processes may appear twice).
  std::vector<registration> registrations() const;
  // Gives the registrations of watcher `from` to watcher `to`; how many.
  std::size_t move_registrations(std::uint64_t from, std::uint64_t to) noexcept;

  // ---- processes (process_table.hpp) ----
  bool note_process(const process_note& note) noexcept;
  std::vector<process_record> processes() const;

  // Unlinks every name recorded here, removes every registered resource of
  // a type the core knows (remove_registered) and then unlinks the
  // registry's own name. The mapping stays valid. Returns how many recorded
  // names and registered resources still existed.
  std::size_t remove_all() noexcept;

 private:
  explicit resource_registry(segment seg) noexcept : segment_(std::move(seg)) {}
  segment segment_;
};

// ---- the process-wide current registry ----
//
// Set once when a process starts (before it creates shared objects) and
// inherited by forked children. Not meant to change while other threads
// create or remove segments.

// The current registry, or nullptr.
resource_registry* current_registry() noexcept;
// The registry segment::create* records a new name into, or nullptr: the
// current one, unless its root has ended; then a fresh registry owned by the
// calling process, made current, joined and exported in MPHOST_REGISTRY.
resource_registry* registry_for_new_name() noexcept;
// Makes `registry` the current one (an empty one clears it).
void set_current_registry(resource_registry registry) noexcept;

// Root start-up: sweeps the registries of dead roots, creates this process's
// registry, makes it current, joins it and exports its name in
// MPHOST_REGISTRY for every descendant. False (and no registry) if it cannot
// be created.
bool start_root_registry() noexcept;
// Opens the registry named by MPHOST_REGISTRY and makes it current, if it is
// there and its owner is alive; joins it too when `member`. False otherwise.
// (A warm spawn child attaches without joining, and joins when it is given
// work: until then it creates nothing and must not keep a finishing root
// waiting.)
bool attach_registry_from_environment(bool member = true) noexcept;
// Makes the calling process a member of the current registry (idempotent).
// False without a current registry or if the lock cannot be taken.
bool join_current_registry() noexcept;
// True when a process other than the caller is a member of the current
// registry.
bool others_attached_to_current_registry() noexcept;
// Root end: if the current registry is owned by the calling process, marks
// it finished, removes every name still recorded and the registry itself,
// and clears the current registry. Does nothing in any other process (a
// forked child of the root included). Safe to call twice.
void finish_root_registry() noexcept;

// A membership that travels: a new descriptor of the current registry's
// file holding an open-file-description read lock, to pass to a process
// being started (the resource tracker), which is then a member from the
// instant it exists, before it could attach by itself -- so a root killed
// right after starting it does not leave its registry to the next sweep.
// The lock lasts while any process holds the descriptor. The calling
// process must never close it (closing any descriptor of the file drops its
// own record lock, see membership): keep one per process. -1 without a
// current registry or if the file cannot be opened; a descriptor without the
// lock if the kernel refuses it.
int registry_member_token() noexcept;
// Makes the registry `name` current even if its owner is dead (the tracker
// of a root killed while the tracker started, which holds a member token).
// A registry owned by the calling process (made at its start because the
// tree's owner was already gone) is finished first. Does not join. False if
// `name` cannot be opened.
bool adopt_registry(const std::string& name) noexcept;

// The end of the last process of a tree whose root was killed (the
// resource tracker, which outlives the others): if the current registry's
// owner is dead and no other process is a member any more, removes it with
// everything it records (remove_all) and clears the current registry. True
// if it did; nothing happens while the root or another member still runs.
bool finish_abandoned_registry() noexcept;

// Removes the resource one registration names, the way its type says:
// "shared_memory" and "semaphore" name shared memory (shm_unlink, a leading
// '/' ignored), "file" an absolute path (unlink), "folder" an absolute
// directory (removed with its content). Returns 0, or an errno value:
// ENOENT when there was nothing to remove, EINVAL for a name that cannot be
// removed safely (a relative path, one with "/" or ".." inside a shared
// memory name) or a type the core does not know.
int remove_registered(std::string_view rtype, std::string_view name) noexcept;

// Removes, with all the names they hold, the registries named `<prefix><pid>-`
// that belong to this user, whose owner is dead and that no process holds as
// a member any more. Returns how many registries it removed.
std::size_t sweep_dead_registries(std::string_view prefix = resource_registry::name_prefix) noexcept;

}  // namespace mphost::ipc
