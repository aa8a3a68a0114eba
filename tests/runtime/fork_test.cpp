#include "mphost/runtime/fork.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "mphost/runtime/exit_status.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

TEST(ForkTest, HooksRunOnTheirSides) {
  testing::watchdog dog(10s);
  int before = 0, parent = 0;
  bool in_child = false;
  const pid_t pid = fork_process({[&] { ++before; }, [&] { ++parent; }, [&] { in_child = true; }});
  if (pid == 0) ::_exit(in_child && before == 1 && parent == 0 ? 0 : 1);
  EXPECT_EQ(before, 1);
  EXPECT_EQ(parent, 1);
  EXPECT_FALSE(in_child);
  EXPECT_EQ(wait_for_exit(pid, true), 0);
}

}  // namespace
}  // namespace mphost::runtime
