#include "mphost/runtime/handover.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mphost/ipc/fd_passing.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/runtime/handshake.hpp"

namespace mphost::runtime {
namespace {

constexpr char magic[4] = {'M', 'P', 'H', 'O'};

std::size_t header_size(std::size_t count) { return sizeof magic + 4 + count * 4 + 8; }

using ipc::close_all;

}  // namespace

void send_handover(int sock, std::span<const std::byte> payload, std::span<const fd_placement> fds) {
  if (fds.size() > handover_max_fds) throw_errno(EINVAL, "too many descriptors to hand over");
  std::vector<char> header(header_size(fds.size()));
  char* p = header.data();
  std::memcpy(p, magic, sizeof magic);
  p += sizeof magic;
  const std::uint32_t count = static_cast<std::uint32_t>(fds.size());
  std::memcpy(p, &count, 4);
  p += 4;
  std::vector<int> sources;
  for (const fd_placement& f : fds) {
    const std::int32_t target = f.target;
    std::memcpy(p, &target, 4);
    p += 4;
    sources.push_back(f.source);
  }
  const std::uint64_t size = payload.size();
  std::memcpy(p, &size, 8);

  const ssize_t n = ipc::send_with_fds(sock, header.data(), header.size(), sources);
  if (n < 0) throw_errno("sendmsg handover");
  // A stream socket may take the header in parts; the descriptors went with the first.
  if (static_cast<std::size_t>(n) < header.size()) write_all(sock, header.data() + n, header.size() - n);
  write_all(sock, payload.data(), payload.size());
}

std::vector<std::byte> receive_handover(int& sock) {
  // The header's size depends on the count: peek at the fixed part first.
  char fixed[sizeof magic + 4];
  ipc::received_with_fds got = ipc::receive_with_fds(sock, fixed, sizeof fixed, handover_max_fds);
  if (got.bytes < 0) throw_errno("recvmsg handover");
  std::vector<int>& received = got.fds;
  if (got.bytes == 0) throw std::system_error(errc::peer_closed, "the parent closed the handover socket");
  std::uint32_t count = 0;
  if (got.bytes != static_cast<ssize_t>(sizeof fixed) || std::memcmp(fixed, magic, sizeof magic) != 0 ||
      (std::memcpy(&count, fixed + sizeof magic, 4), count != received.size()) || got.truncated) {
    close_all(received);
    throw std::system_error(errc::corrupt_frame, "malformed handover header");
  }
  std::vector<std::int32_t> targets(count);
  std::uint64_t size = 0;
  try {
    if (count > 0 && !read_all(sock, targets.data(), count * 4)) throw std::system_error(errc::peer_closed, "handover");
    if (!read_all(sock, &size, 8)) throw std::system_error(errc::peer_closed, "handover");
  } catch (...) {
    close_all(received);
    throw;
  }
  if (size > default_handshake_limit) {
    close_all(received);
    throw std::system_error(errc::message_too_large, "handover payload too large");
  }

  // Place the descriptors: first lift everything above every target, so that
  // no dup2 below can overwrite a descriptor still needed.
  int top = 2;
  for (std::int32_t t : targets) {
    if (t < 0) {
      close_all(received);
      throw std::system_error(errc::corrupt_frame, "negative descriptor target");
    }
    top = std::max(top, static_cast<int>(t));
  }
  auto lift = [top](int fd) {
    const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, top + 1);
    if (high < 0) throw_errno("fcntl F_DUPFD_CLOEXEC");
    ::close(fd);
    return high;
  };
  if (sock <= top) sock = lift(sock);
  for (int& fd : received) {
    if (fd <= top) fd = lift(fd);
  }
  for (std::size_t i = 0; i < received.size(); ++i) {
    if (::dup2(received[i], targets[i]) < 0) throw_errno("dup2");
    ::close(received[i]);
  }

  std::vector<std::byte> payload(size);
  if (size > 0 && !read_all(sock, payload.data(), payload.size())) {
    throw std::system_error(errc::peer_closed, "handover payload truncated");
  }
  return payload;
}

}  // namespace mphost::runtime
