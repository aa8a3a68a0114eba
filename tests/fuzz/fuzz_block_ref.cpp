// Fuzz target: the out-of-band frame of a channel, the block_ref a `block`
// frame carries in the ring to name a large block beside it
// (ipc/large_block.hpp). The input is the ref's 128 bytes as the ring holds
// them (shorter inputs are zero-filled). detail::parse_block_ref runs as
// block_pool::adopt runs it on every received block frame, and the answer
// must be one a writer could have made: a non-empty size, a name of the
// channel's prefix plus at least one more character, of name characters
// only, within max_name; and then making a ref from the answer gives back
// the same bytes (the check word included).
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "mphost/ipc/large_block.hpp"

namespace {

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* in, std::size_t size) {
  using namespace mphost;
  ipc::block_ref ref{};
  std::memcpy(&ref, in, size < sizeof ref ? size : sizeof ref);
  constexpr std::string_view prefix = "mphost-ch-fuzz-b";
  std::string name = "untouched";
  std::uint64_t length = 7;
  if (!ipc::detail::parse_block_ref(ref, prefix, name, length)) {
    fuzz::require(name == "untouched" && length == 7, "a refused ref changed its outputs");
    return 0;
  }
  fuzz::require(length > 0, "a block of size 0 was accepted");
  fuzz::require(name.size() > prefix.size() && name.size() <= ipc::block_ref::max_name, "bad name length accepted");
  fuzz::require(name.compare(0, prefix.size(), prefix) == 0, "a name outside the channel's prefix was accepted");
  for (char c : name) fuzz::require(name_char(c), "a name with a character no writer uses was accepted");
  const ipc::block_ref again = ipc::detail::make_block_ref(name, length);
  fuzz::require(again.size == ref.size && again.name_length == ref.name_length && again.check == ref.check &&
                    std::memcmp(again.name, ref.name, ref.name_length) == 0,
                "an accepted ref does not round-trip");
  return 0;
}
