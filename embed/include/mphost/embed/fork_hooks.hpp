#pragma once
// The interpreter's fork protocol as runtime::fork_hooks.
//
// before: PyOS_BeforeFork (takes the import lock, runs os.register_at_fork
// "before" callbacks); after_parent / after_child: PyOS_AfterFork_Parent /
// PyOS_AfterFork_Child (re-initialises the GIL and threading state in the
// child and runs the "after" callbacks).
//
// With `gil_released`, the hooks are for a caller that has released the GIL
// around a blocking loop (the forkserver zygote): they take the GIL for the
// fork and give it back afterwards, in the parent and in the child alike.
//
// fork_allowed: whether `_mphost.fork` (the fork start method) may fork this
// process. Always true in the mphost executable; an application embedding
// Python through application.hpp sets it from its settings, and a refused
// fork raises ValueError before anything is forked.

#include "mphost/embed/python.hpp"
#include "mphost/runtime/fork.hpp"

namespace mphost::embed {

runtime::fork_hooks interpreter_fork_hooks();
runtime::fork_hooks interpreter_fork_hooks_without_gil(PyThreadState*& released_state);

void set_fork_allowed(bool allowed) noexcept;
bool fork_allowed() noexcept;

}  // namespace mphost::embed
