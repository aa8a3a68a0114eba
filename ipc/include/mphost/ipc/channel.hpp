#pragma once
// channel: the one transport of mphost. A ring of variable-length frames in
// shared memory, any number of writer and reader endpoints in any number of
// processes, blocking calls with deadlines, a descriptor for select(), and a
// side path for large messages. Queue, SimpleQueue, JoinableQueue, Pipe
// (two channels), pool task and result queues and manager calls are built
// on it.
//
// Naming and lifetime. channel::create makes the shared segment, with an
// unguessable name, and returns the creator's endpoint; other processes call
// channel::open(name, role). Each endpoint is registered in the channel with
// its role, pid and process start time. The channel's names (its control
// segment, extra rings, undelivered large blocks) are removed when the last
// endpoint goes away (closed, or its process found dead), unless the options
// say otherwise; channel::remove does it explicitly. An endpoint that is
// handed to a process not yet started (a pickled Connection for a spawn
// child) should travel with a ticket from hand_over(): the ticket holds a
// place in the channel for the receiver until it opens with it (or the
// ticket's holder dies, or the ticket expires), so the channel does not look
// abandoned meanwhile.
//
// Endpoint table. A channel has places for 32768 endpoints alive at once
// (a forked child's inherited ones count); past that, open and fork's
// registration fail with EMFILE ("too many endpoints on channel"). The
// table's pages are allocated as a high-water mark first reaches them, so a
// channel pays (in /dev/shm and in the scans below) for the most endpoints
// it has had at once, not for the limit; a claim takes the first free place
// from a hint kept by frees, else the next unused one: O(1) in the usual
// case. A peer's liveness is asked through a per-process cache of what /proc
// said (process_seems_alive, 25 ms), so reaping the table costs a load per
// place, not a file read; a close stops looking at the first live endpoint.
//
// fork. Endpoints survive fork() the way descriptors do: in the child, every
// endpoint object inherited from the parent is registered anew for the child
// (the place is reserved in the parent before the fork, so the parent cannot
// see the channel without the child's endpoints even for an instant; the
// child takes it over with one compare-and-swap). An inherited endpoint
// counts as the child's until the child closes it or ends, as a descriptor
// would: a reader whose only writer is a forked child's copy waits for that
// child, then reads end of file. A child killed before its fork handlers ran
// leaves its places pending until they lapse (30 s). A child that goes on to
// exec() should call release_endpoints_before_exec() between fork and exec,
// as close-on-exec would.
//
// Ordering. Messages from one writer endpoint are received in the order they
// were sent. Messages of different writers are ordered by when their space
// was reserved. Each message is received by exactly one recv (or discarded,
// see below); a message that a reader in another process took is not seen
// here. A successful send happens-before the recv that returns its message.
//
// Blocking. send, recv and poll take a deadline (deadline::immediate() for a
// single attempt). They spin briefly, adapting to how long recent waits took,
// then sleep on a futex; writers and readers make the wake-up system call
// only when someone sleeps. Outcomes are values:
//   ok           sent / received / (poll) a message is ready;
//   timed_out    the deadline passed;
//   closed       recv/poll: the channel is empty and no writer endpoint is
//                left (all closed or dead): end of file. send: no reader
//                endpoint is left. An endpoint opened with role `both` counts
//                as reader and writer, so a channel shared by such endpoints
//                (a Queue) never reports closed to them;
//   interrupted  a signal handler ran; call again after handling it.
// A dead peer is noticed within ~100 ms (waiters re-check periodically).
//
// Capacity. A bounded channel holds `capacity` bytes of frames; send waits
// for space. An unbounded channel never makes send wait: when its ring is
// full the writer starts a new, larger ring in a segment of its own, links it
// after the current one, and readers move on to it once they have drained the
// older one. Messages above `large_threshold` bytes always travel as a
// large_block: one copy into a block (none with make_block and send_block),
// and the receiver reads them in place (message::is_block); blocks are
// recycled through a small pool per channel, so a stream of large messages
// makes no system calls once warm.
//
// Faults. A writer that dies between reserving a frame and committing it
// leaves a frame readers discard once they see the writer gone; every
// complete frame is still delivered (frame.hpp). Bytes in the ring that
// cannot be a frame make recv throw std::system_error(errc::corrupt_frame);
// the ring's unread contents are discarded and the channel stays usable.
// Failures to create or map segments throw std::system_error with errno.
//
// Readiness. fileno() is readable exactly when poll(immediate) reports ok or
// closed, with no delay in the processes that send and receive:
// - Socket doorbells (Pipe ends, and so the ends of every Queue: set_doorbell
//   and ring_through). A flag in the channel says whether the readers'
//   socket holds a marker. The send that finds it clear (after its commit)
//   sets it and writes the marker, under a lock in the channel; the recv (or
//   empty poll) that leaves the channel with nothing ready takes the lock,
//   clears the flag, looks again, and either drains the markers or, if a
//   message arrived meanwhile, sets the flag back. So in every process the
//   descriptor turns readable before send returns and quiet before the recv
//   that emptied it returns, whichever processes send and receive. The last
//   writer's close rings it (end of file); a writer that dies leaves the
//   readers' socket at end of file once no process holds its peer any more,
//   as a pipe does, and recv and poll report closed at once then. Nothing
//   rings until some process has asked for a reading end's descriptor
//   (fileno arms the channel, and rings through that end's duplicate of the
//   peer if a message is already waiting; reading ends then let their
//   duplicates go), so a Pipe nobody waits on costs no system calls. A
//   writer in a process that holds no descriptor of the ringing socket
//   cannot ring (Pipe ends always carry theirs).
// - Eventfd doorbells (reading endpoints without a socket, opened by name:
//   one per process and endpoint). Sends and recvs in this process ring and
//   clear this process's doorbells of the channel synchronously; what other
//   processes do reaches them through a watcher thread, one futex wake-up
//   later (tens of microseconds), so across processes they lag that long.
// A readable descriptor still only means that a recv would not wait at the
// moment it was rung: another reader may take the message first. Raw bytes
// written into a Pipe end's peer socket (descriptors sent with send_handle)
// make it readable too, as they would a stock pipe, while poll() looks only
// at the channel; and receive_socket, which skips markers ahead of such
// bytes, can leave a waiting message unsignalled until the next send.
//
// Identities and receipts. Every message has an identity: a nonzero 64-bit
// number, unique among the messages of one channel for the channel's
// lifetime. It is (ring id + 1) << 56 | (position of the frame in that ring
// / 16), where the ring id counts the rings of an unbounded channel from 0
// and the position is the ring's running byte count (it never wraps: a ring
// carries 2^60 bytes before the encoding repeats). send, send_block and a
// committed reservation report it to the writer; recv can store it into a
// receipt, a std::atomic<std::uint64_t> that may live in another shared
// segment (a slot per pool worker, read by the parent), with release
// ordering, as soon as the message is taken: after the frame left the ring
// and before recv copies out a large block's contents or returns. A reader
// that dies after that store has left a true statement of the message it
// held; one killed in the few instructions between the frame leaving the
// ring (the head moving, under the read lock) and the store loses the
// message without a receipt. A data frame (not a block) is copied out of the
// ring before it is taken, as the ring space is reused at once after.
//
// Threads. One channel object may be used by several threads at once,
// close() included: each call holds the endpoint's state (shared ownership)
// for its duration, so a close() by another thread never unmaps what a call
// is using. close() marks the state cancelled and wakes every waiter; a call
// blocked in send, recv, poll or receive_socket then throws
// errc::handle_closed (a call that had already taken its message returns
// it). Only destroying or moving into the channel object itself while
// another thread is inside a call on it is undefined, as for any object. A
// reservation holds the endpoint too, and may be committed after close().

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mphost/ipc/deadline.hpp"
#include "mphost/ipc/doorbell.hpp"
#include "mphost/ipc/large_block.hpp"
#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

