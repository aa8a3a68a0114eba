#pragma once
// Who a process is, in a way that survives pid reuse, and whether it still
// runs.
//
// A pid alone cannot name a process for long: once it exits, the kernel may
// hand the same number to an unrelated process. The IPC core therefore names
// the owner of a lock, the writer of a frame or the holder of a channel
// endpoint by its pid together with its start time (field 22 of
// /proc/<pid>/stat, in clock ticks since boot). Two processes alive at
// different times never share both.
//
// "Alive" here means: the pid exists, it is not a zombie (a process that was
// killed but not yet reaped by its parent has released nothing, yet will
// never act again, so it counts as dead), and, when a start time is known, it
// is the same process that registered.
//
// The current process's identity and thread id are cached and refreshed in a
// forked child (pthread_atfork), so asking is cheap on hot paths.

#include <sys/types.h>

#include <cstdint>

namespace mphost::ipc {

struct process_identity {
  pid_t pid = 0;
  std::uint64_t start_time = 0;  // 0 when unknown

  // This process (cached; correct in a forked child too).
  static process_identity current() noexcept;

  friend bool operator==(const process_identity&, const process_identity&) = default;
};

// The start time of `pid` from /proc, or 0 if it cannot be read.
std::uint64_t process_start_time(pid_t pid) noexcept;

// False when `pid` is gone, a zombie, or (start_time != 0) now names another
// process. A process we may not inspect is assumed alive.
bool process_is_alive(pid_t pid, std::uint64_t start_time = 0) noexcept;
inline bool process_is_alive(const process_identity& who) noexcept {
  return process_is_alive(who.pid, who.start_time);
}

// process_is_alive through a per-process cache of what /proc said of each
// pid, each answer reused for 25 ms: for code that asks about the same peers
// again and again (a channel's endpoint table), so that a dead or zombie
// peer is still noticed within that time but the cost no longer grows with
// the number of questions. A pid that kill(pid, 0) says is gone costs no
// /proc read. Never blocks; safe from any thread and after fork.
bool process_seems_alive(pid_t pid, std::uint64_t start_time = 0) noexcept;
// Drops every cached answer (tests).
void forget_process_verdicts() noexcept;

// getpid(), cached.
pid_t current_pid() noexcept;

// The calling thread's kernel thread id (gettid), cached per thread and
// refreshed after fork.
std::uint32_t current_thread_id() noexcept;

// Increases by one in the child of every fork(); lets per-process caches
// notice that they were inherited.
std::uint64_t fork_generation() noexcept;

}  // namespace mphost::ipc
