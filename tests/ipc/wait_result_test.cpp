#include "mphost/ipc/wait_result.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mphost::ipc {
namespace {

TEST(WaitResultTest, EveryOutcomeHasItsName) {
  EXPECT_EQ(std::string(to_string(wait_result::ok)), "ok");
  EXPECT_EQ(std::string(to_string(wait_result::timed_out)), "timed_out");
  EXPECT_EQ(std::string(to_string(wait_result::closed)), "closed");
  EXPECT_EQ(std::string(to_string(wait_result::owner_died)), "owner_died");
  EXPECT_EQ(std::string(to_string(wait_result::interrupted)), "interrupted");
}

TEST(WaitResultTest, OnlyOkAndOwnerDiedMeanAcquired) {
  EXPECT_TRUE(acquired(wait_result::ok));
  EXPECT_TRUE(acquired(wait_result::owner_died));
  EXPECT_FALSE(acquired(wait_result::timed_out));
  EXPECT_FALSE(acquired(wait_result::closed));
  EXPECT_FALSE(acquired(wait_result::interrupted));
}

}  // namespace
}  // namespace mphost::ipc
