#include "mphost/ipc/fd_passing.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mphost::ipc {

ssize_t send_with_fds(int sock, const void* data, std::size_t size, std::span<const int> fds) noexcept {
  std::vector<char> control(fds.empty() ? 0 : CMSG_SPACE(sizeof(int) * fds.size()));
  iovec iov{const_cast<void*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

received_with_fds receive_with_fds(int sock, void* data, std::size_t size, std::size_t max_fds, int flags) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (max_fds == 0 ? 1 : max_fds)));
  iovec iov{data, size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  received_with_fds got;
  do {
    got.bytes = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
  } while (got.bytes < 0 && errno == EINTR);
  if (got.bytes < 0) return got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const auto* fds = reinterpret_cast<const int*>(CMSG_DATA(c));
      got.fds.insert(got.fds.end(), fds, fds + count);
    }
  }
  got.truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  return got;
}

void close_all(const std::vector<int>& fds) noexcept {
  for (int fd : fds) ::close(fd);
}

}  // namespace mphost::ipc
