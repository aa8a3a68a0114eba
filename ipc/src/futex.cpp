#include "mphost/ipc/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace mphost::ipc {
namespace {

long sys_futex(const futex_word* addr, int op, std::uint32_t val, const timespec* ts, std::uint32_t val3) noexcept {
  // The kernel only reads the word; the const_cast is for the syscall's type.
  return ::syscall(SYS_futex, const_cast<futex_word*>(addr), op, val, ts, nullptr, val3);
}

}  // namespace

wait_result futex_wait(const futex_word& word, std::uint32_t expected, const deadline& until) noexcept {
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

int futex_wake(const futex_word& word, int count) noexcept {
  const long rc = sys_futex(&word, FUTEX_WAKE, static_cast<std::uint32_t>(count), nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

}  // namespace mphost::ipc
