#pragma once
// frame_prefix: the fixed start of a frame's head message (private to
// cluster/). Layout, host byte order (the ranks of one job share it):
//   u32 magic | i32 kind | u64 part count | u64 chunk bytes | u64 size x count
// followed by the header bytes. read_prefix() accepts only a head that is
// consistent (magic, kind in range, the sizes within the message, a chunk in
// 1..INT_MAX, no part over 2^48 bytes); anything else is nullopt, which the
// link counts as a dropped frame.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace mphost::cluster::detail {

struct prefix_info {
    int kind = 0;
    std::size_t chunk = 0;
    std::vector<std::size_t> sizes;  // one per part
    std::size_t header_offset = 0;   // where the header starts in the message
};

// The head message for a frame: the prefix, then room for the header at
// header_offset (filled by the caller).
std::vector<std::byte> make_head(std::uint32_t magic, int kind, std::size_t chunk,
                                 const std::vector<std::size_t>& sizes, std::size_t header_size);

std::optional<prefix_info> read_prefix(const std::byte* data, std::size_t size, std::uint32_t magic,
                                       int max_kind);

}  // namespace mphost::cluster::detail
