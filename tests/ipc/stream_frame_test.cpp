#include "mphost/ipc/stream_frame.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "mphost/ipc/error.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using mphost::testing::watchdog;

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::string text_of(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// A stream scripted by the test. Reads: each step either delivers up to
// `chunk` bytes of `input`, fails with an errno (EINTR...), or, once input
// is used up, says end of file. Writes: at most `chunk` bytes per call,
// appended to `output`, with the scripted errnos first.
class fake_stream final : public byte_stream {
 public:
  std::string input;
  std::size_t read_at = 0;
  std::string output;
  std::size_t chunk = SIZE_MAX;
  std::deque<int> read_errors;   // errnos returned before the next reads
  std::deque<int> write_errors;  // likewise for writes
  std::size_t reads = 0;
  std::size_t writes = 0;

  std::ptrdiff_t read_some(std::span<std::byte> into) noexcept override {
    ++reads;
    if (!read_errors.empty()) {
      errno = read_errors.front();
      read_errors.pop_front();
      return -1;
    }
    const std::size_t n = std::min({into.size(), input.size() - read_at, chunk});
    std::memcpy(into.data(), input.data() + read_at, n);
    read_at += n;
    return static_cast<std::ptrdiff_t>(n);
  }

  std::ptrdiff_t write_some(std::span<const ::iovec> parts) noexcept override {
    ++writes;
    if (!write_errors.empty()) {
      errno = write_errors.front();
      write_errors.pop_front();
      return -1;
    }
    std::size_t budget = chunk;
    std::size_t sent = 0;
    for (const ::iovec& part : parts) {
      EXPECT_GT(part.iov_len, 0u);
      const std::size_t n = std::min(part.iov_len, budget);
      output.append(static_cast<const char*>(part.iov_base), n);
      sent += n;
      budget -= n;
      if (budget == 0) break;
    }
    return static_cast<std::ptrdiff_t>(sent);
  }
};

std::string short_prefix(std::uint32_t n) {
  return {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n)};
}

std::string long_prefix(std::uint64_t n) {
  std::string s = "\xff\xff\xff\xff";
  for (int shift = 56; shift >= 0; shift -= 8) s.push_back(static_cast<char>(n >> shift));
  return s;
}

// Lets `budget` calls through to `inner`, then fails every further one with EINTR.
class rationed final : public byte_stream {
 public:
  rationed(byte_stream& inner, int budget) : inner_(inner), budget_(budget) {}
  std::ptrdiff_t read_some(std::span<std::byte> into) noexcept override {
    if (budget_-- <= 0) return interrupted();
    return inner_.read_some(into);
  }
  std::ptrdiff_t write_some(std::span<const ::iovec> parts) noexcept override {
    if (budget_-- <= 0) return interrupted();
    return inner_.write_some(parts);
  }

 private:
  static std::ptrdiff_t interrupted() noexcept {
    errno = EINTR;
    return -1;
  }
  byte_stream& inner_;
  int budget_;
};

// Reads one whole message, retrying interruptions; the result of the last step.
wait_result read_message(stream_reader& reader, byte_stream& in, std::string& out) {
  wait_result r;
  while ((r = reader.read_prefix(in)) == wait_result::interrupted) {
  }
  if (r != wait_result::ok) return r;
  out.assign(reader.length(), '\0');
  reader.target(std::as_writable_bytes(std::span(out.data(), out.size())));
  while ((r = reader.read_body(in)) == wait_result::interrupted) {
  }
  return r;
}

void expect_errc(const std::function<void()>& fn, errc code, const char* phrase) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), make_error_code(code));
    EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
  }
}

TEST(StreamFrameTest, PrefixIsTheStdlibsShortFormUpToInt32Max) {
  EXPECT_EQ(text_of(encode_stream_prefix(0).view()), short_prefix(0));
  EXPECT_EQ(text_of(encode_stream_prefix(0x01020304).view()), short_prefix(0x01020304));
  EXPECT_EQ(text_of(encode_stream_prefix(0x7fffffff).view()), short_prefix(0x7fffffff));
  // 2 GiB and more: -1, then the 64-bit length.
  EXPECT_EQ(text_of(encode_stream_prefix(0x80000000).view()), long_prefix(0x80000000));
  EXPECT_EQ(text_of(encode_stream_prefix(3ull << 32).view()), long_prefix(3ull << 32));
  // A lower limit (for tests) switches earlier; a higher one is capped.
  EXPECT_EQ(text_of(encode_stream_prefix(6, 5).view()), long_prefix(6));
  EXPECT_EQ(text_of(encode_stream_prefix(5, 5).view()), short_prefix(5));
  EXPECT_EQ(text_of(encode_stream_prefix(0x80000000, UINT64_MAX).view()), long_prefix(0x80000000));
}

