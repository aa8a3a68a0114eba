#pragma once
// shared_array<T>: a typed block of shared memory that crosses into a worker
// without being copied.
//
// The application creates one (shared_array<double>(n)), fills it, and
// passes it as an argument of a call; the Python callable receives a
// memoryview of format T and n items over the same memory (numpy.asarray
// gives an array of T's dtype and shape (n,), no copy). Writes on either
// side are seen by the other (the call's completion orders them: what the
// worker wrote before returning is visible once the future is ready). A
// callable may also return a block made with mphost.shared_array(format, n)
// in Python, or a memoryview or numpy array over one: the application gets
// it as a shared_block (value::as_array<T>() checks the type).
//
// Shape. An array made with one (shared_array<double>({rows, cols})) holds
// the product of its extents in C order (the last index varies fastest) and
// reaches Python with that shape (memoryview.shape, numpy.asarray(a).shape);
// one with no items is seen with shape (0,), as memoryview has no empty N-D
// form. A C-contiguous result over a whole block (mphost.shared_array(format,
// shape) in Python, a reshaped numpy view of one) comes back with its shape.
//
// T is one of: double, float, std::int8_t .. std::int64_t, std::uint8_t ..
// std::uint64_t (the struct module's formats d f b h i q B H I Q).
//
// Lifetime. Copies share the block (shared ownership). The block's name in
// /dev/shm exists while the application holds a copy, so that a call in
// flight can map it; it is removed when the last copy goes (the mappings in
// workers stay valid after that), when the application ends, or, for an
// application that was killed, by the next mphost program to start. A block
// a worker created is the application's once it is received; one a worker
// made but never handed over is removed when that worker ends or dies.
//
// Thread-safety: a block may be read and written by several threads as any
// memory; the handle itself is as thread-safe as a std::shared_ptr.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace mphost {

namespace detail {
struct shared_block_state;
template <class T>
constexpr char format_of() {
  if constexpr (std::is_same_v<T, double>) return 'd';
  else if constexpr (std::is_same_v<T, float>) return 'f';
  else if constexpr (std::is_same_v<T, std::int8_t>) return 'b';
  else if constexpr (std::is_same_v<T, std::int16_t>) return 'h';
  else if constexpr (std::is_same_v<T, std::int32_t>) return 'i';
  else if constexpr (std::is_same_v<T, std::int64_t>) return 'q';
  else if constexpr (std::is_same_v<T, std::uint8_t>) return 'B';
  else if constexpr (std::is_same_v<T, std::uint16_t>) return 'H';
  else if constexpr (std::is_same_v<T, std::uint32_t>) return 'I';
  else if constexpr (std::is_same_v<T, std::uint64_t>) return 'Q';
  else static_assert(sizeof(T) == 0, "shared_array: unsupported element type");
}
}  // namespace detail

// An untyped block: its element format (a struct-module character), its
// item count, and its bytes.
class shared_block {
 public:
  shared_block() noexcept = default;
  // A new zero-filled block of `count` items of `format`. Throws
  // std::system_error when /dev/shm has no room, std::invalid_argument for
  // an unknown format.
  shared_block(char format, std::size_t count);
  // The same with a shape: the product of its extents is the count (an
  // empty shape is one item, a scalar). std::invalid_argument beyond 64
  // dimensions.
  shared_block(char format, std::vector<std::size_t> shape);

  explicit operator bool() const noexcept { return static_cast<bool>(state_); }
  char format() const noexcept;
  std::size_t count() const noexcept;
  // The extents, outermost first ({count} for a block made without one).
  const std::vector<std::size_t>& shape() const noexcept;
  std::size_t item_size() const noexcept;
  std::size_t size_bytes() const noexcept { return count() * item_size(); }
  std::byte* data() const noexcept;
  // The segment's name (for diagnostics and tests).
  const std::string& name() const noexcept;

  // The same block (not the same contents).
  friend bool operator==(const shared_block& a, const shared_block& b) noexcept { return a.state_ == b.state_; }

  // Internal: adopts a block another process created (received in a reply).
  // An empty `shape` means {count}; otherwise its product must be count.
  static shared_block adopt(const std::string& name, char format, std::size_t count,
                            std::vector<std::size_t> shape = {});

 private:
  std::shared_ptr<detail::shared_block_state> state_;
};

template <class T>
class shared_array {
 public:
  static constexpr char format = detail::format_of<T>();

  shared_array() noexcept = default;
  explicit shared_array(std::size_t count) : block_(format, count) {}
  // shared_array<float>({2, 3, 4}): 24 items seen as that shape, C order.
  explicit shared_array(std::vector<std::size_t> shape) : block_(format, std::move(shape)) {}
  explicit shared_array(std::initializer_list<std::size_t> shape) : block_(format, std::vector<std::size_t>(shape)) {}
  // A typed view of `block`; std::invalid_argument if its format is not T's.
  explicit shared_array(shared_block block) : block_(std::move(block)) {
    if (block_ && block_.format() != format) throw std::invalid_argument("shared_array: block holds another type");
  }

  explicit operator bool() const noexcept { return static_cast<bool>(block_); }
  std::size_t size() const noexcept { return block_ ? block_.count() : 0; }
  const std::vector<std::size_t>& shape() const noexcept { return block_.shape(); }
  T* data() const noexcept { return reinterpret_cast<T*>(block_.data()); }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + size(); }
  T& operator[](std::size_t i) const noexcept { return data()[i]; }
  std::span<T> span() const noexcept { return {data(), size()}; }
  const shared_block& block() const noexcept { return block_; }

 private:
  shared_block block_;
};

}  // namespace mphost
