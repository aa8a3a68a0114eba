#pragma once
// Private: what each primitive tells an observer about itself
// (tree_state.hpp). Each describe_* is defined beside the primitive's layout,
// takes a private COPY of the first bytes of a segment (aligned to 64,
// `size` of them) and fills `out` if those bytes are that primitive's
// complete header: false otherwise. Reads only the copy.
#include <cstddef>

#include "mphost/ipc/tree_state.hpp"

namespace mphost::ipc::detail {

// Bytes an observer reads from the start of a segment to classify it.
inline constexpr std::size_t probe_bytes = 4096;

bool describe_semlock(const std::byte* bytes, std::size_t size, sync_view& out) noexcept;
bool describe_event(const std::byte* bytes, std::size_t size, sync_view& out) noexcept;
bool describe_condition(const std::byte* bytes, std::size_t size, sync_view& out) noexcept;
bool describe_barrier(const std::byte* bytes, std::size_t size, sync_view& out) noexcept;

}  // namespace mphost::ipc::detail