TEST(StreamFrameTest, DecodeSaysHowMuchPrefixItNeeds) {
  const std::string longer = long_prefix(1ull << 40);
  decoded_prefix d = decode_stream_prefix(bytes_of(longer).first(3));
  EXPECT_FALSE(d.complete);
  EXPECT_EQ(d.size, 4u);
  d = decode_stream_prefix(bytes_of(longer).first(4));
  EXPECT_FALSE(d.complete);
  EXPECT_EQ(d.size, 12u);
  d = decode_stream_prefix(bytes_of(longer));
  ASSERT_TRUE(d.complete);
  EXPECT_EQ(d.length, 1ull << 40);
  const std::string small = short_prefix(7) + "trailing";
  d = decode_stream_prefix(bytes_of(small));
  ASSERT_TRUE(d.complete);
  EXPECT_EQ(d.size, 4u);
  EXPECT_EQ(d.length, 7u);
}

TEST(StreamFrameTest, NegativeLengthsOtherThanTheLongMarkAreCorrupt) {
  for (std::uint32_t word : {0x80000000u, 0xfffffff9u, 0xfffffffeu}) {
    const std::string head = short_prefix(word);
    expect_errc([&] { decode_stream_prefix(bytes_of(head)); }, errc::corrupt_frame, "bad message length");
    fake_stream in;
    in.input = head + "junk";
    stream_reader reader;
    expect_errc([&] { reader.read_prefix(in); }, errc::corrupt_frame, "bad message length");
    // Nothing past the four bytes was taken.
    EXPECT_EQ(in.read_at, 4u);
  }
}

TEST(StreamFrameTest, WriterSendsPrefixAndPartsInOrder) {
  const std::string a = "hello ", b, c = "world";
  const std::span<const std::byte> parts[] = {bytes_of(a), bytes_of(b), bytes_of(c)};
  fake_stream out;
  stream_writer writer(parts);
  EXPECT_EQ(writer.length(), 11u);
  EXPECT_EQ(writer.write(out), wait_result::ok);
  EXPECT_TRUE(writer.done());
  EXPECT_EQ(out.output, short_prefix(11) + "hello world");
  EXPECT_EQ(out.writes, 1u);
  // An empty message is its prefix alone.
  fake_stream empty_out;
  stream_writer empty(std::span<const std::span<const std::byte>>{});
  EXPECT_EQ(empty.write(empty_out), wait_result::ok);
  EXPECT_EQ(empty_out.output, short_prefix(0));
}

TEST(StreamFrameTest, PartialWritesResumeAcrossPartsAndInterruptionsKeepProgress) {
  const std::string a = "ab", b = "cdefg", c = "h";
  const std::span<const std::byte> parts[] = {bytes_of(a), bytes_of(b), bytes_of(c)};
  fake_stream out;
  out.chunk = 3;
  stream_writer writer(parts);
  std::size_t interruptions = 0;
  for (;;) {
    // One short write goes through, then a signal interrupts the next.
    rationed once(out, 1);
    const wait_result step = writer.write(once);
    if (step == wait_result::ok) break;
    ASSERT_EQ(step, wait_result::interrupted);
    ++interruptions;
  }
  EXPECT_TRUE(writer.done());
  EXPECT_EQ(out.output, short_prefix(8) + "abcdefgh");
  EXPECT_EQ(interruptions, 3u);  // 12 bytes, 3 at a time
}

TEST(StreamFrameTest, WriteErrorsCarryTheirErrno) {
  const std::string a = "x";
  const std::span<const std::byte> parts[] = {bytes_of(a)};
  fake_stream out;
  out.write_errors = {EPIPE};
  stream_writer writer(parts);
  try {
    writer.write(out);
    ADD_FAILURE() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::error_code(EPIPE, std::system_category()));
  }
}

TEST(StreamFrameTest, ReaderTakesMessagesInPiecesAndNeverReadsAhead) {
  fake_stream in;
  in.input = short_prefix(5) + "first" + short_prefix(0) + short_prefix(6) + "second";
  in.chunk = 2;
  std::string got;
  stream_reader one;
  ASSERT_EQ(read_message(one, in, got), wait_result::ok);
  EXPECT_EQ(got, "first");
  EXPECT_EQ(in.read_at, 9u);  // exactly the first message
  stream_reader two;
  ASSERT_EQ(read_message(two, in, got), wait_result::ok);
  EXPECT_EQ(got, "");
  EXPECT_EQ(in.read_at, 13u);
  stream_reader three;
  ASSERT_EQ(read_message(three, in, got), wait_result::ok);
  EXPECT_EQ(got, "second");
  // Then a clean end of stream.
  stream_reader four;
  EXPECT_EQ(four.read_prefix(in), wait_result::closed);
}

