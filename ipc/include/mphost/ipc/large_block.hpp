#pragma once
// A large_block carries one big message beside a channel's ring instead of
// through it.
//
// A sender that has a message above the channel's threshold creates a block
// (a segment of its own, named after the channel so that removing the
// channel also finds blocks never delivered), writes the payload into it
// once, and puts only a small block_ref (name and size) in the ring. The
// receiver adopts the block: it maps it and removes its name at once, so
// the block belongs to the received message alone and disappears when that
// message is dropped. The payload is never copied by the channel: the
// receiver reads it straight from the mapping (a binding can expose it as a
// memoryview), and a sender can fill the block directly (channel::make_block,
// channel::send_block), e.g. with a pickle protocol 5 out-of-band buffer.
//
// A block is move-only; destroying it unmaps it. The sender's side never
// removes the name after a send: the receiver does.

#include <cstddef>
#include <cstdint>
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
  large_block(large_block&&) noexcept = default;
  large_block& operator=(large_block&&) noexcept = default;
  large_block(const large_block&) = delete;
  large_block& operator=(const large_block&) = delete;

  explicit operator bool() const noexcept { return static_cast<bool>(segment_); }
  const std::string& name() const noexcept { return segment_.name(); }
  std::size_t size() const noexcept { return size_; }
  std::span<std::byte> bytes() noexcept { return {segment_.data(), size_}; }
  std::span<const std::byte> bytes() const noexcept { return {segment_.data(), size_}; }

  // The ref to put in a ring for this block.
  block_ref ref() const noexcept;
  // Removes the block's name (the mapping stays).
  bool unlink() noexcept { return segment_.unlink(); }
  void reset() noexcept {
    segment_.reset();
    size_ = 0;
  }

 private:
  large_block(segment seg, std::size_t size) noexcept : segment_(std::move(seg)), size_(size) {}

  segment segment_;
  std::size_t size_ = 0;
};

}  // namespace mphost::ipc
