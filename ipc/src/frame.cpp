#include "mphost/ipc/frame.hpp"

#include <new>

namespace mphost::ipc {

bool inspect_frame(const std::byte* ring, std::uint64_t capacity, std::uint64_t offset, std::uint64_t available,
                   frame_info& out) noexcept {
  if (offset % frame_alignment != 0 || offset >= capacity) return false;
  if (capacity - offset < sizeof(frame_header) || available < sizeof(frame_header)) return false;
  const auto* h = reinterpret_cast<const frame_header*>(ring + offset);
  const std::uint32_t state = h->state.load(std::memory_order_acquire);
  if (state != static_cast<std::uint32_t>(frame_state::reserved) &&
      state != static_cast<std::uint32_t>(frame_state::committed)) {
    return false;
  }
  // Plain fields are read once each into locals: a concurrent (or corrupt)
  // change cannot make the checks and the use disagree.
  const std::uint16_t kind = *reinterpret_cast<const volatile std::uint16_t*>(&h->kind);
  const std::uint32_t length = *reinterpret_cast<const volatile std::uint32_t*>(&h->length);
  const std::uint32_t writer = *reinterpret_cast<const volatile std::uint32_t*>(&h->writer);
  if (kind < static_cast<std::uint16_t>(frame_kind::data) || kind > static_cast<std::uint16_t>(frame_kind::abandoned)) {
    return false;
  }
  const std::uint64_t size = frame_size(length);
  if (size > capacity - offset || size > available) return false;
  if (kind == static_cast<std::uint16_t>(frame_kind::padding) && offset + size != capacity) return false;
  out.state = static_cast<frame_state>(state);
  out.kind = static_cast<frame_kind>(kind);
  out.length = length;
  out.writer = writer;
  out.size = size;
  return true;
}

frame_header* begin_frame(std::byte* ring, std::uint64_t offset, frame_kind kind, std::uint32_t length,
                          std::uint32_t writer) noexcept {
  auto* h = reinterpret_cast<frame_header*>(ring + offset);
  h->kind = static_cast<std::uint16_t>(kind);
  h->flags = 0;
  h->length = length;
  h->writer = writer;
  // Relaxed is enough: the tail is published with release after this.
  h->state.store(static_cast<std::uint32_t>(frame_state::reserved), std::memory_order_relaxed);
  return h;
}

void commit_frame(frame_header* header) noexcept {
  header->state.store(static_cast<std::uint32_t>(frame_state::committed), std::memory_order_release);
}

void abandon_frame(frame_header* header) noexcept {
  header->kind = static_cast<std::uint16_t>(frame_kind::abandoned);
  header->state.store(static_cast<std::uint32_t>(frame_state::committed), std::memory_order_release);
}

void write_padding(std::byte* ring, std::uint64_t capacity, std::uint64_t offset, std::uint32_t writer) noexcept {
  const std::uint64_t payload = capacity - offset - sizeof(frame_header);
  frame_header* h = begin_frame(ring, offset, frame_kind::padding, static_cast<std::uint32_t>(payload), writer);
  h->state.store(static_cast<std::uint32_t>(frame_state::committed), std::memory_order_relaxed);
}

}  // namespace mphost::ipc