TEST(StreamFrameTest, InterruptedReadsResumeWithoutLosingBytes) {
  fake_stream in;
  in.input = long_prefix(10) + "0123456789";
  in.chunk = 3;
  stream_reader reader;
  std::size_t interruptions = 0;
  for (;;) {
    rationed once(in, 1);
    const wait_result step = reader.read_prefix(once);
    if (step == wait_result::ok) break;
    ASSERT_EQ(step, wait_result::interrupted);
    ++interruptions;
  }
  EXPECT_EQ(in.read_at, 12u);
  EXPECT_GE(interruptions, 3u);
  ASSERT_EQ(reader.length(), 10u);
  std::string body(10, '\0');
  reader.target(std::as_writable_bytes(std::span(body.data(), body.size())));
  in.read_errors = {EINTR, EINTR};
  EXPECT_EQ(reader.read_body(in), wait_result::interrupted);
  EXPECT_EQ(reader.read_body(in), wait_result::interrupted);
  EXPECT_EQ(reader.read_body(in), wait_result::ok);
  EXPECT_EQ(body, "0123456789");
  EXPECT_EQ(reader.body_left(), 0u);
}

TEST(StreamFrameTest, EndOfFileBetweenPiecesIsCleanInsideAPieceIsACutMessage) {
  {  // Nothing at all: closed.
    fake_stream in;
    stream_reader reader;
    EXPECT_EQ(reader.read_prefix(in), wait_result::closed);
  }
  {  // Half a prefix.
    fake_stream in;
    in.input = "\0\0"s;
    stream_reader reader;
    expect_errc([&] { reader.read_prefix(in); }, errc::peer_closed, "got end of file during message");
  }
  {  // The long mark, then nothing: the stdlib's EOFError, as it reads the
     // 64-bit length as a piece of its own.
    fake_stream in;
    in.input = "\xff\xff\xff\xff";
    stream_reader reader;
    EXPECT_EQ(reader.read_prefix(in), wait_result::closed);
  }
  {  // Half the long length.
    fake_stream in;
    in.input = "\xff\xff\xff\xff\0\0\0"s;
    stream_reader reader;
    expect_errc([&] { reader.read_prefix(in); }, errc::peer_closed, "got end of file during message");
  }
  {  // A prefix and no body: closed, as with the stdlib.
    fake_stream in;
    in.input = short_prefix(4);
    stream_reader reader;
    ASSERT_EQ(reader.read_prefix(in), wait_result::ok);
    std::string body(4, '\0');
    reader.target(std::as_writable_bytes(std::span(body.data(), body.size())));
    EXPECT_EQ(reader.read_body(in), wait_result::closed);
  }
  {  // Part of the body, across two targets: a cut message.
    fake_stream in;
    in.input = short_prefix(100) + "only ten b";
    stream_reader reader;
    ASSERT_EQ(reader.read_prefix(in), wait_result::ok);
    std::string first(10, '\0'), rest(90, '\0');
    reader.target(std::as_writable_bytes(std::span(first.data(), first.size())));
    ASSERT_EQ(reader.read_body(in), wait_result::ok);
    EXPECT_EQ(first, "only ten b");
    EXPECT_EQ(reader.body_left(), 90u);
    reader.target(std::as_writable_bytes(std::span(rest.data(), rest.size())));
    expect_errc([&] { reader.read_body(in); }, errc::peer_closed, "got end of file during message");
  }
}

TEST(StreamFrameTest, ReadErrorsCarryTheirErrno) {
  fake_stream in;
  in.read_errors = {EBADF};
  stream_reader reader;
  try {
    reader.read_prefix(in);
    ADD_FAILURE() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::error_code(EBADF, std::system_category()));
  }
}

// A stream that carries a message of several GiB without storing it: the
// writer's side counts and checks bytes, the reader's side makes them up.
class counting_stream final : public byte_stream {
 public:
  std::string head;          // what was written before the body
  std::uint64_t body = 0;    // body bytes written
  bool body_ok = true;       // every body byte was the expected pattern
  std::span<const std::byte> pattern;
  std::uint64_t to_serve = 0;
  std::uint64_t served = 0;

