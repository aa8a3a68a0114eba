// Fuzz target: the stream frame codec (ipc/stream_frame.hpp), the format of
// multiprocessing.connection over sockets and pipes, also used for the
// manager transport's prefixes.
//
// Input: byte 0 picks how the fake stream hands bytes out (chunk sizes, an
// EINTR now and then), the rest is what a peer sent. A stream_reader reads
// message after message as Connection.recv_bytes does (read_prefix, then the
// body in pieces of at most 4 KiB), until the stream ends, is cut, or shows
// a corrupt prefix. Properties: only errc::corrupt_frame ("bad message
// length") or errc::peer_closed come out; the reader never takes a byte past
// the message it reads (the count consumed is exactly prefix + body at each
// message's end); the body it returns is the bytes that followed the prefix;
// decode_stream_prefix agrees with the reader; and each complete message
// written back with stream_writer, through the same choppy stream, reads
// back the same.
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <system_error>
#include <vector>

#include "fuzz_support.hpp"
#include "mphost/ipc/stream_frame.hpp"

namespace {

using namespace mphost;
using namespace mphost::ipc;

// A stream over memory that hands out chunks of varying size and fails with
// EINTR every so often, as a socket under signals does.
class choppy_stream final : public byte_stream {
 public:
  choppy_stream(std::span<const std::byte> data, std::uint8_t pattern) : data_(data), pattern_(pattern) {}

  std::ptrdiff_t read_some(std::span<std::byte> into) noexcept override {
    if (interrupt()) return -1;
    const std::size_t n = std::min({into.size(), data_.size() - at_, chunk()});
    std::memcpy(into.data(), data_.data() + at_, n);
    at_ += n;
    return static_cast<std::ptrdiff_t>(n);
  }
  std::ptrdiff_t write_some(std::span<const ::iovec> parts) noexcept override {
    if (interrupt()) return -1;
    std::size_t budget = chunk();
    std::size_t done = 0;
    for (const ::iovec& v : parts) {
      const std::size_t n = std::min(budget, v.iov_len);
      const auto* p = static_cast<const std::byte*>(v.iov_base);
      written.insert(written.end(), p, p + n);
      done += n;
      budget -= n;
      if (budget == 0) break;
    }
    return static_cast<std::ptrdiff_t>(done);
  }
  std::size_t consumed() const noexcept { return at_; }

  std::vector<std::byte> written;

 private:
  bool interrupt() noexcept {
    ++calls_;
    if ((pattern_ & 0x80) != 0 && calls_ % ((pattern_ & 7) + 2) == 0) {
      errno = EINTR;
      return true;
    }
    return false;
  }
  std::size_t chunk() const noexcept {
    const unsigned sizes[] = {1, 3, 4, 5, 12, 64, 4096, 1u << 20};
    return sizes[(pattern_ >> 3 ^ calls_) & 7];
  }

  std::span<const std::byte> data_;
  std::uint8_t pattern_;
  std::size_t at_ = 0;
  std::size_t calls_ = 0;
};

template <class Call>
wait_result retry(Call&& call) {
  wait_result r;
  int spins = 0;
  while ((r = call()) == wait_result::interrupted) fuzz::require(++spins < 1000000, "endless EINTR loop");
  return r;
}

// Writes `body` with stream_writer (in two parts when it can) through a
// choppy stream and reads it back with stream_reader.
void round_trip(std::span<const std::byte> body, std::uint8_t pattern) {
  const std::size_t cut = body.size() / 3;
  const std::span<const std::byte> parts[] = {body.first(cut), body.subspan(cut)};
  // A short limit of 3 makes most messages take the long form.
  stream_writer w(parts, (pattern & 1) ? 3 : stream_short_limit);
  choppy_stream out({}, pattern);
  fuzz::require(retry([&] { return w.write(out); }) == wait_result::ok && w.done(), "write did not finish");
  choppy_stream back(out.written, static_cast<std::uint8_t>(pattern ^ 0x55));
  stream_reader r;
  fuzz::require(retry([&] { return r.read_prefix(back); }) == wait_result::ok, "own prefix unreadable");
  fuzz::require(r.length() == body.size(), "own prefix read back another length");
  std::vector<std::byte> got(body.size());
  r.target(got);
  if (!got.empty()) fuzz::require(retry([&] { return r.read_body(back); }) == wait_result::ok, "own body unreadable");
  fuzz::require(r.body_left() == 0 && back.consumed() == out.written.size(), "own message read back short");
  fuzz::require(std::equal(got.begin(), got.end(), body.begin(), body.end()), "own message read back changed");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* in, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t pattern = in[0];
  const std::span<const std::byte> data(reinterpret_cast<const std::byte*>(in + 1), size - 1);
  choppy_stream s(data, pattern);
  std::size_t message_start = 0;
  std::vector<std::byte> body;
  for (int messages = 0; messages < 64; ++messages) {
    stream_reader r;
    try {
      const wait_result got = retry([&] { return r.read_prefix(s); });
      if (got == wait_result::closed) {
        fuzz::require(s.consumed() == data.size(), "clean end reported before the end");
        return 0;
      }
      fuzz::require(got == wait_result::ok, "read_prefix gave an unexpected result");
      const std::size_t prefix_size = s.consumed() - message_start;
      fuzz::require(prefix_size == stream_short_prefix || prefix_size == stream_long_prefix, "prefix of odd size");
      const decoded_prefix d = decode_stream_prefix(data.subspan(message_start, prefix_size));
      fuzz::require(d.complete && d.size == prefix_size && d.length == r.length(), "decoder and reader disagree");
      body.clear();
      std::byte piece[4096];
      while (r.body_left() > 0) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(r.body_left(), sizeof piece));
        r.target(std::span(piece, n));
        const wait_result b = retry([&] { return r.read_body(s); });
        // A body cut before its first byte ends the stream cleanly.
        if (b == wait_result::closed) {
          fuzz::require(s.consumed() == data.size() && body.empty(), "closed inside a body");
          return 0;
        }
        fuzz::require(b == wait_result::ok, "read_body gave an unexpected result");
        body.insert(body.end(), piece, piece + n);
      }
      fuzz::require(s.consumed() == message_start + prefix_size + body.size(), "the reader read past its message");
      fuzz::require(
          std::equal(body.begin(), body.end(), data.begin() + static_cast<std::ptrdiff_t>(message_start + prefix_size)),
          "the body is not the bytes after the prefix");
      round_trip(body, pattern);
      message_start = s.consumed();
    } catch (const std::system_error& e) {
      fuzz::require_code(e, errc::corrupt_frame, errc::peer_closed);
      return 0;
    }
  }
  return 0;
}
