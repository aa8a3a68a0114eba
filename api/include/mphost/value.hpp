#pragma once
// mphost::value: the arguments and results of calls into Python workers.
//
// A value is one of
//   None, bool, int (int64), float (double), str (UTF-8 std::string),
//   bytes, list, tuple, dict with str keys, a shared array (shared_block),
//   or opaque pickled bytes: any other Python object, kept as its pickle.
// It converts to the Python object of the same kind in the worker (the
// arguments are written as pickle protocol 4, which the worker loads with
// the standard unpickler) and back (results are read from the worker's
// pickle). A result that holds anything else anywhere (a set, a numpy
// array, an instance) arrives as one opaque value of kind `pickled`, which
// can be passed back to a worker unchanged. A Python int beyond int64 in a
// result is an error (conversion_error, "Python int too large to convert
// to int64"); a dict with a key that is not a str arrives as `pickled`.
//
// Values are regular: copyable (deep copies, except shared blocks, which
// are shared), comparable with ==, cheap to move. The accessors (as_int(),
// as_list() ...) throw conversion_error when the value is of another kind;
// as_double() also takes an int.
#include <compare>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mphost/shared_array.hpp"

namespace mphost {

class value;

// Python bytes.
struct bytes {
  std::string data;
  friend bool operator==(const bytes&, const bytes&) = default;
};
// Any other Python object: its pickle (protocol 4).
struct pickled {
  std::string data;
  friend bool operator==(const pickled&, const pickled&) = default;
};
using list = std::vector<value>;
using dict = std::map<std::string, value>;
// A Python tuple.
struct tuple {
  std::vector<value> items;
  tuple() = default;
  explicit tuple(std::vector<value> v) : items(std::move(v)) {}
  tuple(std::initializer_list<value> v);
  friend bool operator==(const tuple&, const tuple&);
};

class value {
 public:
  enum class kind { none, boolean, integer, real, string, bytes, list, tuple, dict, array, pickled };

  value() noexcept = default;
  value(std::nullptr_t) noexcept {}
  value(bool v) noexcept : v_(v) {}
  template <std::integral I>
    requires(!std::same_as<I, bool> && !std::same_as<I, char>)
  value(I v) : v_(checked_int(v)) {}
  value(double v) noexcept : v_(v) {}
  value(float v) noexcept : v_(static_cast<double>(v)) {}
  value(const char* s) : v_(std::string(s)) {}
  value(std::string s) noexcept : v_(std::move(s)) {}
  value(std::string_view s) : v_(std::string(s)) {}
  value(mphost::bytes b) noexcept : v_(std::move(b)) {}
  value(mphost::list l) noexcept : v_(std::move(l)) {}
  value(mphost::tuple t) noexcept : v_(std::move(t)) {}
  value(mphost::dict d) noexcept : v_(std::move(d)) {}
  value(mphost::pickled p) noexcept : v_(std::move(p)) {}
  value(shared_block b) noexcept : v_(std::move(b)) {}
  template <class T>
  value(const shared_array<T>& a) : v_(a.block()) {}

  kind type() const noexcept { return static_cast<kind>(v_.index()); }
  // The Python type's name of this kind ("NoneType", "int", "list" ...).
  const char* type_name() const noexcept;
  bool is_none() const noexcept { return type() == kind::none; }

  bool as_bool() const;
  std::int64_t as_int() const;
  double as_double() const;
  const std::string& as_string() const;
  const std::string& as_bytes() const;
  const mphost::list& as_list() const;
  const std::vector<value>& as_tuple() const;
  const mphost::dict& as_dict() const;
  const std::string& as_pickled() const;
  const shared_block& as_block() const;
  template <class T>
  shared_array<T> as_array() const {
    return shared_array<T>(as_block());
  }
  // Items of a list or a tuple, entries of a dict.
  std::size_t size() const;
  const value& operator[](std::size_t i) const;
  const value& operator[](const std::string& key) const;

  friend bool operator==(const value& a, const value& b);

  // Internal: the alternatives.
  using storage = std::variant<std::monostate, bool, std::int64_t, double, std::string, mphost::bytes,
                               mphost::list, mphost::tuple, mphost::dict, shared_block, mphost::pickled>;
  const storage& raw() const noexcept { return v_; }

 private:
  template <class I>
  static std::int64_t checked_int(I v) {
    if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t)) {
      if (v > static_cast<std::uint64_t>(INT64_MAX)) throw std::out_of_range("mphost::value: integer beyond int64");
    }
    return static_cast<std::int64_t>(v);
  }
  storage v_;
};

// Writes `v` as pickle protocol 4 (what pickle.dumps(v, 4) would give for
// the Python object). Exposed for tests and tools.
std::string to_pickle(const value& v);
// Reads a pickle into a value (see the class comment for what becomes
// `pickled`). Throws conversion_error for an int beyond int64.
value from_pickle(std::string_view data);

}  // namespace mphost
