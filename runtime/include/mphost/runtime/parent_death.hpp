#pragma once
// A child that ends with its parent, however the parent ended (daemon
// children: the stdlib terminates them when their parent exits normally;
// these calls cover the parent killed by a signal, os._exit, a crash).
//
// The child receives SIGKILL when its parent ends. SIGKILL, not SIGTERM: a
// daemon child may ignore or handle SIGTERM (user code, libraries, the
// stdlib's own pool workers block it at times), and then it would outlive
// the parent, which is what this file exists to prevent. The child's named
// resources do not depend on its running any clean-up: the root's resource
// registry removes them. When the parent exits normally its exit code has
// already terminated (SIGTERM) and joined its daemon children, so the
// SIGKILL only reaches children of a parent that did not.
//
// Two ways, both set up in the child, both checked for the race in which
// the parent is already gone when the child looks (the child is then killed
// at once, before it runs anything of the program):
//
// * PR_SET_PDEATHSIG, right after fork() (tie_to_forking_thread). The kernel
//   sends the signal when the *thread* that forked ends, so this is used only
//   when that thread is the parent's main thread, which lives as long as the
//   process. No thread, no descriptor, no cost.
// * A watcher (watch_parent): a native thread in the child, blocked in poll()
//   on a pidfd of the parent, which kills the child when the pidfd becomes
//   readable. Used when the fork came from another thread (which may end
//   long before the process: Pool's worker handler replaces workers from
//   one), and for spawn and forkserver children, whose kernel parent is a
//   helper thread (warm spares are started from one) or another process (the
//   forkserver zygote). The thread holds no lock and touches nothing but its
//   descriptor; it costs a few KiB of stack.
//
// fork_process(hooks, {.die_with_parent = true}) in fork.hpp picks the way.

#include <sys/types.h>

#include <csignal>

namespace mphost::runtime {

inline constexpr int parent_death_signal = SIGKILL;

// True when the calling thread is the main thread of its process.
bool on_main_thread() noexcept;

// In a child right after fork() from the parent's main thread: asks the
// kernel for parent_death_signal when the parent ends. `parent` is the
// parent's pid as read before the fork; if the child has already been
// reparented, it is killed now.
void tie_to_forking_thread(pid_t parent) noexcept;

// In a child: kills the process with parent_death_signal once `parent_pidfd`
// (a pidfd of the parent) is readable. The descriptor is duplicated; the
// caller keeps its own. When `expected_ppid` is positive and getppid() is no
// longer that pid, or the pidfd is already readable, the parent is gone and
// the process is killed now. Throws std::system_error if the descriptor
// cannot be duplicated or the thread cannot start.
void watch_parent(int parent_pidfd, pid_t expected_ppid = 0);

}  // namespace mphost::runtime
