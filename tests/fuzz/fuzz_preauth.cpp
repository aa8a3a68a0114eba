// Fuzz target: what a peer's bytes reach before a Listener has
// authenticated it, on the native side.
//
// Listener.accept() runs _challenge.deliver_challenge and then
// answer_challenge (python_stdlib_shim/multiprocessing/_challenge.py): three
// Connection.recv_bytes(256) calls, each _mphost.stream_recv(fd, 256)
// (embed/src/connection_binding.cpp), which reads a prefix with
// ipc::stream_reader over an ipc::fd_stream, gives up (None: "bad message
// length") on a corrupt prefix or a length above maxlength without reading
// the body, and otherwise reads the body into a 16 KiB stack buffer. The
// binding needs an interpreter; this target runs those same core calls in
// the same order over a real socket pair, with the same limits, and then the
// checks _challenge.py makes on the bytes (digest equality, the
// "#CHALLENGE#" tag, "#WELCOME#"). The Python side of the same path is
// fuzzed by preauth_loop.py under mphost.
//
// Properties: only corrupt_frame / peer_closed errors; a message above 256
// bytes is refused from its prefix alone, and then nothing more is read; a
// body never lands outside its buffer (ASan); and only the exact expected
// digest and verdict authenticate.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>
#include <vector>

#include "fuzz_support.hpp"
#include "mphost/ipc/stream_frame.hpp"

namespace {

using namespace mphost;
using namespace mphost::ipc;

constexpr std::uint64_t longest_reply = 256;      // _challenge._LONGEST_REPLY
constexpr std::size_t read_with_prefix = 16 * 1024;  // connection_binding.cpp
constexpr std::string_view expected_digest = "0123456789abcdef";  // the HMAC the listener expects

enum class outcome { message, refused, eof, cut };

// stream_recv(fd, maxlength) without the interpreter: the message, or why not.
outcome stream_recv(int fd, std::uint64_t maxlength, std::vector<std::byte>& out) {
  fd_stream in(fd);
  stream_reader reader;
  try {
    wait_result r;
    while ((r = reader.read_prefix(in)) == wait_result::interrupted) {
    }
    if (r == wait_result::closed) return outcome::eof;
    if (reader.length() > maxlength) return outcome::refused;
    fuzz::require(reader.length() <= read_with_prefix, "maxlength let a long body through");
    std::array<std::byte, read_with_prefix> small;
    const auto n = static_cast<std::size_t>(reader.length());
    reader.target(std::span(small).first(n));
    if (n > 0) {
      while ((r = reader.read_body(in)) == wait_result::interrupted) {
      }
      if (r == wait_result::closed) return outcome::cut;
    }
    out.assign(small.begin(), small.begin() + static_cast<std::ptrdiff_t>(n));
    return outcome::message;
  } catch (const std::system_error& e) {
    fuzz::require_code(e, errc::corrupt_frame, errc::peer_closed);
    return e.code() == make_error_code(errc::corrupt_frame) ? outcome::refused : outcome::cut;
  }
}

bool equals(const std::vector<std::byte>& got, std::string_view want) {
  return got.size() == want.size() && std::memcmp(got.data(), want.data(), want.size()) == 0;
}

// The listener's side; true if the peer authenticated.
bool listener_side(int fd) {
  std::vector<std::byte> msg;
  // deliver_challenge: the peer's digest of our challenge.
  if (stream_recv(fd, longest_reply, msg) != outcome::message || !equals(msg, expected_digest)) return false;
  // answer_challenge: the peer's challenge, then its verdict on our answer.
  if (stream_recv(fd, longest_reply, msg) != outcome::message) return false;
  constexpr std::string_view tag = "#CHALLENGE#";
  if (msg.size() < tag.size() || std::memcmp(msg.data(), tag.data(), tag.size()) != 0) return false;
  if (stream_recv(fd, longest_reply, msg) != outcome::message) return false;
  return equals(msg, "#WELCOME#");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* in, std::size_t size) {
  // A socket buffer holds this much without a reader.
  if (size > 100000) return 0;
  int pair[2];
  fuzz::require(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0, "socketpair");
  int buf = 1 << 20;
  ::setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  ::setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  std::size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(pair[0], in + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;  // the buffer is full: the rest is never read anyway
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(pair[0], SHUT_WR);
  const bool authenticated = listener_side(pair[1]);
  if (authenticated) {
    // Only a transcript carrying the digest, a challenge and the welcome, each
    // in its own well-formed message, gets here.
    fuzz::require(size >= 3 * 4 + expected_digest.size() + 11 + 9, "authenticated on too few bytes");
  }
  ::close(pair[0]);
  ::close(pair[1]);
  return 0;
}
