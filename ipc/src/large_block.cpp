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

namespace detail {

block_ref make_block_ref(const std::string& name, std::uint64_t size) noexcept {
  block_ref r{};
  r.size = size;
  r.name_length = static_cast<std::uint32_t>(name.size() < block_ref::max_name ? name.size() : block_ref::max_name);
  std::memcpy(r.name, name.data(), r.name_length);
  r.check = fold(r.size, r.name_length);
  return r;
}

bool parse_block_ref(const block_ref& ref_in, std::string_view prefix, std::string& name, std::uint64_t& size) {
  // Copy first: the ref may sit in shared memory that others can scribble on.
  block_ref ref;
  std::memcpy(&ref, &ref_in, sizeof ref);
  if (ref.name_length == 0 || ref.name_length > block_ref::max_name || ref.check != fold(ref.size, ref.name_length) ||
      ref.size == 0) {
    return false;
  }
  std::string n(ref.name, ref.name_length);
  for (char c : n) {
    if (!valid_name_char(c)) return false;
  }
  if (n.size() <= prefix.size() || n.compare(0, prefix.size(), prefix) != 0) return false;
  name = std::move(n);
  size = ref.size;
  return true;
}

}  // namespace detail

large_block::~large_block() { reset(); }

large_block::large_block(large_block&& other) noexcept
    : segment_(std::move(other.segment_)), size_(other.size_), pool_(std::move(other.pool_)) {
  other.size_ = 0;
}

large_block& large_block::operator=(large_block&& other) noexcept {
  if (this != &other) {
    reset();
    segment_ = std::move(other.segment_);
    size_ = other.size_;
    pool_ = std::move(other.pool_);
    other.size_ = 0;
  }
  return *this;
}

const std::string& large_block::name() const noexcept {
  static const std::string none;
  return segment_ ? segment_->name() : none;
}

void large_block::reset() noexcept {
  if (pool_ && segment_) pool_->give_back(segment_);
  pool_.reset();
  segment_.reset();
  size_ = 0;
}

bool large_block::unlink() noexcept {
  pool_.reset();  // a removed name cannot be recycled
  return segment_ && segment_->unlink();
}

large_block large_block::create(std::string_view prefix, std::size_t size) {
  if (size == 0) throw_errno(EINVAL, "empty large block");
  if (prefix.size() + 24 > block_ref::max_name) throw_errno(ENAMETOOLONG, "large block prefix too long");
  return large_block(std::make_shared<segment>(segment::create(size, prefix)), size, nullptr);
}

block_ref large_block::ref() const noexcept { return detail::make_block_ref(name(), size_); }

large_block large_block::adopt(const block_ref& ref, std::string_view prefix) {
  std::string name;
  std::uint64_t size = 0;
  if (!detail::parse_block_ref(ref, prefix, name, size)) corrupt("invalid large block reference");
  segment seg;
  try {
    seg = segment::open(name);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::no_such_file_or_directory) corrupt("large block is missing");
    throw;
  }
  segment::remove(name);
  if (seg.size() < size) corrupt("large block is smaller than its reference");
  return large_block(std::make_shared<segment>(std::move(seg)), static_cast<std::size_t>(size), nullptr);
}

}  // namespace mphost::ipc
