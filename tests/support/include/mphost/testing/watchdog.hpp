#pragma once
// A watchdog for tests that fork or block: if the guarded scope has not
// finished within its budget, the whole test process is killed with a
// message naming the test, so a hang fails CI instead of stalling it. A test
// process that links this leads its own process group (set at start-up), so
// the kill takes its forked helpers along and never the runner above it.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace mphost::testing {

class watchdog {
 public:
  explicit watchdog(std::chrono::milliseconds budget, std::string what = current_test_name());
  ~watchdog();
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  static std::string current_test_name();
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace mphost::testing
