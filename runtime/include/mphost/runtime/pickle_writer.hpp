#pragma once
// pickle_writer: emits pickle protocol 4 opcode by opcode into a string, for
// callers that walk their own values (the embed layer's PyObject graphs, the
// C++ API's mphost::value). No Python here.
//
// Contract. start() clears the output and leaves room for the header;
// the caller then emits one complete value with the methods below, in the
// order the unpickler's stack machine expects them; finish() appends STOP
// and writes PROTO 4 and, when the body is between 4 bytes and max_frame
// bytes, one FRAME around it, exactly where the C pickler puts them. A body
// larger than max_frame is written without FRAME opcodes, which every
// unpickler loads the same way (framing is only a read-ahead hint).
//
// Byte identity. Each method makes the C pickler's choice for its value:
// integer() picks BININT1, BININT2, BININT or the shortest LONG1 as
// save_long does; text() and binary() pick the short form up to 255 bytes
// and the 4-byte length form above (8-byte beyond 4 GiB); tuple() uses
// TUPLE1..3 or MARK..TUPLE. Memo, batching of APPENDS/SETITEMS and the
// handling of a container met twice are the walker's decisions (the C
// pickler memoizes str, bytes and containers, batches by 1000).
//
// Threads: a writer is used by one thread at a time; it holds only a
// reference to the output string.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "mphost/runtime/pickle_opcodes.hpp"

namespace mphost::runtime::pickle {

// Items per APPENDS / SETITEMS batch, as the C pickler.
inline constexpr std::size_t batch_size = 1000;
// Largest body that finish() puts in one FRAME (the C pickler starts a new
// frame at 64 KiB; staying below keeps the output one frame like its own).
inline constexpr std::size_t max_frame = 60 * 1024;

class writer {
 public:
  explicit writer(std::string& out) noexcept : out_(out) {}

  void start() {
    out_.clear();
    out_.append(header_size, '\0');
  }
  // Bytes of body written since start().
  std::size_t body_size() const noexcept { return out_.size() - header_size; }

  // Appends STOP and fixes the header (see Contract).
  void finish() {
    out_.push_back(op_stop);
    const std::size_t body = body_size();
    out_[0] = op_proto;
    out_[1] = static_cast<char>(protocol);
    if (body >= frame_size_min && body <= max_frame) {
      out_[2] = op_frame;
      store_le(&out_[3], body, 8);
    } else {
      // No FRAME: slide the body over the 9 bytes kept for it.
      std::memmove(out_.data() + 2, out_.data() + header_size, body);
      out_.resize(2 + body);
    }
  }

  void none() { out_.push_back(op_none); }
  void boolean(bool v) { out_.push_back(v ? op_true : op_false); }

  void integer(std::int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
      const auto u = static_cast<std::uint32_t>(v);
      if ((u >> 16) != 0) {
        out_.push_back(op_binint);
        put_le(u, 4);
      } else if ((u >> 8) != 0) {
        out_.push_back(op_binint2);
        put_le(u, 2);
      } else {
        out_.push_back(op_binint1);
        out_.push_back(static_cast<char>(u));
      }
      return;
    }
    // LONG1 with the shortest two's complement, as encode_long: one byte
    // more than the magnitude's bits need, less a redundant 0xff.
    const std::uint64_t magnitude = v < 0 ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    std::size_t n = (static_cast<std::size_t>(std::bit_width(magnitude)) >> 3) + 1;
    unsigned char b[9];
    const auto u = static_cast<std::uint64_t>(v);
    for (std::size_t i = 0; i < 9; ++i) b[i] = i < 8 ? static_cast<unsigned char>(u >> (8 * i)) : (v < 0 ? 0xff : 0);
    if (v < 0 && n > 1 && b[n - 1] == 0xff && (b[n - 2] & 0x80) != 0) --n;
    long1({b, n});
  }
  // LONG1 of a little-endian two's complement already at its shortest
  // (at most 255 bytes).
  void long1(std::span<const unsigned char> twos_complement) {
    out_.push_back(op_long1);
    out_.push_back(static_cast<char>(twos_complement.size()));
    out_.append(reinterpret_cast<const char*>(twos_complement.data()), twos_complement.size());
  }

  void real(double v) {
    // BINFLOAT is the IEEE 754 double, big-endian.
    const auto bits = std::bit_cast<std::uint64_t>(v);
    out_.push_back(op_binfloat);
    for (int i = 7; i >= 0; --i) out_.push_back(static_cast<char>(bits >> (8 * i)));
  }

  void text(std::string_view utf8) { sized(utf8, op_short_binunicode, op_binunicode, op_binunicode8); }
  void binary(std::string_view data) { sized(data, op_short_binbytes, op_binbytes, op_binbytes8); }

  void mark() { out_.push_back(op_mark); }
  void empty_tuple() { out_.push_back(op_empty_tuple); }
  // Closes a tuple of `n` items: TUPLE1..3 for 1..3 (no mark before them),
  // TUPLE for more (the caller wrote mark() before the items).
  void tuple(std::size_t n) {
    static constexpr char small[] = {op_empty_tuple, op_tuple1, op_tuple2, op_tuple3};
    out_.push_back(n <= 3 ? small[n] : op_tuple);
  }
  void pop(std::size_t n = 1) { out_.append(n, op_pop); }
  void pop_mark() { out_.push_back(op_pop_mark); }
  void empty_list() { out_.push_back(op_empty_list); }
  void append() { out_.push_back(op_append); }
  void appends() { out_.push_back(op_appends); }
  void empty_dict() { out_.push_back(op_empty_dict); }
  void setitem() { out_.push_back(op_setitem); }
  void setitems() { out_.push_back(op_setitems); }
  void memoize() { out_.push_back(op_memoize); }
  void get(std::uint32_t index) {
    if (index < 256) {
      out_.push_back(op_binget);
      out_.push_back(static_cast<char>(index));
    } else {
      out_.push_back(op_long_binget);
      put_le(index, 4);
    }
  }
  // module.qualname, pushed as a callable (STACK_GLOBAL of two strings).
  void global(std::string_view module, std::string_view qualname) {
    text(module);
    text(qualname);
    out_.push_back(op_stack_global);
  }
  // Calls the callable below the arguments tuple on the stack.
  void reduce() { out_.push_back(op_reduce); }

 private:
  static constexpr std::size_t header_size = 2 + 9;  // PROTO 4, FRAME <8 bytes>
  static constexpr std::size_t frame_size_min = 4;

  static void store_le(char* p, std::uint64_t v, int n) noexcept {
    for (int i = 0; i < n; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
  void put_le(std::uint64_t v, int n) {
    char b[8];
    store_le(b, v, n);
    out_.append(b, static_cast<std::size_t>(n));
  }
  void sized(std::string_view data, char short_op, char op4, char op8) {
    if (data.size() <= 0xff) {
      out_.push_back(short_op);
      out_.push_back(static_cast<char>(data.size()));
    } else if (data.size() <= 0xffffffffu) {
      out_.push_back(op4);
      put_le(data.size(), 4);
    } else {
      out_.push_back(op8);
      put_le(data.size(), 8);
    }
    out_.append(data);
  }
  std::string& out_;
};

}  // namespace mphost::runtime::pickle
