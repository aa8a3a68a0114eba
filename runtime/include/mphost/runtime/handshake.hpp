#pragma once
// Length-prefixed messages between a parent and a child over an inherited
// descriptor (a pipe or a socket).
//
// The payload is opaque here: the Python layer pickles the preparation data
// and the process object into it. A message is an 8-byte little-endian length
// followed by that many bytes. A reader that meets end-of-file before a whole
// message gets errc::peer_closed; a length above `max_size` gives
// errc::message_too_large before anything is allocated; below it, storage
// grows as the bytes arrive, so a length the peer does not back with data
// never reserves more than twice what it sent (at least 1 MiB).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace mphost::runtime {

inline constexpr std::uint64_t default_handshake_limit = std::uint64_t{1} << 36;  // 64 GiB

// Writes one whole message; retries on EINTR and short writes.
void write_message(int fd, std::span<const std::byte> payload);

// Reads one whole message; retries on EINTR and short reads.
std::vector<std::byte> read_message(int fd, std::uint64_t max_size = default_handshake_limit);

// Low-level helpers shared by the other runtime pieces.
void write_all(int fd, const void* data, std::size_t size);
// Returns false on end-of-file before the first byte; throws peer_closed on
// end-of-file in the middle.
bool read_all(int fd, void* data, std::size_t size);

}  // namespace mphost::runtime
