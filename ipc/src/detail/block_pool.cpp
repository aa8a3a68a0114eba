#include "detail/block_pool.hpp"

#include <cerrno>
#include <system_error>

#include "mphost/ipc/error.hpp"

namespace mphost::ipc::detail {
namespace {

// Enough mappings for every block a fast producer keeps in flight at once:
// blocks cycle through the cache in order, so a cache smaller than that
// cycle misses every time (each miss maps, and faults in, a whole block).
constexpr std::size_t cache_entries = 64;
constexpr std::uint64_t cache_byte_limit = std::uint64_t{128} << 20;

[[noreturn]] void corrupt(const char* what) { throw std::system_error(errc::corrupt_frame, what); }

std::size_t block_capacity(std::size_t size) noexcept {
  if (size > (std::size_t{64} << 20)) return (size + (std::size_t{2} << 20) - 1) & ~((std::size_t{2} << 20) - 1);
  std::size_t c = 4096;
  while (c < size) c <<= 1;
  return c;
}

class pool_lock {
 public:
  explicit pool_lock(robust_mutex& m) noexcept : m_(m), died_(false) {
    wait_result r;
    while (!acquired(r = m_.lock())) {
    }
    died_ = r == wait_result::owner_died;
  }
  ~pool_lock() { m_.unlock(); }
  bool owner_died() const noexcept { return died_; }

 private:
  robust_mutex& m_;
  bool died_;
};

// A holder died with the pool half-changed: count and bytes may disagree
// with the entries. Trust only entries that parse, and recount.
void repair(control& c, std::string_view prefix) noexcept {
  std::uint32_t n = c.pool_count > pool_slots ? pool_slots : c.pool_count;
  std::uint32_t kept = 0;
  std::uint64_t bytes = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    std::string name;
    std::uint64_t size = 0;
    try {
      if (!parse_block_ref(c.pool[i], prefix, name, size)) continue;
    } catch (...) {
      continue;
    }
    c.pool[kept++] = c.pool[i];
    bytes += size;
  }
  c.pool_count = kept;
  c.pool_bytes = bytes;
}

}  // namespace

block_pool::block_pool(std::shared_ptr<segment> control_mapping, std::string prefix) noexcept
    : control_(std::move(control_mapping)), prefix_(std::move(prefix)) {}

std::shared_ptr<segment> block_pool::map(const std::string& name, bool create, std::size_t size) {
  std::lock_guard lock(mutex_);
  for (auto& e : cache_) {
    if (e.name == name) {
      e.used = ++clock_;
      return e.seg;
    }
  }
  auto seg = std::make_shared<segment>(create ? segment::create_named(name, size) : segment::open(name));
  std::uint64_t bytes = seg->size();
  for (const auto& e : cache_) bytes += e.seg->size();
  while (!cache_.empty() && (cache_.size() >= cache_entries || bytes > cache_byte_limit)) {
    auto oldest = cache_.begin();
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if (it->used < oldest->used) oldest = it;
    }
    bytes -= oldest->seg->size();
    cache_.erase(oldest);  // unmapped here unless a message still holds it
  }
  cache_.push_back({name, seg, ++clock_});
  return seg;
}

void block_pool::forget(const std::string& name) noexcept {
  std::lock_guard lock(mutex_);
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->name == name) {
      cache_.erase(it);
      return;
    }
  }
}

large_block block_pool::take(std::size_t size) {
  if (size == 0) throw_errno(EINVAL, "empty large block");
  control& c = ctl();
  std::string name;
  std::uint64_t capacity = 0;
  {
    pool_lock lock(c.pool_lock);
    if (lock.owner_died()) repair(c, prefix_);
    const std::uint64_t most = size * 4 > (std::uint64_t{256} << 10) ? size * 4 : (std::uint64_t{256} << 10);
    std::uint32_t best = pool_slots;
    const std::uint32_t n = c.pool_count > pool_slots ? pool_slots : c.pool_count;
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::uint64_t cap = c.pool[i].size;
      if (cap >= size && cap <= most && (best == pool_slots || cap < c.pool[best].size)) best = i;
    }
    if (best != pool_slots) {
      const block_ref entry = c.pool[best];
      c.pool[best] = c.pool[n - 1];
      c.pool_count = n - 1;
      c.pool_bytes -= entry.size <= c.pool_bytes ? entry.size : c.pool_bytes;
      if (!parse_block_ref(entry, prefix_, name, capacity)) name.clear();
    }
  }
  if (!name.empty()) {
    try {
      auto seg = map(name, false, 0);
      if (seg->size() >= size) return block_access::make(std::move(seg), size, shared_from_this());
      forget(name);
    } catch (const std::system_error&) {
      // Gone (the channel was removed meanwhile): make a fresh one.
    }
  }
  const std::size_t cap = block_capacity(size);
  c.extra_names.store(1, std::memory_order_release);
  for (int attempt = 0;; ++attempt) {
    try {
      auto seg = map(segment::random_name(prefix_), true, cap);
      return block_access::make(std::move(seg), size, shared_from_this());
    } catch (const std::system_error& e) {
      if (e.code() != std::errc::file_exists || attempt >= 8) throw;
    }
  }
}

large_block block_pool::adopt(const block_ref& ref) {
  std::string name;
  std::uint64_t size = 0;
  if (!parse_block_ref(ref, prefix_, name, size)) corrupt("invalid large block reference");
  std::shared_ptr<segment> seg;
  try {
    seg = map(name, false, 0);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::no_such_file_or_directory) corrupt("large block is missing");
    throw;
  }
  if (seg->size() < size) {
    forget(name);
    segment::remove(name);
    corrupt("large block is smaller than its reference");
  }
  return block_access::make(std::move(seg), static_cast<std::size_t>(size), shared_from_this());
}

void block_pool::give_back(const std::shared_ptr<segment>& block) noexcept {
  control& c = ctl();
  const std::uint64_t cap = block->size();
  bool pooled = false;
  if (c.removed.load(std::memory_order_acquire) == 0 && cap <= pool_byte_limit) {
    pool_lock lock(c.pool_lock);
    if (lock.owner_died()) repair(c, prefix_);
    if (c.pool_count < pool_slots && c.pool_bytes + cap <= pool_byte_limit) {
      c.pool[c.pool_count] = make_block_ref(block->name(), cap);
      c.pool_count += 1;
      c.pool_bytes += cap;
      pooled = true;
    }
  }
  if (!pooled) {
    segment::remove(block->name());
    forget(block->name());
  }
}

}  // namespace mphost::ipc::detail
