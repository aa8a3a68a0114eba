#include "mphost/ipc/deadline.hpp"

#include <gtest/gtest.h>
#include <time.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace mphost::ipc {
namespace {

using namespace std::chrono_literals;

TEST(DeadlineTest, InfiniteNeverExpires) {
  const deadline d = deadline::infinite();
  EXPECT_TRUE(d.is_infinite());
  EXPECT_FALSE(d.expired());
  EXPECT_EQ(d.remaining(), deadline::clock::duration::max());
  EXPECT_EQ(d.when(), deadline::clock::time_point::max());
}

TEST(DeadlineTest, ImmediateHasAlreadyExpired) {
  const deadline d = deadline::immediate();
  EXPECT_FALSE(d.is_infinite());
  EXPECT_TRUE(d.expired());
  EXPECT_EQ(d.remaining(), deadline::clock::duration::zero());
}

TEST(DeadlineTest, AfterLiesAheadByAtMostTheTimeout) {
  const deadline d = deadline::after(10s);
  EXPECT_FALSE(d.expired());
  EXPECT_GT(d.remaining(), 0s);
  EXPECT_LE(d.remaining(), 10s);
}

TEST(DeadlineTest, NonPositiveTimeoutsAreImmediate) {
  EXPECT_TRUE(deadline::after(-5s).expired());
  EXPECT_TRUE(deadline::after(0s).expired());
  EXPECT_TRUE(deadline::from_seconds(0.0).expired());
  EXPECT_TRUE(deadline::from_seconds(-1.5).expired());
}

TEST(DeadlineTest, FromSecondsConvertsFractions) {
  const deadline d = deadline::from_seconds(2.5);
  EXPECT_FALSE(d.is_infinite());
  EXPECT_GT(d.remaining(), 2s);
  EXPECT_LE(d.remaining(), 2500ms);
}

TEST(DeadlineTest, HugeOrInfiniteSecondsAreInfinite) {
  EXPECT_TRUE(deadline::from_seconds(std::numeric_limits<double>::infinity()).is_infinite());
  EXPECT_TRUE(deadline::from_seconds(1e300).is_infinite());
}

TEST(DeadlineTest, NanSecondsAreRejected) {
  EXPECT_THROW(deadline::from_seconds(std::nan("")), std::invalid_argument);
}

TEST(DeadlineTest, EarliestPicksTheSoonerOne) {
  const deadline soon = deadline::after(1s);
  const deadline late = deadline::after(100s);
  EXPECT_EQ(deadline::earliest(soon, late).when(), soon.when());
  EXPECT_EQ(deadline::earliest(late, soon).when(), soon.when());
  EXPECT_EQ(deadline::earliest(deadline::infinite(), soon).when(), soon.when());
  EXPECT_TRUE(deadline::earliest(deadline::infinite(), deadline::infinite()).is_infinite());
}

TEST(DeadlineTest, TimespecIsOnTheMonotonicClock) {
  const deadline d = deadline::after(3s);
  const timespec ts = d.to_monotonic_timespec();
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const double diff = static_cast<double>(ts.tv_sec - now.tv_sec) + static_cast<double>(ts.tv_nsec - now.tv_nsec) * 1e-9;
  EXPECT_GT(diff, 2.0);
  EXPECT_LE(diff, 3.0);
}

}  // namespace
}  // namespace mphost::ipc
