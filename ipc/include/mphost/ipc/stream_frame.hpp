#pragma once
// The stream frame: how one message travels on a byte stream (a socket or
// a pipe), in multiprocessing.connection's format, so that a stock python3
// process at the other end reads and writes the same bytes.
//
// Layout. A message of n bytes is a prefix followed by the n bytes:
//   n <= short_limit:  4 bytes, n as a big-endian signed 32-bit integer;
//   otherwise:         12 bytes, -1 as a big-endian signed 32-bit integer,
//                      then n as a big-endian unsigned 64-bit integer.
// short_limit is INT32_MAX on the wire (stream_short_limit); writers take
// it as a parameter only so that tests can see the long form without
// moving gigabytes. Readers accept either form for any n, as the stdlib
// does. A 32-bit value below -1 is no prefix a writer makes: reading one
// throws std::system_error(errc::corrupt_frame) ("bad message length").
//
// Parts. A message's body may be given as several parts (a pickle and the
// protocol 5 out-of-band buffers its pickler left unjoined: numpy arrays,
// bytes objects...). They are written in order, after one prefix for their
// total, straight from where they lie: the stream keeps no trace of them,
// and the reader gets one message of their concatenated bytes.
//
// I/O. Both directions go through byte_stream (fd_stream over a descriptor;
// tests substitute their own). stream_writer and stream_reader are
// resumable: a system call interrupted by a signal (EINTR) makes them return
// wait_result::interrupted with their progress kept, and calling them again
// goes on from there, so a caller can run its signal handlers in between
// (embed's blocking_call). They never wait with a deadline: the stream
// blocks as its descriptor does. Other I/O errors (EPIPE, EBADF, EAGAIN on a
// non-blocking descriptor...) throw std::system_error carrying the errno.
//
// Reading is exact: never a byte past the current message, because the
// descriptor may be shared with other readers and poll() on it must still
// tell whether a message waits. End of file before the first byte of a
// piece (the 4-byte prefix, the 8-byte long length, the body) is a clean
// end: wait_result::closed (the stdlib's EOFError). End of file inside a
// piece throws std::system_error(errc::peer_closed) ("got end of file
// during message").
//
// Thread safety: none; one writer or reader per message, on one thread.

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mphost/ipc/wait_result.hpp"

namespace mphost::ipc {

inline constexpr std::uint64_t stream_short_limit = 0x7fffffff;
inline constexpr std::size_t stream_short_prefix = 4;
inline constexpr std::size_t stream_long_prefix = 12;

// The prefix that announces a message of `length` bytes.
struct stream_prefix {
  std::array<std::byte, stream_long_prefix> bytes{};
  std::size_t size = 0;  // stream_short_prefix or stream_long_prefix

  std::span<const std::byte> view() const noexcept { return {bytes.data(), size}; }
};

stream_prefix encode_stream_prefix(std::uint64_t length, std::uint64_t short_limit = stream_short_limit) noexcept;

// What the bytes at the start of `got` say about a prefix. `size` is the
// prefix's whole size once known (4 until four bytes are there, then 4 or
// 12); `complete` says whether `got` holds all of it, and then `length` is
// the message's. Throws errc::corrupt_frame for a value below -1.
struct decoded_prefix {
  std::size_t size = stream_short_prefix;
  bool complete = false;
  std::uint64_t length = 0;
};

decoded_prefix decode_stream_prefix(std::span<const std::byte> got);

// A byte stream, as stream_writer and stream_reader use it.
class byte_stream {
 public:
  virtual ~byte_stream() = default;
  // Reads up to into.size() (> 0) bytes: the count, 0 at end of stream, or
  // -1 with errno set.
  virtual std::ptrdiff_t read_some(std::span<std::byte> into) noexcept = 0;
  // Writes from `parts` in order (none empty, at most IOV_MAX): the count
  // written (> 0), or -1 with errno set.
  virtual std::ptrdiff_t write_some(std::span<const ::iovec> parts) noexcept = 0;
};

// A descriptor it does not own: read(2) and writev(2).
class fd_stream final : public byte_stream {
 public:
  explicit fd_stream(int fd) noexcept : fd_(fd) {}
  std::ptrdiff_t read_some(std::span<std::byte> into) noexcept override;
  std::ptrdiff_t write_some(std::span<const ::iovec> parts) noexcept override;

 private:
  int fd_;
};

// Writes one message: its prefix, then its parts. The parts' memory must
// stay put until write() returns ok.
class stream_writer {
 public:
  explicit stream_writer(std::span<const std::span<const std::byte>> parts,
                         std::uint64_t short_limit = stream_short_limit);

  // ok once the whole message is out; interrupted (call again) on EINTR.
  wait_result write(byte_stream& out);

  std::uint64_t length() const noexcept { return length_; }
  bool done() const noexcept { return next_ == pieces_.size(); }

 private:
  stream_prefix prefix_;
  std::uint64_t length_ = 0;
  std::vector<::iovec> pieces_;  // the prefix and the non-empty parts
  std::size_t next_ = 0;         // first piece not completely written
};

// Reads one message: read_prefix() until ok, then the body into targets the
// caller gives, one after the other, until body_left() is 0.
class stream_reader {
 public:
  // ok once length() is known; closed at a clean end of stream; interrupted
  // (call again) on EINTR.
  wait_result read_prefix(byte_stream& in);

  bool has_length() const noexcept { return prefix_.complete; }
  std::uint64_t length() const noexcept { return prefix_.length; }
  std::uint64_t body_left() const noexcept { return prefix_.length - body_read_; }

  // The next stretch of the body goes into `into` (at most body_left()).
  void target(std::span<std::byte> into) noexcept {
    target_ = into;
    filled_ = 0;
  }
  // ok once the target is filled; closed when the stream ends before the
  // body's first byte; interrupted (call again) on EINTR.
  wait_result read_body(byte_stream& in);

 private:
  std::array<std::byte, stream_long_prefix> head_{};
  std::size_t head_read_ = 0;
  decoded_prefix prefix_;
  std::uint64_t body_read_ = 0;
  std::span<std::byte> target_;
  std::size_t filled_ = 0;
};

}  // namespace mphost::ipc
