#include "mphost/testing/watchdog.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

namespace mphost::testing {
namespace {

// A test process leads a process group of its own, so that a watchdog's
// kill(0) takes down the test and the helpers it forked, never the runner
// (ctest, a CI script) that started it.
[[maybe_unused]] const bool own_process_group = [] {
  ::setpgid(0, 0);
  return true;
}();

}  // namespace

std::string watchdog::current_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (info == nullptr) return "test";
  return std::string(info->test_suite_name()) + "." + info->name();
}

watchdog::watchdog(std::chrono::milliseconds budget, std::string what) {
  thread_ = std::thread([this, budget, what = std::move(what)] {
    std::unique_lock lock(mutex_);
    if (done_cv_.wait_for(lock, budget, [this] { return done_; })) return;
    std::fprintf(stderr, "watchdog: %s did not finish within %lld ms; killing the test process\n",
                 what.c_str(), static_cast<long long>(budget.count()));
    std::fflush(stderr);
    // Take the whole process group down so that forked helpers do not linger.
    ::kill(0, SIGKILL);
    ::_exit(124);
  });
}

watchdog::~watchdog() {
  {
    std::lock_guard lock(mutex_);
    done_ = true;
  }
  done_cv_.notify_all();
  thread_.join();
}

}  // namespace mphost::testing
