#include "mphost/runtime/launch.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "mphost/runtime/exit_status.hpp"
#include "mphost/runtime/handshake.hpp"
#include "mphost/testing/watchdog.hpp"

namespace mphost::runtime {
namespace {

using namespace std::chrono_literals;

TEST(LaunchTest, ExitCodeAndArgumentsReachTheChild) {
  testing::watchdog dog(10s);
  const pid_t pid = launch({"/bin/sh", {"-c", "exit $0", "5"}, {}});
  EXPECT_EQ(wait_for_exit(pid, true), 5);
}

TEST(LaunchTest, OnlyListedDescriptorsAreInherited) {
  testing::watchdog dog(10s);
  int passed[2], hidden[2];
  ASSERT_EQ(::pipe(passed), 0);
  ASSERT_EQ(::pipe(hidden), 0);  // no O_CLOEXEC: launch must still close it
  const std::string script = "echo ok >&" + std::to_string(passed[1]) + " && ! (: >&" +
                             std::to_string(hidden[1]) + ") 2>/dev/null";
  const pid_t pid = launch({"/bin/sh", {"-c", script}, {passed[1]}});
  ::close(passed[1]);
  ::close(hidden[1]);
  char buffer[8] = {};
  EXPECT_EQ(::read(passed[0], buffer, sizeof buffer), 3);
  EXPECT_STREQ(buffer, "ok\n");
  EXPECT_EQ(wait_for_exit(pid, true), 0);
  ::close(passed[0]);
  ::close(hidden[0]);
}

TEST(LaunchTest, EnvironmentAndWorkingDirectoryApplyAtExec) {
  testing::watchdog dog(10s);
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  launch_request request{"/bin/sh", {"-c", "printf '%s|%s' \"$MPHOST_LAUNCH_TEST\" \"$(pwd)\" >&" + std::to_string(out[1])},
                         {out[1]}};
  request.environment = {{"MPHOST_LAUNCH_TEST", "set at exec"}};
  request.working_directory = "/tmp";
  const pid_t pid = launch(request);
  ::close(out[1]);
  std::string got;
  char buffer[256];
  for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;) got.append(buffer, static_cast<std::size_t>(n));
  ::close(out[0]);
  EXPECT_EQ(wait_for_exit(pid, true), 0);
  EXPECT_EQ(got, "set at exec|/tmp");
}

TEST(LaunchTest, MissingWorkingDirectoryThrows) {
  launch_request request{"/bin/true", {}, {}};
  request.working_directory = "/nonexistent/directory";
  EXPECT_THROW(launch(request), std::system_error);
}

TEST(LaunchTest, MissingExecutableThrows) {
  EXPECT_THROW(launch({"/nonexistent/mphost", {}, {}}), std::system_error);
}

TEST(LaunchTest, CurrentExecutableIsAbsolute) {
  const std::string exe = current_executable();
  ASSERT_FALSE(exe.empty());
  EXPECT_EQ(exe.front(), '/');
}

}  // namespace
}  // namespace mphost::runtime
