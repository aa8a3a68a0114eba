#pragma once
// Bytes with descriptors attached (SCM_RIGHTS) over a Unix stream socket:
// the one place mphost builds and parses control messages, for the
// forkserver's requests, handovers to spawned children and descriptors sent
// over a Pipe end's socket (doorbell.hpp).

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <span>
#include <vector>

namespace mphost::ipc {

// Sends `size` bytes with `fds` attached to the first of them (retrying on
// EINTR). Returns how many bytes went out, or -1 with errno set.
ssize_t send_with_fds(int sock, const void* data, std::size_t size, std::span<const int> fds) noexcept;

struct received_with_fds {
  ssize_t bytes = -1;     // as recvmsg: 0 at end of file, -1 with errno
  std::vector<int> fds;   // close-on-exec; the caller owns them
  bool truncated = false; // more descriptors came than `max_fds`
};

// Receives up to `size` bytes and at most `max_fds` descriptors (retrying on
// EINTR). `flags` are recvmsg's: by default it waits for all `size` bytes;
// MSG_DONTWAIT takes what is there without waiting.
received_with_fds receive_with_fds(int sock, void* data, std::size_t size, std::size_t max_fds,
                                   int flags = MSG_WAITALL);

void close_all(const std::vector<int>& fds) noexcept;

}  // namespace mphost::ipc
