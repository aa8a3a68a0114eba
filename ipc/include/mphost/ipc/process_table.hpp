#pragma once
// The processes of a program tree, kept in its resource registry for
// observers (tree_state.hpp): who runs, in what role, started how, by whom,
// and how it ended.
//
// Contract
// * One 128-byte row per pid in a table of the registry (after the
//   registrations), claimed and released with compare-and-swap on a tag,
//   never under a lock: a process killed at any instruction leaves the table
//   usable. Every field is an atomic word of its own, so a reader never sees
//   a torn value; a row read while it changes may mix old and new fields.
// * Rows are written where the runtime already knows the facts: a process
//   notes itself (the root as `main`, a forkserver, a resource tracker, a
//   child once it runs its target, with its Python-level name), and a parent
//   notes its child when it starts it and when it collects its exit code.
//   Parent and child may write the same row at the same time: each note
//   changes only the fields it carries (the zero values below mean "leave"),
//   and a state only moves on: ready, starting, running, exited.
// * A row of a pid whose recorded start time differs from the note's is a
//   previous process's: it is reset before the note is written. When the
//   64 rows from a pid's hash are all taken, the row of an ended process
//   (state exited, or a pid that no longer runs) is reused; otherwise the
//   note is dropped (counted in the registry's untracked_count()).
// * Cost: a note is a probe of at most 64 rows plus a few relaxed stores; no
//   system call unless the caller asks for a start time. Hot paths never note.
// * Without a current registry every note is a no-op returning false.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mphost::ipc {

enum class process_role : std::uint8_t {
  unknown = 0,
  main,
  child,
  forkserver,
  warm_spare,
  manager_server,
  resource_tracker,
};

enum class process_state : std::uint8_t {
  unknown = 0,
  starting,  // started, not yet running its target
  ready,     // a warm spare waiting for work
  running,
  exited,    // its exit code was collected (or it is known gone)
};

// "fork", "spawn", "forkserver": as multiprocessing spells them.
enum class process_method : std::uint8_t { unknown = 0, fork, spawn, forkserver };

const char* to_string(process_role role) noexcept;
const char* to_string(process_state state) noexcept;
const char* to_string(process_method method) noexcept;
// The inverse of to_string; unknown for anything else.
process_role role_from_string(std::string_view text) noexcept;
process_method method_from_string(std::string_view text) noexcept;

inline constexpr std::size_t max_process_name = 79;

// One note: the fields to set on the row of `pid`. Zero / empty / nullopt
// leave a field as it is.
struct process_note {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::uint64_t start_time = 0;  // 0: leave (no /proc read)
  // A process just started with this pid: a row left by an earlier process
  // of the same pid that ended (state exited) is reset first.
  bool fresh = false;
  bool stamp_started_at = false;  // set started_at to now if not set yet
  process_role role = process_role::unknown;
  process_state state = process_state::unknown;
  process_method method = process_method::unknown;
  std::optional<int> exit_code;
  std::string_view name;  // truncated to max_process_name bytes
};

// A row as read (tree_state.hpp reads another tree's table the same way).
struct process_record {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::uint64_t start_time = 0;
  std::uint64_t started_at_ns = 0;  // unix time, 0 unknown
  process_role role = process_role::unknown;
  process_state state = process_state::unknown;
  process_method method = process_method::unknown;
  std::optional<int> exit_code;
  std::string name;
};

// Writes `note` into the current registry's table. False without a registry,
// for pid <= 0, or when no row could be found for it.
bool note_process(const process_note& note) noexcept;
// The calling process notes itself: pid, parent pid, start time, started_at,
// state running, the given role, method and name (empty: leave).
bool note_this_process(process_role role, std::string_view name = {},
                       process_method method = process_method::unknown) noexcept;
// The rows of the current registry's table now (empty without a registry).
std::vector<process_record> noted_processes();

}  // namespace mphost::ipc
