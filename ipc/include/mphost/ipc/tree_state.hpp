#pragma once
// A read-only snapshot of a program tree's live state, from its resource
// registry: for `mphost.state()` and for an observer attached to another
// program (`mphost -m mphost inspect PID`).
//
// Contract
// * Finding: the registry of root `pid` is the segment
//   /dev/shm/mphost-reg-<pid>-* owned by the calling user (regular file,
//   complete header); pid 0 means the calling process's current registry.
//   No registry: std::system_error(ESRCH; ENOENT for pid 0 without one);
//   another user's: EACCES.
// * Reading never disturbs the target: files are opened O_RDONLY and read
//   with pread (a copy of the bytes, which never faults like a mapping of a
//   file truncated meanwhile would, and never allocates the holes of a
//   sparse tmpfs file); no lock is taken, nothing is written, nothing waits
//   on a futex. A program stuck holding its locks reads like any other.
// * Tolerance: a segment that vanishes, is not yet initialised, or holds
//   something unknown is skipped or listed as a plain segment; a row that
//   changes while it is read is skipped. Values are a best-effort snapshot:
//   fields of one object are read at slightly different instants.
// * Classification by the header of each name the registry lists (its
//   magic): channels (extra rings and large blocks of a channel are folded
//   into it), semaphores/locks, events, conditions, barriers, and plain
//   shared segments (with the pids of the tree's processes that map them,
//   from /proc/<pid>/maps). The registry itself is not listed.
// * Processes: the registry's process table (process_table.hpp) plus, for
//   each live one, CPU seconds and RSS from /proc/<pid>/stat and statm. A
//   row whose pid no longer runs with its recorded start time is `alive =
//   false`.
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mphost/ipc/process_table.hpp"

namespace mphost::ipc {

struct process_view {
  process_record record;
  bool alive = false;
  char os_state = '?';       // /proc/<pid>/stat state letter, '?' if gone
  double cpu_seconds = -1;   // user + system; < 0 unknown
  std::int64_t rss_bytes = -1;
};

struct channel_view {
  std::string name;
  std::string label;  // "Queue", "Pipe", ... ; empty when unlabelled
  bool unbounded = false;
  std::uint64_t depth = 0;  // messages written and not yet taken
  std::uint64_t bytes_in_flight = 0;
  std::uint64_t capacity = 0;  // of the ring being written
  std::uint64_t messages_total = 0;
  std::uint32_t readers_waiting = 0;
  std::uint32_t writers_waiting = 0;
  std::uint32_t readers = 0;  // live endpoints
  std::uint32_t writers = 0;
  pid_t creator_pid = 0;
};

// Locks, semaphores and the other primitives.
struct sync_view {
  std::string name;
  std::string kind;  // Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier
  std::optional<std::int64_t> value;
  std::optional<std::int64_t> maxvalue;
  std::optional<pid_t> holder_pid;
  std::optional<std::uint32_t> recursion;  // RLock: depth of the holder
  std::optional<std::uint32_t> waiters;   // exact count, where the object keeps one
  bool may_have_waiters = false;          // a lock's "someone may sleep" bit
  std::optional<bool> is_set;             // Event
  std::optional<std::uint32_t> parties;   // Barrier
  std::optional<bool> broken;             // Barrier
  pid_t creator_pid = 0;
};

struct segment_view {
  std::string name;
  std::uint64_t size = 0;
  std::vector<pid_t> mapped_by;
  pid_t creator_pid = 0;
};

struct tree_snapshot {
  pid_t root = 0;
  std::string registry;
  double taken_at = 0;  // unix time
  bool root_alive = false;
  std::vector<process_view> processes;
  std::vector<channel_view> channels;
  std::vector<sync_view> syncs;
  std::vector<segment_view> segments;
  pid_t forkserver_pid = 0;  // 0: none noted
  bool forkserver_alive = false;
  std::uint32_t warm_spares = 0;
  std::uint64_t untracked = 0;  // names/rows the registry could not keep
};

// The name (without '/') of the registry of root `pid`, owned by this user.
// Throws std::system_error: ESRCH none, EACCES another user's.
std::string find_tree_registry(pid_t pid);

// The root pids of the mphost programs of this user that run now (their
// registries in /dev/shm, owner alive and not finished), in pid order.
std::vector<pid_t> running_tree_roots();

// The snapshot of root `pid`'s tree (0: this process's current registry).
tree_snapshot take_tree_snapshot(pid_t pid);

// Writes `label` (up to 31 bytes) into channel `name`'s header; false if it
// is not a channel (or is gone). For the shim, once, when it makes a queue.
bool label_channel(const std::string& name, std::string_view label) noexcept;

}  // namespace mphost::ipc
