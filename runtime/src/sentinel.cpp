#include "mphost/runtime/sentinel.hpp"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "mphost/ipc/error.hpp"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace mphost::runtime {

bool pidfd_supported() noexcept {
  static const bool supported = [] {
    const long fd = ::syscall(SYS_pidfd_open, ::getpid(), 0);
    if (fd < 0) return errno != ENOSYS;
    ::close(static_cast<int>(fd));
    return true;
  }();
  return supported;
}

int open_process_sentinel(pid_t pid) {
  // pidfds are always close-on-exec.
  const long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) throw_errno("pidfd_open");
  return static_cast<int>(fd);
}

bool sentinel_ready(int fd) noexcept {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    const int n = ::poll(&p, 1, 0);
    if (n >= 0) return n > 0;
    if (errno != EINTR) return false;
  }
}

}  // namespace mphost::runtime
