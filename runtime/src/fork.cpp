#include "mphost/runtime/fork.hpp"

#include <unistd.h>

#include <cerrno>

#include "mphost/ipc/error.hpp"

namespace mphost::runtime {

pid_t fork_process(const fork_hooks& hooks) {
  if (hooks.before) hooks.before();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (hooks.after_child) hooks.after_child();
    return 0;
  }
  const int saved = errno;
  if (hooks.after_parent) hooks.after_parent();
  if (pid < 0) throw_errno(saved, "fork");
  return pid;
}

}  // namespace mphost::runtime