enum class endpoint_role : std::uint8_t { reader = 1, writer = 2, both = 3 };

struct channel_options {
  // Ring bytes; rounded up to a power of two, at least 4 KiB.
  std::size_t capacity = 256 * 1024;
  // send never waits for space (see Capacity above).
  bool unbounded = false;
  // Messages above this many bytes travel as large blocks. 0: capacity / 4.
  // Never more than capacity / 4.
  std::size_t large_threshold = 0;
  // Remove the channel's names when its last endpoint goes away.
  bool remove_when_unused = true;
  // Name prefix of the control segment.
  std::string_view prefix = "mphost-ch-";
};

namespace detail {
struct message_access;
}

// A received message: bytes copied out of the ring, or a large block mapped
// in place. Reuse one message across recv calls to reuse its buffer.
class message {
 public:
  message() noexcept;
  ~message();
  message(message&&) noexcept;
  message& operator=(message&&) noexcept;
  message(const message&) = delete;
  message& operator=(const message&) = delete;

  std::span<const std::byte> bytes() const noexcept;
  std::size_t size() const noexcept { return bytes().size(); }
  // The payload is a mapped large block (no copy was made).
  bool is_block() const noexcept { return static_cast<bool>(block_); }
  // Moves the mapped block out (empty if !is_block()); the message is cleared.
  large_block release_block() noexcept;
  void clear() noexcept;

