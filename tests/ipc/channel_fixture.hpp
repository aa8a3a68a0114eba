#pragma once
// A test fixture for channels: names under the test's own prefix, removed
// after the test whatever happens (dead children can keep a channel
// registered), and the shm check of shm_checked_test.

#include <memory>
#include <string>
#include <vector>

#include "mphost/ipc/channel.hpp"
#include "shm_check.hpp"

namespace mphost::ipc::testing {

class channel_test_base : public shm_checked_test {
 protected:
  explicit channel_test_base(std::string tag) : prefix_(test_prefix() + tag) {}

  channel_options options(std::size_t capacity = 64 * 1024, bool unbounded = false) const {
    channel_options o;
    o.capacity = capacity;
    o.unbounded = unbounded;
    o.prefix = prefix_;
    return o;
  }
  channel make(const channel_options& o, endpoint_role role) {
    channel ch = channel::create(o, role);
    guards_.push_back(std::make_unique<name_guard>());
    guards_.back()->set(ch.name(), &channel::remove);
    return ch;
  }
  void TearDown() override {
    guards_.clear();
    shm_checked_test::TearDown();
  }

 private:
  std::string prefix_;
  std::vector<std::unique_ptr<name_guard>> guards_;
};

}  // namespace mphost::ipc::testing
