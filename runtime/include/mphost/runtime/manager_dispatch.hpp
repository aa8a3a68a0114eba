#pragma once
// manager_dispatch: the server side of a manager's channel links, native.
//
// A link is a pair of channels between one client thread and the manager's
// server: requests (client -> server) and replies (server -> client). Where
// both sides are mphost's, a link's calls travel here instead of on the
// stdlib's socket wire format (which the shim keeps for socket managers and
// stock peers). The dispatcher makes each link's channels, hands the client
// its ends (names and tickets), and serves the link from a native thread of
// its own: receive a request frame, decode its header, hand the call to the
// host (the only step that runs the target method; the embedding takes the
// GIL there and nowhere else), send the reply frame the host wrote.
//
// Frames (both sides mphost's, so the layout is ours; little-endian):
//   request   u8 flags | u16 ident length | u16 name length | ident | name |
//             arguments
//             flags: request_flags (below). ident is the shared object's id
//             (empty for a Server function); name the method or function;
//             arguments a pickle of the args tuple, or of (args, kwds) when
//             flags has with_keywords.
//   reply     u8 tag | payload: the pickle of the reply's payload, absent
//             for reply_tag::returned_none.
// decode_request() rejects a frame whose lengths overrun it (false); the
// link then gets a reply_tag::traceback written by the host (bad_request).
//
// Threads and lifetime. open_link() makes the channels (requests marked
// prompt_peer: a client waits for its reply within microseconds) and starts
// the link's thread; serve_here() makes them and serves the link on the
// calling thread instead, until it ends (a link that moves from a socket
// that thread served keeps the thread its calls ran on: locks a method
// took, thread-local state, stay its own). A link's thread ends when the client's end goes away (the
// requests channel reports closed: end of file, as the socket would), when
// its reply cannot be sent (no reader left), or on stop(). Ended links are
// forgotten at the next open_link(), serve_here() or stop(). stop() closes every link's
// channels, which wakes threads waiting for a request; a thread inside the
// host (a method that blocks, such as a shared queue's get) is not waited
// for longer than `grace`: it is left to finish on its own (threads are
// detached; what they use is shared with them), as the stdlib's daemon
// connection threads are. The host outlives the dispatcher's threads: the
// dispatcher holds it by shared_ptr.
//
// Errors. Making channels throws std::system_error (errno). Inside a
// link's thread, a std::exception from the channel or the host ends that
// link (its channels close, the client sees end of file); nothing escapes
// the thread. Non-std exceptions (a forced unwind of a thread that the
// embedding ends at interpreter exit) pass through.
//
// fork: the dispatcher belongs to the process that made it; a forked child
// has none of its threads and must not call it (the embedding drops it).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

namespace mphost::runtime {

namespace request_flags {
inline constexpr std::uint8_t with_keywords = 1;   // arguments: (args, kwds)
inline constexpr std::uint8_t server_function = 2; // ident None on the wire
}  // namespace request_flags

enum class reply_tag : std::uint8_t {
  returned = 0,        // '#RETURN'
  error = 1,           // '#ERROR'
  traceback = 2,       // '#TRACEBACK'
  unserializable = 3,  // '#UNSERIALIZABLE'
  proxy = 4,           // '#PROXY'
  returned_none = 5,   // '#RETURN' with payload None: no pickle follows
};

inline constexpr std::size_t request_head_size = 5;

// A decoded request: views into the frame it came from.
struct manager_request {
  std::uint8_t flags = 0;
  std::string_view ident;
  std::string_view method;
  std::span<const std::byte> arguments;
};

// Appends a request frame's header (flags, ident, name) to `out`; an ident
// or name over 65535 bytes throws std::system_error(errc::message_too_large).
void encode_request_head(std::uint8_t flags, std::string_view ident, std::string_view method, std::string& out);

// Splits a request frame; false when its lengths overrun it.
bool decode_request(std::span<const std::byte> frame, manager_request& out) noexcept;

// What the dispatcher asks of its embedding. Called from link threads, one
// call at a time per link, several links at once.
class manager_host {
 public:
  virtual ~manager_host() = default;
  // At the start and end of each link's thread (per-thread setup). Either
  // may end the thread by a forced unwind (an interpreter that is exiting).
  virtual void thread_started() {}
  virtual void thread_ending() {}
  // Writes the reply frame (tag byte and payload) for `request` into
  // `reply`, which arrives empty. Should not throw; if it does, the link
  // ends.
  virtual void answer(const manager_request& request, std::string& reply) = 0;
  // Writes the reply to a frame that decode_request() refused.
  virtual void bad_request(std::span<const std::byte> frame, std::string& reply) = 0;
};

// What a client needs to open its ends of a link.
struct link_offer {
  std::string requests;           // the client opens it as writer
  std::uint64_t requests_ticket = 0;
  std::string replies;            // the client opens it as reader
  std::uint64_t replies_ticket = 0;
};

class manager_dispatch {
 public:
  explicit manager_dispatch(std::shared_ptr<manager_host> host);
  ~manager_dispatch();  // stop(std::chrono::milliseconds(0))
  manager_dispatch(const manager_dispatch&) = delete;
  manager_dispatch& operator=(const manager_dispatch&) = delete;

  // A new link served by a thread of its own. After stop(): system_error
  // (ECANCELED), and no channel is made.
  link_offer open_link();
  // A new link served by the calling thread: `ready(offer)` passes the
  // offer on to the client (an exception from it takes the offer's tickets
  // back, so the link's channels and their names go at once, and passes
  // through), then the link is served until it ends. The host's
  // thread_started/thread_ending are not called: the thread is the caller's.
  void serve_here(const std::function<void(const link_offer&)>& ready);
  // Links whose threads are still running.
  std::size_t live_links();
  // Closes every link and waits up to `grace` for their threads to end;
  // returns how many are still running. Later open_link() calls throw
  // std::system_error(ECANCELED).
  std::size_t stop(std::chrono::milliseconds grace = std::chrono::milliseconds(200));

  struct shared;

 private:
  std::shared_ptr<shared> shared_;
};

}  // namespace mphost::runtime
