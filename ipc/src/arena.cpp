#include "mphost/ipc/arena.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "mphost/ipc/error.hpp"

namespace mphost::ipc {

namespace {

std::byte* map_whole(int fd, std::size_t size) {
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) throw_errno("mmap");
  return static_cast<std::byte*>(base);
}

std::vector<arena::extent> as_extents(const std::map<std::size_t, std::size_t>& table) {
  std::vector<arena::extent> out;
  out.reserve(table.size());
  for (const auto& [start, stop] : table) out.push_back({start, stop});
  return out;
}

}  // namespace

arena arena::create(std::size_t size) {
  if (size == 0) throw_errno(EINVAL, "arena size");
  const int fd = ::memfd_create("mph-arena", MFD_CLOEXEC);
  if (fd < 0) throw_errno("memfd_create");
  std::byte* base = nullptr;
  try {
    // memfds are born 0777: owner-only like every shared object of the tree.
    if (::fchmod(fd, 0600) != 0) throw_errno("fchmod");
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) throw_errno("ftruncate");
    base = map_whole(fd, size);
  } catch (...) {
    ::close(fd);
    throw;
  }
  arena made(fd, base, size);
  made.free_.emplace(0, size);
  return made;
}

arena arena::adopt(int fd, std::size_t size) {
  try {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("fstat");
    // Mapping past the end of the file would turn the first touch into SIGBUS.
    if (size == 0 || static_cast<std::size_t>(st.st_size) < size) throw_errno(EINVAL, "arena size");
    return arena(fd, map_whole(fd, size), size);
  } catch (...) {
    ::close(fd);
    throw;
  }
}

arena::arena(arena&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      reached_(std::exchange(other.reached_, 0)),
      free_(std::move(other.free_)),
      used_(std::move(other.used_)) {
  other.free_.clear();
  other.used_.clear();
}

arena& arena::operator=(arena&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    reached_ = std::exchange(other.reached_, 0);
    free_ = std::move(other.free_);
    used_ = std::move(other.used_);
    other.free_.clear();
    other.used_.clear();
  }
  return *this;
}

arena::~arena() { reset(); }

void arena::reset() noexcept {
  if (base_ != nullptr) ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  base_ = nullptr;
  size_ = 0;
  reached_ = 0;
  free_.clear();
  used_.clear();
}

std::optional<arena::extent> arena::allocate(std::size_t bytes) {
  // Rounded up without overflow, even for sizes near SIZE_MAX.
  const std::size_t units = bytes == 0 ? 1 : bytes / alignment + (bytes % alignment != 0 ? 1 : 0);
  if (units > size_ / alignment) return std::nullopt;
  const std::size_t length = units * alignment;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    const auto [start, stop] = *it;
    if (stop - start < length) continue;
    free_.erase(it);
    if (stop - start > length) free_.emplace(start + length, stop);
    used_.emplace(start, start + length);
    // Clear what earlier blocks left behind; beyond `reached_` the file's
    // own zeros are still there, in pages not yet faulted in.
    const std::size_t dirty_end = std::min(start + length, reached_);
    if (dirty_end > start) std::memset(base_ + start, 0, dirty_end - start);
    reached_ = std::max(reached_, start + length);
    return extent{start, start + length};
  }
  return std::nullopt;
}

void arena::release(std::size_t start) {
  const auto block = used_.find(start);
  if (block == used_.end()) throw_errno(EINVAL, "arena release: not a block in use");
  std::size_t stop = block->second;
  used_.erase(block);
  // The free extent right after, if it touches, joins this one.
  auto after = free_.lower_bound(start);
  if (after != free_.end() && after->first == stop) {
    stop = after->second;
    after = free_.erase(after);
  }
  // This one joins the free extent right before, if that one touches.
  if (after != free_.begin()) {
    const auto before = std::prev(after);
    if (before->second == start) {
      before->second = stop;
      return;
    }
  }
  free_.emplace_hint(after, start, stop);
}

std::vector<arena::extent> arena::free_extents() const { return as_extents(free_); }

std::vector<arena::extent> arena::used_blocks() const { return as_extents(used_); }

}  // namespace mphost::ipc
