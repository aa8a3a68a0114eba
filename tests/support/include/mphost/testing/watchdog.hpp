#pragma once
// A watchdog for tests that fork or block: if the guarded scope has not
// finished within its budget, the whole test process is killed with a
// message naming the test, so a hang fails CI instead of stalling it. A test
// process that links this leads its own process group (set at start-up), so
// the kill takes its forked helpers along and never the runner above it.
// The guard is a small process, not a thread: the test stays single-threaded
// for the forks it makes, and the guard inherits none of its endpoints.

#include <sys/types.h>

#include <chrono>
#include <string>

namespace mphost::testing {

class watchdog {
 public:
  explicit watchdog(std::chrono::milliseconds budget, std::string what = current_test_name());
  ~watchdog();
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  static std::string current_test_name();
  std::string message_;
  pid_t guard_ = -1;
};

}  // namespace mphost::testing
