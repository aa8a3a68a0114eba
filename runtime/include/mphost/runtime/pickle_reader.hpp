#pragma once
// pickle_reader: runs the unpickler's stack machine over the opcodes of
// pickle_opcodes.hpp and hands each value it forms to a builder, which makes
// its own objects (PyObject* in the embed layer, mphost::value in the C++
// API). No Python here.
//
// Contract. read() accepts PROTO 2..5, FRAME opcodes anywhere between
// opcodes (their length must fit the data), and the opcodes listed in
// pickle_opcodes.hpp; the pickle must end with STOP exactly at the end of the
// data, leaving one value on the stack and no open mark. Anything else
// (another opcode, a length past the end, a stack or mark out of place, a
// builder that refuses) makes it return false; what was built is dropped.
//
// The builder (any class with these members; `value` is its handle type,
// cheap to move, and a "null" handle means failure):
//   using value = ...;
//   bool ok(const value&);                   false for a null handle
//   value none(); value boolean(bool); value integer(std::int64_t);
//   value big_integer(std::span<const unsigned char>);  LONG1 over 8 bytes,
//                                            little-endian two's complement
//   value real(double); value text(std::string_view utf8);
//   value binary(std::span<const std::byte>);
//   value tuple(std::span<value> items);     takes the items over
//   value list(); value dict();
//   bool extend(value& list, std::span<value> items);      takes them over
//   bool set_items(value& dict, std::span<value> pairs);   key, value, ...
//   value global_of(const value& module, const value& name);  STACK_GLOBAL
//                                            (both stay the reader's)
//   value call(value& callable, value& args);  REDUCE; takes both over
//   value share(const value&);               a second handle (memo, GET)
//   void drop(value&);                       releases a handle not taken
// Items handed over (tuple, extend, set_items, call) belong to the builder
// from then on, whatever it returns.
//
// Threads: a reader is used by one thread at a time. Its stacks may be
// reused across reads (clear() empties them, dropping leftovers).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "mphost/runtime/pickle_opcodes.hpp"

namespace mphost::runtime::pickle {

template <class Builder>
class reader {
 public:
  using value = typename Builder::value;

  explicit reader(Builder& builder) noexcept : b_(builder) {}
  ~reader() { clear(); }
  reader(const reader&) = delete;
  reader& operator=(const reader&) = delete;

  // Reads the pickle in `data` into `out`; false if it cannot (see Contract).
  bool read(std::span<const std::byte> data, value& out) {
    at_ = reinterpret_cast<const unsigned char*>(data.data());
    end_ = at_ + data.size();
    const bool done = run(out);
    clear();
    return done;
  }

  void clear() {
    for (value& v : stack_) b_.drop(v);
    for (value& v : memo_) b_.drop(v);
    stack_.clear();
    memo_.clear();
    marks_.clear();
  }

 private:
  bool run(value& out) {
    if (left() < 2 || at_[0] != static_cast<unsigned char>(op_proto) || at_[1] < 2 || at_[1] > 5) return false;
    at_ += 2;
    while (at_ < end_) {
      const char c = static_cast<char>(*at_++);
      if (c == op_stop) {
        if (at_ != end_ || stack_.size() != 1 || !marks_.empty()) return false;
        out = std::move(stack_.back());
        stack_.pop_back();
        return true;
      }
      if (!step(c)) return false;
    }
    return false;
  }

