#include "mphost/runtime/handshake.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "mphost/ipc/error.hpp"

namespace mphost::runtime {
namespace {

// Storage a message's body starts with; it doubles from there as it fills.
constexpr std::size_t growth_step = std::size_t{1} << 20;

}  // namespace

void write_all(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write");
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

bool read_all(int fd, void* data, std::size_t size) {
  auto* p = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, p + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read");
    }
    if (n == 0) {
      if (done == 0) return false;
      throw std::system_error(errc::peer_closed, "message truncated by end of file");
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

void write_message(int fd, std::span<const std::byte> payload) {
  unsigned char header[8];
  std::uint64_t size = payload.size();
  for (int i = 0; i < 8; ++i) header[i] = static_cast<unsigned char>(size >> (8 * i));
  write_all(fd, header, sizeof header);
  write_all(fd, payload.data(), payload.size());
}

std::vector<std::byte> read_message(int fd, std::uint64_t max_size) {
  unsigned char header[8];
  if (!read_all(fd, header, sizeof header)) {
    throw std::system_error(errc::peer_closed, "no message: the peer closed its end");
  }
  std::uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size |= std::uint64_t{header[i]} << (8 * i);
  if (size > max_size) throw std::system_error(errc::message_too_large, "handshake message too large");
  // The length is the peer's word: storage grows as the bytes arrive, so a
  // corrupt length costs at most twice what was really sent.
  std::vector<std::byte> payload;
  while (payload.size() < size) {
    const std::size_t have = payload.size();
    const std::size_t more =
        static_cast<std::size_t>(std::min<std::uint64_t>(size - have, std::max<std::size_t>(have, growth_step)));
    payload.resize(have + more);
    if (!read_all(fd, payload.data() + have, more)) {
      throw std::system_error(errc::peer_closed, "message truncated by end of file");
    }
  }
  return payload;
}

}  // namespace mphost::runtime
