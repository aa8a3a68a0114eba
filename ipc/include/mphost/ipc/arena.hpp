#pragma once
// An arena: anonymous shared memory carved into blocks, the storage of
// Value, Array and the other sharedctypes objects (the shim's heap).
//
// Memory. An arena is a memfd of a fixed size, mode 0600, mapped whole and
// shared. It never has a name: nothing of it can be left in /dev/shm however
// the processes end (SIGKILL included), and the kernel frees it when its last
// descriptor and its last mapping are gone. Other processes reach it only
// through its descriptor: a fork child inherits the mapping; another process
// receives a duplicate of fd() (SCM_RIGHTS, or inheritance at start) and maps
// it with adopt(). Writes through any mapping are seen by all at once; the
// arena adds no ordering of its own (the objects in it carry their locks).
//
// Blocks. The process that created an arena carves it: allocate(n) gives a
// block of n bytes rounded up to `alignment` (at least one unit), release()
// gives it back. The policy is address-ordered first fit: the lowest free
// extent that is large enough is cut from its low end, so blocks pack at the
// start and one large tail stays free; a released block merges at once with
// the free extents on both sides, so no two free extents ever touch. Every
// byte of the arena is in exactly one free extent or one block in use.
// Running out of room is an expected outcome (allocate returns nullopt: the
// caller starts another arena), not an error.
//
// Every block comes zero-filled. Bytes that no block ever covered are still
// the file's fresh zeros and are left untouched (the arena remembers how far
// blocks have reached), so a large block costs no page until it is used;
// only bytes that an earlier block covered are cleared, at allocation (not
// at release: a child may still be reading a block its parent let go of).
//
// The bookkeeping lives in the creating process's own memory, not in the
// arena: an adopted arena has no free space and no blocks of its own (it
// belongs to its creator), and a fork child's copy of its parent's arenas
// must not be carved (the shim starts a fresh heap there). An arena is not
// thread-safe: its owner (the heap) serializes calls.
//
// Lifetime: move-only; destroying it unmaps and closes its descriptor.
// Failures (memfd_create, ftruncate, mmap, a descriptor smaller than the size
// asked for, releasing what is not a block in use) throw std::system_error
// with the errno of the failing call (EINVAL for misuse).

#include <cstddef>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace mphost::ipc {

class arena {
 public:
  // Every block starts and ends at a multiple of this (enough for any
  // ctypes type, long double included).
  static constexpr std::size_t alignment = 16;

  // [start, stop) offsets inside the arena.
  struct extent {
    std::size_t start = 0;
    std::size_t stop = 0;
    friend bool operator==(const extent&, const extent&) = default;
  };

  // A fresh, zero-filled arena of `size` bytes (> 0), all of it free.
  static arena create(std::size_t size);
  // Maps the arena whose descriptor is `fd` (taken over: closed with the
  // arena), `size` bytes of it. Nothing of it is free here.
  static arena adopt(int fd, std::size_t size);

  arena() noexcept = default;
  arena(arena&& other) noexcept;
  arena& operator=(arena&& other) noexcept;
  arena(const arena&) = delete;
  arena& operator=(const arena&) = delete;
  ~arena();

  explicit operator bool() const noexcept { return base_ != nullptr; }
  int fd() const noexcept { return fd_; }
  std::size_t size() const noexcept { return size_; }
  std::byte* data() const noexcept { return base_; }

  // A zero-filled block of at least `bytes` bytes (rounded up to
  // `alignment`; 0 counts as 1), or nullopt when no free extent is large
  // enough.
  std::optional<extent> allocate(std::size_t bytes);
  // Gives back the block in use that starts at `start`; EINVAL if none does.
  void release(std::size_t start);

  // Free extents and blocks in use, in address order.
  std::vector<extent> free_extents() const;
  std::vector<extent> used_blocks() const;
  std::size_t blocks_in_use() const noexcept { return used_.size(); }

 private:
  arena(int fd, std::byte* base, std::size_t size) noexcept : fd_(fd), base_(base), size_(size) {}
  void reset() noexcept;

  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t reached_ = 0;  // no block has ever covered a byte at or past this
  std::map<std::size_t, std::size_t> free_;  // start -> stop
  std::map<std::size_t, std::size_t> used_;  // start -> stop
};

}  // namespace mphost::ipc