 private:
  friend struct detail::message_access;
  void assign(const std::byte* data, std::size_t size);
  void set_block(large_block block) noexcept;

  std::unique_ptr<std::byte[]> buffer_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  large_block block_;
};

class channel {
 public:
  class reservation;

  static channel create(const channel_options& options, endpoint_role role);
  static channel open(const std::string& name, endpoint_role role);
  // Opens with a ticket from hand_over() (falls back to a fresh registration
  // if the ticket has lapsed).
  static channel open(const std::string& name, endpoint_role role, std::uint64_t ticket);
  // Removes the channel's names: control segment, extra rings, undelivered
  // blocks. Open endpoints keep working among themselves.
  static bool remove(const std::string& name) noexcept;

  channel() noexcept;
  ~channel();
  channel(channel&&) noexcept;
  channel& operator=(channel&&) noexcept;
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  explicit operator bool() const noexcept;
  std::string name() const;
  endpoint_role role() const noexcept;
  std::size_t capacity() const noexcept;
  bool unbounded() const noexcept;
  std::size_t large_threshold() const noexcept;

  // Sends one message (any size; empty is allowed); on ok, `*sent` (if
  // given) is its identity. Throws std::system_error: errc::handle_closed
  // after close(), EBADF on an endpoint that may not write, errno when a
  // block or ring cannot be made.
  wait_result send(std::span<const std::byte> bytes, const deadline& until = deadline::infinite(),
                   std::uint64_t* sent = nullptr);
  // A block for a message of `size` bytes, to fill and pass to send_block
  // (from the channel's pool when one fits).
  large_block make_block(std::size_t size);
  // Sends a filled block of this channel by reference; on ok the block is
  // consumed (empty), otherwise it stays with the caller (dropping it
  // returns it to the pool). EINVAL for a block of another channel.
  wait_result send_block(large_block& block, const deadline& until = deadline::infinite(), std::uint64_t* sent = nullptr);
  // Two-step send: reserve `size` bytes, fill reservation::bytes(), commit.
  // Sizes above large_threshold() throw errc::message_too_large here.
  wait_result reserve(std::size_t size, reservation& out, const deadline& until = deadline::infinite());

  // Receives one message into `out`. Throws errc::corrupt_frame (see
  // Faults), errc::handle_closed, EBADF on a write-only endpoint. With a
  // receipt (8-byte aligned, in any mapping), the message's identity is
  // stored into it as soon as the message is taken (see Identities).
  wait_result recv(message& out, const deadline& until = deadline::infinite(),
                   std::atomic<std::uint64_t>* receipt = nullptr);
  // Waits until a message is ready (ok) or the channel is closed (closed),
  // without taking it.
  wait_result poll(const deadline& until = deadline::immediate());
  // Whether a recv would not wait at this moment (a message is ready, or no
  // writer is left), read from shared memory alone: no lock, no system call,
  // so a writer that died unnoticed or a socket at end of file is not seen
  // (poll sees them). False once closed.
  bool ready_now() const noexcept;
  // A descriptor that polls readable while a message is ready or the channel
  // is closed (see Readiness). A reading endpoint with a socket doorbell
  // (set_doorbell) returns its socket and arms the channel's socket ringing;
  // one without gets an eventfd doorbell of this process, and a watcher
  // thread for what other processes do. The descriptor lives as long as this
  // endpoint. A write-only endpoint has one only if given a socket doorbell
  // (EBADF otherwise), which then just holds its socket.
  int fileno();
  // Makes `bell` (a socket doorbell: doorbell::over_socket) this endpoint's
  // doorbell, so that fileno() is a socket connected to a peer's (a Pipe
  // end). Replaces any doorbell it had. Survives fork: the child keeps the
  // same socket, as it would a descriptor.
  void set_doorbell(doorbell bell);
  // Makes the socket `fd` (not taken over) the one this channel's writers
  // ring: they write a marker into whatever descriptor of that socket their
  // process holds in a socket doorbell (any endpoint's), which makes the
  // peer socket, the readers' doorbell, readable. Set once, when a Pipe is
  // made; it holds for every endpoint of the channel in every process.
  void ring_through(int fd);
  // The socket doorbell given with set_doorbell, or nullptr.
  doorbell* socket_doorbell() noexcept;

