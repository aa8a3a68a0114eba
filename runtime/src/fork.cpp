#include "mphost/runtime/fork.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "mphost/ipc/error.hpp"
#include "mphost/runtime/parent_death.hpp"
#include "mphost/runtime/sentinel.hpp"

namespace mphost::runtime {

pid_t fork_process(const fork_hooks& hooks, fork_options options) {
  const pid_t parent = ::getpid();
  const bool main_thread = on_main_thread();
  // A thread other than the main one may end long before the process, and
  // PR_SET_PDEATHSIG would fire then: watch the process through a pidfd.
  int parent_pidfd = -1;
  if (options.die_with_parent && !main_thread) parent_pidfd = open_process_sentinel(parent);
  if (hooks.before) hooks.before();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (options.die_with_parent) {
      if (main_thread) {
        tie_to_forking_thread(parent);
      } else {
        try {
          watch_parent(parent_pidfd, parent);
        } catch (...) {
          // A daemon child that cannot be tied to its parent must not run.
          ::_exit(1);
        }
        ::close(parent_pidfd);
      }
    }
    if (hooks.after_child) hooks.after_child();
    return 0;
  }
  const int saved = errno;
  if (parent_pidfd >= 0) ::close(parent_pidfd);
  if (hooks.after_parent) hooks.after_parent();
  if (pid < 0) throw_errno(saved, "fork");
  return pid;
}

}  // namespace mphost::runtime
