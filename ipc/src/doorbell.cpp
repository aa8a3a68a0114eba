#include "mphost/ipc/doorbell.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "mphost/ipc/error.hpp"

namespace mphost::ipc {

doorbell::doorbell() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw_errno("eventfd");
}

doorbell::~doorbell() {
  if (fd_ >= 0) ::close(fd_);
}

doorbell::doorbell(doorbell&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

doorbell& doorbell::operator=(doorbell&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void doorbell::ring() noexcept {
  if (fd_ < 0) return;
  const std::uint64_t one = 1;
  // EAGAIN (counter saturated) still leaves it readable.
  while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void doorbell::clear() noexcept {
  if (fd_ < 0) return;
  std::uint64_t value;
  // EAGAIN: already clear.
  while (::read(fd_, &value, sizeof value) < 0 && errno == EINTR) {
  }
}

bool doorbell::is_ringing() const noexcept { return wait(deadline::immediate()) == wait_result::ok; }

wait_result doorbell::wait(const deadline& until) const noexcept {
  if (fd_ < 0) return wait_result::closed;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    int timeout_ms = -1;
    if (!until.is_infinite()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until.remaining() + std::chrono::microseconds(999));
      timeout_ms = left.count() > 0x7fffffff ? 0x7fffffff : static_cast<int>(left.count());
    }
    const int rc = ::poll(&p, 1, timeout_ms);
    if (rc > 0) return wait_result::ok;
    if (rc == 0) {
      if (until.expired()) return wait_result::timed_out;
      continue;
    }
    if (errno == EINTR) return wait_result::interrupted;
    return wait_result::closed;
  }
}

}  // namespace mphost::ipc
