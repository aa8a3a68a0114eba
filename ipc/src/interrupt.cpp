#include "mphost/ipc/interrupt.hpp"

#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>

namespace mphost::ipc {
namespace {

futex_word signals{0};

// The eventfd that a watching poll_readable() polls beside its descriptor:
// -1 until the first such poll makes it. note_signal() writes to it; a poll
// that finds it readable drains it and looks at the count, which tells a
// new note from one that was already seen.
std::atomic<int> signal_fd{-1};

thread_local detail::watched_count this_thread;

// A forked child shares its parent's eventfd, so that a drain in one would
// swallow a note meant for the other: the child makes its own when it first
// needs one. Only the forking thread runs in the child, and a handler that
// runs there interrupts this function whole, so it never writes to a
// number that was just closed.
void forget_signal_fd_in_child() noexcept {
  const int fd = signal_fd.exchange(-1, std::memory_order_acq_rel);
  if (fd >= 0) ::close(fd);
}

int watched_fd() noexcept {
  int fd = signal_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  static const bool registered = ::pthread_atfork(nullptr, nullptr, &forget_signal_fd_in_child) == 0;
  (void)registered;
  const int made = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (made < 0) return -1;  // no descriptor to spare: EINTR alone, as outside a watch
  if (signal_fd.compare_exchange_strong(fd, made, std::memory_order_acq_rel)) return made;
  ::close(made);
  return fd;
}

void drain(int fd) noexcept {
  std::uint64_t ignored;
  while (::read(fd, &ignored, sizeof ignored) < 0 && errno == EINTR) {
  }
}

bool count_moved(std::uint32_t seen) noexcept { return signals.load(std::memory_order_acquire) != seen; }

int poll_timeout_ms(const deadline& until) noexcept {
  if (until.is_infinite()) return -1;
  // Rounded up: a poll that returns early only polls again.
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until.remaining() + std::chrono::microseconds(999));
  return left.count() > INT_MAX ? INT_MAX : static_cast<int>(left.count());
}

}  // namespace

void note_signal() noexcept {
  const int saved = errno;
  signals.fetch_add(1, std::memory_order_release);
  (void)::syscall(SYS_futex, &signals, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
  const int fd = signal_fd.load(std::memory_order_acquire);
  if (fd >= 0) {
    const std::uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
  }
  errno = saved;
}

std::uint32_t signal_count() noexcept { return signals.load(std::memory_order_acquire); }

interrupt_watch::interrupt_watch() noexcept : outer_watching_(this_thread.watching), outer_seen_(this_thread.seen) {
  this_thread.watching = true;
  this_thread.seen = signal_count();
}

interrupt_watch::~interrupt_watch() {
  this_thread.watching = outer_watching_;
  this_thread.seen = outer_seen_;
}

void interrupt_watch::rearm() noexcept { this_thread.seen = signal_count(); }

interrupt_shield::interrupt_shield() noexcept : outer_watching_(this_thread.watching) { this_thread.watching = false; }

interrupt_shield::~interrupt_shield() { this_thread.watching = outer_watching_; }

wait_result poll_readable(int fd, const deadline& until) noexcept {
  const detail::watched_count& watch = this_thread;
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {-1, POLLIN, 0}};
    nfds_t n = 1;
    if (watch.watching && !until.expired()) {
      if (count_moved(watch.seen)) return wait_result::interrupted;
      p[1].fd = watched_fd();
      if (p[1].fd >= 0) n = 2;
    }
    const int rc = ::poll(p, n, poll_timeout_ms(until));
    if (rc < 0) return errno == EINTR ? wait_result::interrupted : wait_result::closed;
    if (p[0].revents != 0) return wait_result::ok;
    if (n == 2 && p[1].revents != 0) {
      drain(p[1].fd);
      continue;
    }
    if (until.expired()) return wait_result::timed_out;
  }
}

namespace detail {

watched_count& this_thread_watch() noexcept { return this_thread; }

const futex_word& signal_word() noexcept { return signals; }

}  // namespace detail
}  // namespace mphost::ipc
