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
//   on the stdlib's socketpair Pipe, and it reads end of file once every
//   copy of the peer's end is closed (the peer's processes closed it or
//   died), as there. The doorbell holds this end (`watch`) and optionally a
//   duplicate of the peer's end (`ring`: ring() writes one marker byte into
//   it, which makes `watch` readable). Whoever holds a descriptor of the
//   peer's end can ring, in any process: ring_socket(inode) writes a marker
//   through any socket descriptor a doorbell of this process holds with that
//   inode (a channel's writers use it, channel.hpp Readiness). clear()
//   consumes marker bytes at the head of `watch` and stops at the first
//   other byte, which belongs to whoever reads the socket (receive()).
//   Marker bytes are 0xFF; a raw 0xFF written by a user into the peer's end
//   of a reading end is taken for a marker (set_reads_markers(false), for a
//   write-only Pipe end, makes every byte data). Reading the socket is
//   serialised within the process (clear() and receive() take one mutex),
//   so neither takes a byte meant for the other.
//
// A channel endpoint uses a doorbell to make itself selectable (fileno of a
// Connection, the reader of a Queue in multiprocessing.connection.wait), and
// the channel decides when it rings and when it is cleared (channel.hpp,
// Readiness): for a socket doorbell, writers ring it as part of send and
// readers clear it as part of the recv that empties the channel, so it is
// exact in every process; for an eventfd doorbell (one per process and
// channel) sends and recvs of this process ring and clear it at once, and a
// watcher thread follows what other processes do, a wake-up later.

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

#include <atomic>
#include <cstddef>
#include <cstdint>
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
  // Writes a ring marker into a socket descriptor that a doorbell of this
  // process holds (as `watch` or `ring`) and whose inode is `inode`; false
  // if there is none. Safe against concurrent destruction of doorbells.
  static bool ring_socket(std::uint64_t inode) noexcept;
  // The inode of socket descriptor fd (0 if it is not a socket).
  static std::uint64_t socket_inode(int fd) noexcept;
  // Sets up now the process-wide table of socket doorbells behind
  // ring_socket, with its fork handler (which holds the table's lock across
  // fork). Code whose own fork handler takes locks under which that table is
  // used (a channel's bell mutex) calls this first, so that the table's
  // handler is registered earlier and so takes its lock last.
  static void init_socket_table() noexcept;
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
  // Socket doorbells only: whether 0xFF bytes at the head of the socket are
  // markers (clear() and receive() skip them). Default: if a ring end was given.
  void set_reads_markers(bool on) noexcept { markers_ = on; }
  // Socket doorbells only: closes the ring end (ring() does nothing after).
  void drop_ring_end() noexcept;
  // Socket doorbells only: the socket reads end of file now (every copy of
  // the peer's end is closed) with nothing before it.
  bool at_end_of_file() const noexcept;

  // Socket doorbells only: waits for the next bytes on the socket that are
  // not ring markers and reads at most out.size() of them, with up to
  // `max_fds` descriptors passed along (appended to `fds`, close-on-exec).
  // Returns the byte count (0: end of file, every copy of the peer's end is
  // closed), or -1 with `result` timed_out or interrupted. Throws
  // std::system_error on a socket error, EINVAL on an eventfd doorbell,
  // errc::handle_closed once `*cancelled` is true (looked at every 50 ms).
  long receive(std::span<std::byte> out, std::size_t max_fds, std::vector<int>& fds, const deadline& until,
               wait_result& result, const std::atomic<bool>* cancelled = nullptr);
  // In a forked child: the descriptors are shared with the parent and stay;
  // the lock a parent's thread may have held at fork is replaced.
  void reset_after_fork() noexcept;

 private:
  struct socket_lock;
  void release() noexcept;
  int fd_ = -1;
  int ring_fd_ = -1;
  bool socket_ = false;
  bool markers_ = false;
  std::unique_ptr<socket_lock> lock_;
};

}  // namespace mphost::ipc
