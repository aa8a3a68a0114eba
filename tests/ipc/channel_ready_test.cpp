// channel::ready_now: readiness read from shared memory alone, in ring 0 and
// in the later rings of a grown unbounded channel.
#include <gtest/gtest.h>

#include <vector>

#include "channel_fixture.hpp"
#include "mphost/ipc/channel.hpp"

namespace mphost::ipc {
namespace {

class ChannelReadyTest : public testing::channel_test_base {
 protected:
  ChannelReadyTest() : channel_test_base("rdy-") {}
};

std::span<const std::byte> bytes_of(const std::vector<std::byte>& v) { return {v.data(), v.size()}; }

TEST_F(ChannelReadyTest, FollowsWhatARecvWouldFind) {
  channel reader = make(options(), endpoint_role::reader);
  channel writer = channel::open(reader.name(), endpoint_role::writer);
  EXPECT_FALSE(reader.ready_now());
  const std::vector<std::byte> one(8, std::byte{1});
  ASSERT_EQ(writer.send(bytes_of(one)), wait_result::ok);
  EXPECT_TRUE(reader.ready_now());
  message m;
  ASSERT_EQ(reader.recv(m, deadline::immediate()), wait_result::ok);
  EXPECT_FALSE(reader.ready_now());
  writer.close();
  // No writer left: a recv would report end of file at once.
  EXPECT_TRUE(reader.ready_now());
  reader.close();
  EXPECT_FALSE(reader.ready_now());
}

TEST_F(ChannelReadyTest, FollowsAGrownChannelIntoItsLaterRings) {
  channel reader = make(options(4096, true), endpoint_role::reader);
  channel writer = channel::open(reader.name(), endpoint_role::writer);
  const std::vector<std::byte> payload(200, std::byte{7});
  constexpr int count = 200;  // far more than ring 0 holds
  for (int i = 0; i < count; ++i) ASSERT_EQ(writer.send(bytes_of(payload)), wait_result::ok);
  message m;
  for (int i = 0; i < count; ++i) {
    ASSERT_TRUE(reader.ready_now()) << i;
    ASSERT_EQ(reader.recv(m, deadline::immediate()), wait_result::ok) << i;
  }
  EXPECT_FALSE(reader.ready_now());
  // Asked again and again in the last ring, it stays right.
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(writer.send(bytes_of(payload)), wait_result::ok);
    ASSERT_TRUE(reader.ready_now());
    ASSERT_EQ(reader.recv(m, deadline::immediate()), wait_result::ok);
    ASSERT_FALSE(reader.ready_now());
  }
}

}  // namespace
}  // namespace mphost::ipc
