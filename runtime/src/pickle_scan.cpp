// pickle_scan.hpp: the opcode walk. Argument layouts follow pickletools'
// descriptions of the opcodes, as Modules/_pickle.c reads them.
#include "mphost/runtime/pickle_scan.hpp"

#include <cstdint>
#include <cstring>
#include <string_view>
#include <limits>

namespace mphost::runtime::pickle {
namespace {

// How an opcode's argument is laid out in the stream.
enum class arg : std::uint8_t {
  invalid,      // not an opcode: the unpickler raises
  none,         // no argument
  fixed,        // `size` bytes
  counted,      // a little-endian length of `size` bytes, then that many bytes
  signed4,      // a signed 4-byte length, then that many bytes (negative raises)
  line,         // up to and including a newline
  two_lines,    // GLOBAL and INST: module and name, each ending in a newline
  frame,        // an 8-byte length of bytes that follow (prefetched, not skipped)
  bytearray8,   // an 8-byte length, then that many bytes, allocated first
  stop,
};

struct layout {
  arg kind = arg::invalid;
  std::uint8_t size = 0;
};

struct opcode_table {
  layout at[256];

  constexpr opcode_table() {
    for (unsigned char c : std::string_view("NlatedsbuR0)1(2o.Q\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x97\x98]}"))
      at[c] = {arg::none, 0};
    at['.'] = {arg::stop, 0};
    for (unsigned char c : std::string_view("Khq\x82\x80")) at[c] = {arg::fixed, 1};
    for (unsigned char c : std::string_view("M\x83")) at[c] = {arg::fixed, 2};
    for (unsigned char c : std::string_view("J\x84jr")) at[c] = {arg::fixed, 4};
    at['G'] = {arg::fixed, 8};
    for (unsigned char c : std::string_view("\x8a""UC\x8c")) at[c] = {arg::counted, 1};
    for (unsigned char c : std::string_view("BX")) at[c] = {arg::counted, 4};
    for (unsigned char c : std::string_view("\x8b""T")) at[c] = {arg::signed4, 4};
    for (unsigned char c : std::string_view("\x8e\x8d")) at[c] = {arg::counted, 8};
    for (unsigned char c : std::string_view("IgpLSVFP")) at[c] = {arg::line, 0};
    for (unsigned char c : std::string_view("ci")) at[c] = {arg::two_lines, 0};
    at[0x95] = {arg::frame, 8};
    at[0x96] = {arg::bytearray8, 8};
  }
};

constexpr opcode_table table;

std::uint64_t little_endian(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = n; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::optional<overrunning_bytearray> find_overrunning_bytearray(std::span<const std::byte> data) noexcept {
  const auto* const begin = reinterpret_cast<const unsigned char*>(data.data());
  const std::size_t size = data.size();
  constexpr auto largest = static_cast<std::uint64_t>(std::numeric_limits<std::ptrdiff_t>::max());
  // Skip the walk when no byte could be a BYTEARRAY8 opcode (the usual case).
  if (size == 0 || std::memchr(begin, 0x96, size) == nullptr) return std::nullopt;

  std::size_t at = 0;
  // True when the `n` bytes from `at` exist; then moves past them.
  auto take = [&](std::uint64_t n) noexcept {
    if (n > size - at) return false;
    at += static_cast<std::size_t>(n);
    return true;
  };
  auto take_line = [&]() noexcept {
    const void* nl = std::memchr(begin + at, '\n', size - at);
    if (nl == nullptr) return false;
    at = static_cast<std::size_t>(static_cast<const unsigned char*>(nl) - begin) + 1;
    return true;
  };

  while (at < size) {
    const std::size_t op_at = at;
    const layout op = table.at[begin[at++]];
    switch (op.kind) {
      case arg::invalid:
      case arg::stop:
        return std::nullopt;
      case arg::none:
        break;
      case arg::fixed:
        if (!take(op.size)) return std::nullopt;
        break;
      case arg::counted: {
        if (size - at < op.size) return std::nullopt;
        const std::uint64_t n = little_endian(begin + at, op.size);
        at += op.size;
        if (!take(n)) return std::nullopt;
        break;
      }
      case arg::signed4: {
        if (size - at < 4) return std::nullopt;
        const std::uint64_t n = little_endian(begin + at, 4);
        at += 4;
        if (n > 0x7fffffffu || !take(n)) return std::nullopt;
        break;
      }
      case arg::line:
        if (!take_line()) return std::nullopt;
        break;
      case arg::two_lines:
        if (!take_line() || !take_line()) return std::nullopt;
        break;
      case arg::frame: {
        if (size - at < 8) return std::nullopt;
        const std::uint64_t n = little_endian(begin + at, 8);
        at += 8;
        if (n > size - at) return std::nullopt;  // the frame itself raises
        break;
      }
      case arg::bytearray8: {
        if (size - at < 8) return std::nullopt;
        const std::uint64_t n = little_endian(begin + at, 8);
        at += 8;
        if (n > largest) return std::nullopt;  // OverflowError, no allocation
        if (n > size - at) return overrunning_bytearray{op_at, n};
        at += static_cast<std::size_t>(n);
        break;
      }
    }
  }
  return std::nullopt;
}

}  // namespace mphost::runtime::pickle
