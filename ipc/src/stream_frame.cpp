#include "mphost/ipc/stream_frame.hpp"

#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "mphost/ipc/error.hpp"

namespace mphost::ipc {
namespace {

void put_be(std::byte* at, std::uint64_t value, std::size_t width) noexcept {
  for (std::size_t i = width; i-- > 0;) {
    at[i] = static_cast<std::byte>(value & 0xff);
    value >>= 8;
  }
}

std::uint64_t get_be(const std::byte* at, std::size_t width) noexcept {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < width; ++i) value = (value << 8) | std::to_integer<std::uint64_t>(at[i]);
  return value;
}

// The 32-bit word that says "a 64-bit length follows": -1.
constexpr std::uint32_t long_mark = 0xffffffffu;

[[noreturn]] void throw_io_error() { throw std::system_error(errno, std::system_category()); }

// Reads into buf[done, size) until it is full. `earlier` counts the bytes of
// the same piece read before `buf`: end of file with nothing of the piece
// read is a clean end (closed), anywhere else a cut message.
wait_result fill(byte_stream& in, std::span<std::byte> buf, std::size_t& done, std::uint64_t earlier) {
  while (done < buf.size()) {
    const std::ptrdiff_t got = in.read_some(buf.subspan(done));
    if (got > 0) {
      done += static_cast<std::size_t>(got);
    } else if (got == 0) {
      if (earlier == 0 && done == 0) return wait_result::closed;
      throw std::system_error(make_error_code(errc::peer_closed), "got end of file during message");
    } else if (errno == EINTR) {
      return wait_result::interrupted;
    } else {
      throw_io_error();
    }
  }
  return wait_result::ok;
}

}  // namespace

stream_prefix encode_stream_prefix(std::uint64_t length, std::uint64_t short_limit) noexcept {
  stream_prefix prefix;
  if (length <= std::min(short_limit, stream_short_limit)) {
    put_be(prefix.bytes.data(), length, 4);
    prefix.size = stream_short_prefix;
  } else {
    put_be(prefix.bytes.data(), long_mark, 4);
    put_be(prefix.bytes.data() + 4, length, 8);
    prefix.size = stream_long_prefix;
  }
  return prefix;
}

decoded_prefix decode_stream_prefix(std::span<const std::byte> got) {
  decoded_prefix out;
  if (got.size() < stream_short_prefix) return out;
  const auto word = static_cast<std::uint32_t>(get_be(got.data(), 4));
  if (word <= stream_short_limit) {
    out.complete = true;
    out.length = word;
    return out;
  }
  if (word != long_mark) throw std::system_error(make_error_code(errc::corrupt_frame), "bad message length");
  out.size = stream_long_prefix;
  if (got.size() >= stream_long_prefix) {
    out.complete = true;
    out.length = get_be(got.data() + 4, 8);
  }
  return out;
}

std::ptrdiff_t fd_stream::read_some(std::span<std::byte> into) noexcept {
  // read(2) moves at most about 2 GiB at once on Linux anyway.
  const std::size_t ask = std::min<std::size_t>(into.size(), SSIZE_MAX);
  return ::read(fd_, into.data(), ask);
}

std::ptrdiff_t fd_stream::write_some(std::span<const ::iovec> parts) noexcept {
  const std::size_t count = std::min<std::size_t>(parts.size(), IOV_MAX);
  return ::writev(fd_, parts.data(), static_cast<int>(count));
}

stream_writer::stream_writer(std::span<const std::span<const std::byte>> parts, std::uint64_t short_limit) {
  for (const auto& part : parts) length_ += part.size();
  prefix_ = encode_stream_prefix(length_, short_limit);
  pieces_.reserve(parts.size() + 1);
  pieces_.push_back({prefix_.bytes.data(), prefix_.size});
  for (const auto& part : parts) {
    // const_cast: iovec has one pointer type for both directions; writev
    // only reads through it.
    if (!part.empty()) pieces_.push_back({const_cast<std::byte*>(part.data()), part.size()});
  }
}

wait_result stream_writer::write(byte_stream& out) {
  while (next_ < pieces_.size()) {
    std::ptrdiff_t sent = out.write_some(std::span(pieces_).subspan(next_));
    if (sent < 0) {
      if (errno == EINTR) return wait_result::interrupted;
      throw_io_error();
    }
    // Drop what went out; a piece written in part keeps its rest.
    auto left = static_cast<std::size_t>(sent);
    while (next_ < pieces_.size() && left >= pieces_[next_].iov_len) {
      left -= pieces_[next_].iov_len;
      ++next_;
    }
    if (left > 0) {
      ::iovec& partial = pieces_[next_];
      partial.iov_base = static_cast<std::byte*>(partial.iov_base) + left;
      partial.iov_len -= left;
    }
  }
  return wait_result::ok;
}

wait_result stream_reader::read_prefix(byte_stream& in) {
  while (!prefix_.complete) {
    // The prefix comes in pieces as the stdlib reads it: four bytes, then,
    // for the long form, eight more.
    const std::size_t begin = head_read_ < stream_short_prefix ? 0 : stream_short_prefix;
    const std::size_t end = begin == 0 ? stream_short_prefix : stream_long_prefix;
    std::size_t done = head_read_ - begin;
    const wait_result result = fill(in, std::span(head_).subspan(begin, end - begin), done, 0);
    head_read_ = begin + done;
    if (result != wait_result::ok) return result;
    prefix_ = decode_stream_prefix(std::span(head_).first(head_read_));
  }
  return wait_result::ok;
}

wait_result stream_reader::read_body(byte_stream& in) {
  const wait_result result = fill(in, target_, filled_, body_read_);
  if (result == wait_result::ok) {
    body_read_ += filled_;
    target_ = {};
    filled_ = 0;
  }
  return result;
}

}  // namespace mphost::ipc
