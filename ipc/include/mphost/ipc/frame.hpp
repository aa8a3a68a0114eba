#pragma once
// The frame: how one message sits in a channel's ring, and the commit
// protocol that keeps half-written messages out of readers' hands.
//
// A ring is a byte array whose capacity is a multiple of 16. A frame is a
// 16-byte header followed by its payload, padded to a multiple of 16, and
// never wraps around the end of the ring: a writer that would wrap first
// fills the rest of the ring with a padding frame, which readers skip.
//
// Commit protocol. A writer, holding the channel's write lock only for this,
// (1) writes a header in state `reserved` at the ring's tail, naming itself
// (its endpoint slot and the slot's generation), then (2) publishes the new
// tail and drops the lock. Outside the lock it (3) copies the payload and
// (4) stores state `committed` with release ordering. A reader that finds a
// `committed` header at the ring's head (loaded with acquire ordering) sees
// the whole payload. A reader that finds a `reserved` one waits for the
// commit, unless the writer's endpoint is gone or its process dead: then
// the frame can never complete, and the reader discards it and goes on. So
// a writer that dies between reserve and commit neither wedges the ring nor
// exposes a torn message, and every complete frame after it is delivered. A
// writer that gives up on a reservation (an exception while filling it)
// commits it as `abandoned`, which readers skip.
//
// Everything read from shared memory is validated (state and kind words,
// length against the ring's bounds and the readable span, alignment):
// inspect_frame() says no to anything that is not a frame a writer could
// have produced, and the channel reports errc::corrupt_frame instead of
// following bad offsets.

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mphost::ipc {

// Distinctive values, so that stray bytes are unlikely to look like a state.
enum class frame_state : std::uint32_t {
  reserved = 0x72657376,   // "resv"
  committed = 0x636d6974,  // "cmit"
};

enum class frame_kind : std::uint16_t {
  data = 1,       // the payload is the message
  block = 2,      // the payload is a block_ref to a large_block (large_block.hpp)
  padding = 3,    // fills the ring up to its end; no message
  abandoned = 4,  // a reservation its writer gave up; no message
};

struct frame_header {
  std::atomic<std::uint32_t> state;
  std::uint16_t kind;
  std::uint16_t flags;   // zero; reserved for later use
  std::uint32_t length;  // payload bytes following the header
  std::uint32_t writer;  // endpoint slot << 16 | slot generation (16 bits)
};

inline constexpr std::size_t frame_alignment = 16;
static_assert(sizeof(frame_header) == frame_alignment);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

// Bytes a frame with `payload` bytes occupies in a ring.
constexpr std::uint64_t frame_size(std::uint64_t payload) noexcept {
  return (sizeof(frame_header) + payload + (frame_alignment - 1)) & ~std::uint64_t{frame_alignment - 1};
}

constexpr std::uint32_t frame_writer(std::uint32_t slot, std::uint32_t generation) noexcept {
  return (slot << 16) | (generation & 0xffff);
}

// A validated copy of a header's fields.
struct frame_info {
  frame_state state;
  frame_kind kind;
  std::uint32_t length;
  std::uint32_t writer;
  std::uint64_t size;  // frame_size(length)
};

// Reads the header at `offset` of a ring of `capacity` bytes, of which
// `available` bytes from `offset` on are published (tail - head). Returns
// false when the bytes there cannot be a frame: a bad state or kind, a length
// that runs past the end of the ring or of the published span, a padding
// frame that does not end exactly at the end of the ring. The state is read
// with acquire ordering, so after a `committed` answer the payload is
// visible.
[[nodiscard]] bool inspect_frame(const std::byte* ring, std::uint64_t capacity, std::uint64_t offset,
                                 std::uint64_t available, frame_info& out) noexcept;

// Writer side, step (1): a header in state `reserved` at `offset`.
frame_header* begin_frame(std::byte* ring, std::uint64_t offset, frame_kind kind, std::uint32_t length,
                          std::uint32_t writer) noexcept;
// Step (4): publish the frame.
void commit_frame(frame_header* header) noexcept;
// Instead of step (4): give the reservation up; readers skip it.
void abandon_frame(frame_header* header) noexcept;
// A committed padding frame from `offset` to the end of the ring.
void write_padding(std::byte* ring, std::uint64_t capacity, std::uint64_t offset, std::uint32_t writer) noexcept;

}  // namespace mphost::ipc
