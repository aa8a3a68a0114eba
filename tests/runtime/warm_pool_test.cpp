#include "mphost/runtime/warm_pool.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "mphost/runtime/exit_status.hpp"
#include "mphost/runtime/handover.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

// A waiting child stand-in: a shell that reads its socket (descriptor {fd})
// and exits with the number of bytes it got, up to 255.
launch_request reader_request() {
  return {"/bin/sh", {"-c", "exec 3<&$0; n=$(cat <&3 | wc -c); exit $(( n > 255 ? 255 : n ))", "{fd}"}, {}};
}

TEST(WarmPoolTest, SpareIsTakenOnlyWithItsKey) {
  testing::watchdog dog(20s);
  warm_pool pool;
  EXPECT_FALSE(pool.take("k").has_value());
  pool.stock(reader_request(), "k");
  EXPECT_TRUE(pool.has_spare());
  auto spare = pool.take("k");
  ASSERT_TRUE(spare.has_value());
  EXPECT_FALSE(pool.has_spare());
  ASSERT_EQ(::write(spare->sock, "hello", 5), 5);
  ::close(spare->sock);
  EXPECT_EQ(wait_for_exit(spare->pid, true), 5);
}

TEST(WarmPoolTest, MismatchingKeyDiscardsTheSpare) {
  testing::watchdog dog(20s);
  warm_pool pool;
  pool.stock(reader_request(), "old");
  EXPECT_FALSE(pool.take("new").has_value());
  EXPECT_FALSE(pool.has_spare());
}

TEST(WarmPoolTest, ChangedInheritedStateDiscardsTheSpare) {
  testing::watchdog dog(20s);
  warm_pool pool;
  pool.stock(reader_request(), "k");
  const mode_t old_mask = ::umask(0077);
  EXPECT_FALSE(pool.take("k").has_value());
  ::umask(old_mask);
}

TEST(WarmPoolTest, BackgroundStockEventuallyProvidesASpare) {
  testing::watchdog dog(20s);
  warm_pool pool;
  pool.stock_in_background(reader_request(), "k");
  while (!pool.has_spare()) std::this_thread::sleep_for(1ms);
  auto spare = pool.take("k");
  ASSERT_TRUE(spare.has_value());
  ::close(spare->sock);
  EXPECT_EQ(wait_for_exit(spare->pid, true), 0);
}

TEST(WarmPoolTest, SpareWhoseSocketWasClosedElsewhereIsNotUsed) {
  testing::watchdog dog(20s);
  warm_pool pool;
  // The lowest free number is where the spare's end of its socket pair lands.
  const int expected = ::dup(0);
  ASSERT_GE(expected, 0);
  ::close(expected);
  pool.stock(reader_request(), "k");
  // A stray close, and the number taken over by another socket.
  ASSERT_EQ(::close(expected), 0);
  int other[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, other), 0);
  ASSERT_EQ(other[0], expected);
  EXPECT_FALSE(pool.take("k").has_value());
  // The new owner of the number keeps it.
  EXPECT_GE(::fcntl(other[0], F_GETFD), 0);
  ::close(other[0]);
  ::close(other[1]);
}


// Waits until `pool` holds `count` spares, or fails after the watchdog's time.
void wait_for_count(const warm_pool& pool, std::size_t count) {
  while (pool.spare_count() != count) std::this_thread::sleep_for(2ms);
}

void drain(warm_pool& pool, const std::string& key) {
  while (auto spare = pool.take(key)) {
    ::close(spare->sock);
    wait_for_exit(spare->pid, true);
  }
}

TEST(WarmPoolTest, ABurstOfTakesAsksForSeveralSparesUpToTheLimit) {
  testing::watchdog dog(30s);
  warm_pool pool;
  pool.set_policy({.limit = 3, .burst_gap = 10s, .idle_drop = 60s});
  for (int i = 0; i < 5; ++i) {
    auto spare = pool.take("k");  // the first finds none
    if (spare) {
      ::close(spare->sock);
      wait_for_exit(spare->pid, true);
    }
    pool.stock_in_background(reader_request(), "k");
  }
  wait_for_count(pool, 3);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(pool.spare_count(), 3u);  // never more than the limit
  drain(pool, "k");
}

TEST(WarmPoolTest, ExtraSparesAreStoppedWhenIdle) {
  testing::watchdog dog(30s);
  warm_pool pool;
  pool.set_policy({.limit = 4, .burst_gap = 10s, .idle_drop = 2s});
  for (int i = 0; i < 4; ++i) {
    auto spare = pool.take("k");
    if (spare) {
      ::close(spare->sock);
      wait_for_exit(spare->pid, true);
    }
    pool.stock_in_background(reader_request(), "k");
  }
  // Four while the burst is recent, then back to one.
  wait_for_count(pool, 4);
  pool.set_policy({.limit = 4, .burst_gap = 10s, .idle_drop = 300ms});
  wait_for_count(pool, 1);
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(pool.spare_count(), 1u);
  drain(pool, "k");
}

TEST(WarmPoolTest, ANewKeyStopsEverySpareOfTheOldOne) {
  testing::watchdog dog(30s);
  warm_pool pool;
  pool.set_policy({.limit = 3, .burst_gap = 10s, .idle_drop = 60s});
  for (int i = 0; i < 3; ++i) {
    auto spare = pool.take("old");
    if (spare) {
      ::close(spare->sock);
      wait_for_exit(spare->pid, true);
    }
    pool.stock_in_background(reader_request(), "old");
  }
  wait_for_count(pool, 3);
  EXPECT_FALSE(pool.take("new").has_value());
  EXPECT_EQ(pool.spare_count(), 0u);
  pool.stock_in_background(reader_request(), "new");
  wait_for_count(pool, 3);
  auto spare = pool.take("new");
  ASSERT_TRUE(spare.has_value());
  ::close(spare->sock);
  EXPECT_EQ(wait_for_exit(spare->pid, true), 0);
  drain(pool, "new");
}

}  // namespace
}  // namespace mphost::runtime
