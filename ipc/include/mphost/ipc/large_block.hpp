#pragma once
// A large_block carries one big message beside a channel's ring instead of
// through it.
//
// A sender that has a message above the channel's threshold takes a block
// (a segment of its own, named after the channel so that removing the
// channel also finds stray blocks), writes the payload into it once, and
// puts only a small block_ref (name and size) in the ring. The receiver
// maps the block and reads the payload in place: the channel never copies
// it (a binding can expose it as a memoryview), and a sender can fill the
// block directly (channel::make_block, channel::send_block), e.g. with a
// pickle protocol 5 out-of-band buffer.
//
// Blocks of a channel are recycled: when the received message lets go of
// its block, the block returns to a small pool in the channel, and the next
// large send takes it from there. Each process keeps its recent blocks
// mapped, so a steady stream of large messages costs no system call and no
// page fault per message. Blocks too large for the pool are removed after
// use. A block made with create() and received with adopt() stands alone:
// adopt() removes its name, and it is unmapped when dropped.
//
// A block is move-only; dropping it unmaps it (or gives it back to its
// channel's pool). The sender's side never frees a block after a send: the
// receiver does.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "mphost/ipc/segment.hpp"

namespace mphost::ipc {

// What the ring carries for a block: fixed size, validated on receipt.
struct block_ref {
  static constexpr std::size_t max_name = 111;
  std::uint64_t size;          // payload bytes
  std::uint32_t name_length;   // bytes of name used
  std::uint32_t check;         // size and name_length folded; catches stray bytes
  char name[max_name + 1];     // not NUL-terminated in the ring
};
static_assert(sizeof(block_ref) == 128);

namespace detail {

// Where a recycled block goes when its holder lets go of it.
class block_recycler {
 public:
  virtual ~block_recycler() = default;
  virtual void give_back(const std::shared_ptr<segment>& block) noexcept = 0;
};

// Fills a ref for `name` and `size`.
block_ref make_block_ref(const std::string& name, std::uint64_t size) noexcept;
// Checks a ref (possibly read from shared memory; it is copied first) and
// that its name starts with `prefix`; on success sets `name` and `size`.
bool parse_block_ref(const block_ref& ref, std::string_view prefix, std::string& name, std::uint64_t& size);

struct block_access;

}  // namespace detail

class large_block {
 public:
  // A fresh block of `size` bytes (> 0) named `<prefix><random>`.
  static large_block create(std::string_view prefix, std::size_t size);
  // Maps the block a ref names and removes its name. `prefix` is what every
  // legitimate block name of this channel starts with; a ref that names
  // anything else, or a block smaller than the ref says, throws
  // errc::corrupt_frame.
  static large_block adopt(const block_ref& ref, std::string_view prefix);

  large_block() noexcept = default;
  ~large_block();
  large_block(large_block&& other) noexcept;
  large_block& operator=(large_block&& other) noexcept;
  large_block(const large_block&) = delete;
  large_block& operator=(const large_block&) = delete;

  explicit operator bool() const noexcept { return static_cast<bool>(segment_); }
  const std::string& name() const noexcept;
  std::size_t size() const noexcept { return size_; }
  std::span<std::byte> bytes() noexcept { return {segment_ ? segment_->data() : nullptr, size_}; }
  std::span<const std::byte> bytes() const noexcept { return {segment_ ? segment_->data() : nullptr, size_}; }

  // The ref to put in a ring for this block.
  block_ref ref() const noexcept;
  // Removes the block's name (the mapping stays); it will not be recycled.
  bool unlink() noexcept;
  // Lets go of the block: back to its pool, or unmapped.
  void reset() noexcept;

 private:
  friend struct detail::block_access;
  large_block(std::shared_ptr<segment> seg, std::size_t size, std::shared_ptr<detail::block_recycler> pool) noexcept
      : segment_(std::move(seg)), size_(size), pool_(std::move(pool)) {}

  std::shared_ptr<segment> segment_;
  std::size_t size_ = 0;
  std::shared_ptr<detail::block_recycler> pool_;
};

}  // namespace mphost::ipc
