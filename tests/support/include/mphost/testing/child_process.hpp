#pragma once
// Runs a function in a forked child and reports how the child ended, for
// multi-process tests. The child never returns into the test framework: it
// _exit()s with the function's result (or 99 if it threw).

#include <sys/types.h>

#include <functional>

namespace mphost::testing {

struct child_result {
  bool exited = false;  // true: normal exit with `code`; false: killed by `signal`
  int code = 0;
  int signal = 0;
};

// Forks; the child runs fn and _exit()s with its return value.
pid_t fork_child(const std::function<int()>& fn);

// Waits for a child started by fork_child.
child_result wait_child(pid_t pid);

// fork_child followed by wait_child.
child_result run_in_child(const std::function<int()>& fn);

}  // namespace mphost::testing