  std::size_t left() const noexcept { return static_cast<std::size_t>(end_ - at_); }
  static std::uint64_t le(const unsigned char* p, int n) noexcept {
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  // Consumes an n-byte little-endian field.
  bool field(int n, std::uint64_t& v) noexcept {
    if (left() < static_cast<std::size_t>(n)) return false;
    v = le(at_, n);
    at_ += n;
    return true;
  }
  // Consumes a length field of `width` bytes and that many bytes after it.
  bool counted(int width, std::span<const unsigned char>& bytes) noexcept {
    std::uint64_t n = 0;
    if (!field(width, n) || n > left()) return false;
    bytes = {at_, static_cast<std::size_t>(n)};
    at_ += n;
    return true;
  }
  bool push(value v) {
    if (!b_.ok(v)) return false;
    stack_.push_back(std::move(v));
    return true;
  }
  // First stack index above the innermost mark.
  std::size_t floor() const noexcept { return marks_.empty() ? 0 : marks_.back(); }
  bool take_mark(std::size_t& from) {
    if (marks_.empty()) return false;
    from = marks_.back();
    marks_.pop_back();
    return true;
  }
  void drop_above(std::size_t from) {
    for (std::size_t i = from; i < stack_.size(); ++i) b_.drop(stack_[i]);
    stack_.resize(from);
  }
  // Replaces stack_[from..] by the tuple of those items.
  bool fold_tuple(std::size_t from) {
    value t = b_.tuple(std::span<value>(stack_.data() + from, stack_.size() - from));
    stack_.resize(from);
    return push(std::move(t));
  }
  // Moves stack_[from..] into the container just below them.
  bool fill(std::size_t from, bool pairs) {
    if (from == 0 || from <= floor()) return false;
    std::span<value> items(stack_.data() + from, stack_.size() - from);
    if (pairs && items.size() % 2 != 0) return false;
    const bool done = pairs ? b_.set_items(stack_[from - 1], items) : b_.extend(stack_[from - 1], items);
    stack_.resize(from);
    return done;
  }
  std::string_view chars(std::span<const unsigned char> s) const noexcept {
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }

  bool step(char c) {
    std::uint64_t n = 0;
    std::size_t from = 0;
    std::span<const unsigned char> bytes;
    switch (c) {
      case op_frame: return field(8, n) && n <= left();
      case op_none: return push(b_.none());
      case op_true: return push(b_.boolean(true));
      case op_false: return push(b_.boolean(false));
      case op_binint1: return field(1, n) && push(b_.integer(static_cast<std::int64_t>(n)));
      case op_binint2: return field(2, n) && push(b_.integer(static_cast<std::int64_t>(n)));
      case op_binint:
        return field(4, n) && push(b_.integer(static_cast<std::int32_t>(static_cast<std::uint32_t>(n))));
      case op_long1: {
        if (!counted(1, bytes)) return false;
        if (bytes.size() > 8) return push(b_.big_integer(bytes));
        std::uint64_t u = bytes.empty() ? 0 : le(bytes.data(), static_cast<int>(bytes.size()));
        if (!bytes.empty() && bytes.size() < 8 && (bytes.back() & 0x80) != 0) u |= ~std::uint64_t{0} << (8 * bytes.size());
        return push(b_.integer(static_cast<std::int64_t>(u)));
      }
      case op_binfloat: {
        if (left() < 8) return false;
        std::uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | at_[i];
        at_ += 8;
        double d;
        std::memcpy(&d, &bits, sizeof d);
        return push(b_.real(d));
      }
      case op_short_binunicode: return counted(1, bytes) && push(b_.text(chars(bytes)));
      case op_binunicode: return counted(4, bytes) && push(b_.text(chars(bytes)));
      case op_binunicode8: return counted(8, bytes) && push(b_.text(chars(bytes)));
      case op_short_binbytes: return counted(1, bytes) && push(b_.binary(std::as_bytes(bytes)));
      case op_binbytes: return counted(4, bytes) && push(b_.binary(std::as_bytes(bytes)));
      case op_binbytes8: return counted(8, bytes) && push(b_.binary(std::as_bytes(bytes)));
      case op_empty_tuple: return fold_tuple(stack_.size());
      case op_tuple1:
      case op_tuple2:
      case op_tuple3: {
        const std::size_t k = static_cast<std::size_t>(static_cast<unsigned char>(c) - 0x84);
        if (stack_.size() < k + floor()) return false;
        return fold_tuple(stack_.size() - k);
      }
      case op_mark:
        marks_.push_back(stack_.size());
        return true;
      case op_tuple: return take_mark(from) && fold_tuple(from);
      case op_pop:
        if (stack_.size() <= floor()) return false;
        drop_above(stack_.size() - 1);
        return true;
      case op_pop_mark:
        if (!take_mark(from)) return false;
        drop_above(from);
        return true;
      case op_empty_list: return push(b_.list());
      case op_empty_dict: return push(b_.dict());
      case op_append: return stack_.size() >= 2 && fill(stack_.size() - 1, false);
      case op_appends: return take_mark(from) && fill(from, false);
      case op_setitem: return stack_.size() >= 3 && fill(stack_.size() - 2, true);
      case op_setitems: return take_mark(from) && fill(from, true);
      case op_memoize:
        if (stack_.empty()) return false;
        memo_.push_back(b_.share(stack_.back()));
        return true;
      case op_binget:
      case op_long_binget:
        if (!field(c == op_binget ? 1 : 4, n) || n >= memo_.size()) return false;
        return push(b_.share(memo_[static_cast<std::size_t>(n)]));
      case op_stack_global: {
        if (stack_.size() < 2 + floor()) return false;
        value g = b_.global_of(stack_[stack_.size() - 2], stack_.back());
        drop_above(stack_.size() - 2);
        return push(std::move(g));
      }
      case op_reduce: {
        if (stack_.size() < 2 + floor()) return false;
        value r = b_.call(stack_[stack_.size() - 2], stack_.back());
        stack_.resize(stack_.size() - 2);
        return push(std::move(r));
      }
      default: return false;
    }
  }

  Builder& b_;
  const unsigned char* at_ = nullptr;
  const unsigned char* end_ = nullptr;
  std::vector<value> stack_;
  std::vector<std::size_t> marks_;
  std::vector<value> memo_;
};

}  // namespace mphost::runtime::pickle
