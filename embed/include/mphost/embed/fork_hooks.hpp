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

#include "mphost/embed/python.hpp"
#include "mphost/runtime/fork.hpp"

namespace mphost::embed {

runtime::fork_hooks interpreter_fork_hooks();
runtime::fork_hooks interpreter_fork_hooks_without_gil(PyThreadState*& released_state);

}  // namespace mphost::embed
