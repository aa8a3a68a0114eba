#pragma once
// An owner-only, named POSIX shared memory segment, mapped into this process.
//
// A segment is created with an unguessable name (a prefix and 96 random bits
// from getrandom(2)), mode 0600, and its whole size is allocated up front, so
// running out of /dev/shm is reported here as ENOSPC instead of killing a
// later writer with SIGBUS. (A creator may leave a tail of the segment
// unallocated, `allocate` < size, and allocate its pages later with
// populate(), which reports ENOSPC the same way.) Names are plain strings: another process opens
// the same memory by name (segment::open), which is how every shared object
// of the core crosses process boundaries. open() refuses a segment that
// belongs to another user.
//
// A segment object owns its mapping: destroying it unmaps, and never removes
// the name. Removing the name (unlink) is a separate, explicit act, usually
// done by the creator once every process that needs it has opened it or when
// the program ends; mappings stay valid after the name is gone.
//
// Failures throw std::system_error with the errno of the failing call
// (EEXIST, ENOENT, EACCES, ENOSPC, ...); no Boost type crosses this header.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace mphost::ipc {

class segment {
 public:
  static constexpr std::string_view default_prefix = "mphost-";

  // A fresh segment of `size` bytes (zero-filled) named `<prefix><24 hex>`.
  // Only its first `allocate` bytes are allocated now (all by default).
  static segment create(std::size_t size, std::string_view prefix = default_prefix, std::size_t allocate = ~std::size_t{0});
  // A fresh segment with exactly this name; EEXIST if it exists.
  static segment create_named(const std::string& name, std::size_t size, std::size_t allocate = ~std::size_t{0});
  // Maps the existing segment `name` whole.
  static segment open(const std::string& name);
  // Removes a name; returns false if it did not exist (or could not be removed).
  static bool remove(const std::string& name) noexcept;
  // `<prefix><24 hex>`: a name no one can guess.
  static std::string random_name(std::string_view prefix = default_prefix);

  segment() noexcept;
  segment(segment&&) noexcept;
  segment& operator=(segment&&) noexcept;
  segment(const segment&) = delete;
  segment& operator=(const segment&) = delete;
  ~segment();

  explicit operator bool() const noexcept { return base_ != nullptr; }
  const std::string& name() const noexcept { return name_; }
  std::size_t size() const noexcept { return size_; }
  void* base() const noexcept { return base_; }
  std::byte* data() const noexcept { return static_cast<std::byte*>(base_); }

  // Removes this segment's name (the mapping stays). Returns false if it was
  // already gone.
  bool unlink() noexcept { return remove(name_); }
  // Allocates the pages of [offset, offset + length) of the mapping (a tail
  // left unallocated by create): false if /dev/shm has no room for them.
  bool populate(std::size_t offset, std::size_t length) const noexcept;
  // Unmaps now; the object becomes empty.
  void reset() noexcept;

 private:
  struct mapping;
  segment(std::string name, std::unique_ptr<mapping> map) noexcept;

  std::string name_;
  std::unique_ptr<mapping> map_;
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace mphost::ipc