  // Reserves an endpoint of `role` for a process that will open this channel
  // later with the returned ticket; the reservation lasts while this process
  // lives, at most `validity`.
  std::uint64_t hand_over(endpoint_role role, std::chrono::seconds validity = std::chrono::seconds(120));

  // Withdraws every place this process reserved with hand_over() and that
  // was not taken yet: for a process that is exiting, whose tickets no one
  // will use any more (they would otherwise keep the channel alive). Costs
  // nothing on an endpoint that never handed a ticket out (in this process).
  void withdraw_hand_overs() noexcept;
  struct endpoint_counts {
    std::uint32_t readers;
    std::uint32_t writers;
  };
  // Registered reader and writer endpoints, after forgetting dead ones.
  endpoint_counts endpoints();
  // Bytes of frames waiting in the ring being read (approximate).
  std::uint64_t queued_bytes() const noexcept;

  // Says that this reading endpoint talks with one peer in turns, each
  // message answering the last one this process sent (a manager link's
  // requests and replies): its recv then spins without yielding the core
  // for up to a few microseconds (instead of a few hundred nanoseconds)
  // before the usual yielding spin and futex sleep, since the peer, busy on
  // the other core, usually answers within that. Costs a core's time only
  // while recv waits, within the same adaptive budget. Default off.
  void prompt_peer(bool on) noexcept;

  // Unregisters this endpoint and wakes peers so they notice; unmaps once
  // no call of another thread is in progress on it. Calls of other threads
  // blocked in this endpoint (send, recv, poll, receive_socket) are woken
  // and throw errc::handle_closed. With `wake_waiters` false (a process
  // that is exiting closes what it holds), they are not: they go on waiting
  // on the closed endpoint and return what comes (a message, or closed once
  // no writer is left); and from then on, a call of a thread that asked for
  // it with park_waiting_calls_at_exit() that began before and would return
  // (on any channel) never returns instead, as a thread blocked on a pipe
  // stays blocked while its process exits. Calls begun after work as usual.
  void close(bool wake_waiters = true) noexcept;

  // Socket doorbells only (doorbell::receive), keeping the endpoint alive
  // for the call; a close() meanwhile makes it throw errc::handle_closed.
  // EBADF without a socket doorbell.
  long receive_socket(std::span<std::byte> out, std::size_t max_fds, std::vector<int>& fds, const deadline& until,
                      wait_result& result);

  struct state;

 private:
  explicit channel(std::shared_ptr<state> s) noexcept;
  // Loaded by each call and held for its duration (see Threads).
  std::atomic<std::shared_ptr<state>> state_;
};

// Space reserved in a channel's ring by channel::reserve.
class channel::reservation {
 public:
  reservation() noexcept;
  ~reservation();  // abandons an uncommitted reservation
  reservation(reservation&&) noexcept;
  reservation& operator=(reservation&&) noexcept;
  reservation(const reservation&) = delete;
  reservation& operator=(const reservation&) = delete;

  explicit operator bool() const noexcept { return header_ != nullptr; }
  std::span<std::byte> bytes() const noexcept { return {payload_, size_}; }
  // Publishes the message and wakes a sleeping reader.
  void commit() noexcept;
  // The identity the message has (valid from reserve() on, once committed).
  std::uint64_t id() const noexcept { return id_; }
  // Gives the space up; readers skip it.
  void abandon() noexcept;

 private:
  friend class channel;
  std::shared_ptr<void> ring_;  // keeps the ring mapped
  std::shared_ptr<channel::state> owner_;  // keeps the endpoint
  void* header_ = nullptr;
  std::byte* payload_ = nullptr;
  std::size_t size_ = 0;
  std::uint64_t id_ = 0;
};

// For the calling thread: whether its waiting calls park once its process
// has started exiting (close(false), above) rather than return. For threads
// that must not come back into a program being torn down (Python daemon
// threads). Default: off.
void park_waiting_calls_at_exit(bool on) noexcept;

// In a child between fork() and exec(): unregisters every endpoint the child
// inherited, as close-on-exec does for descriptors. Async-signal-safe.
void release_endpoints_before_exec() noexcept;

}  // namespace mphost::ipc
