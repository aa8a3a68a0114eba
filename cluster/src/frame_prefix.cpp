// frame_prefix: see frame_prefix.hpp.
#include "frame_prefix.hpp"

#include <climits>
#include <cstring>

namespace mphost::cluster::detail {
namespace {

constexpr std::size_t fixed_bytes = 4 + 4 + 8 + 8;
constexpr std::uint64_t max_part_size = std::uint64_t{1} << 48;

template <class T>
void put(std::byte*& at, T value) {
    std::memcpy(at, &value, sizeof value);
    at += sizeof value;
}

template <class T>
T take(const std::byte*& at) {
    T value;
    std::memcpy(&value, at, sizeof value);
    at += sizeof value;
    return value;
}

}  // namespace

std::vector<std::byte> make_head(std::uint32_t magic, int kind, std::size_t chunk,
                                 const std::vector<std::size_t>& sizes, std::size_t header_size) {
    std::vector<std::byte> head(fixed_bytes + 8 * sizes.size() + header_size);
    std::byte* at = head.data();
    put<std::uint32_t>(at, magic);
    put<std::int32_t>(at, kind);
    put<std::uint64_t>(at, sizes.size());
    put<std::uint64_t>(at, chunk);
    for (std::size_t s : sizes) put<std::uint64_t>(at, s);
    return head;
}

std::optional<prefix_info> read_prefix(const std::byte* data, std::size_t size, std::uint32_t magic,
                                       int max_kind) {
    if (size < fixed_bytes) return std::nullopt;
    const std::byte* at = data;
    auto mark = take<std::uint32_t>(at);
    auto kind = take<std::int32_t>(at);
    auto count = take<std::uint64_t>(at);
    auto chunk = take<std::uint64_t>(at);
    if (mark != magic || kind < 0 || kind > max_kind || count > (size - fixed_bytes) / 8 || chunk == 0 ||
        chunk > INT_MAX)
        return std::nullopt;
    prefix_info info;
    info.kind = kind;
    info.chunk = static_cast<std::size_t>(chunk);
    info.sizes.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i) {
        auto s = take<std::uint64_t>(at);
        if (s > max_part_size) return std::nullopt;
        info.sizes.push_back(static_cast<std::size_t>(s));
    }
    info.header_offset = fixed_bytes + 8 * count;
    return info;
}

}  // namespace mphost::cluster::detail
