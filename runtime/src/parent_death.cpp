#include "mphost/runtime/parent_death.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "mphost/ipc/error.hpp"

namespace mphost::runtime {
namespace {

[[noreturn]] void die_now() noexcept {
  ::kill(::getpid(), parent_death_signal);
  // SIGKILL cannot be blocked; this is only reached if it somehow was.
  ::_exit(128 + parent_death_signal);
}

bool readable(int fd, int timeout_ms) noexcept {
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    const int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;  // ENOMEM and the like: look again later
  }
}

}  // namespace

bool on_main_thread() noexcept { return static_cast<pid_t>(::syscall(SYS_gettid)) == ::getpid(); }

void tie_to_forking_thread(pid_t parent) noexcept {
  ::prctl(PR_SET_PDEATHSIG, parent_death_signal, 0, 0, 0);
  // The parent may have ended between fork() and prctl(): then the signal was
  // never armed, and the child has another parent already.
  if (::getppid() != parent) die_now();
}

void watch_parent(int parent_pidfd, pid_t expected_ppid) {
  const int fd = ::fcntl(parent_pidfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw_errno("dup parent pidfd");
  // The pidfd was opened before this check, so if the kernel parent is still
  // the expected one here, the pidfd names the live parent.
  if ((expected_ppid > 0 && ::getppid() != expected_ppid) || readable(fd, 0)) die_now();
  try {
    std::thread([fd] {
      while (!readable(fd, -1)) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      die_now();
    }).detach();
  } catch (const std::system_error&) {
    ::close(fd);
    throw;
  }
}

}  // namespace mphost::runtime
