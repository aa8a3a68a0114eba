#pragma once
// fork(2) wrapped in before/after hooks.
//
// The runtime knows nothing of the interpreter: embed/ registers hooks that
// run the interpreter's own fork protocol (PyOS_BeforeFork and
// PyOS_AfterFork_*), which also runs os.register_at_fork callbacks.
//
// With fork_options::die_with_parent the child ends (SIGKILL) when the parent
// ends, however it ends (see parent_death.hpp): armed in the child before
// after_child runs, through PR_SET_PDEATHSIG when the calling thread is the
// main thread, else through a watcher thread on a pidfd of the parent opened
// before the fork.

#include <sys/types.h>

#include <functional>

namespace mphost::runtime {

struct fork_hooks {
  std::function<void()> before;        // in the parent, before fork
  std::function<void()> after_parent;  // in the parent, after fork (also when it failed)
  std::function<void()> after_child;   // in the child, first thing
};

struct fork_options {
  bool die_with_parent = false;  // daemon children
};

// Returns the child's pid in the parent and 0 in the child. Throws
// std::system_error in the parent when fork fails (after_parent has run), or
// before anything ran when the pidfd for die_with_parent cannot be opened.
pid_t fork_process(const fork_hooks& hooks, fork_options options = {});

}  // namespace mphost::runtime
