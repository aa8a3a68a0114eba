// Fuzz target: the handshake message reader (runtime/handshake.hpp), which
// reads the preparation data and process object a parent sends a spawned
// child: an 8-byte little-endian length and that many bytes.
//
// The input is written into a pipe whose write end is then closed, and
// read_message reads messages from it until it throws, with the default
// limit (64 GiB) as the launcher uses it. Properties: only
// errc::peer_closed (end of file) or errc::message_too_large come out; each
// message returned is the bytes after its length; and a length the input
// does not back with bytes never makes the reader allocate it (libFuzzer's
// -malloc_limit_mb catches an allocation of the declared size).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <system_error>
#include <vector>

#include "fuzz_support.hpp"
#include "mphost/runtime/handshake.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* in, std::size_t size) {
  using namespace mphost;
  // A pipe holds 64 KiB; longer inputs would need a writer thread.
  if (size > 60000) return 0;
  int fds[2];
  fuzz::require(::pipe2(fds, O_CLOEXEC) == 0, "pipe");
  runtime::write_all(fds[1], in, size);
  ::close(fds[1]);
  std::size_t at = 0;
  for (;;) {
    try {
      const std::vector<std::byte> got = runtime::read_message(fds[0]);
      std::uint64_t declared = 0;
      fuzz::require(size - at >= 8, "a message from fewer than 8 bytes");
      for (int i = 0; i < 8; ++i) declared |= std::uint64_t{in[at + i]} << (8 * i);
      fuzz::require(declared == got.size() && size - at - 8 >= got.size(), "a message of another length");
      fuzz::require(got.empty() || std::memcmp(got.data(), in + at + 8, got.size()) == 0, "a message changed");
      at += 8 + got.size();
    } catch (const std::system_error& e) {
      fuzz::require_code(e, errc::peer_closed, errc::message_too_large);
      break;
    }
  }
  ::close(fds[0]);
  return 0;
}
