#pragma once
// doorbell: a descriptor that poll(), select() and epoll can wait on, for
// objects that otherwise live in shared memory.
//
// A doorbell is level-triggered: after ring() the descriptor polls readable,
// and stays so until clear(); ringing twice is the same as ringing once. It
// carries no data, only "look now". It comes in two kinds:
//
// - eventfd (the default constructor): a descriptor of its own.
// - socket (over_socket): one end of a connected Unix stream socket pair, to
//   be the descriptor of a Pipe end, so that it is a real socket: raw bytes
//   and descriptors (SCM_RIGHTS) written into the peer's end arrive on it, as
//   on the stdlib's socketpair Pipe. The doorbell holds this end (`watch`)
//   and a duplicate of the peer's end (`ring`): ring() writes one marker byte
//   into `ring`, which makes `watch` readable; clear() consumes marker bytes
//   at the head of `watch` and stops at the first other byte, which belongs
//   to whoever reads the socket (receive()). Marker bytes are 0xFF; a raw
//   0xFF written by a user into the peer's end is taken for a marker.
//   Reading the socket is serialised within the process (clear() and
//   receive() take one mutex), so neither takes a byte meant for the other.
//   A doorbell with no `ring` end (a write-only Pipe end) only holds its
//   socket: fd() is that end, and ring()/clear() do nothing.
//
// A channel uses one per process to make itself selectable (fileno of a
// Connection, the reader of a Queue in multiprocessing.connection.wait): a
// watcher thread sleeps on the channel's futex and rings the doorbell while
// the channel has a message or has been closed by every writer, and clears it
// when the channel is seen empty again. So a readable doorbell means "a recv
// would probably not block"; it is advisory. Another reader, in this or
// another process, may take the message first; callers confirm with the
// channel's own poll or a timed recv, as with a pipe shared by several
// readers.
//
// Ordering: ring() is called after the event it reports has happened in
// shared memory, and eventfd reads and writes are system calls (full
// barriers), so a thread that sees the descriptor readable and then looks at
// the channel sees that event.
//
// Lifetime: the descriptor belongs to the doorbell and is closed when the
// doorbell is destroyed; callers must stop polling it first. It is
// close-on-exec. A forked child inherits the same eventfd, shared with the
// parent, so owners of a doorbell make a new one in the child rather than
// use the inherited descriptor.

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

class doorbell {
 public:
  // Throws std::system_error when no eventfd can be made (EMFILE, ...).
  doorbell();
  // A socket doorbell over `watch` (this end) and `ring` (a duplicate of the
  // peer's end, or -1): takes ownership of both descriptors, which must be
  // ends of a connected AF_UNIX stream socket pair.
  static doorbell over_socket(int watch, int ring);
  ~doorbell();
  doorbell(doorbell&& other) noexcept;
  doorbell& operator=(doorbell&& other) noexcept;
  doorbell(const doorbell&) = delete;
  doorbell& operator=(const doorbell&) = delete;

  // The descriptor to poll for readability.
  int fd() const noexcept { return fd_; }
  // Makes the descriptor readable (until clear()).
  void ring() noexcept;
  // Makes it not readable.
  void clear() noexcept;
  // Whether it is readable now (poll with a zero timeout).
  bool is_ringing() const noexcept;
  // Waits until it is readable: ok, timed_out or interrupted.
  wait_result wait(const deadline& until) const noexcept;

  // Socket doorbells only: whether this is one, and the peer end (-1 if none).
  bool is_socket() const noexcept { return socket_; }
  int ring_fd() const noexcept { return ring_fd_; }

  // Socket doorbells only: waits for the next bytes on the socket that are
  // not ring markers and reads at most out.size() of them, with up to
  // `max_fds` descriptors passed along (appended to `fds`, close-on-exec).
  // Returns the byte count (0: end of file, every copy of the peer's end is
  // closed), or -1 with `result` timed_out or interrupted. Throws
  // std::system_error on a socket error, EINVAL on an eventfd doorbell.
  long receive(std::span<std::byte> out, std::size_t max_fds, std::vector<int>& fds, const deadline& until,
               wait_result& result);
  // In a forked child: the descriptors are shared with the parent and stay;
  // the lock a parent's thread may have held at fork is replaced.
  void reset_after_fork() noexcept;

 private:
  struct socket_lock;
  int fd_ = -1;
  int ring_fd_ = -1;
  bool socket_ = false;
  std::unique_ptr<socket_lock> lock_;
};

}  // namespace mphost::ipc