  std::ptrdiff_t write_some(std::span<const ::iovec> parts) noexcept override {
    std::size_t sent = 0;
    // Like Linux: at most about 2 GiB per call.
    std::size_t budget = 0x7ffff000;
    for (const ::iovec& part : parts) {
      std::size_t n = std::min(part.iov_len, budget);
      sent += n;
      budget -= n;
      const auto* p = static_cast<const std::byte*>(part.iov_base);
      while (n > 0 && head.size() < 12) {
        head.push_back(static_cast<char>(*p++));
        --n;
      }
      // The body is `pattern` repeated: compare each stretch with it.
      while (n > 0) {
        const std::size_t at = static_cast<std::size_t>(body % pattern.size());
        const std::size_t k = std::min(n, pattern.size() - at);
        body_ok = body_ok && std::memcmp(p, pattern.data() + at, k) == 0;
        body += k;
        p += k;
        n -= k;
      }
      if (budget == 0) break;
    }
    return static_cast<std::ptrdiff_t>(sent);
  }

  std::ptrdiff_t read_some(std::span<std::byte> into) noexcept override {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(into.size(), to_serve - served));
    std::memset(into.data(), 'z', n);
    served += n;
    return static_cast<std::ptrdiff_t>(n);
  }
};

TEST(StreamFrameTest, MessagesOfTwoGibibytesAndMoreUseTheLongForm) {
  watchdog guard(120s);
  // The writer: 2 GiB and a bit more, made of one 1 MiB part repeated, so
  // that nothing big is allocated.
  std::vector<std::byte> block(1 << 20);
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<std::byte>(i % 251);
  const std::size_t part_size = block.size();
  const std::uint64_t total = (2ull << 30) + 4097;
  std::vector<std::span<const std::byte>> parts;
  std::uint64_t planned = 0;
  while (planned < total) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(part_size, total - planned));
    parts.emplace_back(block.data(), n);
    planned += n;
  }
  counting_stream out;
  out.pattern = block;
  stream_writer writer(parts);
  EXPECT_EQ(writer.length(), total);
  EXPECT_EQ(writer.write(out), wait_result::ok);
  EXPECT_EQ(out.head, long_prefix(total));
  EXPECT_EQ(out.body, total);
  EXPECT_TRUE(out.body_ok);

  // The reader: a long prefix for 2 GiB + 1, the body read in 256 MiB targets.
  const std::uint64_t length = (2ull << 30) + 1;
  const std::string prefix = long_prefix(length);
  struct prefixed final : byte_stream {
    std::string prefix;
    std::size_t at = 0;
    counting_stream body;
    std::ptrdiff_t read_some(std::span<std::byte> into) noexcept override {
      if (at < prefix.size()) {
        const std::size_t n = std::min(into.size(), prefix.size() - at);
        std::memcpy(into.data(), prefix.data() + at, n);
        at += n;
        return static_cast<std::ptrdiff_t>(n);
      }
      return body.read_some(into);
    }
    std::ptrdiff_t write_some(std::span<const ::iovec>) noexcept override { return -1; }
  } in;
  in.prefix = prefix;
  in.body.to_serve = length;
  stream_reader reader;
  ASSERT_EQ(reader.read_prefix(in), wait_result::ok);
  EXPECT_EQ(in.at, 12u);
  ASSERT_EQ(reader.length(), length);
  std::vector<std::byte> target(256u << 20);
  while (reader.body_left() > 0) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(target.size(), reader.body_left()));
    reader.target(std::span(target).first(n));
    ASSERT_EQ(reader.read_body(in), wait_result::ok);
  }
  EXPECT_EQ(in.body.served, length);
}

TEST(StreamFrameTest, FdStreamCarriesMessagesOverASocketPair) {
  watchdog guard(20s);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  // Bigger than a socket buffer: the writer's writev comes back short.
  std::string big(4 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  std::thread writer_thread([&] {
    fd_stream out(fds[0]);
    const std::string small = "small";
    for (const std::string* msg : {&small, static_cast<const std::string*>(&big)}) {
      const std::span<const std::byte> parts[] = {bytes_of(*msg)};
      stream_writer w(parts);
      wait_result r;
      while ((r = w.write(out)) == wait_result::interrupted) {
      }
      EXPECT_EQ(r, wait_result::ok);
    }
    ::close(fds[0]);
  });
  fd_stream in(fds[1]);
  std::string got;
  stream_reader first;
  ASSERT_EQ(read_message(first, in, got), wait_result::ok);
  EXPECT_EQ(got, "small");
  stream_reader second;
  ASSERT_EQ(read_message(second, in, got), wait_result::ok);
  EXPECT_TRUE(got == big);
  stream_reader third;
  EXPECT_EQ(third.read_prefix(in), wait_result::closed);
  writer_thread.join();
  ::close(fds[1]);
}

}  // namespace
}  // namespace mphost::ipc
