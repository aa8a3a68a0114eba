#include "mphost/ipc/doorbell.hpp"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <new>
#include <system_error>
#include <vector>

#include "mphost/ipc/error.hpp"
#include "mphost/ipc/fd_passing.hpp"
#include "mphost/ipc/interrupt.hpp"

namespace mphost::ipc {

namespace {

constexpr unsigned char ring_marker = 0xFF;

// One recvmsg of up to `size` bytes that does not wait; descriptors beyond
// `max_fds` (or any, when it is 0) are closed.
ssize_t receive_once(int fd, void* data, std::size_t size, std::size_t max_fds, std::vector<int>& fds) {
  received_with_fds got = receive_with_fds(fd, data, size, max_fds, MSG_DONTWAIT);
  if (max_fds == 0) {
    close_all(got.fds);
  } else {
    fds.insert(fds.end(), got.fds.begin(), got.fds.end());
  }
  return got.bytes;
}

// The socket descriptors that socket doorbells of this process hold, with
// their inodes, so that ring_socket() finds one for a given socket. An
// entry leaves before its descriptor is closed, under the same mutex that
// ring_socket() holds while it writes: a marker never goes to a reused
// descriptor number.
struct socket_registry {
  std::mutex mutex;
  std::vector<std::pair<int, std::uint64_t>> fds;
};

socket_registry& sockets() {
  static socket_registry* r = [] {
    auto* created = new socket_registry;
    // The forking thread holds the mutex across fork() and is the child's
    // only thread, so both sides simply unlock it.
    ::pthread_atfork([] { sockets().mutex.lock(); }, [] { sockets().mutex.unlock(); },
                     [] { sockets().mutex.unlock(); });
    return created;
  }();
  return *r;
}

void register_socket(int fd) {
  if (fd < 0) return;
  const std::uint64_t ino = doorbell::socket_inode(fd);
  socket_registry& r = sockets();
  std::lock_guard guard(r.mutex);
  r.fds.emplace_back(fd, ino);
}

// Closes fd (if >= 0), forgetting it first.
void close_socket(int fd) noexcept {
  if (fd < 0) return;
  socket_registry& r = sockets();
  std::lock_guard guard(r.mutex);
  for (auto it = r.fds.begin(); it != r.fds.end(); ++it) {
    if (it->first == fd) {
      r.fds.erase(it);
      break;
    }
  }
  ::close(fd);
}

bool send_marker(int fd) noexcept {
  const unsigned char marker = ring_marker;
  ssize_t n;
  do {
    n = ::send(fd, &marker, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  // EAGAIN: the socket is full of unread bytes, so readable anyway.
  return n == 1 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

}  // namespace

std::uint64_t doorbell::socket_inode(int fd) noexcept {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  return static_cast<std::uint64_t>(st.st_ino);
}

bool doorbell::ring_socket(std::uint64_t inode) noexcept {
  if (inode == 0) return false;
  socket_registry& r = sockets();
  std::lock_guard guard(r.mutex);
  for (const auto& [fd, ino] : r.fds) {
    if (ino == inode) return send_marker(fd);
  }
  return false;
}

// Serialises the reads of a socket doorbell's socket within the process.
struct doorbell::socket_lock {
  std::mutex mutex;
};

doorbell::doorbell() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw_errno("eventfd");
}

doorbell doorbell::over_socket(int watch, int ring) {
  doorbell bell;
  ::close(bell.fd_);
  bell.fd_ = watch;
  bell.ring_fd_ = ring;
  bell.socket_ = true;
  bell.markers_ = ring >= 0;
  bell.lock_ = std::make_unique<socket_lock>();
  register_socket(watch);
  register_socket(ring);
  return bell;
}

doorbell::~doorbell() { release(); }

void doorbell::release() noexcept {
  if (socket_) {
    close_socket(fd_);
    close_socket(ring_fd_);
  } else if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = -1;
  ring_fd_ = -1;
}

doorbell::doorbell(doorbell&& other) noexcept
    : fd_(other.fd_),
      ring_fd_(other.ring_fd_),
      socket_(other.socket_),
      markers_(other.markers_),
      lock_(std::move(other.lock_)) {
  other.fd_ = -1;
  other.ring_fd_ = -1;
}

doorbell& doorbell::operator=(doorbell&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = other.fd_;
    ring_fd_ = other.ring_fd_;
    socket_ = other.socket_;
    markers_ = other.markers_;
    lock_ = std::move(other.lock_);
    other.fd_ = -1;
    other.ring_fd_ = -1;
  }
  return *this;
}

void doorbell::ring() noexcept {
  if (fd_ < 0) return;
  if (socket_) {
    // One marker is enough: add none while the socket is readable anyway.
    if (ring_fd_ < 0 || is_ringing()) return;
    const unsigned char marker = ring_marker;
    while (::send(ring_fd_, &marker, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    return;
  }
  const std::uint64_t one = 1;
  // EAGAIN (counter saturated) still leaves it readable.
  while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void doorbell::clear() noexcept {
  if (fd_ < 0) return;
  if (socket_) {
    if (!markers_) return;
    std::lock_guard guard(lock_->mutex);
    unsigned char head[64];
    for (;;) {
      ssize_t n;
      do {
        n = ::recv(fd_, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return;
      std::size_t markers = 0;
      while (markers < static_cast<std::size_t>(n) && head[markers] == ring_marker) ++markers;
      if (markers == 0) return;  // someone else's bytes come first
      std::vector<int> unused;
      if (receive_once(fd_, head, markers, 0, unused) <= 0) return;
      // Other bytes follow, or the peek saw the whole queue: done. (Markers
      // are written under the channel's bell lock, which the caller holds.)
      if (markers < static_cast<std::size_t>(n) || static_cast<std::size_t>(n) < sizeof head) return;
    }
  }
  std::uint64_t value;
  // EAGAIN: already clear.
  while (::read(fd_, &value, sizeof value) < 0 && errno == EINTR) {
  }
}

void doorbell::reset_after_fork() noexcept {
  if (socket_) {
    (void)lock_.release();  // may be held by a thread that is not here
    lock_.reset(new (std::nothrow) socket_lock);
  }
}

long doorbell::receive(std::span<std::byte> out, std::size_t max_fds, std::vector<int>& fds, const deadline& until,
                       wait_result& result, const std::atomic<bool>* cancelled) {
  if (!socket_) throw std::system_error(EINVAL, std::system_category(), "not a socket doorbell");
  std::vector<unsigned char> head(out.size() < 4096 ? out.size() : 4096);
  if (head.empty()) throw std::system_error(EINVAL, std::system_category(), "empty receive buffer");
  for (;;) {
    // With a cancel flag: wait in slices, looking at it between them.
    const wait_result w =
        cancelled == nullptr ? wait(until) : wait(deadline::earliest(until, deadline::after(std::chrono::milliseconds(50))));
    if (cancelled != nullptr && cancelled->load(std::memory_order_acquire)) throw std::system_error(errc::handle_closed);
    if (w == wait_result::timed_out && !until.expired()) continue;
    if (w == wait_result::closed) throw_errno("poll");
    if (w != wait_result::ok) {
      result = w;
      return -1;
    }
    std::lock_guard guard(lock_->mutex);
    ssize_t n;
    do {
      n = ::recv(fd_, head.data(), head.size(), MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) continue;  // taken by another reader
      throw_errno("recv");
    }
    if (n == 0) {
      result = wait_result::ok;
      return 0;
    }
    // Markers are skipped; data is read up to the next marker.
    std::size_t run = 0;
    const bool markers = markers_ && head[0] == ring_marker;
    while (run < static_cast<std::size_t>(n) && (!markers_ || (head[run] == ring_marker) == markers)) ++run;
    if (markers) {
      std::vector<int> unused;
      (void)receive_once(fd_, head.data(), run, 0, unused);
      continue;
    }
    const ssize_t got = receive_once(fd_, out.data(), run, max_fds, fds);
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw_errno("recvmsg");
    }
    result = wait_result::ok;
    return got;
  }
}

void doorbell::init_socket_table() noexcept { (void)sockets(); }

void doorbell::drop_ring_end() noexcept {
  if (!socket_) return;
  close_socket(ring_fd_);
  ring_fd_ = -1;
}

bool doorbell::at_end_of_file() const noexcept {
  if (!socket_ || fd_ < 0) return false;
  unsigned char byte;
  ssize_t n;
  do {
    n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n == 0;
}

bool doorbell::is_ringing() const noexcept { return wait(deadline::immediate()) == wait_result::ok; }

wait_result doorbell::wait(const deadline& until) const noexcept {
  if (fd_ < 0) return wait_result::closed;
  return poll_readable(fd_, until);
}

}  // namespace mphost::ipc
