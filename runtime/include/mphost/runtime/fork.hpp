#pragma once
// fork(2) wrapped in before/after hooks.
//
// The runtime knows nothing of the interpreter: embed/ registers hooks that
// run the interpreter's own fork protocol (PyOS_BeforeFork and
// PyOS_AfterFork_*), which also runs os.register_at_fork callbacks.

#include <sys/types.h>

#include <functional>

namespace mphost::runtime {

struct fork_hooks {
  std::function<void()> before;        // in the parent, before fork
  std::function<void()> after_parent;  // in the parent, after fork (also when it failed)
  std::function<void()> after_child;   // in the child, first thing
};

// Returns the child's pid in the parent and 0 in the child. Throws
// std::system_error in the parent when fork fails (after_parent has run).
pid_t fork_process(const fork_hooks& hooks);

}  // namespace mphost::runtime
