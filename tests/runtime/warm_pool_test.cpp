#include "mphost/runtime/warm_pool.hpp"

#include <gtest/gtest.h>
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

}  // namespace
}  // namespace mphost::runtime
