#pragma once
// Private: the value codec's entry points for the pool (value_codec.cpp).
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mphost/value.hpp"

namespace mphost {

// `out` = pickle of `v` (cleared first).
void write_pickle(const value& v, std::string& out);
// `out` = pickle of the tuple (target, tuple(args)): a call request.
void write_call(std::string_view target, const std::vector<value>& args, std::string& out);
// The value pickled in `data`; opaque (`pickled`) for anything the codec
// does not read; conversion_error for an int beyond int64.
value read_pickle(std::span<const std::byte> data);

}  // namespace mphost
