// shared_block (shared_array.hpp): a segment of the core (ipc::segment),
// created here or adopted from a worker's reply, and unlinked when the last
// handle goes.
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "mphost/ipc/resource_registry.hpp"
#include "mphost/ipc/segment.hpp"
#include "mphost/shared_array.hpp"

namespace mphost {

namespace detail {
struct shared_block_state {
  ipc::segment memory;
  char format = 'B';
  std::size_t count = 0;
  std::size_t item_size = 1;
  std::vector<std::size_t> shape;
  ~shared_block_state() { memory.unlink(); }
};
}  // namespace detail

namespace {

constexpr std::string_view block_prefix = "mphost-arr-";

std::size_t item_size_of(char format) {
  switch (format) {
    case 'b': case 'B': return 1;
    case 'h': case 'H': return 2;
    case 'i': case 'I': case 'f': return 4;
    case 'q': case 'Q': case 'd': return 8;
    default: throw std::invalid_argument(std::string("shared_array: unknown format '") + format + "'");
  }
}

constexpr std::size_t max_dimensions = 64;  // as numpy and memoryview

std::size_t items_in(const std::vector<std::size_t>& shape) {
  if (shape.size() > max_dimensions) throw std::invalid_argument("shared_array: more than 64 dimensions");
  std::size_t n = 1;
  for (std::size_t extent : shape) {
    if (extent != 0 && n > SIZE_MAX / extent) throw std::invalid_argument("shared_array: shape too large");
    n *= extent;
  }
  return n;
}

}  // namespace

shared_block::shared_block(char format, std::size_t count) : shared_block(format, std::vector<std::size_t>{count}) {}

shared_block::shared_block(char format, std::vector<std::size_t> shape) {
  auto s = std::make_shared<detail::shared_block_state>();
  s->format = format;
  s->count = items_in(shape);
  s->shape = std::move(shape);
  s->item_size = item_size_of(format);
  const std::size_t count = s->count;
  if (count > SIZE_MAX / s->item_size) throw std::invalid_argument("shared_array: shape too large");
  // A segment has at least one byte: an empty array still has a name.
  s->memory = ipc::segment::create(std::max<std::size_t>(count * s->item_size, 1), block_prefix);
  state_ = std::move(s);
}

shared_block shared_block::adopt(const std::string& name, char format, std::size_t count,
                                 std::vector<std::size_t> shape) {
  if (shape.empty()) shape = {count};
  if (items_in(shape) != count) {
    throw std::invalid_argument("shared_array: block '" + name + "' has a shape of another size");
  }
  auto s = std::make_shared<detail::shared_block_state>();
  s->format = format;
  s->count = count;
  s->shape = std::move(shape);
  s->item_size = item_size_of(format);
  s->memory = ipc::segment::open(name);
  // Ours now: recorded so that it goes with the application even if it is
  // killed (a worker made it outside the registry).
  if (ipc::resource_registry* registry = ipc::current_registry()) registry->record(name);
  if (s->memory.size() < count * s->item_size) {
    s->memory.unlink();
    throw std::invalid_argument("shared_array: block '" + name + "' is smaller than its items");
  }
  shared_block b;
  b.state_ = std::move(s);
  return b;
}

char shared_block::format() const noexcept { return state_ ? state_->format : 'B'; }
std::size_t shared_block::count() const noexcept { return state_ ? state_->count : 0; }
const std::vector<std::size_t>& shared_block::shape() const noexcept {
  static const std::vector<std::size_t> none{0};
  return state_ ? state_->shape : none;
}
std::size_t shared_block::item_size() const noexcept { return state_ ? state_->item_size : 1; }
std::byte* shared_block::data() const noexcept { return state_ ? state_->memory.data() : nullptr; }
const std::string& shared_block::name() const noexcept {
  static const std::string none;
  return state_ ? state_->memory.name() : none;
}

}  // namespace mphost
