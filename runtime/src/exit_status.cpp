#include "mphost/runtime/exit_status.hpp"

#include <sys/wait.h>

#include <cerrno>

#include "mphost/ipc/error.hpp"

namespace mphost::runtime {

int exit_code_from_wait_status(int status) noexcept {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  // Stopped or continued children are still alive; callers only pass final statuses.
  return status;
}

std::optional<int> wait_for_exit(pid_t pid, bool block, bool (*on_interrupt)()) {
  for (;;) {
    int status = 0;
    const pid_t got = ::waitpid(pid, &status, block ? 0 : WNOHANG);
    if (got == pid) return exit_code_from_wait_status(status);
    if (got == 0) return std::nullopt;
    if (errno == EINTR) {
      if (on_interrupt != nullptr && !on_interrupt()) return std::nullopt;
      continue;
    }
    throw_errno("waitpid");
  }
}

}  // namespace mphost::runtime
