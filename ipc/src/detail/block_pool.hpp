#pragma once
// Private: recycling of a channel's large blocks.
//
// take() gives a sender a block of at least the asked size: a pooled one
// that fits (not more than four times too big), or a new one whose size is
// rounded up to a power of two so that later messages of similar size fit
// it. adopt() maps the block a received ref names. Both go through a small
// per-endpoint cache of mappings, so a block that travels back and forth
// stays mapped in both processes. When a large_block handed out here is
// dropped, give_back() returns it to the shared pool, or removes it when
// the pool is full, over its byte limit, or the channel is gone.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "detail/channel_layout.hpp"
#include "mphost/ipc/large_block.hpp"
#include "mphost/ipc/segment.hpp"

namespace mphost::ipc::detail {

struct block_access {
  static large_block make(std::shared_ptr<segment> seg, std::size_t size, std::shared_ptr<block_recycler> pool) noexcept {
    return large_block(std::move(seg), size, std::move(pool));
  }
  // The block is in flight to a receiver: forget it without recycling.
  static void release_in_flight(large_block& b) noexcept {
    b.pool_.reset();
    b.segment_.reset();
    b.size_ = 0;
  }
  static const std::shared_ptr<block_recycler>& pool_of(const large_block& b) noexcept { return b.pool_; }
};

class block_pool final : public block_recycler, public std::enable_shared_from_this<block_pool> {
 public:
  // `control_mapping` keeps the control segment mapped for as long as any
  // block handed out here lives, even after its channel endpoint closed.
  block_pool(std::shared_ptr<segment> control_mapping, std::string prefix) noexcept;

  large_block take(std::size_t size);
  large_block adopt(const block_ref& ref);
  void give_back(const std::shared_ptr<segment>& block) noexcept override;

  const std::string& prefix() const noexcept { return prefix_; }

  // Around fork(): the cache's mutex must not be inherited locked.
  void lock_for_fork() noexcept { mutex_.lock(); }
  void unlock_after_fork() noexcept { mutex_.unlock(); }

 private:
  control& ctl() const noexcept { return *static_cast<control*>(control_->base()); }
  std::shared_ptr<segment> map(const std::string& name, bool create, std::size_t size);
  void forget(const std::string& name) noexcept;

  struct cached {
    std::string name;
    std::shared_ptr<segment> seg;
    std::uint64_t used;
  };

  std::shared_ptr<segment> control_;
  std::string prefix_;
  std::mutex mutex_;
  std::vector<cached> cache_;
  std::uint64_t clock_ = 0;
};

}  // namespace mphost::ipc::detail
