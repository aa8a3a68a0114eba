#pragma once
// doorbell: a descriptor that poll(), select() and epoll can wait on, for
// objects that otherwise live in shared memory.
//
// A doorbell wraps a Linux eventfd. It is level-triggered: after ring() the
// descriptor polls readable, and stays so until clear(); ringing twice is the
// same as ringing once. It carries no data, only "look now".
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

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

class doorbell {
 public:
  // Throws std::system_error when no eventfd can be made (EMFILE, ...).
  doorbell();
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

 private:
  int fd_ = -1;
};

}  // namespace mphost::ipc
