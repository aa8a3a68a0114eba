#include "mphost/testing/watchdog.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mphost::testing {
namespace {

// A test process leads a process group of its own, so that a watchdog's
// kill(0) takes down the test and the helpers it forked, never the runner
// (ctest, a CI script) that started it.
[[maybe_unused]] const bool own_process_group = [] {
  ::setpgid(0, 0);
  return true;
}();

// The guard's body, in a process of its own made by a raw clone: no
// pthread_atfork handler runs (so it holds no channel endpoint or lock of the
// test), and the test keeps a single thread for the forks it makes (which
// ThreadSanitizer needs). It makes raw system calls only.
[[noreturn]] void guard(long long budget_ms, const char* message, std::size_t length, pid_t test) {
  ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::syscall(SYS_getppid) != test) ::syscall(SYS_exit_group, 0);
  // The test's own signals to its process group (a Ctrl-C test) must not
  // end the guard.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE}) {
    struct kernel_sigaction {
      void (*handler)(int);
      unsigned long flags;
      void (*restorer)();
      unsigned long mask;
    } ignore{SIG_IGN, 0, nullptr, 0};
    ::syscall(SYS_rt_sigaction, sig, &ignore, nullptr, sizeof(unsigned long));
  }
  timespec left{static_cast<time_t>(budget_ms / 1000), static_cast<long>(budget_ms % 1000) * 1'000'000};
  while (::syscall(SYS_nanosleep, &left, &left) != 0) {
  }
  ::syscall(SYS_write, 2, message, length);
  // Take the whole process group down so that forked helpers do not linger.
  ::syscall(SYS_kill, 0, SIGKILL);
  ::syscall(SYS_exit_group, 124);
  __builtin_unreachable();
}

}  // namespace

std::string watchdog::current_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (info == nullptr) return "test";
  return std::string(info->test_suite_name()) + "." + info->name();
}

watchdog::watchdog(std::chrono::milliseconds budget, std::string what) {
  message_ = "watchdog: " + what + " did not finish within " + std::to_string(budget.count()) +
             " ms; killing the test process\n";
  const pid_t test = ::getpid();
  const long pid = ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) guard(budget.count(), message_.data(), message_.size(), test);
  if (pid < 0) std::fprintf(stderr, "watchdog: cannot start (%s); the test runs unguarded\n", std::strerror(errno));
  guard_ = static_cast<pid_t>(pid);
}

watchdog::~watchdog() {
  if (guard_ <= 0) return;
  ::kill(guard_, SIGKILL);
  while (::waitpid(guard_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace mphost::testing
