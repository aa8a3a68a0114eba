#include "mphost/ipc/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <ctime>

#include "mphost/ipc/interrupt.hpp"

#ifndef __NR_futex_waitv
#define __NR_futex_waitv 449  // the same number on every architecture
#endif

namespace mphost::ipc {
namespace {

long sys_futex(const futex_word* addr, int op, std::uint32_t val, const timespec* ts, std::uint32_t val3) noexcept {
  // The kernel only reads the word; the const_cast is for the syscall's type.
  return ::syscall(SYS_futex, const_cast<futex_word*>(addr), op, val, ts, nullptr, val3);
}

// Set once futex_waitv turns out missing (a kernel before 5.16, or a
// seccomp filter that refuses it): watching waits then look before sleeping.
std::atomic<bool> waitv_refused{false};

wait_result wait_alone(const futex_word& word, std::uint32_t expected, const deadline& until) noexcept {
  long rc;
  if (until.is_infinite()) {
    rc = sys_futex(&word, FUTEX_WAIT, expected, nullptr, 0);
  } else {
    if (until.expired()) return wait_result::timed_out;
    // Absolute CLOCK_MONOTONIC timeout: retries never stretch the deadline.
    const timespec ts = until.to_monotonic_timespec();
    rc = sys_futex(&word, FUTEX_WAIT_BITSET, expected, &ts, FUTEX_BITSET_MATCH_ANY);
  }
  if (rc == 0) return wait_result::ok;
  switch (errno) {
    case ETIMEDOUT: return wait_result::timed_out;
    case EINTR: return wait_result::interrupted;
    default: return wait_result::ok;  // EAGAIN: the word had changed
  }
}

// Sleeps on `word` and on the signal count at once (interrupt.hpp): a note
// between the caller's look at the count and the sleep makes the kernel
// refuse to sleep, one during the sleep wakes it.
wait_result wait_watching(const futex_word& word, std::uint32_t expected, const deadline& until,
                          std::uint32_t seen) noexcept {
  const futex_word& count = detail::signal_word();
  if (!until.is_infinite() && until.expired()) return wait_result::timed_out;  // no sleep, nothing to cut short
  if (count.load(std::memory_order_acquire) != seen) return wait_result::interrupted;
  if (waitv_refused.load(std::memory_order_relaxed)) return wait_alone(word, expected, until);
  futex_waitv both[2] = {
      {expected, reinterpret_cast<std::uintptr_t>(&word), FUTEX_32, 0},
      {seen, reinterpret_cast<std::uintptr_t>(&count), FUTEX_32 | FUTEX_PRIVATE_FLAG, 0},
  };
  timespec ts{};
  if (!until.is_infinite()) ts = until.to_monotonic_timespec();
  const long rc = ::syscall(__NR_futex_waitv, both, 2u, 0u, until.is_infinite() ? nullptr : &ts, CLOCK_MONOTONIC);
  if (rc == 0) return wait_result::ok;  // woken on the word; a note is seen at the next look
  if (rc == 1) return wait_result::interrupted;
  switch (errno) {
    case ETIMEDOUT: return wait_result::timed_out;
    case EINTR: return wait_result::interrupted;
    case EAGAIN: return count.load(std::memory_order_acquire) != seen ? wait_result::interrupted : wait_result::ok;
    case ENOSYS:
    case EPERM:
    case EINVAL:
      waitv_refused.store(true, std::memory_order_relaxed);
      return wait_alone(word, expected, until);
    default: return wait_result::ok;
  }
}

}  // namespace

wait_result futex_wait(const futex_word& word, std::uint32_t expected, const deadline& until) noexcept {
  const detail::watched_count& watch = detail::this_thread_watch();
  if (watch.watching) return wait_watching(word, expected, until, watch.seen);
  return wait_alone(word, expected, until);
}

int futex_wake(const futex_word& word, int count) noexcept {
  const long rc = sys_futex(&word, FUTEX_WAKE, static_cast<std::uint32_t>(count), nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

}  // namespace mphost::ipc
