#include "mphost/ipc/large_block.hpp"

#include <cerrno>
#include <cstring>
#include <system_error>

#include "mphost/ipc/error.hpp"

namespace mphost::ipc {
namespace {

std::uint32_t fold(std::uint64_t size, std::uint32_t name_length) noexcept {
  const std::uint64_t x = size * 0x9e3779b97f4a7c15ull ^ (std::uint64_t{name_length} << 32 | 0x6d70626cu);
  return static_cast<std::uint32_t>(x ^ (x >> 29));
}

bool valid_name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

[[noreturn]] void corrupt(const char* what) { throw std::system_error(errc::corrupt_frame, what); }

}  // namespace

large_block large_block::create(std::string_view prefix, std::size_t size) {
  if (size == 0) throw_errno(EINVAL, "empty large block");
  if (prefix.size() + 24 > block_ref::max_name) throw_errno(ENAMETOOLONG, "large block prefix too long");
  return large_block(segment::create(size, prefix), size);
}

block_ref large_block::ref() const noexcept {
  block_ref r{};
  const std::string& n = segment_.name();
  r.size = size_;
  r.name_length = static_cast<std::uint32_t>(n.size() < block_ref::max_name ? n.size() : block_ref::max_name);
  std::memcpy(r.name, n.data(), r.name_length);
  r.check = fold(r.size, r.name_length);
  return r;
}

large_block large_block::adopt(const block_ref& ref_in, std::string_view prefix) {
  // Copy first: the ref may sit in shared memory that others can scribble on.
  block_ref ref;
  std::memcpy(&ref, &ref_in, sizeof ref);
  if (ref.name_length == 0 || ref.name_length > block_ref::max_name || ref.check != fold(ref.size, ref.name_length) ||
      ref.size == 0) {
    corrupt("invalid large block reference");
  }
  const std::string name(ref.name, ref.name_length);
  for (char c : name) {
    if (!valid_name_char(c)) corrupt("invalid large block name");
  }
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) {
    corrupt("large block reference names a foreign segment");
  }
  segment seg;
  try {
    seg = segment::open(name);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::no_such_file_or_directory) corrupt("large block is missing");
    throw;
  }
  segment::remove(name);
  if (seg.size() < ref.size) corrupt("large block is smaller than its reference");
  return large_block(std::move(seg), static_cast<std::size_t>(ref.size));
}

}  // namespace mphost::ipc
