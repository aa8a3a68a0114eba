#pragma once
// The supervisor: the table of the children this process started, one table
// per process, and the one place their exit is collected.
//
// Contract
// * A child enters the table when it is started (fork_child) or handed over
//   by the code that started it (admit: spawn, forkserver). Its entry keeps
//   the pid, the sentinel (a pidfd, or the forkserver status descriptor), the
//   identity (pid + start time from /proc, so that a pid the kernel gave to a
//   later process is never taken for the child), the start method and the
//   daemon flag. The table owns the sentinel and closes it when the entry
//   goes and nobody waits on it any more.
// * The exit code (0, n for exit(n), -signum) is collected ONCE, by whichever
//   caller first finds the child ended (poll, wait, running, ...), under the
//   table's lock, with waitid(P_PIDFD) on the pidfd: it reaps exactly that
//   process, never a later one with the same pid. Every other asker, in any
//   thread, gets the same code. A forkserver child's code is read from its
//   status descriptor instead (read_child_exit_code; 255 when the zygote went
//   away, as the stdlib reports it).
// * A child reaped behind the table's back (os.waitpid(-1) in user code,
//   SIGCHLD ignored) gives ECHILD: its code is lost. As the stdlib reports
//   such a child, it has no exit code, ever (poll gives nullopt and running()
//   keeps listing it); wait() returns as soon as it has ended.
// * Signals reach the child through its pidfd, or, for a forkserver child,
//   by pid only while the pid still has the recorded start time; never once
//   the code was collected (the pid may be someone else's by then).
// * release(ticket) is the handle being dropped. An ended child leaves the
//   table; a running one stays as an orphan and is reaped, without blocking,
//   by the next admit/fork_child/running/reap_orphans: no zombies.
// * end_children(join_by) is the exit path: SIGTERM to every running daemon
//   child, then wait for every child until join_by; orphans are only reaped
//   if they ended. The parent-death tie of daemon children (they die with this
//   process however it ends) is parent_death.hpp, armed by fork_child through
//   fork_process; this file does not duplicate it.
// * Thread-safe: one mutex guards the table; it is never held across a wait
//   or a fork. Fork-safe: the child of any fork (pthread_atfork) starts with
//   an empty table; the parent's sentinels it inherited stay open, as the
//   stdlib leaves them.
// * A ticket the table does not know (released, or a parent's after fork)
//   throws std::system_error(ECHILD), as waitpid does for a pid that is not
//   a child. Tickets are never reused, not even across fork.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/wait_result.hpp"
#include "mphost/runtime/fork.hpp"

namespace mphost::runtime {

enum class start_method : std::uint8_t { fork, spawn, forkserver };

// Names as multiprocessing spells them ("fork", "spawn", "forkserver").
const char* to_string(start_method method) noexcept;

using child_ticket = std::uint64_t;  // 0 is never a ticket

// The start time of process `pid` (field 22 of /proc/pid/stat, clock ticks
// since boot); 0 when it cannot be read (no such process).
std::uint64_t process_start_time(pid_t pid) noexcept;

// How a child is handed to the table.
struct admission {
  pid_t pid = -1;
  start_method method = start_method::spawn;
  bool daemon = false;
  // -1: the table opens a pidfd and reaps the child itself. Otherwise a
  // forkserver status descriptor, owned by the table from now on.
  int status_fd = -1;
  // The identity to check before signalling by pid (a row with a status
  // descriptor); 0: read it now. A pidfd row reads it when first viewed.
  std::uint64_t start_time = 0;
};

// What the table knows of a child.
struct child_view {
  child_ticket ticket = 0;
  pid_t pid = -1;
  int sentinel = -1;
  std::uint64_t start_time = 0;
  start_method method = start_method::fork;
  bool daemon = false;
  bool orphan = false;
  bool ended = false;               // known to have ended (code collected or lost)
  std::optional<int> exit_code;     // nullopt while running, or when lost
};

struct forked {
  pid_t pid = -1;           // 0 in the child
  child_ticket ticket = 0;  // 0 in the child
};

class supervisor {
 public:
  // The table of the calling process.
  static supervisor& of_this_process();

  // Forks (fork_process; a daemon child dies with this process) and admits
  // the child in the parent. Throws as fork_process does.
  forked fork_child(const fork_hooks& hooks, bool daemon);

  // Takes charge of a started child. Throws std::system_error when its pidfd
  // cannot be opened (then the status descriptor, if any, is closed).
  child_ticket admit(const admission& child);

  // The exit code if the child has ended (collecting it if need be); nullopt
  // while it runs or when its code was lost. Never blocks.
  std::optional<int> poll(child_ticket ticket);

  // Waits until the child has ended or `until` passes: ok (ended; poll()
  // has the code), timed_out, or interrupted (EINTR: call again).
  ipc::wait_result wait(child_ticket ticket, const ipc::deadline& until);

  // Sends `signo` unless the code was collected; a child that is gone is not
  // an error. Throws std::system_error otherwise (EPERM).
  void signal(child_ticket ticket, int signo);

  // The tickets, in start order, of the children not orphaned that have no
  // exit code; ended orphans are reaped on the way.
  std::vector<child_ticket> running();

  // The handle of the child is dropped (see the contract).
  void release(child_ticket ticket);

  // Reaps the orphans that ended; returns how many still run.
  std::size_t reap_orphans();

  // SIGTERM to the running daemon children (orphans too), then waits for the
  // children not orphaned until `join_by`; orphans that ended are reaped.
  // Returns how many children still run.
  std::size_t end_children(const ipc::deadline& join_by);

  std::optional<child_view> view(child_ticket ticket);
  // (pid, sentinel) of a child, what a Popen needs as it starts; throws
  // ECHILD as poll() does if not in the table. Reads nothing from /proc.
  std::pair<pid_t, int> identity(child_ticket ticket);
  std::size_t size();

  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  struct table;  // supervisor.cpp

 private:
  supervisor() = default;
};

}  // namespace mphost::runtime
