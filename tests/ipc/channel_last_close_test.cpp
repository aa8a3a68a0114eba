// The last close of a channel removes its names whichever thread closes
// last: a close racing a send of another thread (which must not register
// the closed endpoint again), and a close racing the withdrawal of the
// endpoint's tickets (whose places kept the close from being the last).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <system_error>
#include <thread>

#include "mphost/ipc/channel.hpp"
#include "mphost/ipc/error.hpp"
#include "mphost/testing/watchdog.hpp"
#include "channel_fixture.hpp"

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;
using testing::shm_exists;

class ChannelLastCloseTest : public testing::channel_test_base {
 protected:
  ChannelLastCloseTest() : channel_test_base("lc-") {}
};

TEST_F(ChannelLastCloseTest, ACloseRacingASendOfAnotherThreadStillRemovesTheNames) {
  mphost::testing::watchdog dog(60s);
  const std::string payload(40, 'x');
  const auto bytes = std::as_bytes(std::span(payload.data(), payload.size()));
  for (int round = 0; round < 200; ++round) {
    channel r = make(options(64 * 1024, true), endpoint_role::reader);
    channel w = channel::open(r.name(), endpoint_role::writer);
    const std::string name = r.name();
    ASSERT_TRUE(shm_exists(name));
    std::atomic<bool> go{false};
    std::thread sender([&] {
      while (!go.load()) {
      }
      try {
        for (;;) {
          if (w.send(bytes, deadline::immediate()) == wait_result::closed) return;
        }
      } catch (const std::system_error&) {
        // handle_closed: the close came first
      }
    });
    go.store(true);
    if (round % 2 == 1) std::this_thread::yield();
    w.close();
    sender.join();
    EXPECT_TRUE(shm_exists(name));  // the reader still holds it
    r.close();
    ASSERT_FALSE(shm_exists(name)) << "round " << round;
  }
}

TEST_F(ChannelLastCloseTest, ACloseRacingTheWithdrawalOfItsTicketsStillRemovesTheNames) {
  mphost::testing::watchdog dog(60s);
  for (int round = 0; round < 200; ++round) {
    channel a = make(options(), endpoint_role::reader);
    const std::string name = a.name();
    const std::uint64_t ticket = a.hand_over(endpoint_role::writer);  // for a process that never comes
    ASSERT_TRUE(shm_exists(name));
    std::atomic<bool> go{false};
    std::thread taker([&] {
      while (!go.load()) {
      }
      a.withdraw_hand_overs();
    });
    go.store(true);
    if (round % 2 == 1) std::this_thread::yield();
    a.close();
    taker.join();
    if (shm_exists(name)) {
      // The close came first and the withdrawal found nothing to do: the
      // ticket's place must still hold the channel (a place freed without
      // its close counting as the last would leave the names for good).
      channel probe = channel::open(name, endpoint_role::writer);
      ASSERT_EQ(probe.endpoints().writers, 2u) << "round " << round;
      probe.close();
      channel late = channel::open(name, endpoint_role::writer, ticket);
      late.close();
    }
    ASSERT_FALSE(shm_exists(name)) << "round " << round;
  }
}

TEST_F(ChannelLastCloseTest, AnUnredeemedTicketKeepsTheNamesUntilWithdrawn) {
  channel a = make(options(), endpoint_role::reader);
  const std::string name = a.name();
  (void)a.hand_over(endpoint_role::writer);
  a.withdraw_hand_overs();
  ASSERT_TRUE(shm_exists(name));
  a.close();
  EXPECT_FALSE(shm_exists(name));
  // Without the withdrawal the ticket's place holds the channel for its
  // receiver (channel.hpp, Naming and lifetime); the receiver's close ends it.
  channel b = make(options(), endpoint_role::reader);
  const std::string kept = b.name();
  const std::uint64_t ticket = b.hand_over(endpoint_role::writer);
  b.close();
  ASSERT_TRUE(shm_exists(kept));
  channel late = channel::open(kept, endpoint_role::writer, ticket);
  late.close();
  EXPECT_FALSE(shm_exists(kept));
}

}  // namespace
}  // namespace mphost::ipc
